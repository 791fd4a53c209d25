"""`adapt`: fit a trained lesion model to a new site with a few hundred labelled local images.

Only what is cheap and safe to refit with little data is refitted: the malignancy head (a logistic
regression on the frozen lesion features, or just a recalibration of its logit), the lesion logit's
calibration when the local data has normal frames, and the operating point. Each candidate is scored
by group-aware K-fold cross-validation on the local images (before/after in `adapt_report.md`), the
best by log-loss is refitted on all of them, and a new versioned model directory is written, ready for
`make deploy`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import keras
import numpy as np
from scipy.optimize import minimize
from sklearn.linear_model import LogisticRegression

from classifier.errors import ModelLoadError
from classifier.model_card import ModelCard

from .errors import DataFolderError, TrainingError
from .lesion_fit import as_input
from .lesion_model import MODEL_KERAS, build_served, save_for_adapt
from .site_metrics import (LABELS, MAX_LESIONS_CALLED_NORMAL, decide, hierarchical_probs, operating_point,
                           site_metrics)
from .sites import Site, load_site
from .split import assign_folds



@dataclasses.dataclass
class Features:
    lesion: np.ndarray  # (views, N) lesion logits
    z: np.ndarray  # (views, N, D) inputs of the malignancy head
    malig: np.ndarray  # (views, N) malignancy logits of the current head


def extract(model: keras.Model, x_grey: np.ndarray, *, flip: bool, batch: int = 32) -> Features:
    head_in = model.get_layer("malig").input
    sub = keras.Model(model.input, [model.get_layer("lesion").output, head_in, model.get_layer("malig").output])
    views = 2 if flip else 1
    les, zs, mal = [[] for _ in range(views)], [[] for _ in range(views)], [[] for _ in range(views)]
    for i in range(0, len(x_grey), batch):
        x = as_input(x_grey[i:i + batch])
        for v in range(views):
            l, z, m = sub(x[:, :, ::-1] if v else x, training=False)
            les[v].append(np.asarray(l)[:, 0])
            zs[v].append(np.asarray(z))
            mal[v].append(np.asarray(m)[:, 0])
    return Features(np.stack([np.concatenate(p) for p in les]), np.stack([np.concatenate(p) for p in zs]),
                    np.stack([np.concatenate(p) for p in mal]))


def _platt(view_logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) minimising the log-loss of mean over views of sigmoid(a * logit + b), lightly regularised
    towards (1, 0) so that a handful of images cannot flip the head."""
    y = y.astype(np.float64)

    def loss(ab):
        p = np.clip(np.mean(1 / (1 + np.exp(-(ab[0] * view_logits + ab[1]))), axis=0), 1e-9, 1 - 1e-9)
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)) + 1e-2 * ((ab[0] - 1) ** 2 + ab[1] ** 2)

    res = minimize(loss, np.array([1.0, 0.0]), method="L-BFGS-B", bounds=[(0.05, 20.0), (-20.0, 20.0)])
    return float(res.x[0]), float(res.x[1])


@dataclasses.dataclass
class Head:
    """What a candidate changes: malignancy head weights (or None: keep) and affine maps of the logits."""

    kind: str
    malig_w: np.ndarray | None = None
    malig_b: float = 0.0
    malig_ab: tuple[float, float] = (1.0, 0.0)
    lesion_ab: tuple[float, float] = (1.0, 0.0)

    def logits(self, f: Features) -> tuple[np.ndarray, np.ndarray]:
        malig = f.malig if self.malig_w is None else f.z @ self.malig_w + self.malig_b
        return (self.lesion_ab[0] * f.lesion + self.lesion_ab[1], self.malig_ab[0] * malig + self.malig_ab[1])


def _subset(f: Features, idx) -> Features:
    return Features(f.lesion[:, idx], f.z[:, idx], f.malig[:, idx])


