"""Out-of-fold scoring shared by `cv` and the frozen recipe's stage choice: each fold calibrated with a
temperature fitted on the other folds, then the metrics.json numbers per candidate."""

from __future__ import annotations

import numpy as np

from .calibrate import fit_temperature, nll, probs_from_views
from .metrics import compute


def crossfit_probs(view_logits: list[np.ndarray], y: np.ndarray, fold_of: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Served probabilities for every image, each fold calibrated with a T fitted on the other folds."""
    probs = np.zeros(view_logits[0].shape, dtype=np.float64)
    temps = []
    for f in np.unique(fold_of):
        rest, here = fold_of != f, fold_of == f
        t = fit_temperature([v[rest] for v in view_logits], y[rest])
        probs[here] = probs_from_views([v[here] for v in view_logits], t)
        temps.append(t)
    return probs, temps


def summarize(oof: dict[str, list[np.ndarray]], y: np.ndarray, fold_of: np.ndarray, labels: list[str]) -> dict:
    """Candidate name -> OOF metrics (metrics.json schema plus nll and the per-fold temperatures)."""
    out = {}
    for name, view_logits in oof.items():
        probs, temps = crossfit_probs(view_logits, y, fold_of)
        m = compute(y, probs, labels)
        m["nll"] = nll(probs, y)
        m["temperatures"] = temps
        out[name] = m
    return out
