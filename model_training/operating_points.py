"""Named operating points of the lesion-aware model, each chosen on out-of-site predictions (every image
predicted by a model that never saw its site) and described by what it did there, site by site.

    sensitive   malignant sensitivity >= the target (0.90), and of those thresholds the most specific one
    balanced    the malignant threshold with the largest sensitivity + specificity (Youden's J)

Both call "normal" only when p(normal) reaches the threshold that lets at most MAX_LESIONS_CALLED_NORMAL of
the out-of-site lesions through; they differ in how readily a lesion is called malignant. The card keeps
them in `operating_points` (the API's `?operating_point=NAME`); the default is the sensitive one.
"""

from __future__ import annotations

import numpy as np

from .site_metrics import (LABELS, MAX_LESIONS_CALLED_NORMAL, malignant_given_lesion, normal_threshold_for,
                           site_metrics, threshold_for_sensitivity)

DEFAULT = "sensitive"
#: Keys of a site's metrics kept in the card for each point (the report has the rest).
_KEPT = ("n", "n_lesions", "n_malignant", "sensitivity", "specificity", "lesions_called_normal",
         "normals_called_normal", "accuracy", "ci95")


def youden_threshold(score: np.ndarray, is_mal: np.ndarray) -> float:
    """The threshold on `score` (>= t: malignant) with the largest sensitivity + specificity - 1;
    ties go to the higher threshold (fewer false alarms)."""
    if not is_mal.any() or is_mal.all():
        return 0.5
    cands = np.unique(score[np.isfinite(score) & (score >= 0)])
    pos, neg = max(int(is_mal.sum()), 1), max(int((~is_mal).sum()), 1)
    best_t, best_j = 0.5, -np.inf
    for t in cands:
        called = score >= t
        j = (called & is_mal).sum() / pos + (~called & ~is_mal).sum() / neg - 1
        if j >= best_j:
            best_t, best_j = float(t), float(j)
    return float(np.clip(best_t, 1e-4, 1 - 1e-4))


def choose(probs: np.ndarray, labels, *, target_sensitivity: float,
           max_lesions_called_normal: float = MAX_LESIONS_CALLED_NORMAL) -> dict[str, dict]:
    """name -> {"malignant_threshold", "normal_threshold", "chosen_by"} from pooled out-of-site predictions."""
    labels = np.asarray(labels)
    lesion, is_mal = labels != "normal", labels == "malignant"
    normal = normal_threshold_for(probs[lesion, 0], max_lesions_called_normal)
    # A frame called normal is never malignant: it counts as a miss, whatever its p(malignant | lesion).
    score = np.where(probs[:, 0] >= normal, -1.0, malignant_given_lesion(probs))
    n = len(labels)
    normal_rule = f"<= {max_lesions_called_normal:.0%} of lesions called normal"
    return {
        "sensitive": {"malignant_threshold": threshold_for_sensitivity(score, is_mal, target_sensitivity),
                      "normal_threshold": normal,
                      "chosen_by": f"malignant sensitivity >= {target_sensitivity:.2f} (the most specific such "
                                   f"threshold) and {normal_rule} on {n} out-of-site predictions"},
        "balanced": {"malignant_threshold": youden_threshold(score, is_mal), "normal_threshold": normal,
                     "chosen_by": f"the largest malignant sensitivity + specificity and {normal_rule} on {n} "
                                  f"out-of-site predictions"},
    }


def describe(points: dict[str, dict], per_site: dict[str, tuple[list[str], np.ndarray]]) -> dict[str, dict]:
    """Each point with what it did on each out-of-site set: {site: sensitivity, specificity (95 % CIs),
    normals and lesions called normal, ...}. `per_site`: site -> (labels, probabilities)."""
    out = {}
    for name, op in points.items():
        sites = {}
        for site, (labels, probs) in per_site.items():
            m = site_metrics(labels, probs, op["malignant_threshold"], op["normal_threshold"], n_boot=300)
            sites[site] = {k: m[k] for k in _KEPT if k in m}
        out[name] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in op.items()} | {"out_of_site": sites}
    return out


def confusion(labels: list[str], probs: np.ndarray, op: dict) -> list[list[int]]:
    """3 x 3 counts, rows the true label, columns the label this point serves (LABELS order)."""
    from .site_metrics import decide

    y = np.array([LABELS.index(l) for l in labels], dtype=int)
    pred = decide(probs, op["malignant_threshold"], op.get("normal_threshold"))
    m = np.zeros((len(LABELS), len(LABELS)), dtype=int)
    np.add.at(m, (y, pred), 1)
    return m.tolist()
