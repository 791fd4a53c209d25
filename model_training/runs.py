"""Training runs: `train` writes a new run folder and never the shipped model; `promote` ships one on purpose.

    runs/<UTC time>-<version>/model/    model.tflite, model.json (the card), model.keras (for `adapt`)
    runs/<UTC time>-<version>/report/   report.md, metrics.json, plots, split.json, input_check/, comparison.md

The bundled model is `lambda_src/model/` with its report in `reports/`; `promote` copies a run over them.
`compare` puts a run's per-site metrics beside the bundled model's: two trainings agree when each one's value
lies inside the other's bootstrap 95 % interval (training is seeded, not bit-reproducible; docs/training.md).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import TrainingError

RUNS = Path("runs")
BUNDLED_MODEL = Path("lambda_src/model")
BUNDLED_REPORT = Path("reports")
MODEL, REPORT = "model", "report"
#: What `promote` copies into the bundled model folder (the Lambda image takes model.tflite + model.json).
MODEL_FILES = ("model.tflite", "model.json", "model.keras")
#: Metrics with bootstrap intervals in the card: the ones a rerun is judged on.
JUDGED = ("auc_malignant", "sensitivity", "specificity", "ece_malignant")
SHOWN = JUDGED + ("lesions_called_normal", "accuracy")


def new_run(root: Path = RUNS, *, now: datetime.datetime | None = None) -> Path:
    """A fresh, empty run folder named after the UTC time (the version is appended by `finish_run`)."""
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    for n in range(100):
        run = root / (stamp if n == 0 else f"{stamp}.{n}")
        try:
            run.mkdir()
            return run
        except FileExistsError:
            continue
    raise TrainingError(f"could not create a new run folder under {root}")


def finish_run(run: Path, version: str) -> Path:
    """Rename `runs/<time>` to `runs/<time>-<first 8 hex of the version>` once the model exists."""
    final = run.with_name(f"{run.name}-{version[:8]}")
    run.rename(final)
    return final


def resolve_run(text: str | Path, root: Path = RUNS) -> Path:
    """A run folder from its path or its name under `root`; `latest` is the newest complete run."""
    text = str(text)
    if text == "latest":
        runs = list_runs(root)
        if not runs:
            raise TrainingError(f"no complete run under {root}/ (a run has model/model.json): `make train` first")
        return runs[-1]
    for candidate in (Path(text), root / text):
        if (candidate / MODEL / "model.json").is_file() or (candidate / "model.json").is_file():
            return candidate  # a run, or a bare model folder (what `adapt` writes)
    known = ", ".join(p.name for p in list_runs(root)[-5:]) or "none"
    raise TrainingError(f"{text} is not a training run (no {MODEL}/model.json in it) nor a model folder; recent runs under "
                        f"{root}/: {known}")


def list_runs(root: Path = RUNS) -> list[Path]:
    """Complete runs under `root`, oldest first (names start with the UTC time, so they sort by time)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / MODEL / "model.json").is_file())


