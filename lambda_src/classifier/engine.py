"""LiteRT inference: load model.tflite once, verify it against model.json, predict probabilities
(and, for lesion-aware models, the lesion heatmap)."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from .errors import ModelLoadError
from .localisation import Localisation, localise
from .model_card import MODEL_FILE, ModelCard
from .preprocessing import Placement, decode_rgb, model_input, placement, resized_rgb


@dataclasses.dataclass(frozen=True)
class Analysis:
    probabilities: dict[str, float]
    localisation: Localisation | None  # None for models without a heatmap output
    dicom: Any = None  # a DICOM input's dicom.DicomFrame (which frame, the region), else None
    check: Any = None  # the input check's CheckResult (input_check.CheckedEngine), else None


@dataclasses.dataclass(frozen=True)
class Inspection:
    """Everything one model pass over one image gives: what the input check and the response are built from."""

    image: np.ndarray  # the model input (preprocessed)
    where: Placement  # where the image sits in that input
    probabilities: dict[str, float]
    heatmap: np.ndarray | None
    features: np.ndarray | None
    dicom: Any = None
    rgb: np.ndarray | None = None  # the resized RGB the input was made from (colour, for the input check)

    def analysis(self) -> Analysis:
        loc = None if self.heatmap is None else localise(self.heatmap, self.where)
        return Analysis(self.probabilities, loc, self.dicom)


class Engine:
    """One LiteRT interpreter plus its card.

    The interpreter is not thread-safe, so ``predict_array`` holds a lock:
    concurrent callers (the local API's threads) are serialised, never mixed.
    """

    def __init__(self, model_dir: Path | str, *, num_threads: int = 1, verify_sha256: bool = True):
        from . import dicom  # noqa: F401 - pydicom loads with the model (Lambda's init), not on the first DICOM body

        self.model_dir = Path(model_dir)
        self.card = ModelCard.load(self.model_dir, verify_sha256=verify_sha256)
        try:
            # From bytes, not model_path: LiteRT memory-maps a path, and a model file rewritten
            # in place (`make train`, a `cp` while `make serve` runs) then kills the process with SIGBUS.
            self._model_bytes = (self.model_dir / MODEL_FILE).read_bytes()
            self._interpreter = Interpreter(model_content=self._model_bytes, num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except Exception as exc:  # LiteRT raises ValueError/RuntimeError on a bad flatbuffer
            raise ModelLoadError(f"LiteRT could not load {self.model_dir / MODEL_FILE}: {exc}") from exc
        self._input = self._interpreter.get_input_details()[0]
        self._output, self._heatmap = self._outputs(self._interpreter.get_output_details())
        self._lock = threading.Lock()
        self._check_signature()

    def _outputs(self, details: list[dict]) -> tuple[dict, dict | None]:
        """(probabilities, heatmap or None), told apart by shape: (1, n_labels) vs (1, g, g[, 1]);
        a (1, D) feature output, D != n_labels, is kept in ``self._features`` for input checks."""
        n = len(self.card.labels)
        probs = [d for d in details if len(d["shape"]) == 2 and int(d["shape"][-1]) == n]
        feats = [d for d in details if len(d["shape"]) == 2 and int(d["shape"][-1]) != n]
        maps = [d for d in details if len(d["shape"]) in (3, 4)]
        if len(probs) != 1 or len(maps) > 1 or len(feats) > 1:
            raise ModelLoadError(f"model outputs {[tuple(d['shape']) for d in details]}: expected one "
                                 f"(1, {n}) probability output, at most one heatmap and one feature vector")
        self._features = feats[0] if feats else None
        return probs[0], (maps[0] if maps else None)

    def _check_signature(self) -> None:
        size, n_labels = self.card.input_size, len(self.card.labels)
        shape = tuple(int(d) for d in self._input["shape"])
        if shape[1:] != (size, size, 3):
            raise ModelLoadError(f"model input shape {shape} does not match model.json input_size {size}")
        if int(self._output["shape"][-1]) != n_labels:
            raise ModelLoadError(
                f"model has {int(self._output['shape'][-1])} outputs but model.json lists {n_labels} labels"
            )

    @property
    def labels(self) -> list[str]:
        return list(self.card.labels)

    def _quantize(self, batch: np.ndarray) -> np.ndarray:
        dtype = self._input["dtype"]
        if dtype == np.float32:
            return batch.astype(np.float32, copy=False)
        scale, zero = self._input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.rint(batch / scale + zero), info.min, info.max).astype(dtype)

    def _dequantize(self, raw: np.ndarray) -> np.ndarray:
        if raw.dtype == np.float32:
            return raw
        scale, zero = self._output["quantization"]
        return (raw.astype(np.float32) - zero) * scale

    def _run(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        batch = self._quantize(image[np.newaxis, ...])
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], batch)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._output["index"])[0].copy()
            heat = None if self._heatmap is None else \
                self._interpreter.get_tensor(self._heatmap["index"])[0].copy()
            feats = None if self._features is None else \
                self._interpreter.get_tensor(self._features["index"])[0].astype(np.float64)
        probs = np.clip(self._dequantize(raw).astype(np.float64), 0.0, None)
        total = probs.sum()
        if not np.isfinite(total) or total <= 0:
            raise RuntimeError("model returned no usable probabilities")
        if heat is not None:
            heat = np.clip(np.nan_to_num(heat.astype(np.float64).reshape(heat.shape[0], heat.shape[1])), 0.0, 1.0)
        return probs / total, heat, feats

    def predict_array(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) float32 in [0, 255] -> probabilities in label order, summing to 1."""
        return self._run(image)[0]

    def predict_with_heatmap(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and the lesion heatmap (g x g in [0, 1] over the model input), if the model has one."""
        return self._run(image)[:2]

    def features(self, image: np.ndarray) -> np.ndarray | None:
        """The served graph's pooled backbone features (None for models without that output)."""
        return self._run(image)[2]

    def inspect(self, data: bytes, *, frame: int | None = None) -> Inspection:
        """Image bytes -> one model pass with its input, placement and every output. Raises a ClientError
        for bad images. ``frame`` (1-based) picks a DICOM file's frame."""
        img = decode_rgb(data, frame=frame)
        pre, size = self.card.preprocessing_id, self.card.input_size
        rgb = resized_rgb(img, size, pre)
        arr = model_input(rgb, pre)
        probs, heat, feats = self._run(arr)
        return Inspection(arr, placement(*img.size, size, pre),
                          {label: float(p) for label, p in zip(self.card.labels, probs)}, heat, feats,
                          img.info.get("dicom"), rgb)

    def analyse(self, data: bytes, *, frame: int | None = None) -> Analysis:
        """Image bytes -> probabilities and where the model looked. Raises a ClientError for bad images."""
        return self.inspect(data, frame=frame).analysis()

    def predict_bytes(self, data: bytes) -> dict[str, float]:
        """Image bytes -> {label: probability}. Raises a ClientError for bad images."""
        return self.analyse(data).probabilities
