"""What a release of a model is checked against, written into its model.json by `make promote` (and, for a
model already bundled, `make expectations`):

- ``drift``: the band of the model's traffic signals (model_training/drift_band.py), from the report's
  out-of-site predictions (loso_predictions.npz) and the card; absent, with a note, when the run has none.
- ``pre_traffic``: the bundled example images' probabilities and labels through the real LiteRT engine
  (classifier.engine.Engine, the served preprocessing and label rule), which the pre-traffic hook requires
  of a new Lambda version before traffic moves to it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from classifier.engine import Engine
from classifier.errors import ClientError, ModelLoadError
from classifier.input_check import with_input_check
from classifier.model_card import CARD_FILE

from .drift_band import DriftBandError, drift_band_from_files
from .errors import TrainingError

PREDICTIONS = "loso_predictions.npz"
EXAMPLES = Path("examples")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: The hook's allowed difference per probability: the same .tflite on the same LiteRT gives ~1e-6 between
#: machines (x86_64 vs arm64, thread counts); a different model differs by far more.
TOLERANCE = 1e-3


def record_pre_traffic(model_dir: Path, images: list[Path], *, root: Path) -> dict[str, Any]:
    """Each image through the served path (Engine + input check + the card's rule): probabilities and label.
    Images the input check would refuse cannot be expected to give a prediction and are left out."""
    engine, _ = with_input_check(Engine(model_dir))
    recorded, skipped = [], []
    for path in images:
        data = path.read_bytes()
        try:
            analysis = engine.analyse(data)
        except ClientError as exc:  # e.g. 422 not_ultrasound: not a usable expectation
            skipped.append(f"{path.name}: {exc.code}")
            continue
        label, _ = engine.card.decide(analysis.probabilities)
        try:
            source = str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            source = str(path.resolve())
        recorded.append({"source": source, "sha256": hashlib.sha256(data).hexdigest(),
                         "probabilities": {k: float(v) for k, v in analysis.probabilities.items()}, "label": label})
    if not recorded:
        raise TrainingError(f"none of {len(images)} example image(s) gives a prediction with this model "
                            f"({'; '.join(skipped) or 'no images'}): the pre-traffic check needs at least one")
    return {"images": recorded, "tolerance": TOLERANCE, "skipped": skipped,
            "recorded_with": "classifier.engine.Engine (LiteRT), the served input check and label rule",
            "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def example_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if Path(folder).is_dir() else []


def write_expectations(model_dir: Path, report_dir: Path, *, examples: Path = EXAMPLES,
                       root: Path | None = None) -> list[str]:
    """Add ``drift`` and ``pre_traffic`` to model_dir/model.json (atomically); returns notes for the user."""
    root = root or Path.cwd()
    card_path = Path(model_dir) / CARD_FILE
    card = json.loads(card_path.read_text())
    notes = []
    try:
        card["drift"] = drift_band_from_files(Path(report_dir) / PREDICTIONS, card)
        rates = card["drift"]["rates"]
        notes.append("drift band: predicted malignant " + "..".join(f"{v:.3f}" for v in rates["predicted_malignant"]["band"])
                     + ", predicted normal " + "..".join(f"{v:.3f}" for v in rates["predicted_normal"]["band"])
                     + ("" if card["drift"]["input_check"] else "; no input check, so no input-check bands"))
    except DriftBandError as exc:
        card.pop("drift", None)
        notes.append(f"no drift band ({exc}): the stack deploys without drift alarms")
    try:
        card["pre_traffic"] = record_pre_traffic(Path(model_dir), example_images(examples), root=root)
        notes.append(f"pre-traffic expectations: {len(card['pre_traffic']['images'])} example image(s) from {examples}")
    except (TrainingError, ModelLoadError) as exc:
        card.pop("pre_traffic", None)
        notes.append(f"no pre-traffic expectations ({exc}): the stack will not synthesize this model with "
                     "preTrafficCheck on (docs/deploy.md)")
    tmp = card_path.with_name(card_path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, card_path)
    return notes
