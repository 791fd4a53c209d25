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
                            normal_threshold: float = 0.9, features: bool = False) -> Path:
    """A tiny two-output model shaped like the lesion recipe's: probabilities and a heatmap (one cell
    per 16 px) that lights up where the frame is bright, so a test knows where it must point.
    ``features=True`` adds the served graph's pooled-features output, (1, feature_dim(input_size)): the grey level of
    each heatmap cell, the channel means and their spread (what an input check can be fitted on)."""
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
    outputs = {"probabilities": probs, "heatmap": heat}
    if features:
        flat = keras.layers.Flatten()(keras.layers.Rescaling(1.0 / 255)(cells))
        spread = keras.layers.Lambda(lambda t: tf.math.reduce_std(t / 255.0, axis=[1, 2]))(inputs)
        outputs["features"] = keras.layers.Concatenate()([flat, x, spread])
    model = keras.Model(inputs, outputs)

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


#: build_tiny_lesion_model(features=True): (input_size // 16) ** 2 cells + 3 channel means + 3 spreads.
def feature_dim(input_size: int = 64) -> int:
    return (input_size // 16) ** 2 + 6


def ultrasound_like(seed: int, width: int | None = None, height: int | None = None):
    """A synthetic B-mode-like frame (PIL RGB): speckle inside a fan, black outside, a darker oval lesion."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    w = width or int(rng.integers(140, 220))
    h = height or int(rng.integers(120, 200))
    speckle = rng.rayleigh(1.0, (h, w)) * rng.uniform(45, 65)
    yy, xx = np.mgrid[0:h, 0:w]
    cx, top = rng.uniform(0.35, 0.65) * w, int(rng.integers(4, 20))
    fan = (yy > top) & (np.abs(xx - cx) < rng.uniform(0.1, 0.3) * w + rng.uniform(0.2, 0.8) * (yy - top))
    ex, ey = rng.uniform(0.25, 0.75) * w, rng.uniform(0.3, 0.75) * h
    lesion = ((xx - ex) / (rng.uniform(0.06, 0.2) * w)) ** 2 + ((yy - ey) / (rng.uniform(0.05, 0.15) * h)) ** 2 < 1
    # tissue layers: bands of brighter and darker echoes at random depths and tilts
    bands = 1 + 0.6 * np.sin(2 * np.pi * (yy + rng.uniform(-0.3, 0.3) * xx) / rng.uniform(15, 60) + rng.uniform(0, 6.3))
    img = np.where(fan, speckle * bands * np.where(lesion, 0.3, 1.0) * (1 - 0.4 * yy / h), 0.0)
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L").filter(ImageFilter.GaussianBlur(0.8))
    return pil.convert("RGB")


def colour_photo_like(seed: int, width: int = 200, height: int = 150):
    """A colourful, smooth, non-ultrasound frame (PIL RGB): overlapping coloured blocks on a gradient sky."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    sky = np.linspace(90, 230, height)[:, None].repeat(width, 1)
    arr = np.stack([sky * 0.5, sky * 0.7, sky], axis=-1).astype(np.uint8)
    img = Image.fromarray(arr, mode="RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        draw.ellipse((x, y, x + int(rng.integers(20, 80)), y + int(rng.integers(20, 60))),
                     fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return img


def to_png(img) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


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


def write_synthetic_site(root: Path, offset: int, n: int, *, with_patients: bool = False) -> Path:
    """A site folder in the BUSI layout of ultrasound_like frames (masks beside some, skipped by loaders);
    with_patients writes a BUS-BRA-style bus_data.csv that puts two images per patient (Case)."""
    for i in range(n):
        folder = root / ("benign" if i % 2 else "malignant")
        folder.mkdir(parents=True, exist_ok=True)
        ultrasound_like(offset + i).save(folder / f"img_{i:03d}.png")
        if i % 5 == 0:
            ultrasound_like(offset + i).convert("L").save(folder / f"img_{i:03d}_mask.png")
    if with_patients:
        (root / "bus_data.csv").write_text("ID,Case\n" + "".join(f"img_{i:03d},{i // 2}\n" for i in range(n)))
    return root


def build_checked_model(out_dir: Path, sites_dir: Path, *, report: Path | None = None) -> Path:
    """build_tiny_lesion_model(features=True) with its input check fitted by the CLI on two synthetic sites."""
    from model_training.__main__ import main

    model = build_tiny_lesion_model(Path(out_dir), features=True)
    args = ["input-check", "--model", str(model), "--report", str(report or Path(sites_dir) / "report"),
            "--components", "4"]
    for name, (offset, n) in {"site_a": (0, 90), "site_b": (50_000, 70)}.items():
        site = write_synthetic_site(Path(sites_dir) / name, offset, n, with_patients=(name == "site_b"))
        args += ["--data", str(site)]
    if main(args) != 0:
        raise RuntimeError("input-check fitting failed")
    return model
