"""The served graph (flip TTA + temperature inside), .keras/.tflite export, LiteRT parity, model.json."""

from __future__ import annotations

import contextlib
import datetime
import io
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from classifier.engine import Engine
from classifier.model_card import DISCLAIMER, MODEL_FILE, ModelCard, sha256_file
from classifier.preprocessing import PREPROCESSING_ID

from .backbones import HorizontalFlip, TemperatureSoftmax
from .errors import ParityError


def build_served_model(logits_models, *, input_size: int, temperature: float, tta_flip: bool) -> keras.Model:
    """RGB [0, 255] -> calibrated probabilities: mean over models and views of softmax(logits / T)."""
    if isinstance(logits_models, keras.Model):
        logits_models = [logits_models]
    inputs = keras.Input((input_size, input_size, 3), name="image")
    calibrated = TemperatureSoftmax(temperature, name="calibrated_softmax")
    views = [inputs, HorizontalFlip(name="mirror")(inputs)] if tta_flip else [inputs]
    probs = [calibrated(model(view)) for model in logits_models for view in views]
    output = probs[0] if len(probs) == 1 else keras.layers.Average(name="average_views")(probs)
    return keras.Model(inputs, output, name="served")


def to_tflite(model: keras.Model, *, quantize: str, representative: np.ndarray | None = None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize == "int8":
        if representative is None or not len(representative):
            raise ValueError("int8 quantisation needs representative training images")

        def samples():
            for img in representative:
                yield [img[np.newaxis].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        # Full-integer kernels inside; float32 in and out so the serving contract is unchanged.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif quantize != "none":
        raise ValueError(f"unknown quantisation {quantize!r}")
    # The converter prints every captured tensor of the saved model; keep the console readable.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # int8 inside, float32 in and out: there are no quantized inputs to give statistics for.
        warnings.filterwarnings("ignore", message=r"Statistics for quantized inputs were expected, but not "
                                r"specified; continuing anyway\.", category=UserWarning,
                                module=r"tensorflow\.lite\.python\.convert")
        return converter.convert()


def engine_probs(engine: Engine, images: np.ndarray, *, desc: str = "LiteRT") -> np.ndarray:
    """Probabilities from the served LiteRT engine for preprocessed images (N, S, S, 3)."""
    return np.stack([engine.predict_array(img) for img in tqdm(images, desc=desc, unit="img", leave=False)]) \
        if len(images) else np.zeros((0, len(engine.labels)))


def parity(keras_probs: np.ndarray, lite_probs: np.ndarray, *, tolerance: float) -> dict:
    """Same label on every image and max |p_keras - p_tflite| within tolerance, or ParityError."""
    diff = float(np.abs(keras_probs - lite_probs).max()) if len(keras_probs) else 0.0
    same = int((keras_probs.argmax(1) == lite_probs.argmax(1)).sum())
    result = {"n": int(len(keras_probs)), "same_label": same, "max_abs_prob_diff": diff, "tolerance": tolerance}
    if same != len(keras_probs) or diff > tolerance:
        raise ParityError(
            f"the exported .tflite disagrees with the Keras model: {same}/{len(keras_probs)} same labels, "
            f"max probability difference {diff:.2e} (tolerance {tolerance:.0e})"
        )
    return result


def write_model(out_dir: Path, tflite: bytes, *, labels, input_size, **card_fields) -> ModelCard:
    """model.tflite + model.json; version is the content hash of the tflite."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MODEL_FILE).write_bytes(tflite)
    sha = sha256_file(out_dir / MODEL_FILE)
    from ai_edge_litert.interpreter import Interpreter

    dtype = np.dtype(Interpreter(model_path=str(out_dir / MODEL_FILE)).get_input_details()[0]["dtype"]).name
    card = ModelCard(
        version=sha[:16],
        labels=list(labels),
        input_size=int(input_size),
        input_dtype=dtype,
        preprocessing_id=PREPROCESSING_ID,
        tflite_sha256=sha,
        disclaimer=DISCLAIMER,
        created_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **card_fields,
    )
    card.write(out_dir)
    return card
