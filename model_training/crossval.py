"""`cv`: group-aware k-fold cross-validation of a training config on train + val, never test.

The fixed validation split is small (about 90 images on BUSI), so choosing settings on it alone
is noisy. `cv` pools train and val, deals the duplicate groups into k stratified folds and runs
stage 1 + stage 2 once per fold; every pooled image is then predicted by a model that never saw
it or its near-duplicates. The test split is not loaded into any model.

Out-of-fold (OOF) metrics per candidate (stage 1, one fine-tuned member, the ensemble; without or
with flip TTA) use a temperature cross-fitted on the other folds, so ECE is not fitted on the
images it is measured on. Each fold runs `train`'s validation-split flow with its held-out part
as the validation split: the stage-1 head search and stage-2 early stopping both look at it, so
the numbers carry a small selection optimism (measured on BUSI: stage 1 scored 0.822 accuracy
here against 0.801 when one head is chosen for all folds, as `train --epochs 0` does). Compare
configs with one another, not with the test split.
"""

from __future__ import annotations

import gc
import json
import time

import numpy as np

from .config import TrainConfig
from .oof import summarize
from .prepare import prepare
from .report import console_summary
from .split import assign_folds

SUMMARY_KEYS = ("accuracy", "macro_f1", "auc_ovr_macro", "malignant_sensitivity", "ece", "nll")


def oof_candidates(stage1: np.ndarray, members: np.ndarray) -> dict[str, list[np.ndarray]]:
    """stage1: (2 views, N, C); members: (M, 2 views, N, C) -> candidate/view name -> view logits."""
    out = {"stage1/single": [stage1[0]], "stage1/flip": list(stage1)}
    if len(members):
        out |= {"stage2/single": [members[0, 0]], "stage2/flip": list(members[0])}
    if len(members) > 1:
        out |= {"stage2_ensemble/single": list(members[:, 0]),
                "stage2_ensemble/flip": [v for m in members for v in m]}
    return out


def cross_validate(cfg: TrainConfig, *, folds: int) -> dict:
    import keras

    from .run_info import seed_everything, weights_id
    from .stages import fit_stages

    start = time.time()
    seed_everything(cfg.seed)
    out = cfg.report
    out.mkdir(parents=True, exist_ok=True)
    data = prepare(cfg)  # audit.json and split.json land in the cv folder, beside cv.json
    x = np.concatenate([data.x["train"], data.x["val"]])
    y = np.concatenate([data.y["train"], data.y["val"]])
    keys = data.keys("train") + data.keys("val")
    pool = data.idx["train"] + data.idx["val"]
    fold_of = np.array(assign_folds([data.group_of[i] for i in pool], [data.samples[i].label for i in pool],
                                    k=folds, seed=cfg.seed))
    n_classes = len(data.labels)
    weights = weights_id(cfg.weights)  # sha256 of the weights file: once, not per fold
    stage1 = np.zeros((2, len(y), n_classes), np.float32)
    members = np.zeros((cfg.ensemble if cfg.epochs > 0 else 0, 2, len(y), n_classes), np.float32)
    fold_rows = []
    for f in range(folds):
        tr, va = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        fitted = fit_stages(cfg, n_classes=n_classes, x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va],
                            train_keys=[keys[i] for i in tr], val_keys=[keys[i] for i in va],
                            fingerprint=data.fingerprint, weights_id=weights,
                            cache_dir=cfg.work, desc=f"fold {f + 1}/{folds} ")
        stage1[:, va] = np.stack(fitted.val_logits["stage1"][0])
        for k, views in enumerate(fitted.val_logits["members"]):
            members[k][:, va] = np.stack(views)  # members[k, :, va] would move the fold axis first
        fold_rows.append({"fold": f, "train": int(len(tr)), "held_out": int(len(va)),
                          "head": fitted.best_head["head"],
                          "epochs_run": [len(h["loss"]) for h in fitted.histories], "seconds": fitted.seconds})
        del fitted
        keras.backend.clear_session()
        gc.collect()
    candidates = summarize(oof_candidates(stage1, members), y, fold_of, data.labels)
    result = {"config": cfg.to_json(), "folds": folds, "n": int(len(y)), "labels": data.labels,
              "test_split_used": False, "fold_rows": fold_rows, "candidates": candidates,
              "wall_seconds": round(time.time() - start, 1)}
    (out / "cv.json").write_text(json.dumps(result, indent=1) + "\n")
    np.savez_compressed(out / "oof_logits.npz", keys=np.array(keys), y=y, fold_of=fold_of, stage1=stage1,
                        members=members)
    (out / "cv.md").write_text(cv_markdown(result))
    print(console_summary([(name, "  ".join(f"{k} {_fmt(m.get(k))}" for k in SUMMARY_KEYS))
                           for name, m in candidates.items()]
                          + [("images (train + val)", str(len(y))), ("wall time", f"{result['wall_seconds'] / 60:.1f} min")]))
    return result


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def cv_markdown(result: dict) -> str:
    cfg = result["config"]
    rows = "\n".join(f"| {name} | " + " | ".join(_fmt(m.get(k)) for k in SUMMARY_KEYS) + " |"
                     for name, m in result["candidates"].items())
    return f"""# Cross-validation: {result['folds']} group-aware folds of train + val ({result['n']} images)

Research use only; not a medical device. Test split not used. Backbone {cfg['backbone']}, input
{cfg['input_size']}, unfreeze {cfg['unfreeze']}, lr {cfg['fine_tune_lr']}, label smoothing {cfg['label_smoothing']}, epochs {cfg['epochs']},
ensemble {cfg['ensemble']}, seed {cfg['seed']}. Temperatures cross-fitted on the other folds.

| candidate | {' | '.join(SUMMARY_KEYS)} |
|---|{'---|' * len(SUMMARY_KEYS)}
{rows}

Wall time {result['wall_seconds'] / 60:.1f} min.
"""
