"""Fit the lesion-aware model on one or more sites: balanced site sampling, mask-supervised
segmentation, lesion and malignancy losses, a head warm-up and then fine-tuning of the backbone top."""

from __future__ import annotations

import dataclasses
import math
import time

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from .augment import augment_batch, overlay_bank
from .lesion_model import build_lesion_model, set_trainable_backbone
from .sites import CELL, Site, grid_for

#: Weight of positive cells in the segmentation loss: lesions cover ~5-10 % of a frame.
SEG_POS_WEIGHT = 4.0
#: Normal frames (one site has them at all) count this much more in the lesion loss.
NORMAL_WEIGHT = 3.0
#: Weight of normal frames in the malignancy loss (as "not malignant"). 0: tried at 0.5, it lowered
#: the malignant threshold and specificity at unseen sites (README, "The bundled model").
NORMAL_MALIGNANCY_WEIGHT = 0.0
#: Weight of a hard negative (a lesion-free strip cut from a lesion frame, sites.lesion_free_crop) in the
#: lesion loss: it teaches "no lesion" on every site's scanners, not only on the one site with normals.
NEGATIVE_WEIGHT = 1.0
#: Share of each site's draws that are hard negatives (when the site has any); the epoch grows to match,
#: so the real frames are seen as often as without them.
NEGATIVE_SHARE = 0.25


@dataclasses.dataclass(frozen=True, kw_only=True)
class FitConfig:
    input_size: int = 224
    weights: str = "imagenet"
    backbone: str = "mobilenet_v2"
    epochs: int = 8  # fine-tuning epochs after one head warm-up epoch (shared/NOTES.md: 4-10 helped on a new site)
    unfreeze: float = 0.3  # top fraction of backbone layers fine-tuned; BatchNorm stays frozen
    lr: float = 1e-4  # then x0.3 at 60 % and x0.1 at 85 % of the steps
    warmup_lr: float = 1e-3
    batch_size: int = 16
    dropout: float = 0.3
    seed: int = 42
    hard_negatives: bool = True  # add each site's lesion-free strips as "no lesion" frames


@dataclasses.dataclass
class Fitted:
    model: keras.Model
    history: dict[str, list[float]]
    seconds: float


def _targets(labels: list[str]) -> dict[str, np.ndarray]:
    labels = np.array(labels)
    negative = labels == "negative"
    labels = np.where(negative, "normal", labels)
    lesion = (labels != "normal").astype(np.float32)
    malig = (labels == "malignant").astype(np.float32)
    w_lesion = np.where(lesion > 0, 1.0, np.where(negative, NEGATIVE_WEIGHT, NORMAL_WEIGHT)).astype(np.float32)
    # Class-balanced within the site, over its lesions (normal frames: NORMAL_MALIGNANCY_WEIGHT).
    n_mal, n_ben = malig.sum(), (lesion - malig).sum()
    w_malig = np.zeros(len(labels), dtype=np.float32)
    if n_mal and n_ben:
        w_malig[labels == "malignant"] = (n_mal + n_ben) / (2 * n_mal)
        w_malig[labels == "benign"] = (n_mal + n_ben) / (2 * n_ben)
    else:
        w_malig[lesion > 0] = 1.0
    w_malig[labels == "normal"] = NORMAL_MALIGNANCY_WEIGHT
    return {"lesion": lesion, "malig": malig, "w_lesion": w_lesion, "w_malig": w_malig}


def make_dataset(sites: list[Site], *, batch_size: int, seed: int, hard_negatives: bool = False) -> tf.data.Dataset:
    """Endless augmented batches, each site drawn equally often (a large site cannot drown a small one)."""
    side = int(sites[0].x.shape[1])
    bank = tf.constant(overlay_bank(side, seed=seed))
    per_site = []
    for k, site in enumerate(sites):
        ds = _stream(site.x, site.mask, list(site.labels), seed + k)
        neg_x, _ = site.negatives()
        if hard_negatives and len(neg_x):
            negatives = _stream(neg_x, np.zeros_like(neg_x), ["negative"] * len(neg_x), seed + 1000 + k)
            ds = tf.data.Dataset.sample_from_datasets([ds, negatives], weights=[1 - NEGATIVE_SHARE, NEGATIVE_SHARE],
                                                      seed=seed + k)
        per_site.append(ds)
    ds = per_site[0] if len(per_site) == 1 else tf.data.Dataset.sample_from_datasets(
        per_site, weights=[1.0 / len(per_site)] * len(per_site), seed=seed)
    rng = tf.random.Generator.from_seed(seed)
    cell, grid = CELL, grid_for(side)

    def to_training(x, mask, lesion, malig, w_lesion, w_malig):
        img, msk = augment_batch(x, mask, rng, bank)
        cells = tf.nn.avg_pool2d(msk[:, :cell * grid, :cell * grid], cell, cell, "VALID")
        y = {"seg": cells, "lesion": lesion[:, None], "malig": malig[:, None]}
        w = {"seg": tf.ones_like(lesion), "lesion": w_lesion, "malig": w_malig}
        return img, y, w

    return ds.batch(batch_size, drop_remainder=True).map(to_training).prefetch(2)


