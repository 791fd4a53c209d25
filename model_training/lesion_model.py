"""The lesion-aware graph: a fine-tuned backbone, a segmentation head supervised by the lesion masks,
and two calibrated decisions read from it.

    p(lesion)               = sigmoid(a * max(seg logits) + b)        "normal" = no lesion found
    p(malignant | lesion)   = sigmoid(w . [attention-pooled features at the lesion, global context])
    probabilities           = [1 - p(lesion), p(lesion)(1 - p(mal|lesion)), p(lesion) p(mal|lesion)]

"Normal" is decided from the localisation, not from how a site's frames look, and the malignancy
head reads the features where the heatmap says the lesion is. The served graph also returns the
heatmap (sigmoid of the segmentation logits, one cell per 16 px of the letterboxed input).
"""

from __future__ import annotations

import keras

from .backbones import HorizontalFlip, build_backbone, freeze_for_fine_tuning

#: The training graph saved beside the tflite, for `adapt` (the Docker image leaves it out).
MODEL_KERAS = "model.keras"
#: MobileNetV2 layers the heads read: stride 16 (14x14 at 224 px) and the final stride-32 map.
MID_LAYER = "block_13_expand_relu"


@keras.saving.register_keras_serializable(package="model_training")
class GreyRGB(keras.layers.Layer):
    """RGB -> grey replicated to 3 channels: ultrasound is grey, and colour (overlays, tints) is a site cue."""

    def call(self, x):
        grey = keras.ops.mean(x, axis=-1, keepdims=True)
        return keras.ops.concatenate([grey, grey, grey], axis=-1)


@keras.saving.register_keras_serializable(package="model_training")
class AttentionPool(keras.layers.Layer):
    """Average of feature vectors weighted by sigmoid(seg logits): the features where the lesion is."""

    def call(self, inputs):
        features, seg_logits = inputs
        weights = keras.ops.sigmoid(seg_logits)
        total = keras.ops.sum(weights, axis=(1, 2)) + 1e-3
        return keras.ops.sum(features * weights, axis=(1, 2)) / total


@keras.saving.register_keras_serializable(package="model_training")
class HierarchicalProbs(keras.layers.Layer):
    """(lesion logit, malignancy logit) -> [normal, benign, malignant] with a temperature for each."""

    def __init__(self, lesion_temperature: float = 1.0, malignant_temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.lesion_temperature = float(lesion_temperature)
        self.malignant_temperature = float(malignant_temperature)

    def call(self, inputs):
        lesion_logit, malig_logit = inputs
        p_lesion = keras.ops.sigmoid(lesion_logit / self.lesion_temperature)
        p_mal = keras.ops.sigmoid(malig_logit / self.malignant_temperature)
        return keras.ops.concatenate([1.0 - p_lesion, p_lesion * (1.0 - p_mal), p_lesion * p_mal], axis=-1)

    def get_config(self):
        return super().get_config() | {"lesion_temperature": self.lesion_temperature,
                                       "malignant_temperature": self.malignant_temperature}


def build_lesion_model(*, input_size: int, weights: str, backbone: str = "mobilenet_v2",
                       dropout: float = 0.3) -> tuple[keras.Model, keras.Model]:
    """(training model: image -> {seg, lesion, malig} logits, the backbone to unfreeze)."""
    base, normaliser = build_backbone(backbone, input_size=input_size, weights=weights)
    # build_backbone ends in average pooling; the heads need the maps before it.
    inner = base.get_layer(MID_LAYER).output
    final = base.layers[-2].output  # the last feature map (out_relu for MobileNetV2)
    feature_maps = keras.Model(base.input, [inner, final], name="backbone")

    image = keras.Input((input_size, input_size, 3), name="image")
    f14, f7 = feature_maps(normaliser(GreyRGB(name="grey")(image)), training=False)  # BN frozen, inference mode
    up = keras.layers.UpSampling2D(2, interpolation="bilinear", name="up_final")
    p14 = keras.layers.Conv2D(96, 1, activation="relu", name="seg_mid")(f14)
    p7 = up(keras.layers.Conv2D(96, 1, activation="relu", name="seg_final")(f7))
    h = keras.layers.Concatenate(name="seg_concat")([p14, p7])
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="seg_conv")(h)
    seg = keras.layers.Conv2D(1, 1, name="seg")(h)  # lesion logits per cell

    # Starts as "the most lesion-like cell's logit" (kernel 1, bias 0): Adam at fine-tuning rates moves a
    # two-parameter head only ~1e-4 per step, so a random start never learned in 9 epochs.
    lesion = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros", name="lesion")(
        keras.layers.GlobalMaxPooling2D(name="seg_max")(seg))
    at_lesion = AttentionPool(name="attention_pool")(
        [keras.layers.Concatenate(name="lesion_features")([f14, keras.layers.UpSampling2D(
            2, interpolation="bilinear", name="up_final_features")(f7)]), seg])
    context = keras.layers.GlobalAveragePooling2D(name="context")(f7)
    z = keras.layers.Dropout(dropout, name="dropout")(keras.layers.Concatenate(name="malig_features")([at_lesion, context]))
    malig = keras.layers.Dense(1, name="malig")(z)
    model = keras.Model(image, {"seg": seg, "lesion": lesion, "malig": malig}, name="lesion_model")
    return model, feature_maps