def fit_candidate(kind: str, f: Features, labels: np.ndarray, card_temps: tuple[float, float], c: float) -> Head:
    lesion = labels != "normal"
    is_mal = labels == "malignant"
    t_les, t_mal = card_temps
    base = Head(kind, malig_ab=(1 / t_mal, 0.0), lesion_ab=(1 / t_les, 0.0))
    if kind == "as_is" or lesion.sum() < 4 or is_mal[lesion].all() or not is_mal[lesion].any():
        return base
    if (labels == "normal").any() and lesion.any():
        base.lesion_ab = _platt(f.lesion, lesion)
    if kind == "recalibrate":
        base.malig_ab = _platt(f.malig[:, lesion], is_mal[lesion])
        return base
    # refit_head: L2 logistic regression on the lesion features of every view, class-balanced
    z = f.z[:, lesion].reshape(-1, f.z.shape[-1])
    y = np.tile(is_mal[lesion], f.z.shape[0])
    # Standardised for the fit (features differ in scale by orders of magnitude), folded back into w, b.
    mean, std = z.mean(axis=0), z.std(axis=0) + 1e-6
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit((z - mean) / std, y)
    w = lr.coef_[0].astype(np.float64) / std
    b = float(lr.intercept_[0] - w @ mean)
    logits = f.z[:, lesion] @ w + b
    scale = 1.0 / (logits.std() + 1e-12)  # unit-scale logits, so the calibration below starts near its answer
    base.malig_w, base.malig_b = w * scale, b * scale
    base.malig_ab = _platt(logits * scale, is_mal[lesion])  # calibrate the refit
    return base


def _probs(head: Head, f: Features) -> np.ndarray:
    les, mal = head.logits(f)
    return hierarchical_probs(les, mal)


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    lesion = labels != "normal"
    p = np.clip(probs[lesion, 2] / np.clip(1 - probs[lesion, 0], 1e-9, None), 1e-9, 1 - 1e-9)
    y = labels[lesion] == "malignant"
    return float(-np.mean(np.where(y, np.log(p), np.log(1 - p))))


def cross_validate(f: Features, labels: np.ndarray, groups: list[str], *, folds: int, seed: int, card, c: float,
                   target: float, kinds=("as_is", "recalibrate", "refit_head")) -> dict:
    """Out-of-fold probabilities per candidate; thresholds chosen on the training folds only."""
    gid = {g: k for k, g in enumerate(sorted(set(groups)))}
    fold = np.array(assign_folds([gid[g] for g in groups], list(labels), k=folds, seed=seed))
    temps = (card.extra.get("calibration", {}).get("lesion_temperature", 1.0), card.temperature or 1.0)
    out = {}
    for kind in kinds:
        oof = np.zeros((len(labels), 3))
        preds = np.zeros(len(labels), dtype=int)
        for k in range(folds):
            tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            if not len(te):
                continue
            head = fit_candidate(kind, _subset(f, tr), labels[tr], temps, c)
            p_tr = _probs(head, _subset(f, tr))
            if kind == "as_is":
                thr = card.operating_point.get("malignant_threshold", 0.5)
                nthr = card.operating_point.get("normal_threshold")
            else:
                thr, nthr = _operating_point(p_tr, labels[tr], target)
            oof[te] = _probs(head, _subset(f, te))
            preds[te] = decide(oof[te], thr, nthr)
        out[kind] = {"probs": oof, "pred": preds, "nll": _nll(oof, labels)}
    return out


def _operating_point(probs: np.ndarray, labels: np.ndarray, target: float) -> tuple[float, float | None]:
    return operating_point(probs, labels, target, MAX_LESIONS_CALLED_NORMAL)


def _metrics_from_preds(labels, probs, preds) -> dict:
    """site_metrics at fixed predictions (each fold used its own thresholds)."""
    m = site_metrics(list(labels), probs, None, n_boot=300)
    y = np.array([LABELS.index(l) for l in labels])
    is_mal, lesion = y == 2, y != 0
    m["sensitivity"] = float((preds[is_mal] == 2).mean()) if is_mal.any() else None
    m["specificity"] = float((preds[~is_mal] != 2).mean()) if (~is_mal).any() else None
    m["lesions_called_normal"] = float((preds[lesion] == 0).mean()) if lesion.any() else None
    m["accuracy"] = float((preds == y).mean())
    return m


