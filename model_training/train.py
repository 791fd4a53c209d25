"""Stage 1 (head search on cached features) and stage 2 (fine-tuning with augmentation)."""

from __future__ import annotations

import dataclasses
import itertools

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from .backbones import FeatureStandardize, freeze_for_fine_tuning
from .calibrate import served_scores


@dataclasses.dataclass(frozen=True, kw_only=True)
class HeadParams:
    """One stage-1 head: `linear` is an L2 logistic regression solved exactly (lbfgs) on the
    standardised features, with inverse strength `c`; `mlp` is trained by Adam with dropout and
    early stopping (`units` 0 makes it linear too)."""

    kind: str = "mlp"
    units: int = 0
    dropout: float = 0.0
    lr: float = 0.0
    c: float = 0.0

    def describe(self) -> str:
        if self.kind == "linear":
            return f"logistic regression, C {self.c:g}"
        return f"{'linear' if not self.units else f'MLP {self.units} units'}, dropout {self.dropout:g}, lr {self.lr:g}"


def head_grid(*, c: tuple[float, ...], units: tuple[int, ...], dropout: tuple[float, ...],
              lr: tuple[float, ...]) -> list[HeadParams]:
    return [HeadParams(kind="linear", c=v) for v in c] + [
        HeadParams(kind="mlp", units=u, dropout=d, lr=r) for u, d, r in itertools.product(units, dropout, lr)]


class TqdmEpochs(keras.callbacks.Callback):
    """One progress bar over epochs, showing the latest losses."""

    def __init__(self, total: int, desc: str):
        super().__init__()
        self.bar = tqdm(total=total, desc=desc, unit="epoch")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if k in ("loss", "val_loss", "val_accuracy")})
        self.bar.update(1)

    def on_train_end(self, logs=None):
        self.bar.close()


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced weights n / (k * count); absent classes get weight 1 (never used)."""
    counts = np.bincount(y, minlength=n_classes)
    present = max(int((counts > 0).sum()), 1)
    return {c: (len(y) / (present * counts[c]) if counts[c] else 1.0) for c in range(n_classes)}


def build_head(n_classes: int, params: HeadParams, *, mean: np.ndarray, std: np.ndarray) -> keras.Sequential:
    layers = [keras.Input((len(mean),)), FeatureStandardize(mean, std, name="standardize"),
              keras.layers.Dropout(params.dropout)]
    if params.units:
        layers += [keras.layers.Dense(params.units, activation="relu"), keras.layers.Dropout(params.dropout)]
    layers.append(keras.layers.Dense(n_classes, name="logits"))
    return keras.Sequential(layers, name="head")


def _compile(model: keras.Model, lr: float, *, label_smoothing: float = 0.0) -> None:
    # Label smoothing needs one-hot targets (keras' sparse loss has no such option); see _targets.
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing) \
        if label_smoothing else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=loss, metrics=["accuracy"])


def _targets(y: np.ndarray, n_classes: int, label_smoothing: float) -> np.ndarray:
    return keras.utils.to_categorical(y, n_classes).astype("float32") if label_smoothing else y


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std = x.std(axis=0)
    return x.mean(axis=0), np.where(std > 0, std, 1.0)  # constant features carry nothing; leave them unscaled


def train_linear_head(train_views, y_train, *, n_classes: int, c: float) -> keras.Sequential:
    """Multinomial L2 logistic regression (class-balanced, as the MLP heads) solved by sklearn,
    copied into the same Keras head so that it exports like any other."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate(list(train_views))
    y = np.concatenate([y_train] * len(train_views))
    mean, std = _standardiser(x)
    kernel = np.zeros((x.shape[1], n_classes), np.float32)
    bias = np.full(n_classes, -30.0, np.float32)  # a class absent from training never wins
    head = build_head(n_classes, HeadParams(kind="mlp", units=0, dropout=0.0), mean=mean, std=std)
    classes = np.unique(y)
    if len(classes) < 2:  # e.g. a cross-validation fold of a tiny folder: predict the one class seen
        bias[classes] = 0.0
        head.get_layer("logits").set_weights([kernel, bias])
        return head
    weights = class_weights(y_train, n_classes)
    clf = LogisticRegression(C=c, class_weight={k: weights[k] for k in classes}, max_iter=5000)
    clf.fit((x - mean) / std, y)
    classes = clf.classes_.astype(int)
    if len(classes) == 2:  # sklearn keeps one logit z for the second class: softmax([-z/2, z/2]) = sigmoid(z)
        kernel[:, classes[0]], kernel[:, classes[1]] = -clf.coef_[0] / 2, clf.coef_[0] / 2
        bias[classes[0]], bias[classes[1]] = -clf.intercept_[0] / 2, clf.intercept_[0] / 2
    else:
        kernel[:, classes] = clf.coef_.T
        bias[classes] = clf.intercept_
    head.get_layer("logits").set_weights([kernel, bias])
    return head


