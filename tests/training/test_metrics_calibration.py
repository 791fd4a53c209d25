"""Temperature scaling, ECE and the metrics.json schema (including a class subset)."""

from __future__ import annotations

import numpy as np

from model_training.calibrate import ece, fit_temperature, probs_from_views, softmax
from model_training.metrics import bootstrap_ci, compute

LABELS = ["normal", "benign", "malignant"]


def _calibrated_sample(n=4000, true_t=1.0, seed=0):
    """Logits whose softmax at true_t IS the label distribution (labels drawn from it)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.5, (n, 3))
    p = softmax(logits, true_t)
    y = np.array([rng.choice(3, p=row) for row in p])
    return logits, y


def test_temperature_recovers_overconfidence():
    logits, y = _calibrated_sample(true_t=1.0)
    overconfident = [logits * 3.0]  # a model 3x too sharp
    t = fit_temperature(overconfident, y)
    assert 2.6 < t < 3.4
    before, after = ece(probs_from_views(overconfident), y), ece(probs_from_views(overconfident, t), y)
    assert before > 0.1 and after < 0.03


def test_ece_extremes():
    y = np.array([0, 1, 2, 0])
    perfect = np.eye(3)[y]
    assert ece(perfect, y) == 0.0
    wrong_and_sure = np.eye(3)[(y + 1) % 3]
    assert ece(wrong_and_sure, y) == 1.0


def test_metrics_keys_and_values():
    y = np.array([0, 0, 1, 1, 2, 2, 2, 1])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 2, 0, 1]] * 0.8 + 0.2 / 3
    m = compute(y, probs, LABELS)
    for key in ("n", "accuracy", "macro_f1", "per_class", "auc_ovr_macro", "auc_malignant", "ece", "confusion_matrix"):
        assert key in m
    assert m["n"] == 8 and m["accuracy"] == 6 / 8
    assert m["confusion_matrix"] == {"labels": LABELS, "matrix": [[1, 1, 0], [0, 3, 0], [1, 0, 2]]}
    assert m["per_class"]["malignant"] == {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    assert m["malignant_sensitivity"] == 2 / 3 and m["malignant_specificity"] == 1.0
    ci = bootstrap_ci(y, probs, LABELS, n_boot=200)
    assert ci["accuracy"][0] <= m["accuracy"] <= ci["accuracy"][1]


def test_subset_counts_absent_class_predictions_as_errors():
    y = np.array([1, 1, 2, 2])  # no "normal" in the data
    probs = np.eye(3)[[0, 1, 2, 2]]  # one image predicted normal
    m = compute(y, probs, LABELS)
    assert "auc_ovr_macro" not in m and "auc_malignant" in m
    assert m["accuracy"] == 0.75 and m["predictions_of_absent_classes"] == 1
    assert m["classes_absent_from_data"] == ["normal"] and m["per_class"]["normal"]["support"] == 0
