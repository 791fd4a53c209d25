"""Export: the served graph computes mean-over-views softmax(logits / T); float and int8 tflite
run in the serving Engine; parity fails loudly when the models disagree."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.engine import Engine
from model_training.calibrate import probs_from_views
from model_training.errors import ParityError
from model_training.export import build_served_model, engine_probs, parity, to_tflite, write_model


@pytest.fixture(scope="module")
def logits_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    return (rng.random((24, 32, 32, 3)) * 255).astype(np.float32)


def test_served_graph_applies_temperature_and_flip(logits_model, images):
    served = build_served_model(logits_model, input_size=32, temperature=2.5, tta_flip=True)
    views = [logits_model.predict(images, verbose=0), logits_model.predict(images[:, :, ::-1], verbose=0)]
    np.testing.assert_allclose(served.predict(images, verbose=0), probs_from_views(views, 2.5), atol=1e-5)


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_tflite_runs_in_the_serving_engine(logits_model, images, tmp_path, quantize):
    served = build_served_model(logits_model, input_size=32, temperature=1.7, tta_flip=True)
    tflite = to_tflite(served, quantize=quantize, representative=images[:16])
    card = write_model(tmp_path, tflite, name="t", labels=["normal", "benign", "malignant"], input_size=32)
    assert card.input_dtype == "float32"  # float in/out even for int8 kernels
    lite = engine_probs(Engine(tmp_path), images)
    keras_probs = served.predict(images, verbose=0)
    if quantize == "none":
        assert parity(keras_probs, lite, tolerance=1e-4)["same_label"] == len(images)
    else:
        from ai_edge_litert.interpreter import Interpreter

        kinds = {d["dtype"] for d in Interpreter(model_path=str(tmp_path / "model.tflite")).get_tensor_details()}
        assert np.int8 in kinds  # integer kernels inside
        assert np.abs(keras_probs - lite).max() < 0.1


def test_parity_fails_beyond_tolerance():
    a = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    with pytest.raises(ParityError, match="1/2 same labels"):
        parity(a, np.array([[0.6, 0.3, 0.1], [0.5, 0.2, 0.3]]), tolerance=1.0)
    with pytest.raises(ParityError, match="max probability difference"):
        parity(a, a + 0.01, tolerance=1e-3)
