"""`train --recipe lesion` (the default): several sites -> per-site splits -> leave-one-site-out
(calibration and operating point chosen on sites the model never saw) -> final fit on every site's
train + val -> export with the heatmap output -> LiteRT parity -> per-site test metrics through the
served path -> model.json, report.md and plots."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from classifier.engine import Engine

from .calibrate import fit_binary_temperature
from .config import TrainConfig
from .cross_fit import FILE as CROSS_FIT_FILE
from .cross_fit import cross_fit
from .cross_fit import normal_threshold as cross_fit_normal
from .errors import ParityError
from .lesion_fit import FitConfig, as_input, fit, predict_logits
from .loso import OutOfSite, SiteSplit, leave_one_site_out, split_site
from .run_info import peak_memory_mb, seed_everything, weights_id
from .runs import copy_atomic
from .report import console_summary
from .lesion_model import MODEL_KERAS
from .operating_points import (DEFAULT, choose, describe, gate_figures, out_of_fold_sets, out_of_site_sets,
                               site_point)
from .site_metrics import LABELS, MAX_LESIONS_CALLED_NORMAL, by_device, hierarchical_probs, site_metrics
from .sites import grid_for, load_sites, mask_grid


def fit_config(cfg: TrainConfig) -> FitConfig:
    return FitConfig(input_size=cfg.input_size, weights=cfg.weights, backbone=cfg.backbone, epochs=cfg.epochs,
                     unfreeze=cfg.unfreeze, lr=cfg.fine_tune_lr, batch_size=cfg.batch_size, seed=cfg.seed,
                     hard_negatives=cfg.hard_negatives)


def _write_split(splits: list[SiteSplit], cfg: TrainConfig) -> None:
    out = {"seed": cfg.seed, "test_fraction": cfg.test_fraction, "sites": {}}
    for sp in splits:
        site = sp.site
        where = {int(i): "trainval" for i in sp.trainval} | {int(i): "test" for i in sp.test}
        out["sites"][site.name] = {"root": str(site.root), "files": {
            s.key: {"label": s.label, "group": site.groups[i], "device": site.devices[i],
                    "split": where.get(i, "excluded_conflict")} for i, s in enumerate(site.samples)}}
    (cfg.report / "split.json").write_text(json.dumps(out, indent=1) + "\n")


def _calibration_set(oos: list[OutOfSite], splits: list[SiteSplit]) -> dict:
    """Pooled out-of-site predictions: every train + val image, predicted by a model that never saw its site."""
    by_name = {sp.site.name: sp.site for sp in splits}
    labels, lesion, malig = [], [], []
    for o in oos:
        site = by_name[o.site]
        labels += [site.labels[i] for i in o.idx]
        lesion.append(o.lesion)
        malig.append(o.malig)
    return {"labels": labels, "lesion": np.concatenate(lesion, axis=1), "malig": np.concatenate(malig, axis=1)}


def _fit_calibration(cal: dict, oos: list[OutOfSite], splits: list[SiteSplit], target: float,
                     normal: dict | None = None) -> dict:
    labels = np.array(cal["labels"])
    lesion = labels != "normal"
    t_malig = fit_binary_temperature(cal["malig"][:, lesion], labels[lesion] == "malignant")
    # The lesion temperature needs held-out normal frames predicted by a model that was trained with
    # normal frames; with BUSI the only site with normals, no LOSO fold has both, so it stays 1.
    usable = [o for o in oos if any(l == "normal" for l in _site_labels(o, splits))
              and any(any(l == "normal" for l in sp.site.subset(sp.trainval).labels)
                      for sp in splits if sp.site.name in o.trained_on)]
    t_lesion, lesion_note = 1.0, ("not fitted (1.0): no held-out site has normal frames and a model trained "
                                  "with normal frames")
    if usable:
        lab = np.concatenate([np.array(_site_labels(o, splits)) for o in usable])
        t_lesion = fit_binary_temperature(np.concatenate([o.lesion for o in usable], axis=1), lab != "normal")
        lesion_note = f"fitted on out-of-site predictions of {', '.join(o.site for o in usable)}"
    probs = hierarchical_probs(cal["lesion"], cal["malig"], t_lesion=t_lesion, t_malig=t_malig)
    # "normal" only on strong evidence: at most MAX_LESIONS_CALLED_NORMAL of the out-of-site lesions reach
    # it (a missed lesion costs more than a second look at a normal frame); then each named point's
    # malignant threshold (operating_points.choose); the default one is the card's `operating_point`.
    points = choose(probs, labels, target_sensitivity=target, max_lesions_called_normal=MAX_LESIONS_CALLED_NORMAL,
                    normal=normal)
    threshold, normal_t = points[DEFAULT]["malignant_threshold"], points[DEFAULT]["normal_threshold"]
    return {"malignant_temperature": t_malig, "lesion_temperature": t_lesion, "lesion_temperature_note": lesion_note,
            "points": points, "malignant_threshold": threshold, "normal_threshold": normal_t,
            "max_lesions_called_normal": MAX_LESIONS_CALLED_NORMAL, "target_sensitivity": target, "n": int(len(labels)),
            "normal_threshold_rule": normal["rule"] if normal else "leave-one-site-out",
            "normal_threshold_cross_fit": normal,
            "n_malignant": int((labels == "malignant").sum())}


def _save_out_of_site(oos: list[OutOfSite], splits: list[SiteSplit], path: Path) -> None:
    """The raw out-of-site logits behind the calibration and operating point, to re-check or re-fit them."""
    by_name = {sp.site.name: sp.site for sp in splits}
    rows = [(o.site, by_name[o.site].samples[i].key, by_name[o.site].labels[i]) for o in oos for i in o.idx]
    np.savez_compressed(path, site=np.array([r[0] for r in rows]), key=np.array([r[1] for r in rows]),
                        label=np.array([r[2] for r in rows]),
                        lesion_logits=np.concatenate([o.lesion for o in oos], axis=1) if oos else np.zeros((1, 0)),
                        malignant_logits=np.concatenate([o.malig for o in oos], axis=1) if oos else np.zeros((1, 0)),
                        # the heatmap's peak (the most lesion-like cell), comparable across models: "no lesion found"
                        heat_peak=np.concatenate([o.heat.reshape(len(o.heat), -1).max(1) for o in oos]) if oos
                        else np.zeros(0))


def _site_labels(o: OutOfSite, splits: list[SiteSplit]) -> list[str]:
    site = next(sp.site for sp in splits if sp.site.name == o.site)
    return [site.labels[i] for i in o.idx]


def _op(calib: dict) -> tuple[float, float]:
    return calib["malignant_threshold"], calib["normal_threshold"]


def _loso_metrics(oos, splits, calib, *, normal_gate: bool = True) -> dict:
    """Per unseen site at the card's point; without `normal_gate` (the normal threshold came from cross-fit,
    not from these single-site models) the malignant rule alone, and no "called normal" figures."""
    op = site_point({"malignant_threshold": calib["malignant_threshold"],
                     "normal_threshold": calib["normal_threshold"]}, normal_gate)
    out = {}
    for o in oos:
        site = next(sp.site for sp in splits if sp.site.name == o.site)
        probs = hierarchical_probs(o.lesion, o.malig, t_lesion=calib["lesion_temperature"],
                                   t_malig=calib["malignant_temperature"])
        labels = [site.labels[i] for i in o.idx]
        devices = [site.devices[i] for i in o.idx]
        m = site_metrics(labels, probs, *op)
        out[o.site] = {"trained_on": o.trained_on, "fit_seconds": o.seconds,
                       **gate_figures(m, normal_gate),
                       "devices": by_device(labels, devices, probs, *op),
                       "localisation": _localisation_score(o.heat, site.mask[o.idx], labels)}
    return out


def _localisation_score(heat: np.ndarray, masks: np.ndarray, labels: list[str]) -> dict:
    """Pointing game on lesion frames: is the heatmap's peak cell inside the lesion mask (>= 1/4 of the
    cell covered)? Plus the mean IoU of the peak region (cells >= half the peak) with the mask's cells."""
    lesion = np.array([l != "normal" for l in labels])
    if not lesion.any():
        return {}
    grid = mask_grid(masks[lesion], heat.shape[1]) >= 0.25
    h = heat[lesion]
    peak = h.reshape(len(h), -1).argmax(1)
    hit = grid.reshape(len(h), -1)[np.arange(len(h)), peak]
    region = h >= 0.5 * h.reshape(len(h), -1).max(1)[:, None, None]
    inter = (region & grid).sum(axis=(1, 2))
    union = (region | grid).sum(axis=(1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return {"pointing_hit_rate": float(hit.mean()), "mean_iou": float(iou.mean()), "n": int(lesion.sum())}


def _test_through_engine(engine: Engine, split: SiteSplit, op: tuple) -> tuple[dict, np.ndarray, np.ndarray]:
    """The held-out test images of one site, as files through the served path (decode, letterbox, LiteRT)."""
    site = split.site
    probs, heats = [], []
    for i in tqdm(split.test, desc=f"test {site.name} (LiteRT)", unit="img", leave=False):
        p, heat = engine.predict_with_heatmap(_served_input(engine, site.samples[i].path))
        probs.append(p)
        heats.append(heat)
    probs = np.array(probs).reshape(-1, 3)
    g = grid_for(engine.card.input_size)
    heats = np.array(heats).reshape(-1, g, g)
    labels = [site.labels[i] for i in split.test]
    devices = [site.devices[i] for i in split.test]
    m = site_metrics(labels, probs, *op) | {"devices": by_device(labels, devices, probs, *op),
                                                   "localisation": _localisation_score(heats, site.mask[split.test], labels)}
    return m, probs, heats


def _served_input(engine: Engine, path: Path) -> np.ndarray:
    from classifier.preprocessing import preprocess

    return preprocess(path.read_bytes(), engine.card.input_size, engine.card.preprocessing_id)


def train_lesion(cfg: TrainConfig) -> dict:
    from .export import to_tflite, write_model
    from .lesion_model import build_served, save_for_adapt

    start = time.time()
    seed_everything(cfg.seed)
    cfg.report.mkdir(parents=True, exist_ok=True)
    cfg.work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    # 1. sites, groups, per-site splits -----------------------------------------------------
    sites = load_sites(cfg.data, side=cfg.input_size, cache_dir=cfg.work / "cache", skip_bad=cfg.skip_bad,
                       negative_kinds=cfg.negative_kinds)
    splits = [split_site(s, test_fraction=cfg.test_fraction, seed=cfg.seed, keep_conflicts=cfg.keep_conflicts)
              for s in sites]
    _write_split(splits, cfg)
    for sp in splits:
        print(f"site {sp.site.name}: {len(sp.site)} images, {len(set(sp.site.groups))} groups "
              f"(patients/repeated frames); train+val {len(sp.trainval)}, test {len(sp.test)}, "
              f"{len(sp.excluded)} left out (conflicting labels)", flush=True)
    seconds["data"] = round(time.time() - start, 1)
    fcfg = fit_config(cfg)
    tta = cfg.tta_flip != "off"

    # 2. leave-one-site-out: calibration and operating point from sites the model never saw ---
    tick = time.time()
    if len(splits) >= 2:
        oos = leave_one_site_out(splits, fcfg, flip=tta)
        selection = (f"leave-one-site-out over {len(splits)} sites: each site's train + val images predicted by "
                     f"a model trained on the other sites")
    else:  # one site: an internal group-aware hold-out of its train + val plays the unseen site
        sp = splits[0]
        inner = split_site(sp.site.subset(sp.trainval), test_fraction=0.2, seed=cfg.seed + 1)
        fitted = fit([inner.site.subset(inner.trainval)], fcfg, label="hold-out")
        logits = predict_logits(fitted.model, inner.site.x[inner.test], flip=tta)
        oos = [OutOfSite(sp.site.name, [sp.site.name], sp.trainval[inner.test], logits["lesion"], logits["malig"],
                         logits["heat"], fitted.seconds, fitted.history)]
        selection = "one site: a group-aware 20 % hold-out of its train + val (not a new site)"
    cal = _calibration_set(oos, splits)
    _save_out_of_site(oos, splits, cfg.report / "loso_predictions.npz")
    seconds["leave_one_site_out"] = round(time.time() - tick, 1)
    # 2b. the normal threshold, out of fold inside the sites (cross_fit.py: LOSO cannot set it)
    normal, cf = None, None
    if cfg.cross_fit_folds >= 2 and any(sp.site.labels[i] == "normal" for sp in splits for i in sp.trainval):
        tick = time.time()
        cf = cross_fit(splits, fcfg, k=cfg.cross_fit_folds, flip=tta)
        cf.save(cfg.report / CROSS_FIT_FILE)
        normal = cross_fit_normal(cf, MAX_LESIONS_CALLED_NORMAL)
        seconds["cross_fit"] = round(time.time() - tick, 1)
    calib = _fit_calibration(cal, oos, splits, cfg.target_sensitivity, normal=normal)
    loso = _loso_metrics(oos, splits, calib, normal_gate=cf is None)
    if not cfg.evaluate_test:  # --no-test: the settings' out-of-site (and out-of-fold) figures, no test split read
        explore = {"recipe": "lesion", "no_test": True, "selection": selection, "calibration": calib,
                   "leave_one_site_out": loso, "stage_seconds": seconds, "config": cfg.to_json()}
        (cfg.report / "metrics.json").write_text(json.dumps(explore, indent=1, default=float) + "\n")
        for name, m in loso.items():
            print(f"leave-one-site-out {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in _brief(m).items()
                                                            if isinstance(v, float)), flush=True)
        return {}

    # 3. the final model on every site's train + val ---------------------------------------
    tick = time.time()
    final = fit([sp.site.subset(sp.trainval) for sp in splits], fcfg, label="final")
    seconds["final_fit"] = round(time.time() - tick, 1)

    # 4. export, parity, per-site test through the served path -------------------------------
    tick = time.time()
    _step("exporting: the served graph (probabilities, heatmap, features) -> model.tflite")
    served = build_served([final.model], input_size=cfg.input_size, lesion_temperature=calib["lesion_temperature"],
                          malignant_temperature=calib["malignant_temperature"], tta_flip=tta)
    save_for_adapt(final.model, cfg.work / MODEL_KERAS)
    tflite = to_tflite(served, quantize="none")
    staging = cfg.work / "export"
    shutil.rmtree(staging, ignore_errors=True)
    operating_point = {"malignant_threshold": round(calib["malignant_threshold"], 6),
                       "normal_threshold": round(calib["normal_threshold"], 6),
                       "target_sensitivity": cfg.target_sensitivity,
                       "chosen_by": calib["points"][DEFAULT]["chosen_by"]}
    localisation = {"output": "heatmap", "grid": grid_for(cfg.input_size), "over": "the letterboxed model input",
                    "meaning": "sigmoid of the mask-supervised lesion logits per cell",
                    "box_rule": "connected cells >= half the peak around the peak, mapped to image pixels"}
    common = dict(name=cfg.name, labels=list(LABELS), input_size=cfg.input_size,
                  temperature=calib["malignant_temperature"], backbone=cfg.backbone,
                  weights_source=weights_id(cfg.weights),
                  dataset_fingerprint=";".join(f"{s.name}={s.fingerprint}" for s in sites),
                  split_counts=_split_counts(splits), operating_point=operating_point, localisation=localisation,
                  operating_points=describe(calib["points"], out_of_site_sets(oos, splits, calib),
                                            out_of_fold=None if cf is None else out_of_fold_sets(cf, calib)),
                  default_operating_point=DEFAULT)
    write_model(staging, tflite, **common)
    _step("checking LiteRT against Keras on the test images (parity)")
    engine = Engine(staging)
    test_x = [as_input(sp.site.x[sp.test]) for sp in splits]
    parity = _parity(served, engine, np.concatenate(test_x) if test_x else np.zeros((0,)), cfg.parity_tolerance)
    seconds["export"] = round(time.time() - tick, 1)
    tick = time.time()
    _step("scoring each site's held-out test split through the served path")
    test, test_probs = {}, {}
    for sp in splits:
        test[sp.site.name], test_probs[sp.site.name], _ = _test_through_engine(engine, sp, _op(calib))
    seconds["test"] = round(time.time() - tick, 1)
    wall, peak = time.time() - start, peak_memory_mb()

    site_cards = [{"name": sp.site.name, "images": len(sp.site), "classes": sorted(set(sp.site.labels)),
                   "devices": sorted(set(sp.site.devices) - {""}), "trainval": int(len(sp.trainval)),
                   "test": int(len(sp.test)), "leave_one_site_out": _brief(loso.get(sp.site.name)),
                   "test_metrics": _brief(test[sp.site.name])} for sp in splits]
    extra = {"config": cfg.to_json(), "recipe": "lesion", "selection": selection, "calibration": calib,
             "leave_one_site_out": loso, "test": test, "parity": parity, "fit_history": final.history,
             "train_wall_seconds": round(wall, 1), "stage_seconds": seconds, "peak_memory_mb": round(peak, 1)}
    write_model(staging, tflite, test_metrics=_pooled_test(splits, test_probs), sites=site_cards, extra=extra, **common)
    save_for_adapt(final.model, staging / MODEL_KERAS)
    _publish(staging, cfg.out)
    card = json.loads((cfg.out / "model.json").read_text())

    from .lesion_report import write_report

    _step(f"writing the report and plots to {cfg.report}")
    write_report(cfg, card, splits, oos, calib, loso, test, test_probs, final.history, engine)
    print(console_summary(_summary_rows(cfg, card, loso, test, parity, wall, peak)))
    return card


def _step(text: str) -> None:
    """A status line before a step that runs for seconds without a progress bar."""
    print(f"[{time.strftime('%H:%M:%S')}] {text} ...", flush=True)


def _brief(m: dict | None) -> dict:
    if not m:
        return {}
    keys = ("n", "n_lesions", "n_malignant", "auc_malignant", "sensitivity", "specificity", "ece_malignant",
            "lesions_called_normal", "accuracy", "normals_called_normal", "ci95")
    return {k: m[k] for k in keys if k in m}


def _split_counts(splits) -> dict:
    out = {}
    for sp in splits:
        for name, idx in (("trainval", sp.trainval), ("test", sp.test)):
            c: dict = {}
            for i in idx:
                c[sp.site.labels[i]] = c.get(sp.site.labels[i], 0) + 1
            out.setdefault(sp.site.name, {})[name] = dict(sorted(c.items())) | {"total": int(len(idx))}
        out[sp.site.name]["excluded_conflicting"] = int(len(sp.excluded))
    return out


def _pooled_test(splits, test_probs) -> dict:
    from .metrics import compute

    labels = [sp.site.labels[i] for sp in splits for i in sp.test]
    probs = np.concatenate([test_probs[sp.site.name] for sp in splits]) if labels else np.zeros((0, 3))
    if not labels:
        return {}
    y = np.array([LABELS.index(l) for l in labels])
    return compute(y, probs, list(LABELS)) | {"note": "all sites' test splits pooled, argmax labels; per-site "
                                                       "numbers at the operating point are in `sites`"}


def _parity(served, engine: Engine, x: np.ndarray, tolerance: float) -> dict:
    if not len(x):
        return {"n": 0, "same_label": 0, "max_abs_prob_diff": 0.0, "max_abs_heatmap_diff": 0.0}
    keras_out = served.predict(x, batch_size=32, verbose=0)
    lite = [engine.predict_with_heatmap(img) for img in tqdm(x, desc="parity (LiteRT)", unit="img", leave=False)]
    lp, lh = np.array([p for p, _ in lite]), np.array([h for _, h in lite])
    kp = keras_out["probabilities"] / keras_out["probabilities"].sum(1, keepdims=True)
    diff, hdiff = float(np.abs(kp - lp).max()), float(np.abs(keras_out["heatmap"] - lh).max())
    same = int((kp.argmax(1) == lp.argmax(1)).sum())
    result = {"n": int(len(x)), "same_label": same, "max_abs_prob_diff": diff, "max_abs_heatmap_diff": hdiff,
              "tolerance": tolerance}
    if same != len(x) or diff > tolerance or hdiff > tolerance:
        raise ParityError(f"the exported .tflite disagrees with the Keras model: {same}/{len(x)} same labels, "
                          f"max probability difference {diff:.2e}, heatmap {hdiff:.2e} (tolerance {tolerance:.0e})")
    return result


def _publish(staging: Path, out: Path) -> None:
    for name in ("model.tflite", "model.json", MODEL_KERAS):
        copy_atomic(staging / name, out / name)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _summary_rows(cfg, card, loso, test, parity, wall, peak):
    rows = [("model", f"model.tflite ({(cfg.out / 'model.tflite').stat().st_size / 1e6:.1f} MB)"),
            ("version", card["version"]),
            ("operating point", f"normal if p(normal) >= {card['operating_point']['normal_threshold']:.3f}, else "
                                f"malignant if p(mal|lesion) >= {card['operating_point']['malignant_threshold']:.3f}")]
    for name, m in loso.items():
        rows.append((f"unseen site {name}", f"AUC {_fmt(m['auc_malignant'])}, sens {_fmt(m['sensitivity'])}, "
                                           f"spec {_fmt(m['specificity'])}, ECE {_fmt(m['ece_malignant'])}, "
                                           f"lesions->normal {_fmt(m.get('lesions_called_normal'))}"))
    for name, m in test.items():
        rows.append((f"test {name}", f"AUC {_fmt(m['auc_malignant'])}, sens {_fmt(m['sensitivity'])}, "
                                     f"spec {_fmt(m['specificity'])}, acc {_fmt(m['accuracy'])}, "
                                     f"lesions->normal {_fmt(m['lesions_called_normal'])}"))
    rows += [("parity", f"{parity['same_label']}/{parity['n']} same label, max diff {parity['max_abs_prob_diff']:.1e}"),
             ("wall time", f"{wall / 60:.1f} min"), ("peak memory", f"{peak:.0f} MB")]
    return rows
