"""model.json, the model card: what a bundled model is, read and validated in one place.

Training writes it (``ModelCard.write``); the serving engine reads it
(``ModelCard.load``) and refuses a model that does not match this code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import ModelLoadError
from .preprocessing import PREPROCESSING_ID

DISCLAIMER = (
    "Research use only. Not a medical device; not for diagnosis or clinical decisions."
)
MODEL_FILE = "model.tflite"
CARD_FILE = "model.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        if self.preprocessing_id != PREPROCESSING_ID:
            raise ModelLoadError(
                f"model was trained with preprocessing {self.preprocessing_id!r} but this code "
                f"serves {PREPROCESSING_ID!r}; retrain or deploy the matching code"
            )

    @classmethod
    def load(cls, model_dir: Path | str, verify_sha256: bool = True) -> "ModelCard":
        model_dir = Path(model_dir)
        card_path, model_path = model_dir / CARD_FILE, model_dir / MODEL_FILE
        for path in (card_path, model_path):
            if not path.is_file():
                raise ModelLoadError(f"{path} is missing; run `make train` or restore the bundled model")
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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def write(self, model_dir: Path | str) -> Path:
        self.validate()
        path = Path(model_dir) / CARD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path
