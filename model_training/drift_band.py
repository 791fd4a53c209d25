"""The drift band: what a model's traffic should look like, from the model's own out-of-site evaluation.

`compute_drift_band` is a pure function of the leave-one-site-out predictions that `train` saves
(report/loso_predictions.npz: per image its site, label and the lesion / malignant logits of the model
that never saw that site) and of the model card (the calibration temperatures in `extra.calibration`, the
default operating point in `operating_point`, the input check's held-out counts in `input_check.fitted`).
`make promote` writes the result into the promoted model.json as `drift`; the stack turns each band into an
alarm (infra/drift_alarms.py) on the metrics the handler emits (classifier/drift_metrics.py).

How a band is made, for the predicted-malignant and predicted-normal rates: the labels the served rule gives
(classifier.model_card.label_indices) at each of the card's operating points, named as the API names them (the
alarms watch the default one; by_operating_point keeps the others' bands) to the out-of-site predictions; a 95 %
bootstrap interval of the rate pooled over sites (images resampled within each site) and of each site's own
rate; the band spans the lowest and highest of these intervals, widened by MARGIN on each side. The
site-to-site spread is in the band on purpose: a new hospital is another site, and the two development sites
already differ in case mix (BUSI has normal frames, BUS-BRA none); the margin allows for a clinic's case mix
differing from both. A band is a tripwire for gross shifts (the measured failure: a new site where almost
everything is labelled malignant), not a test of accuracy.

The input check's refusal and warn rates: 95 % bootstrap interval of the held-out ultrasound frames' rates
(calibration + test parts of every site, as counted in the card), upper end widened by MARGIN. Its score: the
card records per-part medians, not means, so the signal is the window's median score (CloudWatch p50) against
the held-out medians (n-weighted) plus SCORE_MARGIN of the way to the warn threshold: a stream whose typical
frame sits half-way to "unusual" has moved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from classifier.errors import ModelLoadError
from classifier.model_card import ModelCard, label_indices

from .cross_fit import FILE as CROSS_FIT_FILE
from .errors import TrainingError
from .site_metrics import LABELS, NO_NORMAL_GATE, hierarchical_probs

FORMAT = "drift-band-v1"  # infra/drift_alarms.py reads this format
#: Absolute widening of every rate band on each side (see the module docstring for why).
MARGIN = 0.05
#: The median-score band's top: the held-out median plus this share of the distance to the warn threshold.
SCORE_MARGIN = 0.5
N_BOOT = 2000
CONFIDENCE = 0.95
#: Metric names: the handler's (classifier/drift_metrics.py) and the alarms' (a test checks they agree).
LABEL_METRIC = "Predicted{}"  # .format(label.capitalize())
REFUSED_METRIC, WARN_METRIC, SCORE_METRIC = "InputCheckRefused", "InputCheckWarn", "InputCheckScore"


class DriftBandError(TrainingError):
    """The report or the card lacks what a band is computed from."""


def _interval(samples: np.ndarray) -> list[float]:
    alpha = (1 - CONFIDENCE) / 2
    return [float(np.quantile(samples, alpha)), float(np.quantile(samples, 1 - alpha))]


def _rate_band(hit: np.ndarray, sites: np.ndarray, rng: np.random.Generator, n_boot: int) -> dict[str, Any]:
    """Pooled and per-site rate of ``hit`` with bootstrap intervals (resampled within each site)."""
    names = sorted(set(sites.tolist()))
    per_site, boot_sum = {}, np.zeros(n_boot)
    for name in names:
        h = hit[sites == name].astype(np.float64)
        draws = rng.integers(0, len(h), size=(n_boot, len(h)))
        boot = h[draws].mean(axis=1)
        boot_sum += boot * len(h)
        per_site[name] = {"n": int(len(h)), "rate": round(float(h.mean()), 6),
                          "ci95": [round(v, 6) for v in _interval(boot)]}
    pooled_ci = _interval(boot_sum / len(hit))
    lows = [pooled_ci[0], *(s["ci95"][0] for s in per_site.values())]
    highs = [pooled_ci[1], *(s["ci95"][1] for s in per_site.values())]
    band = [max(0.0, min(lows) - MARGIN), min(1.0, max(highs) + MARGIN)]
    return {"expected": round(float(hit.mean()), 6), "ci95": [round(v, 6) for v in pooled_ci],
            "per_site": per_site, "band": [round(v, 6) for v in band]}


def _binomial_band(k: int, n: int, rng: np.random.Generator, n_boot: int) -> dict[str, Any]:
    p = k / n
    ci = _interval(rng.binomial(n, p, size=n_boot) / n)
    return {"expected": round(p, 6), "ci95": [round(v, 6) for v in ci], "n": n, "count": k,
            "band": [0.0, round(min(1.0, ci[1] + MARGIN), 6)]}


def input_check_band(card: Mapping[str, Any], rng: np.random.Generator, n_boot: int = N_BOOT) -> dict[str, Any]:
    """Refusal / warn rate and median-score bands from the card's input check ({} when the model has none)."""
    check = card.get("input_check") or {}
    held_out = (check.get("fitted") or {}).get("held_out_ultrasound") or {}
    parts = [part for site in held_out.values() for part in site.values()
             if isinstance(part, Mapping) and part.get("n")]
    if not parts:
        return {}
    n = sum(int(p["n"]) for p in parts)
    warn = sum(int(p.get("warn", 0)) for p in parts)
    refused = sum(int(p.get("reject", 0)) for p in parts)
    median = sum(float(p["score_median"]) * int(p["n"]) for p in parts) / n
    warn_at = float(check["warn_threshold"])
    return {
        "refusal_rate": {"metric": REFUSED_METRIC, "statistic": "Average", **_binomial_band(refused, n, rng, n_boot)},
        "warn_rate": {"metric": WARN_METRIC, "statistic": "Average", **_binomial_band(warn, n, rng, n_boot)},
        "score_median": {"metric": SCORE_METRIC, "statistic": "p50", "expected": round(median, 6), "n": n,
                         "warn_threshold": round(warn_at, 6),
                         "band": [0.0, round(median + SCORE_MARGIN * (warn_at - median), 6)]},
    }


