"""Does this input look like a breast-ultrasound frame? A score from the model's own features and cheap image
statistics, with the thresholds fitted by ``python -m model_training input-check`` and kept in model.json.

The score is ``max(mahalanobis / its q99, residual / its q99, stats_distance / its q99)``, each part divided by
its 99th percentile on the fit images, so about 1 at the edge of the ultrasound the check was fitted on:

* the served graph's pooled backbone features (a (1, D) output), scaled to unit length (ReLU features of
  ultrasound and of photographs differ more in direction than in size), centred, projected on the top-k
  principal components of the fit images: ``mahalanobis`` = sum c_i^2 / lambda_i / k there, ``residual`` =
  the squared length left outside them / its mean on the fit images;
* ``stats_distance``: the largest robust z-score (|x - median| / (1.4826 MAD + floor)) of a few image statistics
  of the frame as the model sees it (letterbox bars left out): how much of it is coloured (photographs,
  screenshots), the spread of its grey levels (blank frames) and pixel-to-pixel roughness (white noise).

``score < warn_threshold``: passes; ``warn_threshold <= score < reject_threshold``: answered with
``warnings: ["unusual_input"]``; ``score >= reject_threshold``: refused, 422 ``not_ultrasound``.
Models without a feature output, or without ``input_check`` in their card, skip the check.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import numpy as np

from .errors import ModelLoadError, NotUltrasound

#: The statistics, in the order the card's "stats" lists keep their medians and scales.
#: (Grey mean and the near-white fraction were tried and dropped: BUS-BRA frames with bright, saturated areas
#: made them the largest z-scores of held-out ultrasound, which raised the warning threshold for everything.)
STAT_NAMES = ("colour_fraction", "grey_std", "roughness")
#: Chroma (max - min of R, G, B, 0-255) above which a pixel counts as coloured.
COLOUR_CHROMA = 24.0
#: The statistics read every STRIDE-th pixel of the model input in each direction.
STRIDE = 2
FORMAT = "l2-normalised features: pca-mahalanobis and residual; robust-z image statistics; v3"
WARNING = "unusual_input"
#: A frame whose grey levels (inside the letterbox) spread less than this is blank: refused. The least varied
#: real frame of the three development sites spreads 15.5 (BUS-BRA; BUSI 27, UCLM 30): a quarter of that.
BLANK_GREY_STD = 4.0


def encode_array(arr: np.ndarray) -> dict:
    """float32 array -> {"shape", "b64"} (little-endian float32), compact and exact in JSON."""
    arr = np.ascontiguousarray(arr, dtype="<f4")
    return {"shape": list(arr.shape), "b64": base64.b64encode(arr.tobytes()).decode("ascii")}


def decode_array(doc: Any, what: str) -> np.ndarray:
    try:
        shape = tuple(int(s) for s in doc["shape"])
        arr = np.frombuffer(base64.b64decode(doc["b64"], validate=True), dtype="<f4").astype(np.float64)
        arr = arr.reshape(shape)
    except Exception as exc:  # KeyError, TypeError, binascii.Error, ValueError
        raise ModelLoadError(f"model.json input_check.{what} is not an encoded float32 array: {exc}") from exc
    if not np.all(np.isfinite(arr)):
        raise ModelLoadError(f"model.json input_check.{what} holds non-finite values")
    return arr


def image_stats(image: np.ndarray, where: Any = None) -> np.ndarray:
    """The frame's statistics (STAT_NAMES order) from the model input (size, size, 3) in [0, 255];
    ``where`` (a preprocessing.Placement) leaves the letterbox bars out."""
    if where is not None:
        w, h = round(where.scale_x * where.width), round(where.scale_y * where.height)
        if w >= 2 and h >= 2:
            image = image[where.top:where.top + h, where.left:where.left + w]
    img = np.asarray(image, dtype=np.float32)[::STRIDE, ::STRIDE]  # every other pixel: ~4x cheaper, same picture
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    chroma = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    grey = (r + g + b) / 3.0
    mean = float(grey.mean())
    std = float(np.sqrt(max(float(np.mean(grey * grey)) - mean * mean, 0.0)))
    rough = float(np.abs(grey[:, 1:] - grey[:, :-1]).mean() + np.abs(grey[1:] - grey[:-1]).mean()) / 2.0
    return np.array([float(np.count_nonzero(chroma > COLOUR_CHROMA)) / chroma.size, std, rough / (std + 1.0)])


@dataclasses.dataclass(frozen=True)
class CheckResult:
    score: float
    feature_distance: float
    stats_distance: float
    warn_threshold: float
    reject_threshold: float
    blank: bool = False  # the frame's grey levels barely vary (BLANK_GREY_STD)

    @property
    def verdict(self) -> str:
        if self.score >= self.reject_threshold:
            return "reject"
        return "warn" if self.score >= self.warn_threshold else "pass"

    def to_dict(self) -> dict:
        return {"score": round(self.score, 4), "warn_threshold": round(self.warn_threshold, 4),
                "reject_threshold": round(self.reject_threshold, 4), "verdict": self.verdict}


class InputCheck:
    """The card's ``input_check`` parameters, validated once at load; ``score`` is a few small matrix products."""

    def __init__(self, doc: dict, feature_dim: int | None = None):
        if not isinstance(doc, dict):
            raise ModelLoadError("model.json input_check must be an object")
        feats, stats = doc.get("features"), doc.get("stats")
        if not isinstance(feats, dict) or not isinstance(stats, dict):
            raise ModelLoadError('model.json input_check needs "features" and "stats" objects')
        self.mean = decode_array(feats.get("mean"), "features.mean")
        self.components = decode_array(feats.get("components"), "features.components")
        self.eigenvalues = np.asarray(feats.get("eigenvalues", []), dtype=np.float64)
        k = self.eigenvalues.shape[0] if self.eigenvalues.ndim == 1 else -1
        if self.mean.ndim != 1 or self.components.shape != (k, self.mean.shape[0]) or k < 1:
            raise ModelLoadError(f"model.json input_check features: mean {self.mean.shape}, components "
                                 f"{self.components.shape} and {k} eigenvalues do not fit together")
        if feature_dim is not None and self.mean.shape[0] != feature_dim:
            raise ModelLoadError(f"model.json input_check was fitted on {self.mean.shape[0]} features but the "
                                 f"model outputs {feature_dim}; refit it with `python -m model_training input-check`")
        self.residual_scale = _positive(feats.get("residual_scale"), "features.residual_scale")
        self.mahalanobis_q99 = _positive(feats.get("mahalanobis_q99"), "features.mahalanobis_q99")
        self.residual_q99 = _positive(feats.get("residual_q99"), "features.residual_q99")
        if stats.get("names") != list(STAT_NAMES):
            raise ModelLoadError(f"model.json input_check.stats.names must be {list(STAT_NAMES)}")
        self.stat_center = np.asarray(stats.get("center"), dtype=np.float64)
        self.stat_scale = np.asarray(stats.get("scale"), dtype=np.float64)
        if self.stat_center.shape != (len(STAT_NAMES),) or self.stat_scale.shape != (len(STAT_NAMES),) \
                or not np.all(self.stat_scale > 0) or not np.all(np.isfinite(self.stat_center)):
            raise ModelLoadError("model.json input_check.stats.center/scale must be finite, one per statistic, "
                                 "scales > 0")
        self.stats_q99 = _positive(stats.get("q99"), "stats.q99")
        self.warn_threshold = _positive(doc.get("warn_threshold"), "warn_threshold")
        self.reject_threshold = _positive(doc.get("reject_threshold"), "reject_threshold")
        if self.reject_threshold < self.warn_threshold:
            raise ModelLoadError("model.json input_check.reject_threshold must be >= warn_threshold")

    def feature_parts(self, features: np.ndarray) -> tuple[float, float]:
        """(mahalanobis, residual) of the unit-length features, before the q99 scaling."""
        f = np.asarray(features, dtype=np.float64).reshape(-1)
        norm = float(np.linalg.norm(f))
        z = (f / norm if norm > 0 else f) - self.mean
        coef = self.components @ z
        resid = max(float(z @ z - coef @ coef), 0.0)
        return float(np.sum(coef * coef / self.eigenvalues)) / len(self.eigenvalues), resid / self.residual_scale

    def feature_distance(self, features: np.ndarray) -> float:
        m, r = self.feature_parts(features)
        return max(m / self.mahalanobis_q99, r / self.residual_q99)

    def stats_distance(self, stats: np.ndarray) -> float:
        return float(np.max(np.abs(np.asarray(stats, dtype=np.float64) - self.stat_center) / self.stat_scale))

    def score(self, features: np.ndarray, image: np.ndarray, where: Any = None) -> CheckResult:
        stats = image_stats(image, where)
        fd = self.feature_distance(features)
        sd = self.stats_distance(stats)
        score = max(fd, sd / self.stats_q99)
        if not np.isfinite(score):
            score = float("inf")
        blank = bool(stats[STAT_NAMES.index("grey_std")] < BLANK_GREY_STD)
        if blank:  # nothing to see: refused whatever the fitted score says (the model "finds" lesions there)
            score = max(score, self.reject_threshold)
        return CheckResult(float(score), fd, sd, self.warn_threshold, self.reject_threshold, blank)


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise ModelLoadError(f"model.json input_check.{what} must be a positive number: {value!r}")
    return float(value)


