"""Score an archive: every image under a folder (or listed in a file), one row per image.

    python -m classifier.batch score DIR_OR_LIST --out results.csv [--processes N] [--labelled]

Each image goes through the API's own path: ``Engine.analyse`` (the same decoding, limits and
preprocessing) and ``ModelCard.decide`` (the same operating point), so a row holds what
``POST /predict`` answers for that file. Bad files become rows with an error code, never a crash.
A rerun with the same ``--out`` skips the paths already written (resume). Needs only the Lambda
image's packages (no TensorFlow); tqdm draws the progress bar when it is installed.

Research use only. Not a medical device; not for diagnosis or clinical decisions.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import multiprocessing
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import ClientError, ModelLoadError
from .prediction import prediction_body
from .model_card import DISCLAIMER, ModelCard
from .settings import DEFAULT_MODEL_DIR

#: What the serving code decodes (by content; the suffix only picks files out of a folder).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".dcm", ".dicom")
#: BUSI's segmentation masks (`benign (1)_mask.png`, `_mask_1.png`): skipped, as model_training skips them.
MASK_RE = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)
FORMATS = ("csv", "jsonl")
#: Error codes of the batch itself (the API's ClientError codes cover everything about the image).
UNREADABLE = "unreadable_file"
INTERNAL = "internal_error"


class BatchError(Exception):
    """The run cannot start (bad arguments, an output from another model): the message says why."""


# --------------------------------------------------------------------------------------------------
# One image -> one row
# --------------------------------------------------------------------------------------------------

def prediction(engine, data: bytes, *, heatmap: bool = False) -> dict[str, Any]:
    """What the API's POST /predict answers for these bytes (label, label_rule, probabilities, model,
    disclaimer, localisation), built from the same two calls. Raises ClientError for a bad image."""
    analysis = engine.analyse(data)  # a CheckedEngine raises NotUltrasound (422 not_ultrasound) for a reject
    # The API's own body builder (label under the default operating point, rule, decision, box rule,
    # the input check's warnings and score).
    body = prediction_body(engine.card, analysis)  # a DICOM input: the frame scored (docs/api.md, "DICOM")
    loc = body.pop("localisation", None)  # flattened: a row has the box and peak, the heatmap on request
    body["box"] = loc["box"] if loc is not None else None
    body["peak"] = loc["peak"] if loc is not None else None
    if heatmap and loc is not None:
        body["heatmap"] = loc["heatmap"]
    body.setdefault("warnings", [])  # a model without an input check: no warnings, same column
    return body


def load_engine(model_dir: Path | str, *, threads: int = 1):
    """The engine the API serves: Engine, wrapped by the model's input check when its card has one."""
    from .engine import Engine
    from .input_check import with_input_check

    return with_input_check(Engine(model_dir, num_threads=threads))[0]


def error_row(path: str, code: str, message: str, card: ModelCard) -> dict[str, Any]:
    return {"path": path, "label": None, "label_rule": None, "probabilities": None, "box": None, "peak": None,
            "warnings": [], "error": {"code": code, "message": message},
            "model": {"name": card.name, "version": card.version}, "disclaimer": card.disclaimer or DISCLAIMER}


def score_bytes(engine, path: str, data: bytes, *, heatmap: bool = False) -> dict[str, Any]:
    """One row: the prediction, or the error the API would answer (code and message), never an exception."""
    try:
        return {"path": path, **prediction(engine, data, heatmap=heatmap), "error": None}
    except ClientError as exc:
        row = error_row(path, exc.code, exc.message, engine.card)
        result = getattr(exc, "check", None)
        if result is not None:  # refused by the input check (not_ultrasound): keep its score for the audit
            row["input_check"] = result.to_dict()
        return row
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop an archive run
        return error_row(path, INTERNAL, f"{type(exc).__name__}: {exc}", engine.card)


def score_file(engine, path: str, *, heatmap: bool = False) -> dict[str, Any]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return error_row(path, UNREADABLE, f"cannot read the file: {exc.strerror or exc}", engine.card)
    return score_bytes(engine, path, data, heatmap=heatmap)


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Item:
    path: str  # as written in the output (the resume key)
    truth: str | None = None  # the class folder, with --labelled


