"""`train`: data -> audit -> split -> cached features + head search -> fine-tune -> calibrate
-> export -> LiteRT parity + test evaluation -> model.json and the report."""

from __future__ import annotations

import json
import shutil
import time
import warnings

import numpy as np

from classifier.engine import Engine
from . import plots
from .config import TrainConfig
from .evaluate import write_outputs
from .prepare import prepare
from .report import console_summary, metrics_table
from .run_info import peak_memory_mb, seed_everything, weights_id
from .runs import copy_atomic


def train(cfg: TrainConfig) -> dict:
    start = time.time()
    from .backbones import resolve_pool_layers
    from .export import build_served_model, engine_probs, parity, to_tflite, write_model
    from .stages import choose, fit_stage1_cv, fit_stages, score_candidates

    seed_everything(cfg.seed)
    cfg.report.mkdir(parents=True, exist_ok=True)
    cfg.work.mkdir(parents=True, exist_ok=True)

    # 1. data, audit, split ---------------------------------------------------------------
    data = prepare(cfg)
    labels, fp, audit, counts, idx, x, y = (data.labels, data.fingerprint, data.audit, data.counts, data.idx,
                                            data.x, data.y)
    n_classes = len(labels)

    seconds = {"data": round(time.time() - start, 1)}

    # 2. stage 1 (cached features + head search) and stage 2 (fine-tuned members), then the
    # 3. choice of stage, ensemble and flip TTA by calibrated log-loss --------------------
    weights = weights_id(cfg.weights)
    common_fit = dict(n_classes=n_classes, x_train=x["train"], y_train=y["train"], x_val=x["val"], y_val=y["val"],
                      train_keys=data.keys("train"), val_keys=data.keys("val"), fingerprint=fp,
                      weights_id=weights, cache_dir=cfg.work)
    if cfg.epochs == 0 and cfg.cv_folds >= 2:
        fitted = fit_stage1_cv(cfg, groups=[data.group_of[i] for i in idx["train"] + idx["val"]], labels=labels,
                               **common_fit)
        cv_estimate = fitted.oof_metrics
        selection = (f"{cfg.cv_folds}-fold cross-validation over train + val ({fitted.n} images; out-of-fold "
                     f"scores, head refit on all of them)")
        stage, tta, candidates, histories = "stage1", fitted.tta, fitted.candidates, []
        served_members, ft_histories, n_trainable = [fitted.stage1], [], 0
    else:
        fitted = fit_stages(cfg, **common_fit)
        selection = f"the validation split ({len(y['val'])} images)"
        cv_estimate = None
        candidates = score_candidates(fitted.val_logits, y["val"])
        stage, tta = choose(candidates, cfg.tta_flip)
        histories = [("stage 1: head (best of search)", fitted.head_history)] + \
            [(f"stage 2: fine-tune {k + 1}", h) for k, h in enumerate(fitted.histories)]
        served_members = {"stage1": [fitted.stage1], "stage2": fitted.members[:1],
                          "stage2_ensemble": fitted.members}[stage]
        ft_histories, n_trainable = fitted.histories, fitted.n_trainable
    seconds |= fitted.seconds
    best_row, search = fitted.best_head, fitted.search
    chosen = candidates[stage][tta]
    temperature = chosen["temperature"]
    if not cfg.evaluate_test:
        print(json.dumps({"chosen": [stage, tta], "validation": candidates, "head": best_row}, indent=1))
        print(f"--no-test: stopped after the validation choices ({(time.time() - start) / 60:.1f} min); nothing exported")
        return {"chosen": (stage, tta), "validation": candidates}

    # 4. export, parity through LiteRT, test evaluation -----------------------------------
    tick = time.time()
    served = build_served_model(served_members, input_size=cfg.input_size, temperature=temperature,
                                tta_flip=tta == "flip")
    served.save(cfg.work / "model.keras")
    quantize = cfg.quantize
    representative = x["train"][np.random.default_rng(cfg.seed).permutation(len(x["train"]))[:100]]
    tflite = to_tflite(served, quantize=quantize, representative=representative)
    staging = cfg.work / "export"
    shutil.rmtree(staging, ignore_errors=True)
    common = dict(name=cfg.name, labels=labels, input_size=cfg.input_size, temperature=temperature,
                  backbone=cfg.backbone, weights_source=weights, dataset_fingerprint=fp, split_counts=counts)
    write_model(staging, tflite, **common)
    int8_check = None
    if quantize == "int8":
        # Keep int8 only if validation accuracy holds against the float model. After a CV refit the
        # val images were trained on: both accuracies read high, but the drop still measures int8.
        val_float = served.predict(x["val"], batch_size=32, verbose=0)
        val_int8 = engine_probs(Engine(staging), x["val"], desc="int8 check")
        acc_f, acc_q = float((val_float.argmax(1) == y["val"]).mean()), float((val_int8.argmax(1) == y["val"]).mean())
        int8_check = {"val_accuracy_float": acc_f, "val_accuracy_int8": acc_q,
                      "max_abs_prob_diff": float(np.abs(val_float - val_int8).max())}
        if acc_q < acc_f - 0.02:
            warnings.warn(f"int8 lost validation accuracy ({acc_f:.3f} -> {acc_q:.3f}); exporting float32 instead")
            quantize = "none"
            shutil.rmtree(staging)
            write_model(staging, to_tflite(served, quantize="none"), **common)
    seconds["export"] = round(time.time() - tick, 1)
    tick = time.time()
    engine = Engine(staging)
    test_probs = engine_probs(engine, x["test"], desc="test (LiteRT)")
    keras_probs = served.predict(x["test"], batch_size=32, verbose=0) if len(x["test"]) else np.zeros((0, n_classes))
    tolerance = cfg.parity_tolerance if quantize == "none" else max(cfg.parity_tolerance, 0.1)
    if quantize == "none":
        parity_result = parity(keras_probs, test_probs, tolerance=tolerance)
    else:  # int8 is compared, not required to match float exactly
        parity_result = {"n": len(test_probs), "same_label": int((keras_probs.argmax(1) == test_probs.argmax(1)).sum()),
                         "max_abs_prob_diff": float(np.abs(keras_probs - test_probs).max()), "note": "int8 vs float Keras"}
    test_metrics = write_outputs(y["test"], test_probs, labels, cfg.report, title=f"test split (n={len(y['test'])})") \
        if len(y["test"]) else {}
    plots.training_curves(dict(histories), cfg.report / "training_curves.png")
    seconds["evaluate"] = round(time.time() - tick, 1)
    wall = time.time() - start
    peak = peak_memory_mb()
    card_metrics = dict(test_metrics)
    extra = {
        "config": cfg.to_json(), "pool_layers": list(resolve_pool_layers(cfg.backbone, cfg.pool_layers)),
        "chosen": {"stage": stage, "tta": tta}, "selection": selection, "validation": candidates,
        "cv_estimate": cv_estimate,
        "head_search": search, "head": best_row["head"],
        "fine_tune": {"members": len(ft_histories), "served_members": len(served_members),
                      "epochs_run": [len(h["loss"]) for h in ft_histories], "trainable_layers": n_trainable,
                      "best_val_loss": [min(h["val_loss"]) for h in ft_histories]},
        "quantize": quantize, "int8_check": int8_check, "parity": parity_result,
        "train_wall_seconds": round(wall, 1), "stage_seconds": seconds, "peak_memory_mb": round(peak, 1),
    }
    write_model(staging, tflite if quantize == cfg.quantize else (staging / "model.tflite").read_bytes(),
                test_metrics=card_metrics, extra=extra, **common)
    for name in ("model.tflite", "model.json"):
        copy_atomic(staging / name, cfg.out / name)
    card = json.loads((cfg.out / "model.json").read_text())
    (cfg.report / "report.md").write_text(train_markdown(cfg, card, audit, counts, test_metrics, search, extra))
    rows = [
        ("model", f"model.tflite ({(cfg.out / 'model.tflite').stat().st_size / 1e6:.1f} MB, {card['input_dtype']} in)"),
        ("version", card["version"]),
        ("split train/val/test", f"{counts['train']['total']}/{counts['val']['total']}/{counts['test']['total']}"
                                 f" (+{counts['excluded_conflicting']} conflicting left out)"),
        ("chosen", f"{stage} ({len(served_members)} model(s)), {'flip TTA' if tta == 'flip' else 'no TTA'}, T={temperature:.3f}"),
        (f"{'out-of-fold (CV)' if cfg.epochs == 0 and cfg.cv_folds >= 2 else 'val'} accuracy / NLL",
         f"{chosen['accuracy']:.3f} / {chosen['nll']:.3f}"),
        ("parity", f"{parity_result['same_label']}/{parity_result['n']} same label, max diff {parity_result['max_abs_prob_diff']:.1e}"),
    ]
    if test_metrics:
        rows += [
            ("test accuracy", f"{test_metrics['accuracy']:.3f}"),
            ("test macro-F1", f"{test_metrics['macro_f1']:.3f}"),
            ("test AUC ovr macro", f"{test_metrics.get('auc_ovr_macro', float('nan')):.3f}"),
            ("test malignant recall", f"{test_metrics.get('malignant_sensitivity') or float('nan'):.3f}"),
            ("test ECE", f"{test_metrics['ece']:.3f}"),
        ]
    rows += [("wall time", f"{wall / 60:.1f} min"), ("peak memory", f"{peak:.0f} MB")]
    print(console_summary(rows))
    return card