def refusal(result: CheckResult) -> NotUltrasound:
    if result.blank:
        return NotUltrasound("this image is blank (its grey levels barely vary): there is no breast-ultrasound "
                             "frame in it to classify", check=result)
    return NotUltrasound(
        f"this image does not look like a breast-ultrasound frame (input-check score {result.score:.2f}, "
        f"refused at {result.reject_threshold:.2f}); the model was trained on breast ultrasound only, "
        f"so its output for this image would mean nothing", check=result)


class CheckedEngine:
    """An Engine whose ``analyse`` also scores the input (one model pass: features come with the prediction)
    and refuses a confident non-ultrasound input with 422 ``not_ultrasound``. Everything else is the Engine's.
    The verdict travels with the answer: ``Analysis.check`` (for the response's ``warnings`` and
    ``input_check``), or the refusal's ``NotUltrasound.check``; no state is kept between calls."""

    def __init__(self, engine: Any, check: InputCheck):
        self._engine, self.check = engine, check

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def analyse(self, data: bytes, *, frame: int | None = None):
        seen = self._engine.inspect(data, frame=frame)  # one pass: probabilities, heatmap and features
        result = self.check.score(seen.features, seen.image if seen.rgb is None else seen.rgb, seen.where)
        if result.verdict == "reject":
            raise refusal(result)
        return dataclasses.replace(seen.analysis(), check=result)


def with_input_check(engine: Any) -> tuple[Any, str]:
    """(the engine to serve, why the check is on or off). On only when the card has ``input_check`` and the
    model has a feature output whose size matches it; otherwise the Engine itself, unchanged."""
    doc = engine.card.input_check
    if not doc:
        return engine, "off: model.json has no input_check (fit one with `python -m model_training input-check`)"
    details = getattr(engine, "_features", None)
    if details is None:
        return engine, "off: the model has no feature output"
    check = InputCheck(doc, feature_dim=int(details["shape"][-1]))
    return CheckedEngine(engine, check), (f"on: warn at {check.warn_threshold:.3f}, "
                                          f"refuse at {check.reject_threshold:.3f}")
