"""Temperature scaling (fitted on validation) and expected calibration error."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from classifier.batch_metrics import ece  # the one ECE (top label, equal-width bins)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def probs_from_views(view_logits: list[np.ndarray], temperature: float = 1.0) -> np.ndarray:
    """Mean over views (e.g. the image and its mirror) of softmax(logits / T): what the served graph computes."""
    return np.mean([softmax(l, temperature) for l in view_logits], axis=0)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))))


def fit_temperature(view_logits: list[np.ndarray], y: np.ndarray) -> float:
    """The T that minimises validation log-loss of the served output."""
    result = minimize_scalar(
        lambda log_t: nll(probs_from_views(view_logits, float(np.exp(log_t))), y),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
    )
    return float(np.exp(result.x))


def served_scores(view_logits: list[np.ndarray], y: np.ndarray) -> dict:
    """Scores of the served output (mean of softmax(logits / T) over views), T fitted on these labels."""
    t = fit_temperature(view_logits, y)
    raw, cal = probs_from_views(view_logits, 1.0), probs_from_views(view_logits, t)
    return {"temperature": t, "nll_raw": nll(raw, y), "nll": nll(cal, y), "ece_raw": ece(raw, y),
            "ece": ece(cal, y), "accuracy": float((cal.argmax(1) == y).mean())}


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = 10):
    """(bin centres, accuracy per bin, mean confidence per bin, counts) for the reliability diagram."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    acc, mean_conf, counts = [], [], []
    for b in range(n_bins):
        mask = bins == b
        counts.append(int(mask.sum()))
        acc.append(float(correct[mask].mean()) if mask.any() else float("nan"))
        mean_conf.append(float(conf[mask].mean()) if mask.any() else float("nan"))
    return (edges[:-1] + edges[1:]) / 2, np.array(acc), np.array(mean_conf), np.array(counts)


def _binary_nll(view_logits: np.ndarray, y: np.ndarray, t: float) -> float:
    p = np.mean(1 / (1 + np.exp(-np.asarray(view_logits, dtype=np.float64) / t)), axis=0)
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_binary_temperature(view_logits: np.ndarray, y: np.ndarray) -> float:
    """T minimising the log-loss of mean over views of sigmoid(logit / T); (views, N) logits, y in {0, 1}."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) == 0 or y.min() == y.max():
        return 1.0  # one class only: nothing to calibrate against
    result = minimize_scalar(lambda log_t: _binary_nll(view_logits, y, float(np.exp(log_t))),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))