def _stage2_text(cfg, extra) -> str:
    ft = extra["fine_tune"]
    if not ft["members"]:
        return "Stage 2 (fine-tuning): off (`--epochs 0`)."
    return (f"Stage 2: {ft['members']} fine-tuned model(s) (seeds seed + 1000 k), {ft['served_members']} served;\n"
            f"epochs run {ft['epochs_run']} (early stopping on validation loss), {ft['trainable_layers']}\n"
            f"trainable layers (BatchNorm frozen), lr {cfg.fine_tune_lr:g}, label smoothing {cfg.label_smoothing:g}, "
            "augmentation: flip, rotation, zoom, brightness, contrast.\nTraining curves: `training_curves.png`.")


def _cv_estimate_text(m) -> str:
    if not m:
        return ""
    mal = m.get("malignant_sensitivity")
    auc = m.get("auc_ovr_macro")
    return (f"\nCross-validated estimate of the chosen head (out-of-fold on train + val, each fold calibrated "
            f"with a temperature fitted on the others; n={m['n']}): accuracy {m['accuracy']:.3f}, macro-F1 "
            f"{m['macro_f1']:.3f}, AUC one-vs-rest macro {'n/a' if auc is None else f'{auc:.3f}'}, malignant recall "
            f"{'n/a' if mal is None else f'{mal:.3f}'}, ECE {m['ece']:.3f}.")