def set_trainable_backbone(backbone: keras.Model, fraction: float) -> int:
    """Freeze all (fraction 0) or unfreeze the top `fraction` of layers, BatchNorm always frozen."""
    if fraction <= 0:
        backbone.trainable = False
        return 0
    return freeze_for_fine_tuning(backbone, fraction)


def build_served(models: list[keras.Model], *, input_size: int, lesion_temperature: float,
                 malignant_temperature: float, tta_flip: bool) -> keras.Model:
    """RGB [0, 255] -> (calibrated [normal, benign, malignant], heatmap (input/16)^2 in [0, 1], pooled features),
    averaged over the models and, with tta_flip, over the image and its mirror (heatmap mirrored back)."""
    image = keras.Input((input_size, input_size, 3), name="image")
    flip = HorizontalFlip(name="mirror")
    views = [(image, False), (flip(image), True)] if tta_flip else [(image, False)]
    combine = HierarchicalProbs(lesion_temperature, malignant_temperature, name="calibrated_probs")
    probs, maps, feats = [], [], []
    for k, model in enumerate(models):
        # One graph, four outputs: the heads plus the pooled features, without a second backbone pass.
        core = keras.Model(model.input, {name: model.get_layer(name).output
                                         for name in ("seg", "lesion", "malig", "context")}, name=f"core_{k}")
        for view, mirrored in views:
            out = core(view)
            probs.append(combine([out["lesion"], out["malig"]]))
            feats.append(out["context"])
            heat = keras.layers.Activation("sigmoid")(out["seg"])
            maps.append(HorizontalFlip(name=f"unmirror_{k}")(heat) if mirrored else heat)
    prob = probs[0] if len(probs) == 1 else keras.layers.Average(name="average_probs")(probs)
    heat = maps[0] if len(maps) == 1 else keras.layers.Average(name="average_heatmaps")(maps)
    heat = keras.layers.Reshape(tuple(heat.shape[1:3]), name="heatmap")(heat)
    # The pooled backbone features, for out-of-distribution scores fitted on the training sites.
    feat = feats[0] if len(feats) == 1 else keras.layers.Average(name="average_features")(feats)
    return keras.Model(image, {"probabilities": prob, "heatmap": heat, "features": feat}, name="served_lesion")


def save_for_adapt(model: keras.Model, path) -> None:
    """The trained graph and weights without optimizer state (a third of the size), for `adapt`."""
    clean = keras.Model.from_config(model.get_config())
    clean.set_weights(model.get_weights())
    clean.save(path)
