"""Builds a real, tiny LiteRT model and its model.json for tests (TensorFlow is a dev dependency)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from classifier.model_card import DISCLAIMER, MODEL_FILE, ModelCard, sha256_file
from classifier.preprocessing import PREPROCESSING_ID

LABELS = ["normal", "benign", "malignant"]


def build_tiny_model(out_dir: Path, *, input_size: int = 32, seed: int = 0) -> Path:
    """A small conv net (random weights, softmax over LABELS) exported to model.tflite + model.json."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((input_size, input_size, 3))
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax")(x)
    model = keras.Model(inputs, outputs)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    (out_dir / MODEL_FILE).write_bytes(tflite)
    ModelCard(
        name="tiny-test-model",
        version="test-" + sha256_file(out_dir / MODEL_FILE)[:12],
        labels=LABELS,
        input_size=input_size,
        input_dtype="float32",
        preprocessing_id=PREPROCESSING_ID,
        tflite_sha256=sha256_file(out_dir / MODEL_FILE),
        disclaimer=DISCLAIMER,
        backbone="tiny-cnn",
        weights_source="random",
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(),
    ).write(out_dir)
    return out_dir


def build_tiny_lesion_model(out_dir: Path, *, input_size: int = 64, malignant_threshold: float = 0.3,
                            normal_threshold: float = 0.9) -> Path:
    """A tiny two-output model shaped like the lesion recipe's: probabilities and a heatmap (one cell
    per 16 px) that lights up where the frame is bright, so a test knows where it must point."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((input_size, input_size, 3))
    grey = keras.layers.Lambda(lambda x: tf.reduce_mean(x, axis=-1, keepdims=True))(inputs)
    cells = keras.layers.AveragePooling2D(16)(grey)
    heat = keras.layers.Reshape((input_size // 16, input_size // 16))(
        keras.layers.Lambda(lambda c: tf.sigmoid((c - 128.0) / 10.0))(cells))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1.0 / 255)(inputs))
    probs = keras.layers.Dense(len(LABELS), activation="softmax")(x)
    model = keras.Model(inputs, {"probabilities": probs, "heatmap": heat})

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_FILE).write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    ModelCard(
        name="tiny-lesion-model", version="test-" + sha256_file(out_dir / MODEL_FILE)[:12], labels=LABELS,
        input_size=input_size, input_dtype="float32", preprocessing_id=PREPROCESSING_ID,
        tflite_sha256=sha256_file(out_dir / MODEL_FILE), disclaimer=DISCLAIMER, backbone="tiny-cnn",
        operating_point={"malignant_threshold": malignant_threshold, "normal_threshold": normal_threshold,
                         "chosen_by": "test"},
        localisation={"output": "heatmap", "grid": input_size // 16},
    ).write(out_dir)
    return out_dir


def png_bytes(width: int = 64, height: int = 48, mode: str = "RGB", seed: int = 0) -> bytes:
    """A synthetic ultrasound-like PNG of the given size and mode."""
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = (rng.random((height, width)) * 255).astype(np.uint8)
    img = Image.fromarray(arr, mode="L").convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
