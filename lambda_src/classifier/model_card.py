"""model.json, the model card: what a bundled model is, read and validated in one place.

Training writes it (``ModelCard.write``); the serving engine reads it
(``ModelCard.load``) and refuses a model that does not match this code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError, UnknownOperatingPoint
from .preprocessing import RESIZERS

DISCLAIMER = (
    "Research use only. Not a medical device; not for diagnosis or clinical decisions."
)
MODEL_FILE = "model.tflite"
#: An operating point's name: what `?operating_point=` takes.
OPERATING_POINT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
CARD_FILE = "model.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def malignant_given_lesion(probs: np.ndarray, labels) -> np.ndarray:
    """p(malignant) / (p(benign) + p(malignant)) per row: what the malignant threshold is applied to."""
    m, b = list(labels).index("malignant"), list(labels).index("benign")
    lesion = probs[:, b] + probs[:, m]
    return np.divide(probs[:, m], lesion, out=np.zeros(len(probs)), where=lesion > 0)


def label_indices(probs: np.ndarray, labels, operating_point: dict[str, Any]) -> np.ndarray:
    """The label rule for (N, len(labels)) probabilities, as indices into labels: without a malignant
    threshold the most probable class; with one, "normal" when p(normal) >= the normal threshold (if
    set), else "malignant" when p(malignant | lesion) >= the malignant threshold, else "benign" (or,
    without a normal threshold, the most probable class other than malignant). Training scores its
    operating points with this function too, so the rule it chose is the rule that serves."""
    threshold = operating_point.get("malignant_threshold")
    if threshold is None:
        return probs.argmax(axis=1)
    labels = list(labels)
    m = labels.index("malignant")
    malignant = malignant_given_lesion(probs, labels) >= threshold
    normal = operating_point.get("normal_threshold")
    if normal is not None:
        n = labels.index("normal")
        return np.where(probs[:, n] >= normal, n, np.where(malignant, m, labels.index("benign")))
    rest = probs.copy()
    rest[:, m] = -np.inf
    return np.where(malignant, m, rest.argmax(axis=1))


@dataclasses.dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    labels: list[str]  # in the model's output order
    input_size: int  # square side in pixels
    input_dtype: str  # dtype of the tflite input tensor, e.g. "float32" or "int8"
    preprocessing_id: str
    tflite_sha256: str
    temperature: float = 1.0  # already applied inside the exported graph
    disclaimer: str = DISCLAIMER
    backbone: str = ""
    weights_source: str = ""
    dataset_fingerprint: str = ""
    split_counts: dict[str, Any] = dataclasses.field(default_factory=dict)
    test_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    created_at: str = ""
    # {"malignant_threshold": t, "normal_threshold": n, "chosen_by": text}: the label is "normal" when
    # p(normal) >= n, else "malignant" when p(malignant | lesion) = p(malignant) / (p(benign) +
    # p(malignant)) >= t, else "benign". Without n: malignant when p(malignant | lesion) >= t, else the
    # more probable of normal and benign. Empty -> the most probable class. Conditioning on "lesion"
    # keeps the lesion detector's doubt out of the malignancy decision.
    operating_point: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Named operating points {name: {malignant_threshold, normal_threshold, chosen_by, out_of_site}}, the
    # API's ?operating_point=NAME; `operating_point` above is the default one (default_operating_point).
    operating_points: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    default_operating_point: str = ""
    # Where the model looked: {"output": "heatmap", "grid": 14, ...} when the graph has a heatmap output.
    localisation: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Is the input a breast-ultrasound frame? Score parameters, thresholds and how they were fitted, written by
    # `python -m model_training input-check` (classifier.input_check); empty -> no check.
    input_check: dict[str, Any] = dataclasses.field(default_factory=dict)
    sites: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # training sites and per-site metrics
    # Release expectations written by `make promote` (model_training/release_expectations.py), read by the stack
    # (infra/drift_alarms.py, infra/release.py), not by serving: the drift band from the out-of-site evaluation,
    # and the example images' probabilities the pre-traffic hook compares a new version's answers with.
    drift: dict[str, Any] = dataclasses.field(default_factory=dict)
    pre_traffic: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # config, parity, ...

    REQUIRED = ("name", "version", "labels", "input_size", "input_dtype", "preprocessing_id", "tflite_sha256")

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelCard":
        missing = [key for key in cls.REQUIRED if key not in raw]
        if missing:
            raise ModelLoadError(f"model.json lacks required keys: {', '.join(missing)}")
        known = {f.name for f in dataclasses.fields(cls)}
        card = cls(**{k: v for k, v in raw.items() if k in known})
        card.validate()
        return card

    def validate(self) -> None:
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ModelLoadError(f"model.json labels must be unique and non-empty: {self.labels}")
        if not isinstance(self.input_size, int) or self.input_size < 8:
            raise ModelLoadError(f"model.json input_size is not a sensible int: {self.input_size!r}")
        if self.preprocessing_id not in RESIZERS:
            raise ModelLoadError(
                f"model was trained with preprocessing {self.preprocessing_id!r} but this code "
                f"serves only {', '.join(sorted(RESIZERS))}; retrain or deploy the matching code"
            )
        self._validate_point("operating_point", self.operating_point)
        for name, op in self.operating_points.items():
            if not isinstance(name, str) or not OPERATING_POINT_NAME.fullmatch(name) or not isinstance(op, dict):
                raise ModelLoadError(f"model.json operating_points: {name!r} is not a name ([a-z][a-z0-9_-]*) "
                                     "with an object")
            self._validate_point(f"operating_points.{name}", op)
        if self.operating_points and self.default_operating_point not in self.operating_points:
            raise ModelLoadError(f"model.json default_operating_point {self.default_operating_point!r} is not one of "
                                 f"operating_points ({', '.join(self.operating_points)})")
        if self.input_check:
            from .input_check import InputCheck

            InputCheck(self.input_check)  # raises ModelLoadError if the parameters do not fit together

    def _validate_point(self, where: str, op: dict) -> None:
        threshold = op.get("malignant_threshold")
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0):
            raise ModelLoadError(f"model.json {where}.malignant_threshold must be in (0, 1): {threshold!r}")
        if threshold is not None and not {"malignant", "benign"} <= set(self.labels):
            raise ModelLoadError(f"model.json {where} sets a malignant threshold but lacks the 'malignant' or "
                                 "'benign' label")
        normal = op.get("normal_threshold")
        if normal is not None and not (isinstance(normal, (int, float)) and 0.0 < normal <= 1.0
                                       and "normal" in self.labels and threshold is not None):
            raise ModelLoadError(f"model.json {where}.normal_threshold must be in (0, 1], with a 'normal' "
                                 f"label and a malignant threshold: {normal!r}")

    @classmethod
    def load(cls, model_dir: Path | str, verify_sha256: bool = True) -> "ModelCard":
        model_dir = Path(model_dir)
        card_path, model_path = model_dir / CARD_FILE, model_dir / MODEL_FILE
        for path in (card_path, model_path):
            if not path.is_file():
                raise ModelLoadError(f"{path} is missing; restore the bundled model (git checkout -- lambda_src/model) or ship a run (`make train`, then `make promote RUN=...`)")
        try:
            raw = json.loads(card_path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{card_path} is not valid JSON: {exc}") from exc
        card = cls.from_dict(raw)
        if verify_sha256:
            actual = sha256_file(model_path)
            if actual != card.tflite_sha256:
                raise ModelLoadError(
                    f"{model_path} sha256 {actual[:12]}... does not match model.json "
                    f"({card.tflite_sha256[:12]}...); the model file and its card are out of step"
                )
        return card

    def points(self) -> dict[str, dict[str, Any]]:
        """Every operating point by name: the card's named ones; a card with one unnamed point calls it
        "default"; without any, "argmax"."""
        if self.operating_points:
            return self.operating_points
        return {"default": self.operating_point} if self.operating_point else {"argmax": {}}

    def point(self, name: str | None = None) -> tuple[str, dict[str, Any]]:
        """(name, thresholds) of the named operating point, or of the default one when name is None.
        An unknown name is the client's error (400 unknown_operating_point)."""
        points = self.points()
        if name is None:
            name = self.default_operating_point if self.operating_points else next(iter(points))
        if name not in points:
            raise UnknownOperatingPoint(f"operating_point {name[:40]!r} is not one of this model's: "
                                        f"{', '.join(points)}")
        return name, points[name]

    def decide(self, probabilities: dict[str, float], operating_point: str | None = None) -> tuple[str, str]:
        """(label, the rule that produced it) under the named (default: the card's) operating point."""
        name, op = self.point(operating_point)
        row = np.array([[probabilities[label] for label in self.labels]], dtype=np.float64)
        label = self.labels[int(label_indices(row, self.labels, op)[0])]
        threshold = op.get("malignant_threshold")
        if threshold is None:
            return label, "argmax: the most probable class"
        normal = op.get("normal_threshold")
        if normal is not None:
            rule = (f"normal if p(normal) >= {normal:.3f}, else malignant if p(malignant | lesion) >= "
                    f"{threshold:.3f}, else benign")
        else:
            rule = f"malignant if p(malignant | lesion) >= {threshold:.3f}, else the most probable other class"
        return label, f"{rule} ({name}: {op.get('chosen_by', 'operating point in model.json')})"

    def decision(self, probabilities: dict[str, float]) -> dict[str, float] | None:
        """The two quantities the label rule reads: p(lesion) = 1 - p(normal) and p(malignant | lesion);
        None for a model without the normal / benign / malignant labels."""
        if not {"normal", "benign", "malignant"} <= set(self.labels):
            return None
        row = np.array([[probabilities[label] for label in self.labels]], dtype=np.float64)
        return {"p_lesion": float(1.0 - probabilities["normal"]),
                "p_malignant_given_lesion": float(malignant_given_lesion(row, self.labels)[0])}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def write(self, model_dir: Path | str) -> Path:
        self.validate()
        path = Path(model_dir) / CARD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path
