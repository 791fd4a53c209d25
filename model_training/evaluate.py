"""`evaluate`: the tflite model as served (LiteRT + serving preprocessing) on a labelled folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from classifier.engine import Engine
from classifier.errors import ModelLoadError

from . import metrics as metrics_mod
from . import plots
from .data import decode_all, discover, to_arrays
from .errors import DataFolderError, TrainingError
from .export import engine_probs
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


def select_split(samples, split_file: Path, split_name: str):
    """Only the images that `split_file` (a training run's split.json) puts in `split_name`."""
    try:
        split = json.loads(Path(split_file).read_text())
        if "sites" in split:  # the lesion recipe: one entry per site, named after its folder
            site = Path(samples[0].path).parents[1].resolve().name if samples else ""
            if site not in split["sites"]:
                raise DataFolderError(f"--split {split_file} has sites {', '.join(split['sites'])}, not {site!r}")
            files = split["sites"][site]["files"]
        else:
            files = split["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"--split {split_file}: not a split.json written by `train` ({exc})") from exc
    chosen = [s for s in samples if files.get(s.key, {}).get("split") == split_name]
    if not chosen:
        raise DataFolderError(f"no image of {split_file} split {split_name!r} is in this folder")
    return chosen


def evaluate_folder(*, model: Path, data: Path, out: Path, skip_bad: bool = False, n_boot: int = 1000,
                    split_file: Path | None = None, split_name: str = "test") -> dict:
    try:
        engine = Engine(model)
    except ModelLoadError as exc:
        raise TrainingError(str(exc)) from exc
    samples, _ = discover(data)
    if split_file is not None:
        samples = select_split(samples, split_file, split_name)
    samples, images = decode_all(samples, skip_bad=skip_bad)
    y = label_indices([s.label for s in samples], engine.labels)
    probs = engine_probs(engine, to_arrays(images, engine.card.input_size, engine.card.preprocessing_id), desc="evaluate")
    result = write_outputs(
        y, probs, engine.labels, out, title=f"{data.name} (n={len(y)})", n_boot=n_boot,
        extra={"model_version": engine.card.version, "data": str(data)},
    )
    predictions = [
        {"file": s.key, "label": s.label,
         "predicted": engine.card.decide({l: float(v) for l, v in zip(engine.labels, p)})[0],
         "probabilities": {l: round(float(v), 6) for l, v in zip(engine.labels, p)}}
        for s, p in zip(samples, probs)
    ]
    (out / "predictions.json").write_text(json.dumps(predictions, indent=1) + "\n")
    (out / "report.md").write_text(eval_markdown(result, title=f"Evaluation of {model} on {data}"))
    return result
