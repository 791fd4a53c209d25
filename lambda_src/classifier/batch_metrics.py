"""Classification metrics in `model_training evaluate`'s metrics.json schema, with numpy only.

The one implementation: `python -m classifier.batch score --labelled` writes them without TensorFlow or
scikit-learn (neither is in the Lambda image nor in ``.venv-serve``), and ``model_training.metrics`` (so
`evaluate` and `train`) serves these same functions; tests/batch/test_batch_metrics.py checks them against
scikit-learn. Predictions are the argmax, as `evaluate` scores them; ``served_labels`` adds the same
counts for the labels the API returns under the model card's operating point.
"""

from __future__ import annotations

import numpy as np

MALIGNANT = "malignant"


def _auc_binary(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney statistic with mid-ranks for ties (what roc_auc_score computes)."""
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(len(s), dtype=np.float64)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i:j + 1] = (i + j) / 2.0 + 1.0
        i = j + 1
    r = np.empty_like(ranks)
    r[order] = ranks
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((r[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _auc_ovr_macro(y: np.ndarray, probs: np.ndarray, n_classes: int) -> float | None:
    if len(np.unique(y)) < n_classes:
        return None
    return float(np.mean([_auc_binary(y == c, probs[:, c]) for c in range(n_classes)]))


def _auc_malignant(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> float | None:
    if MALIGNANT not in labels:
        return None
    m = labels.index(MALIGNANT)
    positive = y == m
    if positive.all() or not positive.any():
        return None
    return _auc_binary(positive, probs[:, m])


def _per_class(y: np.ndarray, pred: np.ndarray, n_classes: int):
    tp = np.array([np.sum((pred == c) & (y == c)) for c in range(n_classes)], dtype=np.float64)
    fp = np.array([np.sum((pred == c) & (y != c)) for c in range(n_classes)], dtype=np.float64)
    fn = np.array([np.sum((pred != c) & (y == c)) for c in range(n_classes)], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
    support = tp + fn
    return precision, recall, f1, support


def _macro_f1(y: np.ndarray, pred: np.ndarray, present: list[int], n_classes: int) -> float:
    f1 = _per_class(y, pred, n_classes)[2]
    return float(np.mean(f1[present]))


def ece(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error with equal-width confidence bins."""
    if len(y) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            total += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(total)


def confusion(y: np.ndarray, pred: np.ndarray, n_classes: int) -> list[list[int]]:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y, pred), 1)
    return matrix.tolist()


def compute(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    """y: true indices into ``labels`` (the model's output order); probs: (N, len(labels))."""
    y = np.asarray(y, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = len(labels)
    pred = probs.argmax(axis=1)
    idx = list(range(n_classes))
    precision, recall, f1, support = _per_class(y, pred, n_classes)
    present = sorted(set(y.tolist()))
    absent = [c for c in idx if c not in present]
    out = {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()),
        "macro_f1": _macro_f1(y, pred, present, n_classes),
        "per_class": {
            labels[c]: {"precision": float(precision[c]), "recall": float(recall[c]),
                        "f1": float(f1[c]), "support": int(support[c])}
            for c in idx
        },
        "auc_ovr_macro": _auc_ovr_macro(y, probs, n_classes),
        "auc_malignant": _auc_malignant(y, probs, labels),
        "ece": ece(probs, y),
        "confusion_matrix": {"labels": list(labels), "matrix": confusion(y, pred, n_classes)},
        "classes_absent_from_data": [labels[c] for c in absent],
        "predictions_of_absent_classes": int(np.isin(pred, absent).sum()),
    }
    if MALIGNANT in labels:
        m = labels.index(MALIGNANT)
        pos, neg = y == m, y != m
        out["malignant_sensitivity"] = float((pred[pos] == m).mean()) if pos.any() else None
        out["malignant_specificity"] = float((pred[neg] != m).mean()) if neg.any() else None
    if out["auc_ovr_macro"] is None:
        del out["auc_ovr_macro"]
    if out["auc_malignant"] is None:
        del out["auc_malignant"]
    return out


def bootstrap_ci(y: np.ndarray, probs: np.ndarray, labels: list[str], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Percentile 95% intervals for accuracy, macro-F1 and AUC by resampling images with replacement."""
    y = np.asarray(y, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n_classes = len(labels)
    present = sorted(set(y.tolist()))
    pred = probs.argmax(axis=1)
    samples: dict[str, list[float]] = {"accuracy": [], "macro_f1": [], "auc_ovr_macro": [], "auc_malignant": []}
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        yb, pb = y[i], probs[i]
        samples["accuracy"].append(float((pred[i] == yb).mean()))
        samples["macro_f1"].append(_macro_f1(yb, pred[i], present, n_classes))
        auc = _auc_ovr_macro(yb, pb, n_classes)
        if auc is not None:
            samples["auc_ovr_macro"].append(auc)
        auc_m = _auc_malignant(yb, pb, labels)
        if auc_m is not None:
            samples["auc_malignant"].append(auc_m)
    return {
        key: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
        for key, v in samples.items() if len(v) >= n_boot // 2
    } | {"n_boot": n_boot}


def served_label_counts(y: np.ndarray, served: list[str], labels: list[str]) -> dict:
    """Accuracy, per-class recall and the confusion matrix of the labels the API returns (operating point)."""
    y = np.asarray(y, dtype=np.int64)
    pred = np.array([labels.index(s) for s in served], dtype=np.int64)
    n_classes = len(labels)
    _, recall, _, support = _per_class(y, pred, n_classes)
    present = sorted(set(y.tolist()))
    return {
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "macro_f1": _macro_f1(y, pred, present, n_classes) if len(y) else float("nan"),
        "recall": {labels[c]: float(recall[c]) for c in range(n_classes) if support[c] > 0},
        "confusion_matrix": {"labels": list(labels), "matrix": confusion(y, pred, n_classes)},
    }