def copy_atomic(src: Path, dst: Path) -> None:
    """Copy beside, then rename: a running local API has model.tflite memory-mapped, and rewriting that
    file in place kills it with SIGBUS; a rename leaves its old inode intact (and no reader sees half a file)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


class Written(list):
    """The paths `promote` wrote, with its notes about the release expectations."""

    notes: list[str]


def promote(run: Path, *, model_dir: Path = BUNDLED_MODEL, report_dir: Path = BUNDLED_REPORT,
            examples: Path | None = Path("examples"), allow_no_input_check: bool = False) -> Written:
    """Copy a run's model over `model_dir` and its report files over `report_dir`, then record the release
    expectations in the promoted model.json (drift band, pre-traffic answers of `examples`; None skips that);
    returns what was written.

    Report files the run did not write (other studies under reports/: loso/, adapt/, cv/) are left alone.
    """
    src_model, src_report = (run / MODEL, run / REPORT) if (run / MODEL).is_dir() else (run, run / REPORT)
    missing = [n for n in MODEL_FILES[:2] if not (src_model / n).is_file()]
    if missing:
        raise TrainingError(f"{src_model} lacks {', '.join(missing)}: not a finished run")
    if not allow_no_input_check and not json.loads((src_model / "model.json").read_text()).get("input_check"):
        raise TrainingError(f"{src_model}/model.json has no input check: served, it would label any image (noise, "
                            "photographs) as a breast ultrasound. Fit one first (make input-check MODEL_DIR="
                            f"{src_model}), or pass --allow-no-input-check to promote it anyway")
    written = []
    for name in MODEL_FILES:
        if (src_model / name).is_file():
            copy_atomic(src_model / name, model_dir / name)
            written.append(model_dir / name)
    if src_report.is_dir():
        for src in sorted(p for p in src_report.rglob("*") if p.is_file()):
            dst = report_dir / src.relative_to(src_report)
            copy_atomic(src, dst)
            written.append(dst)
    written = Written(written)
    written.notes = []
    if examples is not None:
        from .release_expectations import write_expectations

        # From the promoted report: a run without its own loso_predictions.npz must not borrow the old model's.
        written.notes = write_expectations(model_dir, src_report if src_report.is_dir() else run, examples=examples)
    return written


@dataclass(frozen=True)
class Row:
    scope: str  # "unseen" (leave-one-site-out) or "test"
    site: str
    metric: str
    new: float | None
    old: float | None
    new_ci: tuple[float, float] | None
    old_ci: tuple[float, float] | None

    @property
    def agrees(self) -> bool | None:
        """None when it cannot be judged (no interval or a value missing)."""
        if self.new is None or self.old is None or self.new_ci is None or self.old_ci is None:
            return None
        return bool(self.old_ci[0] <= self.new <= self.old_ci[1] or self.new_ci[0] <= self.old <= self.new_ci[1])


def _blocks(card: dict) -> dict[tuple[str, str], dict]:
    """(scope, site) -> metrics with their ci95, from a lesion card's `sites` or a frozen card's test_metrics."""
    out = {}
    for site in card.get("sites") or []:
        for scope, key in (("unseen", "leave_one_site_out"), ("test", "test_metrics")):
            if site.get(key):
                out[(scope, site["name"])] = site[key]
    if not out and card.get("test_metrics"):
        out[("test", "all")] = card["test_metrics"]
    return out


def _num(v) -> float | None:
    return None if v is None else float(v)


def compare(new_card: dict, old_card: dict) -> list[Row]:
    new, old = _blocks(new_card), _blocks(old_card)
    rows = []
    for key in [k for k in new if k in old]:
        n, o = new[key], old[key]
        for metric in SHOWN:
            if metric not in n and metric not in o:
                continue
            nci, oci = n.get("ci95", {}).get(metric), o.get("ci95", {}).get(metric)
            rows.append(Row(key[0], key[1], metric, _num(n.get(metric)), _num(o.get(metric)),
                            tuple(nci) if nci else None, tuple(oci) if oci else None))
    return rows


def verdict(rows: list[Row]) -> tuple[int, int]:
    """(metrics that agree, metrics judged)."""
    judged = [r for r in rows if r.agrees is not None]
    return sum(r.agrees for r in judged), len(judged)


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _ci(interval: tuple[float, float] | None) -> str:
    return f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""


def comparison_markdown(rows: list[Row], *, new_card: dict, old_card: dict, old_dir: Path) -> str:
    head = (f"# This run against the bundled model\n\nThis run: {new_card.get('name')} {new_card.get('version')}. "
            f"Bundled ({old_dir}): {old_card.get('name')} {old_card.get('version')}.\n\n")
    if not rows:
        return head + "No metric in common (different sites or recipes): nothing to compare.\n"
    agree, judged = verdict(rows)
    lines = ["| set | site | metric | this run [95 % CI] | bundled [95 % CI] | agree |", "|---|---|---|---|---|---|"]
    for r in rows:
        mark = {True: "yes", False: "**no**", None: ""}[r.agrees]
        lines.append(f"| {r.scope} | {r.site} | {r.metric} | {_f(r.new)}{_ci(r.new_ci)} | {_f(r.old)}{_ci(r.old_ci)} "
                     f"| {mark} |")
    tail = (f"\n\n{agree} of {judged} metrics with intervals agree (each value inside the other's 95 % interval). "
            "Training is seeded but not bit-reproducible: on the same machine type with the pinned packages a "
            "rerun agrees on every metric; a metric that does not agree means a real change (data, settings, "
            "packages) or an unlucky run.\n")
    return head + "\n".join(lines) + tail


def comparison_summary(rows: list[Row], *, old_dir: Path) -> str:
    """One console paragraph: the verdict and the metrics that moved."""
    if not rows:
        return f"compared with {old_dir}: no metric in common (different sites or recipe)"
    agree, judged = verdict(rows)
    text = [f"compared with the bundled model ({old_dir}): {agree} of {judged} metrics agree within their 95 % "
            "intervals"]
    for r in rows:
        if r.agrees is False:
            text.append(f"  differs: {r.scope} {r.site} {r.metric} {_f(r.old)} -> {_f(r.new)}")
    return "\n".join(text)


def write_comparison(run: Path, *, old_dir: Path = BUNDLED_MODEL) -> str | None:
    """comparison.md + comparison.json in the run's report; returns the console summary (None: nothing bundled)."""
    old_card_path = old_dir / "model.json"
    if not old_card_path.is_file():
        return None
    new_card = json.loads((run / MODEL / "model.json").read_text())
    old_card = json.loads(old_card_path.read_text())
    rows = compare(new_card, old_card)
    report = run / REPORT
    report.mkdir(parents=True, exist_ok=True)
    (report / "comparison.md").write_text(comparison_markdown(rows, new_card=new_card, old_card=old_card,
                                                              old_dir=old_dir))
    agree, judged = verdict(rows)
    (report / "comparison.json").write_text(json.dumps({
        "this_run": new_card.get("version"), "bundled": old_card.get("version"), "bundled_dir": str(old_dir),
        "agree": agree, "judged": judged,
        "rows": [r.__dict__ | {"agrees": r.agrees} for r in rows]}, indent=1) + "\n")
    return comparison_summary(rows, old_dir=old_dir)