def train_head(train_views, y_train, val_views, y_val, *, n_classes, params: HeadParams, epochs, seed):
    """Head on cached features; both mirror views of each train image are training samples.
    With `val_views` None (a refit on all development data) an MLP runs exactly `epochs` epochs."""
    keras.utils.set_random_seed(seed)
    if params.kind == "linear":
        return train_linear_head(train_views, y_train, n_classes=n_classes, c=params.c), {}
    x = np.concatenate(list(train_views))
    mean, std = _standardiser(x)
    head = build_head(n_classes, params, mean=mean, std=std)
    _compile(head, params.lr)
    y = np.concatenate([y_train] * len(train_views))
    history = head.fit(
        x, y,
        validation_data=None if val_views is None else (val_views[0], y_val),
        epochs=epochs,
        batch_size=64,
        class_weight=class_weights(y_train, n_classes),
        callbacks=[] if val_views is None else
        [keras.callbacks.EarlyStopping(monitor="val_loss", patience=15, restore_best_weights=True)],
        verbose=0,
        shuffle=True,
    )
    return head, history.history


def view_logits(model: keras.Model, views) -> list[np.ndarray]:
    return [np.asarray(model.predict(v, batch_size=64, verbose=0)) for v in views]


def score_on_val(val_logits: list[np.ndarray], y_val: np.ndarray) -> dict:
    """Validation scores of the served output (flip-averaged, temperature fitted)."""
    s = served_scores(val_logits, y_val)
    return {"val_nll": s["nll"], "val_accuracy": s["accuracy"], "temperature": s["temperature"]}


def head_search(train_views, y_train, val_views, y_val, *, n_classes, heads: list[HeadParams], epochs, seed):
    """Every head in `heads`; the best is the lowest calibrated validation log-loss."""
    results, best = [], None
    for params in tqdm(heads, desc="head search", unit="head"):
        head, history = train_head(
            train_views, y_train, val_views, y_val, n_classes=n_classes, params=params, epochs=epochs, seed=seed
        )
        score = score_on_val(view_logits(head, val_views[:1]), y_val)
        row = dataclasses.asdict(params) | {"head": params.describe()} | score | {"epochs_run": len(history.get("loss", []))}
        results.append(row)
        if best is None or score["val_nll"] < best[0]["val_nll"]:
            best = (row, head, history)
    return best, results


def build_classifier(backbone: keras.Model, normaliser, head: keras.Model, input_size: int, *,
                     name: str = "classifier_logits") -> keras.Model:
    """RGB [0, 255] -> logits. The backbone always runs in inference mode (frozen BatchNorm)."""
    inputs = keras.Input((input_size, input_size, 3), name="image")
    features = backbone(normaliser(inputs), training=False)
    return keras.Model(inputs, head(features), name=name)


def augmenter(seed: int) -> keras.Sequential:
    """Train-split augmentation: plausible probe and gain changes, nothing that alters the anatomy."""
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(0.03, fill_mode="reflect", seed=seed + 1),  # about +-11 degrees
        keras.layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=seed + 2),
        keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 3),
        keras.layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 4),
    ], name="augment")


def fine_tune(model, backbone, x_train, y_train, x_val, y_val, *, n_classes, epochs, unfreeze, lr,
              batch_size, patience, seed, label_smoothing=0.0, desc="fine-tune"):
    """Stage 2: unfreeze the top of the backbone, train with augmentation and class weights,
    early-stop on validation loss and restore the best weights."""
    keras.utils.set_random_seed(seed)
    n_trainable = freeze_for_fine_tuning(backbone, unfreeze)
    _compile(model, lr, label_smoothing=label_smoothing)
    augment = augmenter(seed)
    train_ds = (
        tf.data.Dataset.from_tensor_slices((x_train, _targets(y_train, n_classes, label_smoothing)))
        .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=1, deterministic=True)
        .prefetch(2)
    )
    history = model.fit(
        train_ds,
        validation_data=(x_val, _targets(y_val, n_classes, label_smoothing)),
        epochs=epochs,
        class_weight=class_weights(y_train, n_classes),
        callbacks=[
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
            TqdmEpochs(epochs, desc),
        ],
        shuffle=False,  # the dataset shuffles itself, seeded
        verbose=0,
    )
    backbone.trainable = False
    return history.history, n_trainable