def is_dicom_file(path: Path) -> bool:
    """DICOM by content (PACS exports often name files by UID, '1.2.840....320', or give no suffix)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def is_mask(path: Path) -> bool:
    return MASK_RE.search(path.stem) is not None


def discover(source: Path, *, labelled: bool = False, masks: bool = False) -> list[Item]:
    """Every image file under a folder (sorted, recursive), or every line of a list file.

    A list file names one path per line (blank lines and '#' lines skipped), relative paths taken
    from the list file's folder. With ``labelled`` the folder is in the BUSI layout
    (``<root>/<class>/...``): the first folder under the root is the known label.
    """
    if source.is_dir():
        items = []
        for p in sorted(source.rglob("*")):
            if not p.is_file() or (not masks and is_mask(p)):
                continue
            if p.suffix.lower() not in IMAGE_SUFFIXES and not is_dicom_file(p):
                continue
            truth = None
            if labelled:
                rel = p.relative_to(source).parts
                if len(rel) < 2:
                    continue  # loose files at the root of a labelled folder have no label
                truth = rel[0]
            items.append(Item(str(p), truth))
        return items
    if source.is_file():
        if labelled:
            raise BatchError("--labelled needs a folder in the <root>/<class>/ layout, not a list file")
        items = []
        for line in source.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            p = Path(line)
            items.append(Item(str(p if p.is_absolute() else source.parent / p)))
        return items
    raise BatchError(f"{source}: no such folder or list file")


# --------------------------------------------------------------------------------------------------
# Output files: CSV or JSONL, appended row by row, read back for resume
# --------------------------------------------------------------------------------------------------

def csv_columns(labels: list[str], *, labelled: bool) -> list[str]:
    return (["path"] + (["truth"] if labelled else []) + ["label", "label_rule"]
            + [f"p_{label}" for label in labels]
            + ["box_x", "box_y", "box_w", "box_h", "peak", "warnings", "input_check_verdict", "input_check_score",
               "error_code", "error_message", "model_version", "disclaimer"])


def to_csv_record(row: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    probs = row.get("probabilities") or {}
    box = row.get("box") or [None] * 4
    err = row.get("error") or {}
    rec = {"path": row["path"], "truth": row.get("truth"), "label": row.get("label"),
           "label_rule": row.get("label_rule"),
           **{f"p_{label}": (f"{probs[label]:.6f}" if label in probs else None) for label in labels},
           "box_x": box[0], "box_y": box[1], "box_w": box[2], "box_h": box[3], "peak": row.get("peak"),
           "warnings": ";".join(row.get("warnings") or []),
           "input_check_verdict": (row.get("input_check") or {}).get("verdict"),
           "input_check_score": (row.get("input_check") or {}).get("score"), "error_code": err.get("code"),
           "error_message": err.get("message"), "model_version": (row.get("model") or {}).get("version"),
           # on every row rather than a comment line: pandas.read_csv and csv.DictReader read the file as is
           "disclaimer": row.get("disclaimer") or DISCLAIMER}
    return {k: ("" if v is None else v) for k, v in rec.items()}


def from_csv_record(rec: dict[str, str], labels: list[str]) -> dict[str, Any]:
    """A CSV record back into the row shape (enough for resume, the summary and the metrics)."""
    def num(v: str):
        return None if v in ("", None) else float(v)

    ok = not rec.get("error_code")
    return {
        "path": rec["path"], "truth": rec.get("truth") or None, "label": rec.get("label") or None,
        "warnings": [w for w in (rec.get("warnings") or "").split(";") if w],
        "probabilities": {label: num(rec.get(f"p_{label}", "")) for label in labels} if ok else None,
        "error": None if ok else {"code": rec["error_code"], "message": rec.get("error_message", "")},
        "model": {"version": rec.get("model_version") or None},
    }


class Output:
    """The results file: what is already in it (for resume) and an appender for new rows."""

    def __init__(self, path: Path, fmt: str, card: ModelCard, *, labelled: bool):
        self.path, self.fmt, self.card, self.labelled = path, fmt, card, labelled
        self.labels = list(card.labels)
        self.columns = csv_columns(self.labels, labelled=labelled)
        self.rows: list[dict[str, Any]] = []  # rows already written (complete lines only)
        self._fh: io.TextIOBase | None = None
        self._writer = None

    def load(self) -> None:
        """Read back the rows a previous run wrote. A half-written last line (a killed run) is cut off."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        raw = self.path.read_bytes()
        if not raw.endswith(b"\n"):
            cut = raw.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(cut)
            raw = raw[:cut]
        text = raw.decode("utf-8")
        if self.fmt == "jsonl":
            for line in text.splitlines():
                if line.strip():
                    self.rows.append(json.loads(line))
        else:
            reader = csv.DictReader(text.splitlines(keepends=True))
            if reader.fieldnames and list(reader.fieldnames) != self.columns:
                raise BatchError(f"{self.path} has columns {reader.fieldnames}, not this run's {self.columns} "
                                 "(another model or --labelled setting): choose another --out or --overwrite")
            self.rows = [from_csv_record(rec, self.labels) for rec in reader]
        versions = {(r.get("model") or {}).get("version") for r in self.rows} - {None}
        if versions and versions != {self.card.version}:
            raise BatchError(f"{self.path} holds rows of model version(s) {', '.join(sorted(versions))}, not "
                             f"{self.card.version}: mixing models in one file would mislead; use another --out "
                             "or --overwrite")

    def open(self) -> None:
        fresh = not self.path.is_file() or self.path.stat().st_size == 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8", newline="")
        if self.fmt == "csv":
            self._writer = csv.DictWriter(self._fh, fieldnames=self.columns, extrasaction="ignore")
            if fresh:
                self._writer.writeheader()

    def write(self, row: dict[str, Any]) -> None:
        assert self._fh is not None
        if self.fmt == "jsonl":
            self._fh.write(json.dumps(row, separators=(",", ":")) + "\n")
        else:
            self._writer.writerow(to_csv_record(row, self.labels))
        self.rows.append(row)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# --------------------------------------------------------------------------------------------------