def train_markdown(cfg, card, audit, counts, test_metrics, search, extra) -> str:
    v = extra["validation"]
    search_rows = "\n".join(
        f"| {r['head']} | {r['val_nll']:.3f} | {r['val_accuracy']:.3f} | {'exact solve' if r['kind'] == 'linear' else r['epochs_run']} |"
        for r in search)
    val_rows = "\n".join(
        f"| {s} | {t} | {m['accuracy']:.3f} | {m['nll_raw']:.3f} | {m['nll']:.3f} | {m['temperature']:.3f} | {m['ece_raw']:.3f} | {m['ece']:.3f} |"
        for s in v for t, m in v[s].items())
    split_rows = "\n".join(
        f"| {s} | " + " | ".join(str(counts[s].get(l, 0)) for l in card["labels"]) + f" | {counts[s]['total']} |"
        for s in ("train", "val", "test"))
    return f"""# Training report: {card['name']} {card['version']}

Research use only; not a medical device. Produced by `python -m model_training train` with the
config in `model.json` (`extra.config`). Every number on the test split below comes from the
exported `model.tflite` run by LiteRT through the serving preprocessing; this run used the test
split once, after every choice had been made on validation (and, for the defaults, by
`python -m model_training cv` on train + val).

## Data and split
- {audit['images']} images from `{cfg.folder}` ({', '.join(f'{k} {n}' for k, n in audit['per_class'].items())}),
  fingerprint `{audit['dataset_fingerprint'][:23]}...`
- Duplicate audit (`audit.json`): {len(audit['exact_duplicate_pairs'])} exact duplicate pair(s),
  {audit['near_duplicate_pairs']} near-duplicate pairs (thumbnail correlation >= {audit['near_duplicate_threshold']}),
  {len(audit['duplicate_groups'])} duplicate groups holding {audit['images_in_duplicate_groups']} images,
  {len(audit['conflicting_groups'])} groups with conflicting labels holding {audit['images_in_conflicting_groups']} images
  ({'kept' if cfg.keep_conflicts else 'left out of training and evaluation'}).
- Group-aware stratified split, seed {cfg.seed} (`split.json`); no duplicate group crosses splits.

| split | {' | '.join(card['labels'])} | total |
|---|{'---|' * len(card['labels'])}---|
{split_rows}

## Model
{card['backbone']} ({card['weights_source'].split(' ')[0]}), input {card['input_size']}x{card['input_size']} RGB in [0, 255]
(normalisation inside the graph), features: global-average-pooled {', '.join(extra['pool_layers'] + ['final output'])},
{card['input_dtype']} tflite ({extra['quantize']}), temperature
{card['temperature']:.3f} and {'flip test-time augmentation' if extra['chosen']['tta'] == 'flip' else 'no test-time augmentation'} inside the graph.
Chosen on {extra['selection']}: **{extra['chosen']['stage']}**, {extra['chosen']['tta']}.

### Stage 1: head search on cached frozen features (calibrated, scored on the data named above)
| head | NLL | accuracy | epochs |
|---|---|---|---|
{search_rows}

### Scores of the candidates (same data)
| stage | views | accuracy | NLL raw | NLL calibrated | T | ECE raw | ECE calibrated |
|---|---|---|---|---|---|---|---|
{val_rows}

{_stage2_text(cfg, extra)}
{_cv_estimate_text(extra['cv_estimate'])}

## Test split (held out, LiteRT)
{metrics_table(test_metrics) if test_metrics else 'The test split is empty.'}

Plots: `confusion_matrix.png`, `roc.png`, `reliability.png`, `training_curves.png`.

## Export
Parity LiteRT vs Keras on the test split: {extra['parity']['same_label']}/{extra['parity']['n']} same label,
max probability difference {extra['parity']['max_abs_prob_diff']:.2e}. `model.tflite` sha256 `{card['tflite_sha256']}`.

Wall time {extra['train_wall_seconds'] / 60:.1f} min, peak memory {extra['peak_memory_mb']:.0f} MB (this process);
seconds per stage: {', '.join(f'{k} {v:.0f}' for k, v in extra['stage_seconds'].items())}.
"""
