"""Backbones from keras.applications by name, with their input normalisation inside the graph,
plus the small custom layers the served graph needs (flip TTA, temperature softmax)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from .errors import TrainingError


@keras.saving.register_keras_serializable(package="model_training")
class HorizontalFlip(keras.layers.Layer):
    """Mirror the image left-right (test-time flip inside the exported graph)."""

    def call(self, x):
        return keras.ops.flip(x, axis=2)


@keras.saving.register_keras_serializable(package="model_training")
class TemperatureSoftmax(keras.layers.Layer):
    """softmax(logits / T): calibrated probabilities come out of the served model itself."""

    def __init__(self, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, logits):
        return keras.ops.softmax(logits / self.temperature, axis=-1)

    def get_config(self):
        return super().get_config() | {"temperature": self.temperature}


@keras.saving.register_keras_serializable(package="model_training")
class FeatureStandardize(keras.layers.Layer):
    """(x - mean) / std with constants from the training features. Unlike keras Normalization it
    has no epsilon floor on std, so even the tiny features of a randomly initialised backbone
    (weights=none, used by the tests) reach the head at unit scale."""

    def __init__(self, mean=None, std=None, **kwargs):
        super().__init__(**kwargs)
        self.mean_values = [float(v) for v in (mean if mean is not None else [])]
        self.std_values = [float(v) for v in (std if std is not None else [])]

    def build(self, input_shape):
        dim = int(input_shape[-1])
        mean = self.mean_values or [0.0] * dim
        std = self.std_values or [1.0] * dim
        self.mean = self.add_weight(shape=(dim,), initializer=keras.initializers.Constant(mean), trainable=False, name="mean")
        self.inv_std = self.add_weight(shape=(dim,), initializer=keras.initializers.Constant([1.0 / v for v in std]),
                                       trainable=False, name="inv_std")

    def call(self, x):
        return (x - self.mean) * self.inv_std

    def get_config(self):
        return super().get_config() | {"mean": self.mean_values, "std": self.std_values}


def _fixed_affine(scale: np.ndarray, bias: np.ndarray, name: str) -> keras.layers.Layer:
    """A frozen 1x1 conv computing x @ scale + bias per pixel (serialisable, converts to TFLite)."""
    layer = keras.layers.Conv2D(3, 1, use_bias=True, trainable=False, name=name)
    layer.build((None, None, None, 3))
    layer.set_weights([scale.reshape(1, 1, 3, 3).astype("float32"), bias.astype("float32")])
    return layer


def _scale_minus1_1() -> keras.layers.Layer:
    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise_minus1_1")


def _caffe_bgr_mean() -> keras.layers.Layer:
    # keras.applications.resnet50.preprocess_input: RGB -> BGR, minus the ImageNet BGR mean.
    swap = np.zeros((3, 3))
    swap[0, 2] = swap[1, 1] = swap[2, 0] = 1.0
    return _fixed_affine(swap, -np.array([103.939, 116.779, 123.68]), "normalise_caffe_bgr")


def _identity() -> keras.layers.Layer:
    return keras.layers.Identity(name="normalise_inside_backbone")


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    constructor: Callable
    normaliser: Callable[[], keras.layers.Layer]  # takes RGB in [0, 255]
    # Inner layers whose global-average-pooled activations join the final pooled features
    # (`--pool-layers auto`): mid-level texture and edge statistics that the ImageNet top layers
    # summarise away. For MobileNetV2 the pair below won 4-fold cross-validation on BUSI
    # train + val (README, "The bundled model").
    pool_layers: tuple[str, ...] = ()


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec(keras.applications.MobileNetV2, _scale_minus1_1,
                                 pool_layers=("block_13_expand_relu", "block_16_project_BN")),
    # EfficientNet carries its own Rescaling + Normalization and takes [0, 255].
    "efficientnet_b0": BackboneSpec(keras.applications.EfficientNetB0, _identity),
    "resnet50": BackboneSpec(keras.applications.ResNet50, _caffe_bgr_mean),
}


def weights_argument(weights: str):
    if weights == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise TrainingError(f"--weights {weights}: no such file (use imagenet, none or a .weights.h5 path)")
    return str(path)


def resolve_pool_layers(name: str, pool_layers: str) -> tuple[str, ...]:
    """`auto` -> the backbone's default; `none` -> final features only; else a comma list."""
    if pool_layers == "auto":
        return BACKBONES[name].pool_layers if name in BACKBONES else ()
    if pool_layers in ("none", ""):
        return ()
    return tuple(p.strip() for p in pool_layers.split(",") if p.strip())


def build_backbone(name: str, *, input_size: int, weights: str,
                   pool_layers: tuple[str, ...] = ()) -> tuple[keras.Model, keras.layers.Layer]:
    """(backbone without top, its normaliser). The backbone ends in global average pooling; with
    `pool_layers`, the pooled activations of those inner layers are concatenated before the final ones."""
    if name not in BACKBONES:
        raise TrainingError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    spec = BACKBONES[name]
    try:
        backbone = spec.constructor(
            input_shape=(input_size, input_size, 3),
            include_top=False,
            weights=weights_argument(weights),
            pooling="avg",
        )
    except Exception as exc:  # bad file, wrong architecture, or no internet for `imagenet`
        hint = " (imagenet is downloaded by Keras and needs internet; pass a local .weights.h5 PATH offline)" \
            if weights == "imagenet" else ""
        raise TrainingError(f"could not build {name} with weights {weights!r}: {exc}{hint}") from exc
    if pool_layers:
        known = {layer.name for layer in backbone.layers}
        unknown = [p for p in pool_layers if p not in known]
        if unknown:
            raise TrainingError(f"--pool-layers: {name} has no layer(s) {', '.join(unknown)} "
                                f"(see model.summary() for names, or use auto / none)")
        pooled = [keras.layers.GlobalAveragePooling2D(name=f"pool_{p}")(backbone.get_layer(p).output)
                  for p in pool_layers]
        features = keras.layers.Concatenate(name="multiscale_features")([*pooled, backbone.output])
        # Same layer objects, one flat graph: freeze_for_fine_tuning still sees every backbone layer.
        backbone = keras.Model(backbone.input, features, name=f"{backbone.name}_multiscale")
    return backbone, spec.normaliser()


def freeze_for_fine_tuning(backbone: keras.Model, unfreeze: float) -> int:
    """Make the top `unfreeze` fraction of layers trainable; BatchNorm always stays frozen
    (the shared weights have BN folded in; training it collapsed to chance, see NOTES.md)."""
    layers = backbone.layers
    first = len(layers) - int(round(unfreeze * len(layers)))
    backbone.trainable = True
    n = 0
    for i, layer in enumerate(layers):
        trainable = i >= first and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        n += int(trainable and bool(layer.weights))
    return n