# Workers: one engine per process
# --------------------------------------------------------------------------------------------------

_ENGINE = None
_HEATMAP = False


def _init_worker(model_dir: str, threads: int, heatmap: bool) -> None:
    global _ENGINE, _HEATMAP
    _ENGINE = load_engine(model_dir, threads=threads)
    _HEATMAP = heatmap


def _work(item: Item) -> dict[str, Any]:
    row = score_file(_ENGINE, item.path, heatmap=_HEATMAP)
    if item.truth is not None:
        row["truth"] = item.truth
    return row


def _rows(items: list[Item], *, model_dir: Path, processes: int, threads: int, heatmap: bool,
          chunksize: int) -> Iterator[dict[str, Any]]:
    if processes <= 1:
        _init_worker(str(model_dir), threads, heatmap)
        for item in items:
            yield _work(item)
        return
    # spawn: a clean interpreter per worker (no inherited locks or threads), the engine built in each.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes, initializer=_init_worker, initargs=(str(model_dir), threads, heatmap)) as pool:
        yield from pool.imap_unordered(_work, items, chunksize=chunksize)


class _Progress:
    """tqdm when installed, else a line on stderr every few seconds."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled, self._bar, self._last = total, 0, enabled, None, 0.0
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, unit="img", desc="score", dynamic_ncols=True)
            except ImportError:
                self._bar = None

    def update(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
        elif self.enabled and (time.monotonic() - self._last > 5 or self.done == self.total):
            self._last = time.monotonic()
            print(f"score: {self.done}/{self.total}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------

def default_processes() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def run(source: Path, out: Path, *, model_dir: Path = DEFAULT_MODEL_DIR, fmt: str | None = None,
        processes: int | None = None, threads: int = 1, labelled: bool = False, masks: bool = False,
        overwrite: bool = False, retry_errors: bool = False, heatmap: bool = False, progress: bool = True,
        metrics_out: Path | None = None, n_boot: int = 1000, chunksize: int = 4) -> dict[str, Any]:
    """Score every input not yet in ``out``; return (and write beside ``out``) the summary."""
    fmt = fmt or ("jsonl" if out.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv")
    if fmt not in FORMATS:
        raise BatchError(f"--format must be one of {', '.join(FORMATS)}")
    if heatmap and fmt == "csv":
        raise BatchError("--heatmap needs JSONL output (a grid does not fit a CSV cell)")
    try:
        card = ModelCard.load(model_dir)
    except ModelLoadError as exc:
        raise BatchError(str(exc)) from exc
    items = discover(source, labelled=labelled, masks=masks)
    if labelled:
        unknown = sorted({i.truth for i in items} - set(card.labels))
        if unknown:
            raise BatchError(f"class folder(s) {', '.join(unknown)} are not labels of the model "
                             f"({', '.join(card.labels)})")
    if overwrite and out.exists():
        out.unlink()
    output = Output(out, fmt, card, labelled=labelled)
    output.load()
    if retry_errors and any(r.get("error") for r in output.rows):
        # Rewrite the file without its error rows, so those inputs are scored again.
        keep = [r for r in output.rows if not r.get("error")]
        out.unlink()
        output = Output(out, fmt, card, labelled=labelled)
        output.open()
        for r in keep:
            output.write(r)
        output.close()
    done = {r["path"] for r in output.rows}
    todo = [i for i in items if i.path not in done]
    n_proc = max(1, min(processes or default_processes(), len(todo) or 1))

    counts: Counter[str] = Counter()
    start = time.perf_counter()
    first_row_at = None
    output.open()
    bar = _Progress(len(todo), progress)
    try:
        for k, row in enumerate(_rows(todo, model_dir=model_dir, processes=n_proc, threads=threads,
                                      heatmap=heatmap, chunksize=chunksize)):
            if first_row_at is None:
                first_row_at = time.perf_counter()
            output.write(row)
            counts["error" if row.get("error") else "ok"] += 1
            if k % 32 == 0:
                output.flush()
            bar.update()
    finally:
        bar.close()
        output.close()
    elapsed = time.perf_counter() - start

    summary = summarise(output.rows, card)
    summary.update({
        "output": str(out), "format": fmt, "inputs": len(items), "skipped_already_done": len(items) - len(todo),
        "scored_now": len(todo), "errors_now": counts["error"], "processes": n_proc, "threads_per_process": threads,
        "elapsed_s": round(elapsed, 3),
        "images_per_s": round(len(todo) / elapsed, 2) if todo and elapsed > 0 else None,
        # Steady rate, without starting the workers and loading their engines.
        "images_per_s_after_first": (round((len(todo) - 1) / (time.perf_counter() - first_row_at), 2)
                                     if first_row_at and len(todo) > 1 else None),
    })
    if labelled:
        summary["metrics"] = write_metrics(output.rows, card, metrics_out or out.with_name(out.name + ".eval"),
                                           data=str(source), root=source, n_boot=n_boot)
    Path(str(out) + ".summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summarise(rows: Iterable[dict[str, Any]], card: ModelCard) -> dict[str, Any]:
    rows = list(rows)
    by_label = Counter(r["label"] for r in rows if not r.get("error") and r.get("label"))
    by_error = Counter(r["error"]["code"] for r in rows if r.get("error"))
    return {
        "disclaimer": card.disclaimer or DISCLAIMER,
        "model": {"name": card.name, "version": card.version},
        "rows": len(rows),
        "labels": {label: by_label.get(label, 0) for label in card.labels},
        "errors": dict(sorted(by_error.items())),
    }


def write_metrics(rows: list[dict[str, Any]], card: ModelCard, out_dir: Path, *, data: str, root: Path,
                  n_boot: int = 1000) -> dict[str, Any]:
    """metrics.json (the schema `model_training evaluate` writes, ci95 included, numpy only) and
    predictions.json into ``out_dir``, over the rows that have a known label and no error."""
    import numpy as np

    from . import batch_metrics

    labels = list(card.labels)
    scored = [r for r in rows if not r.get("error") and r.get("truth") in labels and r.get("probabilities")]
    if not scored:
        return {"n": 0, "note": "no labelled image was scored"}
    y = np.array([labels.index(r["truth"]) for r in scored], dtype=np.int64)
    probs = np.array([[r["probabilities"][label] for label in labels] for r in scored], dtype=np.float64)
    result = batch_metrics.compute(y, probs, labels)
    result["ci95"] = batch_metrics.bootstrap_ci(y, probs, labels, n_boot=n_boot)
    result.update({"model_version": card.version, "data": data,
                   "excluded_errors": sum(1 for r in rows if r.get("error")),
                   "served_labels": batch_metrics.served_label_counts(y, [r["label"] for r in scored], labels),
                   "disclaimer": card.disclaimer or DISCLAIMER})
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")

    def key(path: str) -> str:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            return path

    predictions = [{"file": key(r["path"]), "label": r["truth"], "predicted": labels[int(p.argmax())],
                    "served_label": r["label"],
                    "probabilities": {l: round(float(v), 6) for l, v in zip(labels, p)}}
                   for r, p in zip(scored, probs)]
    (out_dir / "predictions.json").write_text(json.dumps(predictions, indent=1) + "\n")
    return result


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{summary['rows']} row(s) in {summary['output']} (model {summary['model']['name']} "
             f"{summary['model']['version']}); {summary['scored_now']} scored now, "
             f"{summary['skipped_already_done']} already done"]
    lines.append("labels: " + ", ".join(f"{k} {v}" for k, v in summary["labels"].items()))
    errors = summary["errors"]
    lines.append("errors: " + (", ".join(f"{k} {v}" for k, v in errors.items()) if errors else "none"))
    if summary.get("images_per_s"):
        lines.append(f"{summary['images_per_s']:.1f} images/s with {summary['processes']} process(es) "
                     f"({summary['elapsed_s']:.1f} s; {summary.get('images_per_s_after_first') or 0:.1f} images/s "
                     "once the engines were loaded)")
    metrics = summary.get("metrics")
    if metrics and metrics.get("n"):
        auc = metrics.get("auc_ovr_macro")
        lines.append(f"metrics (argmax, as `evaluate`): n {metrics['n']}, accuracy {metrics['accuracy']:.3f}, "
                     f"macro-F1 {metrics['macro_f1']:.3f}" + (f", AUC {auc:.3f}" if auc is not None else "")
                     + f"; served labels accuracy {metrics['served_labels']['accuracy']:.3f}")
    lines.append(summary["disclaimer"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m classifier.batch",
        description="Batch scoring through the API's own engine and decision rule. "
                    "Research use only, not a medical device.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "score", help="score every image under a folder or listed in a file",
        description="Score every PNG/JPEG/BMP under a folder (recursive; BUSI mask files skipped) or listed in a "
                    "file (one path per line), one process per core with one engine each. Writes one CSV or "
                    "JSONL row per image (path, label, label_rule, probabilities, localisation box, warnings, "
                    "error code), OUT.summary.json, and with --labelled the metrics. A rerun skips the paths "
                    "already in OUT. Research use only, not a medical device.")
    s.add_argument("source", type=Path, metavar="DIR_OR_LIST")
    s.add_argument("--out", type=Path, required=True, help="results file: .csv or .jsonl (the suffix picks the format)")
    s.add_argument("--format", choices=FORMATS, help="override the format the suffix implies")
    s.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help=f"model folder (default {DEFAULT_MODEL_DIR})")
    s.add_argument("--processes", type=int, default=None,
                   help="worker processes, one engine each (default: the CPUs this process may use)")
    s.add_argument("--threads", type=int, default=1, help="LiteRT threads per process (default 1)")
    s.add_argument("--labelled", action="store_true",
                   help="SOURCE is a labelled folder (<root>/<class>/...): also write metrics.json (the schema "
                        "`model_training evaluate` writes: argmax metrics with bootstrap ci95, plus the served "
                        "labels' confusion) and predictions.json to OUT.eval/ (or --metrics-out). Computed by "
                        "classifier.batch_metrics with numpy only: no TensorFlow or scikit-learn needed, and "
                        "no plots (run `make evaluate` for those)")
    s.add_argument("--metrics-out", type=Path, help="folder for metrics.json with --labelled (default OUT.eval)")
    s.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for ci95 (default 1000)")
    s.add_argument("--include-masks", action="store_true", help="also score files named *_mask*.png")
    s.add_argument("--heatmap", action="store_true", help="JSONL rows also carry the lesion heatmap grid")
    s.add_argument("--retry-errors", action="store_true", help="score again the inputs whose rows are errors")
    s.add_argument("--overwrite", action="store_true", help="start OUT afresh instead of resuming")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.processes is not None and args.processes < 1:
        parser.error("--processes must be >= 1")
    try:
        summary = run(args.source, args.out, model_dir=args.model, fmt=args.format, processes=args.processes,
                      threads=args.threads, labelled=args.labelled, masks=args.include_masks,
                      overwrite=args.overwrite, retry_errors=args.retry_errors, heatmap=args.heatmap,
                      progress=not args.no_progress, metrics_out=args.metrics_out, n_boot=args.bootstrap)
    except BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
