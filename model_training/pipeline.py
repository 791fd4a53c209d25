"""`train`: data -> audit -> split -> cached features + head search -> fine-tune -> calibrate
-> export -> LiteRT parity + test evaluation -> model.json and the report."""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from classifier.engine import Engine
from classifier.model_card import sha256_file
from classifier.preprocessing import PREPROCESSING_ID

from . import audit as audit_mod
from . import plots
from .calibrate import ece, fit_temperature, nll, probs_from_views
from .config import TrainConfig
from .data import decode_all, discover, fingerprint, to_arrays
from .errors import DataFolderError
from .evaluate import write_outputs
from .report import console_summary, metrics_table


def peak_memory_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _weights_id(weights: str) -> str:
    p = Path(weights)
    return f"{p.name} sha256:{sha256_file(p)}" if p.is_file() else weights


def _val_score(view_logits, y) -> dict:
    t = fit_temperature(view_logits, y)
    raw, cal = probs_from_views(view_logits, 1.0), probs_from_views(view_logits, t)
    return {"temperature": t, "nll_raw": nll(raw, y), "nll": nll(cal, y), "ece_raw": ece(raw, y),
            "ece": ece(cal, y), "accuracy": float((cal.argmax(1) == y).mean())}


def train(cfg: TrainConfig) -> dict:
    start = time.time()
    import keras

    from . import train as stages
    from .backbones import build_backbone
    from .export import build_served_model, engine_probs, parity, to_tflite, write_model
    from .features import cache_key, cached_views
    from .split import split_counts, split_groups

    keras.utils.set_random_seed(cfg.seed)
    try:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    except Exception:  # older TF or already-initialised runtime: seeds still apply
        pass
    cfg.report.mkdir(parents=True, exist_ok=True)
    cfg.work.mkdir(parents=True, exist_ok=True)

    # 1. data, audit, split ---------------------------------------------------------------
    all_samples, labels = discover(cfg.data)
    samples, images = decode_all(all_samples, skip_bad=cfg.skip_bad)
    fp = fingerprint(samples)
    dup, audit = audit_mod.run(samples, images, threshold=cfg.near_dup_threshold, fingerprint=fp,
                               bad_skipped=len(all_samples) - len(samples))
    audit_mod.write_json(audit, cfg.report / "audit.json")
    print(audit_mod.summary_text(audit))
    sample_labels = [s.label for s in samples]
    conflicted = {i for g in dup.conflicting_groups(sample_labels) for i in g}
    keep = [i for i in range(len(samples)) if cfg.keep_conflicts or i not in conflicted]
    split_all = split_groups([dup.group_of[i] for i in keep], [sample_labels[i] for i in keep],
                             val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed)
    split_of = dict(zip(keep, split_all))
    (cfg.report / "split.json").write_text(json.dumps({
        "seed": cfg.seed, "near_duplicate_threshold": cfg.near_dup_threshold,
        "conflicting_groups_left_out": not cfg.keep_conflicts,
        "files": {samples[i].key: {"label": sample_labels[i], "group": dup.group_of[i],
                                   "split": split_of.get(i, "excluded_conflict")} for i in range(len(samples))},
    }, indent=1) + "\n")
    counts = split_counts(split_all, [sample_labels[i] for i in keep])
    counts["excluded_conflicting"] = len(samples) - len(keep)
    idx = {s: [i for i in keep if split_of[i] == s] for s in ("train", "val", "test")}
    for name in ("train", "val"):
        if not idx[name]:
            raise DataFolderError(f"the {name} split is empty: the folder has too few images or duplicate groups")
    y = {s: np.array([labels.index(sample_labels[i]) for i in idx[s]], dtype=np.int64) for s in idx}
    x = {s: to_arrays([images[i] for i in idx[s]], cfg.input_size) for s in idx}
    del images
    n_classes = len(labels)

    # 2. stage 1: cached frozen features, head search on validation ----------------------
    backbone, normaliser = build_backbone(cfg.backbone, input_size=cfg.input_size, weights=cfg.weights)
    backbone.trainable = False
    feat_in = keras.Input((cfg.input_size, cfg.input_size, 3))
    feature_model = keras.Model(feat_in, backbone(normaliser(feat_in), training=False))
    weights_id = _weights_id(cfg.weights)
    views = {}
    for s in ("train", "val"):
        key = cache_key(split=s, files=[samples[i].key for i in idx[s]], fp=fp, backbone=cfg.backbone,
                        weights=weights_id, size=cfg.input_size, pre=PREPROCESSING_ID)
        views[s] = cached_views(feature_model, x[s], cache=cfg.work / f"features-{key}.npz", desc=s)
    (best_row, head, head_history), search = stages.head_search(
        views["train"], y["train"], views["val"], y["val"], n_classes=n_classes,
        grid=(cfg.head_units, cfg.head_dropout, cfg.head_lr), epochs=cfg.head_epochs, seed=cfg.seed,
    )
    logits_model = stages.build_classifier(backbone, normaliser, head, cfg.input_size)
    stage1_val = [np.asarray(head.predict(v, verbose=0)) for v in views["val"]]
    candidates = {"stage1": {"single": _val_score(stage1_val[:1], y["val"]), "flip": _val_score(stage1_val, y["val"])}}

    # 3. stage 2: fine-tune with augmentation (optionally several seeds); kept only if validation agrees
    ft_histories, n_trainable = [], 0
    stage1_weights = logits_model.get_weights()
    head_stage1 = head.get_weights()
    members, member_val = [], []
    for k in range(cfg.ensemble if cfg.epochs > 0 else 0):
        if k == 0:
            member_backbone, member = backbone, logits_model
        else:  # a fresh copy of the backbone and of the stage-1 head, fine-tuned with another seed
            member_backbone, member_norm = build_backbone(cfg.backbone, input_size=cfg.input_size, weights=cfg.weights)
            member_head = keras.models.clone_model(head)
            member_head.set_weights(head_stage1)
            member = stages.build_classifier(member_backbone, member_norm, member_head, cfg.input_size,
                                             name=f"classifier_logits_{k + 1}")
        history, n_trainable = stages.fine_tune(
            member, member_backbone, x["train"], y["train"], x["val"], y["val"], n_classes=n_classes,
            epochs=cfg.epochs, unfreeze=cfg.unfreeze, lr=cfg.fine_tune_lr, batch_size=cfg.batch_size,
            patience=cfg.patience, seed=cfg.seed + 1000 * k, desc=f"fine-tune {k + 1}/{cfg.ensemble}",
        )
        ft_histories.append(history)
        members.append(member)
        member_val.append([np.asarray(member.predict(v, batch_size=32, verbose=0))
                           for v in (x["val"], x["val"][:, :, ::-1, :])])
    if members:
        candidates["stage2"] = {"single": _val_score(member_val[0][:1], y["val"]),
                                "flip": _val_score(member_val[0], y["val"])}
    if len(members) > 1:
        candidates["stage2_ensemble"] = {"single": _val_score([v[0] for v in member_val], y["val"]),
                                         "flip": _val_score([l for v in member_val for l in v], y["val"])}
    # choose stage, ensemble and flip TTA by calibrated validation log-loss
    allowed_tta = {"auto": ("single", "flip"), "on": ("flip",), "off": ("single",)}[cfg.tta_flip]
    stage, tta = min(((s, t) for s in candidates for t in allowed_tta), key=lambda st: candidates[st[0]][st[1]]["nll"])
    if stage == "stage1":
        logits_model.set_weights(stage1_weights)
        served_members = [logits_model]
    else:
        served_members = members if stage == "stage2_ensemble" else members[:1]
    chosen = candidates[stage][tta]
    temperature = chosen["temperature"]
    if not cfg.evaluate_test:
        print(json.dumps({"chosen": [stage, tta], "validation": candidates, "head": best_row}, indent=1))
        print(f"--no-test: stopped after the validation choices ({(time.time() - start) / 60:.1f} min); nothing exported")
        return {"chosen": (stage, tta), "validation": candidates}

    # 4. export, parity through LiteRT, test evaluation -----------------------------------
    served = build_served_model(served_members, input_size=cfg.input_size, temperature=temperature, tta_flip=tta == "flip")
    served.save(cfg.work / "model.keras")
    quantize = cfg.quantize
    representative = x["train"][np.random.default_rng(cfg.seed).permutation(len(x["train"]))[:100]]
    tflite = to_tflite(served, quantize=quantize, representative=representative)
    staging = cfg.work / "export"
    shutil.rmtree(staging, ignore_errors=True)
    common = dict(name=cfg.name, labels=labels, input_size=cfg.input_size, temperature=temperature,
                  backbone=cfg.backbone, weights_source=weights_id, dataset_fingerprint=fp, split_counts=counts)
    write_model(staging, tflite, **common)
    int8_check = None
    if quantize == "int8":
        # keep int8 only if validation accuracy holds against the float model
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
    plots.training_curves({"stage 1: head (best of search)": head_history}
                          | {f"stage 2: fine-tune {k + 1}": h for k, h in enumerate(ft_histories)},
                          cfg.report / "training_curves.png")
    wall = time.time() - start
    peak = peak_memory_mb()
    card_metrics = dict(test_metrics)
    extra = {
        "config": cfg.to_json(), "chosen": {"stage": stage, "tta": tta}, "validation": candidates,
        "head_search": search, "head": {k: best_row[k] for k in ("units", "dropout", "lr")},
        "fine_tune": {"members": len(ft_histories), "served_members": len(served_members),
                      "epochs_run": [len(h["loss"]) for h in ft_histories], "trainable_layers": n_trainable,
                      "best_val_loss": [min(h["val_loss"]) for h in ft_histories]},
        "quantize": quantize, "int8_check": int8_check, "parity": parity_result,
        "train_wall_seconds": round(wall, 1), "peak_memory_mb": round(peak, 1),
    }
    write_model(staging, tflite if quantize == cfg.quantize else (staging / "model.tflite").read_bytes(),
                test_metrics=card_metrics, extra=extra, **common)
    cfg.out.mkdir(parents=True, exist_ok=True)
    for name in ("model.tflite", "model.json"):
        # Copy beside, then rename: a running local API has model.tflite memory-mapped, and
        # rewriting that file in place kills it with SIGBUS; a rename leaves its old inode intact.
        tmp = cfg.out / f".{name}.tmp"
        shutil.copy2(staging / name, tmp)
        os.replace(tmp, cfg.out / name)
    card = json.loads((cfg.out / "model.json").read_text())
    (cfg.report / "report.md").write_text(train_markdown(cfg, card, audit, counts, test_metrics, search, extra))
    rows = [
        ("model", f"{cfg.out / 'model.tflite'} ({(cfg.out / 'model.tflite').stat().st_size / 1e6:.1f} MB, {card['input_dtype']} in)"),
        ("version", card["version"]),
        ("split train/val/test", f"{counts['train']['total']}/{counts['val']['total']}/{counts['test']['total']}"
                                 f" (+{counts['excluded_conflicting']} conflicting left out)"),
        ("chosen", f"{stage} ({len(served_members)} model(s)), {'flip TTA' if tta == 'flip' else 'no TTA'}, T={temperature:.3f}"),
        ("val accuracy / NLL", f"{chosen['accuracy']:.3f} / {chosen['nll']:.3f}"),
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


def train_markdown(cfg, card, audit, counts, test_metrics, search, extra) -> str:
    v = extra["validation"]
    search_rows = "\n".join(
        f"| {r['units']} | {r['dropout']} | {r['lr']:g} | {r['val_nll']:.3f} | {r['val_accuracy']:.3f} | {r['epochs_run']} |"
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
exported `model.tflite` run by LiteRT through the serving preprocessing; the test split was used
once, after every choice had been made on validation.

## Data and split
- {audit['images']} images from `{cfg.data}` ({', '.join(f'{k} {n}' for k, n in audit['per_class'].items())}),
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
(normalisation inside the graph), {card['input_dtype']} tflite ({extra['quantize']}), temperature
{card['temperature']:.3f} and {'flip test-time augmentation' if extra['chosen']['tta'] == 'flip' else 'no test-time augmentation'} inside the graph.
Chosen on validation: **{extra['chosen']['stage']}**, {extra['chosen']['tta']}.

### Stage 1: head search on cached frozen features (validation, calibrated)
| units | dropout | lr | val NLL | val accuracy | epochs |
|---|---|---|---|---|---|
{search_rows}

### Validation scores of the candidates
| stage | views | accuracy | NLL raw | NLL calibrated | T | ECE raw | ECE calibrated |
|---|---|---|---|---|---|---|---|
{val_rows}

Stage 2: {extra['fine_tune']['members']} fine-tuned model(s) (seeds seed + 1000 k), {extra['fine_tune']['served_members']} served;
epochs run {extra['fine_tune']['epochs_run']} (early stopping on validation loss), {extra['fine_tune']['trainable_layers']}
trainable layers (BatchNorm frozen), lr {cfg.fine_tune_lr:g}, augmentation: flip, rotation, zoom, brightness, contrast.
Training curves: `training_curves.png`.

## Test split (held out, LiteRT)
{metrics_table(test_metrics) if test_metrics else 'The test split is empty.'}

Plots: `confusion_matrix.png`, `roc.png`, `reliability.png`, `training_curves.png`.

## Export
Parity LiteRT vs Keras on the test split: {extra['parity']['same_label']}/{extra['parity']['n']} same label,
max probability difference {extra['parity']['max_abs_prob_diff']:.2e}. `model.tflite` sha256 `{card['tflite_sha256']}`.

Wall time {extra['train_wall_seconds'] / 60:.1f} min, peak memory {extra['peak_memory_mb']:.0f} MB (this process).
"""