def _set_head(model: keras.Model, head: Head) -> None:
    """Fold the chosen head into the Keras model's Dense layers, so the served graph keeps its shape."""
    malig = model.get_layer("malig")
    w, b = malig.get_weights()
    if head.malig_w is not None:
        w, b = head.malig_w.reshape(w.shape).astype(np.float32), np.array([head.malig_b], dtype=np.float32)
    a, c = head.malig_ab
    malig.set_weights([(a * w).astype(np.float32), (a * b + c).astype(np.float32)])
    lesion = model.get_layer("lesion")
    lw, lb = lesion.get_weights()
    a, c = head.lesion_ab
    lesion.set_weights([(a * lw).astype(np.float32), (a * lb + c).astype(np.float32)])


def adapt(*, model_dir: Path, data: Path, out: Path, work: Path, folds: int = 5, seed: int = 42,
          target_sensitivity: float = 0.90, c: float = 0.1, max_images: int | None = None) -> dict:
    from .export import to_tflite, write_model

    try:
        card = ModelCard.load(model_dir)
    except ModelLoadError as exc:
        raise TrainingError(str(exc)) from exc
    keras_path = Path(model_dir) / MODEL_KERAS
    if not keras_path.is_file() or not card.localisation:
        raise TrainingError(f"adapt needs a lesion-recipe model folder with {MODEL_KERAS} beside model.tflite "
                            f"(written by `train --recipe lesion`); {model_dir} has none")
    model = keras.models.load_model(keras_path, compile=False)
    site = load_site(data, side=card.input_size, cache_dir=work / "cache", negative_kinds=())  # features only
    site = _limit(site, max_images, seed)
    labels = np.array(site.labels)
    unknown = sorted(set(labels) - set(card.labels))
    if unknown:
        raise DataFolderError(f"{data} has class folder(s) {', '.join(unknown)} the model does not predict")
    if (labels != "normal").sum() < 2 * folds or len(set(labels[labels != "normal"])) < 2:
        raise DataFolderError(f"adapt needs benign and malignant images, at least {2 * folds} lesions in all "
                              f"({data}: {dict(zip(*np.unique(labels, return_counts=True)))})")
    flip = card.extra.get("config", {}).get("tta_flip", "auto") != "off"
    feats = extract(model, site.x, flip=flip)
    cv = cross_validate(feats, labels, site.groups, folds=folds, seed=seed, card=card, c=c, target=target_sensitivity)
    results = {k: _metrics_from_preds(labels, v["probs"], v["pred"]) | {"nll_malignant": v["nll"]} for k, v in cv.items()}
    chosen = min(cv, key=lambda k: cv[k]["nll"])
    temps = (card.extra.get("calibration", {}).get("lesion_temperature", 1.0), card.temperature or 1.0)
    head = fit_candidate(chosen, feats, labels, temps, c)
    if chosen == "as_is":
        thr = card.operating_point.get("malignant_threshold", 0.5)
        nthr = card.operating_point.get("normal_threshold")
    else:  # chosen on the out-of-fold predictions of the chosen candidate, never on its own fit
        thr, nthr = _operating_point(cv[chosen]["probs"], labels, target_sensitivity)
    _set_head(model, head)
    served = build_served([model], input_size=card.input_size, lesion_temperature=1.0, malignant_temperature=1.0,
                          tta_flip=flip)
    staging = work / "adapt-export"
    shutil.rmtree(staging, ignore_errors=True)
    op = {"malignant_threshold": round(float(thr), 6), "target_sensitivity": target_sensitivity,
          "chosen_by": f"adapt: out-of-fold on {len(labels)} local images of {site.name}"}
    if nthr is not None:
        op["normal_threshold"] = round(float(nthr), 6)
    extra = {"adapted_from": {"name": card.name, "version": card.version}, "adapt": {
        "data": str(data), "images": int(len(labels)), "folds": folds, "chosen": chosen,
        "cross_validation": results}, "config": card.extra.get("config", {}),
        "calibration": {"lesion_temperature": 1.0, "note": "folded into the head by adapt"},
        # adapt refits only the two Dense heads: the pooled backbone features and the image statistics the
        # input check scores are the base model's, so its fitted check still applies (without it, noise would
        # be labelled instead of refused)
        "input_check": ("carried over from the base model (same backbone features)" if card.input_check
                        else "none: the base model has no input check")}
    write_model(staging, to_tflite(served, quantize="none"), name=card.name, labels=card.labels,
                input_size=card.input_size, temperature=1.0, backbone=card.backbone, weights_source=card.weights_source,
                dataset_fingerprint=f"{card.dataset_fingerprint};adapt:{site.name}={site.fingerprint}",
                split_counts=card.split_counts, operating_point=op, localisation=card.localisation,
                sites=card.sites + [{"name": site.name, "images": int(len(labels)), "adapted": True,
                                     "cross_validation": {k: _brief(v) for k, v in results.items()}}],
                test_metrics={}, extra=extra, input_check=card.input_check)
    save_for_adapt(model, staging / MODEL_KERAS)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("model.tflite", "model.json", MODEL_KERAS):
        shutil.copy2(staging / name, out / name)
    (out / "adapt_report.md").write_text(_report(card, site, results, chosen, op))
    return {"chosen": chosen, "results": results, "operating_point": op,
            "version": json.loads((out / "model.json").read_text())["version"]}


