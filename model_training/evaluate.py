"""`evaluate`: the tflite model as served (LiteRT + serving preprocessing) on a labelled folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from classifier.batch_metrics import served_label_counts
from classifier.errors import ModelLoadError

from . import metrics as metrics_mod
from . import plots
from .data import discover
from .split_file import select_split
from .site_metrics import LABELS
from .errors import BadFilesError, DataFolderError, TrainingError
from .report import eval_markdown


def label_indices(sample_labels: list[str], model_labels: list[str]) -> np.ndarray:
    unknown = sorted(set(sample_labels) - set(model_labels))
    if unknown:
        raise DataFolderError(
            f"the data has class folder(s) {', '.join(unknown)} that the model does not predict "
            f"(model labels: {', '.join(model_labels)})"
        )
    return np.array([model_labels.index(label) for label in sample_labels], dtype=np.int64)


def write_outputs(y: np.ndarray, probs: np.ndarray, labels: list[str], out: Path, *, title: str,
                  n_boot: int = 1000, extra: dict | None = None) -> dict:
    """metrics.json (+ ci95), confusion/ROC/reliability PNGs and report.md into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    result = metrics_mod.compute(y, probs, labels)
    result["ci95"] = metrics_mod.bootstrap_ci(y, probs, labels, n_boot=n_boot)
    if extra:
        result.update(extra)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    plots.confusion(result["confusion_matrix"]["matrix"], labels, out / "confusion_matrix.png", title)
    plots.roc(y, probs, labels, out / "roc.png", title)
    plots.reliability(y, probs, out / "reliability.png", title)
    return result


def evaluate_folder(*, model: Path, data: Path, out: Path, skip_bad: bool = False, n_boot: int = 1000,
                    split_file: Path | None = None, split_name: str = "test") -> dict:
    """Score a labelled folder through the served path: each file's bytes go to the engine the API and
    `classifier.batch` serve (the model's input check included), so an image the API refuses is refused
    here too and counted, never scored as a prediction."""
    from tqdm.auto import tqdm

    from classifier.batch import load_engine, score_file

    try:
        engine = load_engine(model)
    except ModelLoadError as exc:
        raise TrainingError(str(exc)) from exc
    samples, _ = discover(data)
    if split_file is not None:
        samples, scored = select_split(samples, split_file, split_name, data)
    else:
        scored = (f"all {len(samples)} images of {data.name}, with no split file: if the model trained on this "
                  "folder these numbers include training images and are optimistic (pass the model's split.json)")
    label_indices([s.label for s in samples], engine.labels)  # an unknown class folder: refused before scoring
    rows = [score_file(engine, str(s.path)) for s in tqdm(samples, desc="evaluate", unit="img")]
    refused = [(s, r) for s, r in zip(samples, rows) if r["error"] and r["error"]["code"] == "not_ultrasound"]
    bad = [(str(s.path), r["error"]["message"]) for s, r in zip(samples, rows)
           if r["error"] and r["error"]["code"] != "not_ultrasound"]
    if bad and not skip_bad:
        raise BadFilesError(bad)
    kept = [(s, r) for s, r in zip(samples, rows) if not r["error"]]
    if not kept:
        raise DataFolderError(f"no image of {data} could be scored ({len(refused)} refused by the input check, "
                              f"{len(bad)} unreadable)")
    scored += (f"; {len(kept)} of {len(samples)} scored" + (f", {len(refused)} refused by the model's input check "
               "(422 not_ultrasound, as the API answers)" if refused else "")
               + (f", {len(bad)} unreadable left out (--skip-bad)" if bad else ""))
    samples = [s for s, _ in kept]
    probs = np.array([[r["probabilities"][label] for label in engine.labels] for _, r in kept], dtype=np.float64)
    decided = [(r["label"], r["label_rule"]) for _, r in kept]
    y = label_indices([s.label for s in samples], engine.labels)
    served = served_label_counts(y, [d[0] for d in decided], engine.labels) | {"rule": decided[0][1]}
    result = write_outputs(
        y, probs, engine.labels, out, title=f"{data.name} (n={len(y)})", n_boot=n_boot,
        extra={"model_version": engine.card.version, "data": str(data), "scored": scored, "served_labels": served,
               "refused_by_input_check": [s.key for s, _ in refused], "unreadable": [path for path, _ in bad]},
    )
    predictions = [
        {"file": s.key, "label": s.label,
         "predicted": d[0],
         "probabilities": {l: round(float(v), 6) for l, v in zip(engine.labels, p)}}
        for s, p, d in zip(samples, probs, decided)
    ]
    (out / "predictions.json").write_text(json.dumps(predictions, indent=1) + "\n")
    text = eval_markdown(result, title=f"Evaluation of {model} on {data}", scored=scored)
    points = engine.card.operating_points
    if points and set(s.label for s in samples) <= set(LABELS) and tuple(engine.labels) == LABELS:
        # every named point on this folder: sensitivity/specificity with intervals, normals called normal
        from .operating_points import plot, section

        sets = {data.name: ([s.label for s in samples], probs)}
        result["operating_points_section"] = section(points, sets, default=engine.card.default_operating_point)
        text += "\n" + result["operating_points_section"]
        plot(points, sets, out / "decision_by_site.png")
    (out / "report.md").write_text(text)
    return result