def served_points(card: Mapping[str, Any]) -> tuple[dict[str, dict], str]:
    """(every operating point by its served name, the default's name), as the API names them
    (classifier.model_card.ModelCard.points / point)."""
    try:
        # Only the operating points matter here (the input check's parameters are validated where it is served).
        served = ModelCard.from_dict({k: v for k, v in card.items() if k != "input_check"})
    except ModelLoadError as exc:
        raise DriftBandError(f"the card is not a valid model card: {exc}") from exc
    default, _ = served.point(None)
    return served.points(), default


def compute_drift_band(predictions: Mapping[str, np.ndarray], card: Mapping[str, Any], *, source: str = "",
                       n_boot: int = N_BOOT, seed: int = 0,
                       out_of_fold: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The card's ``drift`` section from the out-of-site predictions (npz arrays site, label, lesion_logits,
    malignant_logits) and the card. Deterministic for a seed. Raises DriftBandError when a part is missing
    or the predictions are not the ones this card's calibration was fitted on.

    ``out_of_fold`` (the cross-fit's predictions, same arrays) is for a card whose normal threshold came from
    them: the single-site models behind the out-of-site predictions never set it (a BUSI-only model calls 41 %
    of BUS-BRA lesions normal at it), so those are then labelled by the malignant rule alone, and the
    out-of-fold ones, by models trained on every site as the served one was, by the whole rule; each is a
    "site" of the band."""
    calibration = (card.get("extra") or {}).get("calibration") or {}
    if "malignant_temperature" not in calibration:
        raise DriftBandError("the card has no extra.calibration temperatures (a lesion-recipe `train` writes them)")
    for key in ("site", "label", "lesion_logits", "malignant_logits"):
        if key not in predictions:
            raise DriftBandError(f"the out-of-site predictions lack {key!r}")
    sites = np.asarray(predictions["site"]).astype(str)
    lesion, malig = np.asarray(predictions["lesion_logits"]), np.asarray(predictions["malignant_logits"])
    if len(sites) == 0 or lesion.shape[-1] != len(sites) or malig.shape[-1] != len(sites):
        raise DriftBandError(f"the out-of-site predictions are empty or inconsistent ({len(sites)} sites, "
                             f"logits {lesion.shape} / {malig.shape})")
    if calibration.get("n") is not None and int(calibration["n"]) != len(sites):
        raise DriftBandError(f"the out-of-site predictions hold {len(sites)} images but this card's calibration "
                             f"used {calibration['n']}: they belong to another model")
    labels = list(card.get("labels") or LABELS)
    if set(labels) != set(LABELS):
        raise DriftBandError(f"the card's labels {labels} are not the lesion recipe's {list(LABELS)}")
    order = [list(LABELS).index(label) for label in labels]

    def calibrated(arrays_lesion, arrays_malig) -> np.ndarray:  # in the card's label order
        return hierarchical_probs(arrays_lesion, arrays_malig, t_lesion=float(calibration.get("lesion_temperature", 1.0)),
                                  t_malig=float(calibration["malignant_temperature"]))[:, order]

    probs = calibrated(lesion, malig)
    gated = np.ones(len(sites), bool)
    if out_of_fold is not None:
        oof = calibrated(np.asarray(out_of_fold["lesion_logits"]), np.asarray(out_of_fold["malignant_logits"]))
        oof_sites = np.char.add("out of fold ", np.asarray(out_of_fold["site"]).astype(str))
        sites = np.concatenate([np.char.add("unseen ", sites), oof_sites])
        probs, gated = np.concatenate([probs, oof]), np.concatenate([~gated, np.ones(len(oof_sites), bool)])
    points, default = served_points(card)
    rng = np.random.default_rng(seed)
    by_point = {}
    for name, point in points.items():
        ungated = {**dict(point), "normal_threshold": NO_NORMAL_GATE}
        predicted = np.asarray(labels)[np.where(gated, label_indices(probs, labels, dict(point)),
                                                label_indices(probs, labels, ungated))]
        by_point[name] = {
            f"predicted_{label}": {"metric": LABEL_METRIC.format(label.capitalize()), "statistic": "Average",
                                   "per_operating_point": True, **_rate_band(predicted == label, sites, rng, n_boot)}
            for label in ("malignant", "normal")}
    rates = by_point[default]
    return {
        "format": FORMAT,
        # The served name of the default point: the operating_point dimension the handler's metrics carry.
        "operating_point": default,
        "by_operating_point": {name: {k: {"band": v["band"], "expected": v["expected"]} for k, v in r.items()}
                               for name, r in by_point.items()},
        "computed_from": {"predictions": source, "n": int(len(sites)), "sites": sorted(set(sites.tolist())),
                          "model": f"{card.get('name')} {card.get('version')}",
                          "thresholds": {k: points[default].get(k) for k in ("malignant_threshold", "normal_threshold")}},
        "method": (("served label rule on the out-of-site predictions" if out_of_fold is None else
                    "the malignant rule alone on the out-of-site predictions and the whole served rule on the "
                    "cross-fit's out-of-fold ones (the normal threshold's source)") + f"; {CONFIDENCE:.0%} bootstrap intervals "
                   f"({n_boot} resamples within each site, seed {seed}) of the pooled and per-site rates; band = "
                   f"their lowest to highest end, widened by {MARGIN} on each side. Input check: held-out "
                   f"ultrasound counts from the card; median score band up to the held-out median + "
                   f"{SCORE_MARGIN} x (warn threshold - median). model_training/drift_band.py"),
        "rates": rates,
        "input_check": input_check_band(card, rng, n_boot),
    }


def drift_band_from_files(npz_path: Path, card: Mapping[str, Any], **kwargs) -> dict[str, Any]:
    """compute_drift_band on a saved report/loso_predictions.npz (its sha256 recorded as the source)."""
    if not Path(npz_path).is_file():
        raise DriftBandError(f"{npz_path} does not exist (a lesion-recipe `train` writes it into the report)")
    with np.load(npz_path) as data:
        arrays = {k: data[k] for k in data.files}
    source = _named_digest(Path(npz_path))
    cross_fit = Path(npz_path).with_name(CROSS_FIT_FILE)
    calibration = (card.get("extra") or {}).get("calibration") or {}
    if calibration.get("normal_threshold_cross_fit") and "out_of_fold" not in kwargs:
        if not cross_fit.is_file():
            raise DriftBandError(f"this card's normal threshold came from cross-fitting but {cross_fit} is missing "
                                 f"(`python -m model_training cross-fit` writes it)")
        with np.load(cross_fit) as data:
            kwargs["out_of_fold"] = {k: data[k] for k in data.files}
        source += f" + {_named_digest(cross_fit)}"
    return compute_drift_band(arrays, card, source=source, **kwargs)


def _named_digest(path: Path) -> str:
    return f"{path.name} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"