def _limit(site: Site, max_images: int | None, seed: int) -> Site:
    """At most max_images, whole groups, stratified by drawing groups in a seeded order."""
    if not max_images or max_images >= len(site):
        return site
    rng = np.random.default_rng(seed)
    order = list(dict.fromkeys(site.groups))
    rng.shuffle(order)
    keep, chosen = [], set()
    for g in order:
        members = [i for i, x in enumerate(site.groups) if x == g]
        if len(keep) + len(members) > max_images:
            continue
        keep += members
        chosen.add(g)
    return site.subset(sorted(keep))


def _brief(m: dict) -> dict:
    return {k: m.get(k) for k in ("auc_malignant", "sensitivity", "specificity", "ece_malignant",
                                  "lesions_called_normal", "nll_malignant")}


def _report(card, site, results, chosen, op) -> str:
    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    rows = "\n".join(f"| {k}{' (chosen)' if k == chosen else ''} | {f(m['auc_malignant'])} | {f(m['sensitivity'])} | "
                     f"{f(m['specificity'])} | {f(m['ece_malignant'])} | {f(m['nll_malignant'])} | "
                     f"{f(m['lesions_called_normal'])} |" for k, m in results.items())
    return f"""# Adapting {card.name} {card.version} to {site.name}

Research use only; not a medical device. {len(site)} labelled local images, group-aware
cross-validation (each fold scored by a head fitted on the other folds, thresholds chosen on those
other folds too). `as_is` is the model before adaptation.

| candidate | AUC malignant | sensitivity | specificity | ECE | log-loss (malignant vs benign) | lesions called normal |
|---|---|---|---|---|---|---|
{rows}

Chosen by cross-validated log-loss: **{chosen}**, refitted on all {len(site)} images. New operating point:
{_rule_text(op)} ({op['chosen_by']}).
"""


def _rule_text(op: dict) -> str:
    mal = f"malignant if p(malignant | lesion) >= {op['malignant_threshold']:.3f}"
    if op.get("normal_threshold") is None:
        return mal + ", else the more probable of normal and benign"
    return f"normal if p(normal) >= {op['normal_threshold']:.3f}, else {mal}, else benign"
