"""Per-site (and per-device) metrics of the lesion-aware model at its operating point, with
bootstrap intervals: what a new hospital would see."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from classifier.model_card import label_indices
from classifier.model_card import malignant_given_lesion as _malignant_given_lesion

from .calibrate import ece

LABELS = ("normal", "benign", "malignant")
#: The normal threshold lets at most this share of out-of-site lesions be called normal (issue 9 goal).
MAX_LESIONS_CALLED_NORMAL = 0.02
#: A normal threshold no probability reaches: the rule without its "normal" gate, for predictions of models that
#: did not set that threshold (single-site models when it came from cross-fitting: operating_points.py).
NO_NORMAL_GATE = 1.0 + 1e-9


def hierarchical_probs(lesion: np.ndarray, malig: np.ndarray, *, t_lesion: float = 1.0,
                       t_malig: float = 1.0) -> np.ndarray:
    """(views, N) logits -> (N, 3) [normal, benign, malignant], the mean over views, as the served graph."""
    p_les = 1 / (1 + np.exp(-np.asarray(lesion, dtype=np.float64) / t_lesion))
    p_mal = 1 / (1 + np.exp(-np.asarray(malig, dtype=np.float64) / t_malig))
    return np.stack([1 - p_les, p_les * (1 - p_mal), p_les * p_mal], axis=-1).mean(axis=0)


def decide(probs: np.ndarray, threshold: float | None, normal_threshold: float | None = None) -> np.ndarray:
    """Label indices under the operating point: the served rule (classifier.model_card.label_indices)."""
    op = {"malignant_threshold": threshold, "normal_threshold": normal_threshold}
    return label_indices(probs, LABELS, {k: v for k, v in op.items() if v is not None})


def malignant_given_lesion(probs: np.ndarray) -> np.ndarray:
    """p(malignant) / (p(benign) + p(malignant)): what the malignant threshold is applied to."""
    return _malignant_given_lesion(probs, LABELS)


def operating_point(probs: np.ndarray, labels, target_sensitivity: float, max_lesions_called_normal: float,
                    with_normal: bool = True) -> tuple[float, float | None]:
    """(malignant threshold, normal threshold) for the rule in `decide`: first the normal threshold
    that calls at most `max_lesions_called_normal` of these lesions normal, then the malignant
    threshold whose sensitivity over all malignant images (those called normal count as misses)
    reaches the target."""
    labels = np.asarray(labels)
    lesion, is_mal = labels != "normal", labels == "malignant"
    normal = normal_threshold_for(probs[lesion, 0], max_lesions_called_normal) if with_normal else None
    score = malignant_given_lesion(probs)
    if normal is not None:
        score = np.where(probs[:, 0] >= normal, -1.0, score)
    return threshold_for_sensitivity(score, is_mal, target_sensitivity), normal


def normal_threshold_for(p_normal_of_lesions: np.ndarray, max_lesions_called_normal: float) -> float:
    """The lowest p(normal) threshold (>= 0.5) that calls at most this share of these lesions normal."""
    if not len(p_normal_of_lesions):
        return 0.5
    q = float(np.quantile(p_normal_of_lesions, 1.0 - max_lesions_called_normal, method="higher"))
    return float(min(max(0.5, q + 1e-6), 1.0))


def binary_ece(p: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """ECE of a binary probability (malignant vs not), as a two-class top-label ECE."""
    return ece(np.stack([1 - p, p], axis=1), y.astype(int), n_bins)


def threshold_for_sensitivity(p_mal: np.ndarray, is_mal: np.ndarray, target: float) -> float:
    """The largest threshold whose sensitivity on these images is >= target."""
    pos = np.sort(p_mal[is_mal])[::-1]
    if not len(pos):
        return 0.5
    k = int(np.ceil(target * len(pos))) - 1
    return float(np.clip(pos[min(max(k, 0), len(pos) - 1)], 1e-4, 1 - 1e-4))


def _point(labels: np.ndarray, probs: np.ndarray, threshold: float | None, normal_threshold: float | None) -> dict:
    pred = decide(probs, threshold, normal_threshold)
    lesion = labels != 0
    is_mal = labels == 2
    out = {"n": int(len(labels)), "n_lesions": int(lesion.sum()), "n_malignant": int(is_mal.sum())}
    mal_auc_ok = lesion.any() and 0 < is_mal[lesion].sum() < lesion.sum()
    # Among lesions, ranked by p(malignant | lesion), the score the operating point thresholds.
    out["auc_malignant"] = float(roc_auc_score(is_mal[lesion], malignant_given_lesion(probs[lesion]))) \
        if mal_auc_ok else None
    out["sensitivity"] = float((pred[is_mal] == 2).mean()) if is_mal.any() else None
    not_mal = ~is_mal
    out["specificity"] = float((pred[not_mal] != 2).mean()) if not_mal.any() else None
    out["ece_malignant"] = binary_ece(probs[:, 2], is_mal) if len(labels) else None
    out["lesions_called_normal"] = float((pred[lesion] == 0).mean()) if lesion.any() else None
    out["accuracy"] = float((pred == labels).mean()) if len(labels) else None
    out["ece_top_label"] = ece(probs, labels) if len(labels) else None
    if (labels == 0).any():
        out["normals_called_normal"] = float((pred[labels == 0] == 0).mean())
    return out


def site_metrics(labels: list[str], probs: np.ndarray, threshold: float | None, normal_threshold: float | None = None,
                 *, n_boot: int = 500, seed: int = 0) -> dict:
    """Point metrics plus percentile 95 % intervals (images resampled) for AUC, sensitivity, specificity."""
    y = np.array([LABELS.index(l) for l in labels])
    out = _point(y, probs, threshold, normal_threshold)
    rng = np.random.default_rng(seed)
    boot: dict[str, list[float]] = {"auc_malignant": [], "sensitivity": [], "specificity": [], "ece_malignant": []}
    for _ in range(n_boot if len(y) else 0):
        i = rng.integers(0, len(y), len(y))
        p = _point(y[i], probs[i], threshold, normal_threshold)
        for k in boot:
            if p[k] is not None:
                boot[k].append(p[k])
    out["ci95"] = {k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
                   for k, v in boot.items() if len(v) >= n_boot // 2}
    return out


def by_device(labels: list[str], devices: list[str], probs: np.ndarray, threshold: float | None,
              normal_threshold: float | None = None) -> dict:
    out = {}
    for dev in sorted(set(devices) - {""}):
        idx = [i for i, d in enumerate(devices) if d == dev]
        out[dev] = site_metrics([labels[i] for i in idx], probs[idx], threshold, normal_threshold, n_boot=200)
    return out
