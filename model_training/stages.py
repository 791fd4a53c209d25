"""Stage 1 (head search on cached frozen features) then stage 2 (fine-tuned members) for one
train/validation pair, and the validation scores of every candidate. `train` runs it once on the
fixed split; `cv` runs it once per fold."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import keras
import numpy as np
from tqdm.auto import tqdm

from classifier.preprocessing import PREPROCESSING_ID

from . import train as steps
from .backbones import build_backbone, resolve_pool_layers
from .calibrate import served_scores
from .config import TrainConfig
from .features import cache_key, cached_views
from .oof import summarize
from .split import assign_folds

VIEWS = ("single", "flip")


@dataclasses.dataclass(kw_only=True)
class Fitted:
    search: list[dict]  # every head of the stage-1 grid with its validation scores
    best_head: dict  # the chosen row of `search`
    head_history: dict
    stage1: keras.Model  # backbone (frozen) + the chosen head, logits out
    members: list[keras.Model]  # fine-tuned logits models (empty when epochs == 0)
    histories: list[dict]
    n_trainable: int
    val_logits: dict[str, list[list[np.ndarray]]]  # stage1 / members -> per model, per view (image, mirror)
    seconds: dict[str, float]  # wall time per stage


def candidate_logits(val_logits: dict[str, list[list[np.ndarray]]]) -> dict[str, dict[str, list[np.ndarray]]]:
    """Candidate -> view mode -> the logits the served graph would average."""
    out = {"stage1": val_logits["stage1"][0]}
    members = val_logits["members"]
    if members:
        out["stage2"] = members[0]
    if len(members) > 1:
        out["stage2_ensemble"] = [v for m in members for v in m]
    # Every entry alternates (image, mirror) per model: "single" keeps the first view of each model.
    return {c: {"single": logits[0::2], "flip": logits} for c, logits in out.items()}


def score_candidates(val_logits, y: np.ndarray) -> dict[str, dict[str, dict]]:
    return {c: {mode: served_scores(v, y) for mode, v in modes.items()}
            for c, modes in candidate_logits(val_logits).items()}


def allowed_views(tta_flip: str) -> tuple[str, ...]:
    """The view modes `--tta-flip` lets the choice pick from."""
    return {"auto": VIEWS, "on": ("flip",), "off": ("single",)}[tta_flip]


def choose(candidates: dict, tta_flip: str) -> tuple[str, str]:
    """(stage, view mode) with the lowest calibrated validation log-loss."""
    return min(((s, t) for s in candidates for t in allowed_views(tta_flip)),
               key=lambda st: candidates[st[0]][st[1]]["nll"])


def _two_views(model: keras.Model, x: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(model.predict(v, batch_size=32, verbose=0)) for v in (x, x[:, :, ::-1, :])]


def _frozen_views(cfg: TrainConfig, parts, *, pool_layers: tuple[str, ...], fingerprint: str, weights_id: str,
                  cache_dir: Path, desc: str):
    """(backbone, normaliser, {name: (2 views, N, D) frozen features}) for parts = [(name, x, keys)]."""
    backbone, normaliser = build_backbone(cfg.backbone, input_size=cfg.input_size, weights=cfg.weights,
                                          pool_layers=pool_layers)
    backbone.trainable = False
    feat_in = keras.Input((cfg.input_size, cfg.input_size, 3))
    feature_model = keras.Model(feat_in, backbone(normaliser(feat_in), training=False))
    views = {}
    for name, x, keys in parts:
        key = cache_key(split=name, files=keys, fp=fingerprint, backbone=cfg.backbone,
                        weights=weights_id, size=cfg.input_size, pre=PREPROCESSING_ID, pool=pool_layers)
        views[name] = cached_views(feature_model, x, cache=cache_dir / f"features-{key}.npz", desc=f"{desc}{name}")
    return backbone, normaliser, views


def fit_stages(cfg: TrainConfig, *, n_classes: int, x_train, y_train, x_val, y_val, train_keys: list[str],
               val_keys: list[str], fingerprint: str, weights_id: str, cache_dir: Path, desc: str = "") -> Fitted:
    seconds: dict[str, float] = {}
    tick = time.time()
    pool_layers = resolve_pool_layers(cfg.backbone, cfg.pool_layers)
    backbone, normaliser, views = _frozen_views(
        cfg, [("train", x_train, train_keys), ("val", x_val, val_keys)], pool_layers=pool_layers,
        fingerprint=fingerprint, weights_id=weights_id, cache_dir=cache_dir, desc=desc)
    seconds["features"] = time.time() - tick

    tick = time.time()
    (best_row, head, head_history), search = steps.head_search(
        views["train"], y_train, views["val"], y_val, n_classes=n_classes,
        heads=steps.head_grid(c=cfg.head_c, units=cfg.head_units, dropout=cfg.head_dropout, lr=cfg.head_lr),
        epochs=cfg.head_epochs, seed=cfg.seed,
    )
    stage1 = steps.build_classifier(backbone, normaliser, head, cfg.input_size)
    val_logits = {"stage1": [[np.asarray(head.predict(v, verbose=0)) for v in views["val"]]], "members": []}
    seconds["head_search"] = time.time() - tick

    tick = time.time()
    head_weights = head.get_weights()
    members, histories, n_trainable = [], [], 0
    for k in range(cfg.ensemble if cfg.epochs > 0 else 0):
        # every member: a fresh copy of the backbone and of the chosen stage-1 head, its own seed
        member_backbone, member_norm = build_backbone(cfg.backbone, input_size=cfg.input_size, weights=cfg.weights,
                                                      pool_layers=pool_layers)
        member_head = keras.models.clone_model(head)
        member_head.set_weights(head_weights)
        member = steps.build_classifier(member_backbone, member_norm, member_head, cfg.input_size,
                                        name=f"classifier_logits_{k + 1}")
        history, n_trainable = steps.fine_tune(
            member, member_backbone, x_train, y_train, x_val, y_val, n_classes=n_classes,
            epochs=cfg.epochs, unfreeze=cfg.unfreeze, lr=cfg.fine_tune_lr, batch_size=cfg.batch_size,
            patience=cfg.patience, label_smoothing=cfg.label_smoothing, seed=cfg.seed + 1000 * k,
            desc=f"{desc}fine-tune {k + 1}/{cfg.ensemble}",
        )
        histories.append(history)
        members.append(member)
        val_logits["members"].append(_two_views(member, x_val))
    seconds["fine_tune"] = time.time() - tick
    return Fitted(search=search, best_head=best_row, head_history=head_history, stage1=stage1, members=members,
                  histories=histories, n_trainable=n_trainable, val_logits=val_logits,
                  seconds={k: round(v, 1) for k, v in seconds.items()})


@dataclasses.dataclass(kw_only=True)
class CvSelected:
    search: list[dict]  # every head with its out-of-fold scores (val_nll / val_accuracy: the chosen view mode)
    best_head: dict
    stage1: keras.Model  # backbone (frozen) + the chosen head refit on all of train + val
    tta: str
    candidates: dict  # {"stage1": {"single": scores, "flip": scores}} out of fold, for the chosen head
    oof_metrics: dict  # metrics.json schema, out of fold, temperature cross-fitted on the other folds
    n: int  # images in train + val
    seconds: dict[str, float]


def fit_stage1_cv(cfg: TrainConfig, *, n_classes: int, labels: list[str], x_train, y_train, x_val, y_val,
                  train_keys: list[str], val_keys: list[str], groups: list[int], fingerprint: str, weights_id: str,
                  cache_dir: Path) -> CvSelected:
    """Stage 1 chosen by K-fold cross-validation over train + val, then refit on all of them.

    Heads on frozen features cost seconds, so every head of the grid is scored out of fold on the
    pooled development images (duplicate groups never cut, see split.assign_folds): the choice
    and the temperature rest on ~490 predictions instead of the ~90 of the val split, and the
    served head learns from train and val together. The test split stays untouched.
    """
    seconds: dict[str, float] = {}
    tick = time.time()
    backbone, normaliser, parts = _frozen_views(
        cfg, [("train", x_train, train_keys), ("val", x_val, val_keys)],
        pool_layers=resolve_pool_layers(cfg.backbone, cfg.pool_layers), fingerprint=fingerprint,
        weights_id=weights_id, cache_dir=cache_dir, desc="")
    views = np.concatenate([parts["train"], parts["val"]], axis=1)
    y = np.concatenate([y_train, y_val])
    seconds["features"] = time.time() - tick

    tick = time.time()
    fold_of = np.array(assign_folds(groups, y.tolist(), k=cfg.cv_folds, seed=cfg.seed))
    heads = steps.head_grid(c=cfg.head_c, units=cfg.head_units, dropout=cfg.head_dropout, lr=cfg.head_lr)
    allowed = allowed_views(cfg.tta_flip)
    rows, best = [], None
    for params in tqdm(heads, desc=f"head search ({cfg.cv_folds}-fold CV)", unit="head"):
        oof = np.zeros((2, len(y), n_classes), np.float32)
        epochs_run = []
        for f in np.unique(fold_of):  # a folder with fewer groups than folds leaves some folds empty
            tr, va = fold_of != f, fold_of == f
            head, history = steps.train_head(views[:, tr], y[tr], views[:, va], y[va], n_classes=n_classes,
                                             params=params, epochs=cfg.head_epochs, seed=cfg.seed)
            oof[:, va] = np.stack([np.asarray(head.predict(v, verbose=0)) for v in views[:, va]])
            epochs_run.append(len(history.get("loss", [])))
        oof_views = {"single": [oof[0]], "flip": list(oof)}
        scores = {m: served_scores(v, y) for m, v in oof_views.items()}
        mode = min(allowed, key=lambda m: scores[m]["nll"])
        row = dataclasses.asdict(params) | {"head": params.describe(), "tta": mode, "val_nll": scores[mode]["nll"],
                                            "val_accuracy": scores[mode]["accuracy"], "epochs_run": epochs_run}
        rows.append(row)
        if best is None or row["val_nll"] < best[0]["val_nll"]:
            best = (row, params, scores, oof_views[mode])
    row, params, scores, chosen_oof = best
    oof_metrics = summarize({"chosen": chosen_oof}, y, fold_of, labels)["chosen"]
    # refit on every development image; an MLP runs the median epoch count its folds early-stopped at
    refit_epochs = max(1, int(np.median(row["epochs_run"]))) if params.kind == "mlp" else 0
    head, _ = steps.train_head(views, y, None, None, n_classes=n_classes, params=params, epochs=refit_epochs,
                               seed=cfg.seed)
    seconds["head_search"] = time.time() - tick
    stage1 = steps.build_classifier(backbone, normaliser, head, cfg.input_size)
    return CvSelected(search=rows, best_head=row, stage1=stage1,
                      tta=row["tta"], candidates={"stage1": scores}, oof_metrics=oof_metrics, n=len(y),
                      seconds={k: round(v, 1) for k, v in seconds.items()})
