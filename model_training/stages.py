"""Stage 1 (head search on cached frozen features) then stage 2 (fine-tuned members) for one
train/validation pair, and the validation scores of every candidate. `train` runs it once on the
fixed split; `cv` runs it once per fold."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import keras
import numpy as np

from classifier.preprocessing import PREPROCESSING_ID

from . import train as steps
from .backbones import build_backbone, resolve_pool_layers
from .calibrate import ece, fit_temperature, nll, probs_from_views
from .config import TrainConfig
from .features import cache_key, cached_views

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


def val_score(view_logits: list[np.ndarray], y: np.ndarray) -> dict:
    """Scores of the served output (mean of softmax(logits / T) over views), T fitted on these labels."""
    t = fit_temperature(view_logits, y)
    raw, cal = probs_from_views(view_logits, 1.0), probs_from_views(view_logits, t)
    return {"temperature": t, "nll_raw": nll(raw, y), "nll": nll(cal, y), "ece_raw": ece(raw, y),
            "ece": ece(cal, y), "accuracy": float((cal.argmax(1) == y).mean())}


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
    return {c: {mode: val_score(v, y) for mode, v in modes.items()} for c, modes in candidate_logits(val_logits).items()}


def choose(candidates: dict, tta_flip: str) -> tuple[str, str]:
    """(stage, view mode) with the lowest calibrated validation log-loss."""
    allowed = {"auto": VIEWS, "on": ("flip",), "off": ("single",)}[tta_flip]
    return min(((s, t) for s in candidates for t in allowed), key=lambda st: candidates[st[0]][st[1]]["nll"])


def _two_views(model: keras.Model, x: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(model.predict(v, batch_size=32, verbose=0)) for v in (x, x[:, :, ::-1, :])]


def fit_stages(cfg: TrainConfig, *, n_classes: int, x_train, y_train, x_val, y_val, train_keys: list[str],
               val_keys: list[str], fingerprint: str, weights_id: str, cache_dir: Path, desc: str = "") -> Fitted:
    seconds: dict[str, float] = {}
    tick = time.time()
    pool_layers = resolve_pool_layers(cfg.backbone, cfg.pool_layers)
    backbone, normaliser = build_backbone(cfg.backbone, input_size=cfg.input_size, weights=cfg.weights,
                                          pool_layers=pool_layers)
    backbone.trainable = False
    feat_in = keras.Input((cfg.input_size, cfg.input_size, 3))
    feature_model = keras.Model(feat_in, backbone(normaliser(feat_in), training=False))
    views = {}
    for name, x, keys in (("train", x_train, train_keys), ("val", x_val, val_keys)):
        key = cache_key(split=name, files=keys, fp=fingerprint, backbone=cfg.backbone,
                        weights=weights_id, size=cfg.input_size, pre=PREPROCESSING_ID, pool=pool_layers)
        views[name] = cached_views(feature_model, x, cache=cache_dir / f"features-{key}.npz", desc=f"{desc}{name}")
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
