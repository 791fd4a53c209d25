"""classifier.batch_metrics (numpy only; `evaluate` and `batch --labelled` both use it) gives scikit-learn's
numbers exactly (tests/batch/sklearn_reference.py: the implementation it replaced)."""

from __future__ import annotations

import numpy as np
import pytest

from classifier import batch_metrics

LABELS = ["normal", "benign", "malignant"]


def assert_same(a, b, where="metrics"):
    """Nested dicts/lists equal, floats to 1e-12 relative."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, z) in enumerate(zip(a, b)):
            assert_same(x, z, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-15), where
    else:
        assert a == b, where


@pytest.mark.parametrize("seed,n,ties", [(0, 60, False), (1, 25, True), (2, 200, False)])
def test_same_numbers_as_scikit_learn(seed, n, ties):
    pytest.importorskip("sklearn")
    from tests.batch import sklearn_reference as metrics

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y]
    if ties:
        logits = np.round(logits)  # tied scores: AUC needs mid-ranks
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert_same(batch_metrics.compute(y, probs, LABELS), metrics.compute(y, probs, LABELS))
    assert_same(batch_metrics.bootstrap_ci(y, probs, LABELS, n_boot=60),
                metrics.bootstrap_ci(y, probs, LABELS, n_boot=60))


def test_the_reference_ece_by_hand():
    from tests.batch import sklearn_reference as metrics

    # confidences 0.9 (right), 0.9 (wrong), 0.5 (right): bins (0.867, 0.933] and (0.467, 0.533];
    # |0.5 - 0.9| x 2/3 + |1 - 0.5| x 1/3 = 0.4333...
    probs = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.5, 0.3, 0.2]])
    y = np.array([0, 0, 0])
    assert metrics.ece(probs, y) == pytest.approx(0.4 * 2 / 3 + 0.5 / 3, abs=1e-12)
    assert batch_metrics.ece(probs, y) == pytest.approx(metrics.ece(probs, y), abs=1e-12)


def test_absent_class_and_no_malignant():
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]])
    out = batch_metrics.compute(y, probs, LABELS)
    assert out["classes_absent_from_data"] == ["malignant"] and out["predictions_of_absent_classes"] == 1
    assert "auc_ovr_macro" not in out and out["malignant_sensitivity"] is None
    assert out["accuracy"] == 0.5