def _stream(x: np.ndarray, mask: np.ndarray, labels: list[str], seed: int) -> tf.data.Dataset:
    t = _targets(labels)
    ds = tf.data.Dataset.from_tensor_slices((x, mask, t["lesion"], t["malig"], t["w_lesion"], t["w_malig"]))
    return ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()


@keras.saving.register_keras_serializable(package="model_training")
def seg_loss(y_true, y_pred):
    """Per-image mean of cell-wise binary cross-entropy on logits, positive cells weighted up."""
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    log_p = keras.ops.log_sigmoid(y_pred)
    log_not_p = keras.ops.log_sigmoid(-y_pred)
    loss = -(SEG_POS_WEIGHT * y_true * log_p + (1.0 - y_true) * log_not_p)
    return keras.ops.mean(loss, axis=(1, 2, 3))


def _compile(model: keras.Model, lr) -> None:
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr),
                  loss={"seg": seg_loss, "lesion": bce, "malig": bce},
                  loss_weights={"seg": 1.0, "lesion": 0.5, "malig": 1.0})


class _Progress(keras.callbacks.Callback):
    """One tqdm bar per epoch with the running losses (Keras' own bar is off: it floods logs)."""

    def __init__(self, steps: int, label: str):
        super().__init__()
        self.steps, self.label, self.bar = steps, label, None

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = tqdm(total=self.steps, desc=f"{self.label} epoch {epoch + 1}", unit="batch", leave=False)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs:
            self.bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.3f}")

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()
        if logs:
            print(f"  {self.label} epoch {epoch + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(logs.items())
                                                                    if k.endswith("loss")), flush=True)


def fit(sites: list[Site], cfg: FitConfig, *, label: str = "fit") -> Fitted:
    """Warm up the heads on the frozen backbone for one epoch, then fine-tune the top of the backbone."""
    start = time.time()
    keras.utils.set_random_seed(cfg.seed)
    model, backbone = build_lesion_model(input_size=cfg.input_size, weights=cfg.weights, backbone=cfg.backbone,
                                         dropout=cfg.dropout)
    frames = sum(len(s) for s in sites)
    if cfg.hard_negatives and any(len(s.negatives()[0]) for s in sites):
        frames /= 1 - NEGATIVE_SHARE  # each real frame still seen about once per epoch
    steps = max(1, math.ceil(frames / cfg.batch_size))
    data = make_dataset(sites, batch_size=cfg.batch_size, seed=cfg.seed, hard_negatives=cfg.hard_negatives)
    history: dict[str, list[float]] = {}

    def run(epochs, initial=0):
        h = model.fit(data, epochs=initial + epochs, initial_epoch=initial, steps_per_epoch=steps, verbose=0,
                      shuffle=False,  # make_dataset shuffles, seeded (Keras would warn it ignores shuffle=True)
                      callbacks=[_Progress(steps, label)])
        for k, v in h.history.items():
            history.setdefault(k, []).extend(float(x) for x in v)

    set_trainable_backbone(backbone, 0.0)
    _compile(model, cfg.warmup_lr)
    run(1)
    if cfg.epochs > 0:
        set_trainable_backbone(backbone, cfg.unfreeze)
        total = steps * cfg.epochs
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
            [int(0.6 * total), int(0.85 * total)], [cfg.lr, cfg.lr * 0.3, cfg.lr * 0.1])
        _compile(model, schedule)  # recompile after changing trainable flags
        run(cfg.epochs, initial=1)
    return Fitted(model=model, history=history, seconds=round(time.time() - start, 1))


def as_input(x_grey: np.ndarray) -> np.ndarray:
    """(N, S, S) uint8 grey -> (N, S, S, 3) float32 in [0, 255], what the served graph takes."""
    return np.repeat(x_grey[..., None].astype(np.float32), 3, axis=-1)


def predict_logits(model: keras.Model, x_grey: np.ndarray, *, flip: bool, batch: int = 64) -> dict[str, np.ndarray]:
    """Raw outputs for (N, S, S) grey frames, one row per view (the image, and its mirror when flip):
    lesion (V, N) and malig (V, N) logits; heat (N, G, G) the mean sigmoid heatmap, mirrored back."""
    views = 2 if flip else 1
    lesion, malig, heat = [[] for _ in range(views)], [[] for _ in range(views)], []
    for i in range(0, len(x_grey), batch):
        x = as_input(x_grey[i:i + batch])
        maps = []
        for v in range(views):
            r = model(x[:, :, ::-1] if v else x, training=False)
            lesion[v].append(np.asarray(r["lesion"])[:, 0])
            malig[v].append(np.asarray(r["malig"])[:, 0])
            m = 1 / (1 + np.exp(-np.asarray(r["seg"])[..., 0]))
            maps.append(m[:, :, ::-1] if v else m)
        heat.append(np.mean(maps, axis=0))
    cat = lambda parts: np.stack([np.concatenate(p) for p in parts]) if len(x_grey) else np.zeros((views, 0))  # noqa: E731
    return {"lesion": cat(lesion), "malig": cat(malig),
            "heat": np.concatenate(heat) if heat else np.zeros((0, grid_for(x_grey.shape[1]), grid_for(x_grey.shape[1])))}
