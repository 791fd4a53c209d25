"""An independent implementation of the metrics.json numbers, the reference tests/batch/test_batch_metrics.py
checks classifier.batch_metrics against: every metric scikit-learn has comes from scikit-learn (sensitivity and
specificity as recall_score of the malignant and the not-malignant class); ECE, which scikit-learn lacks, is
written out here per sample in plain Python from its definition. Nothing is imported from the code under test."""

from __future__ import annotations

import numpy as np
import math

from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, recall_score, roc_auc_score

MALIGNANT = "malignant"


def ece(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error: confidence = the largest probability; bins (k/n, (k+1)/n] of
    equal width (the first one closed at 0); sum over bins of (share of samples) x |accuracy - mean confidence|."""
    members: dict[int, list[tuple[float, bool]]] = {}
    for row, truth in zip(probs.tolist(), y.tolist()):
        conf = max(row)
        b = min(n_bins - 1, max(0, math.ceil(conf * n_bins) - 1))
        members.setdefault(b, []).append((conf, row.index(conf) == truth))
    total = 0.0
    for items in members.values():
        accuracy = sum(ok for _, ok in items) / len(items)
        confidence = sum(c for c, _ in items) / len(items)
        total += len(items) / len(y) * abs(accuracy - confidence)
    return total


def _auc_ovr_macro(y: np.ndarray, probs: np.ndarray, n_classes: int) -> float | None:
    if len(np.unique(y)) < n_classes:
        return None  # one-vs-rest AUC needs every class present
    aucs = [roc_auc_score(y == c, probs[:, c]) for c in range(n_classes)]
    return float(np.mean(aucs))


def _auc_malignant(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> float | None:
    if MALIGNANT not in labels:
        return None
    m = labels.index(MALIGNANT)
    positive = y == m
    if positive.all() or not positive.any():
        return None
    return float(roc_auc_score(positive, probs[:, m]))


def compute(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    """y: true indices into `labels` (the model's output order); probs: (N, len(labels))."""
    n_classes = len(labels)
    pred = probs.argmax(axis=1)
    idx = list(range(n_classes))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=idx, zero_division=0)
    present = sorted(set(y.tolist()))
    absent = [c for c in idx if c not in present]
    out = {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()),
        # Macro over the classes present in the data; predictions of absent classes still count as errors.
        "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
        "per_class": {
            labels[c]: {"precision": float(precision[c]), "recall": float(recall[c]),
                        "f1": float(f1[c]), "support": int(support[c])}
            for c in idx
        },
        "auc_ovr_macro": _auc_ovr_macro(y, probs, n_classes),
        "auc_malignant": _auc_malignant(y, probs, labels),
        "ece": ece(probs, y),
        "confusion_matrix": {"labels": list(labels),
                             "matrix": confusion_matrix(y, pred, labels=idx).tolist()},
        "classes_absent_from_data": [labels[c] for c in absent],
        "predictions_of_absent_classes": int(np.isin(pred, absent).sum()),
    }
    if MALIGNANT in labels:
        m = labels.index(MALIGNANT)
        truth, called = y == m, pred == m
        out["malignant_sensitivity"] = float(recall_score(truth, called)) if truth.any() else None
        out["malignant_specificity"] = float(recall_score(~truth, ~called)) if (~truth).any() else None
    if out["auc_ovr_macro"] is None:
        del out["auc_ovr_macro"]
    if out["auc_malignant"] is None:
        del out["auc_malignant"]
    return out


def bootstrap_ci(y: np.ndarray, probs: np.ndarray, labels: list[str], *, n_boot: int = 1000, seed: int = 0) -> dict:
    """Percentile 95% intervals for accuracy, macro-F1 and AUC by resampling images with replacement."""
    rng = np.random.default_rng(seed)
    n_classes = len(labels)
    present = sorted(set(y.tolist()))
    pred = probs.argmax(axis=1)
    samples: dict[str, list[float]] = {"accuracy": [], "macro_f1": [], "auc_ovr_macro": [], "auc_malignant": []}
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        yb, pb = y[i], probs[i]
        samples["accuracy"].append(float((pred[i] == yb).mean()))
        samples["macro_f1"].append(float(f1_score(yb, pred[i], labels=present, average="macro", zero_division=0)))
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
