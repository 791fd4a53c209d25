"""Stage-1 heads: the exact-solve logistic regression exported as a Keras head gives sklearn's probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from model_training.calibrate import softmax
from model_training.train import HeadParams, class_weights, head_grid, head_search, train_linear_head


def _features(n_classes, seed=0, n=120, d=12):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    centres = rng.normal(0, 1.5, (n_classes, d))
    x = centres[y] + rng.normal(0, 1.0, (n, d)) + 5.0  # offset: the head must standardise
    return np.stack([x, x + rng.normal(0, 0.1, x.shape)]).astype("float32"), y


@pytest.mark.parametrize("n_classes", [2, 3])
def test_linear_head_reproduces_the_logistic_regression(n_classes):
    views, y = _features(n_classes)
    head = train_linear_head(views, y, n_classes=n_classes, c=0.1)
    x = np.concatenate(list(views))
    mean, std = x.mean(0), x.std(0)
    w = class_weights(y, n_classes)
    ref = LogisticRegression(C=0.1, class_weight=w, max_iter=5000).fit((x - mean) / std, np.concatenate([y, y]))
    got = softmax(np.asarray(head(views[0])))
    np.testing.assert_allclose(got, ref.predict_proba((views[0] - mean) / std), atol=1e-4)


def test_a_class_absent_from_training_gets_no_probability():
    views, y = _features(2)
    head = train_linear_head(views, y, n_classes=3, c=0.1)  # class 2 never seen
    assert softmax(np.asarray(head(views[0])))[:, 2].max() < 1e-9


def test_search_scores_linear_and_mlp_heads_and_keeps_the_best():
    views, y = _features(3, seed=1)
    heads = head_grid(c=(0.01, 1.0), units=(8,), dropout=(0.1,), lr=(3e-3,))
    assert [h.kind for h in heads] == ["linear", "linear", "mlp"]
    (best, head, _), rows = head_search(views[:, :80], y[:80], views[:, 80:], y[80:], n_classes=3, heads=heads,
                                        epochs=20, seed=0)
    assert len(rows) == 3 and best == min(rows, key=lambda r: r["val_nll"])
    assert rows[0]["head"] == "logistic regression, C 0.01" and rows[0]["epochs_run"] == 0
    assert HeadParams(kind="mlp", units=8, dropout=0.1, lr=3e-3).describe() == "MLP 8 units, dropout 0.1, lr 0.003"


def test_linear_head_trained_on_one_class_predicts_that_class():
    views, y = _features(3)
    only = y == 1
    head = train_linear_head(views[:, only], y[only], n_classes=3, c=0.1)
    probs = softmax(np.asarray(head(views[0])))
    assert np.all(probs.argmax(1) == 1) and probs[:, 1].min() > 0.999
