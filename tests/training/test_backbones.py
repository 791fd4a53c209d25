"""Multi-scale features: inner layers pooled beside the final features, one flat graph."""

from __future__ import annotations

import numpy as np
import pytest

from model_training.backbones import build_backbone, freeze_for_fine_tuning, resolve_pool_layers
from model_training.errors import TrainingError


def test_pool_layers_are_concatenated_before_the_final_features():
    layers = resolve_pool_layers("mobilenet_v2", "auto")
    assert layers == ("block_13_expand_relu", "block_16_project_BN")
    plain, _ = build_backbone("mobilenet_v2", input_size=64, weights="none")
    multi, _ = build_backbone("mobilenet_v2", input_size=64, weights="none", pool_layers=layers)
    assert multi.output_shape == (None, 576 + 320 + 1280) and plain.output_shape == (None, 1280)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    multi.set_weights(plain.get_weights())  # same backbone weights, extra layers have none
    # the last 1280 features are exactly the plain backbone's pooled output
    np.testing.assert_allclose(np.asarray(multi(x))[:, -1280:], np.asarray(plain(x)), rtol=1e-5, atol=1e-6)
    # fine-tuning still reaches the backbone's own layers (flat graph, not one nested block)
    assert freeze_for_fine_tuning(multi, 0.3) > 10
    assert multi.get_layer("Conv_1").trainable and not multi.get_layer("Conv1").trainable


def test_pool_layer_choices():
    assert resolve_pool_layers("mobilenet_v2", "none") == ()
    assert resolve_pool_layers("resnet50", "auto") == ()
    assert resolve_pool_layers("mobilenet_v2", "a, b") == ("a", "b")
    with pytest.raises(TrainingError, match="no layer"):
        build_backbone("mobilenet_v2", input_size=64, weights="none", pool_layers=("no_such_layer",))


def test_multiscale_classifier_exports_and_matches_in_litert(tmp_path):
    from classifier.engine import Engine
    from model_training.export import build_served_model, engine_probs, parity, to_tflite, write_model
    from model_training.train import HeadParams, build_classifier, build_head

    layers = resolve_pool_layers("mobilenet_v2", "auto")
    backbone, norm = build_backbone("mobilenet_v2", input_size=64, weights="none", pool_layers=layers)
    head = build_head(3, HeadParams(kind="mlp", units=0), mean=np.zeros(2176), std=np.full(2176, 0.01))
    served = build_served_model(build_classifier(backbone, norm, head, 64), input_size=64, temperature=1.3,
                                tta_flip=True)
    write_model(tmp_path, to_tflite(served, quantize="none"), name="t", labels=["normal", "benign", "malignant"],
                input_size=64)
    images = (np.random.default_rng(2).random((6, 64, 64, 3)) * 255).astype(np.float32)
    assert parity(served.predict(images, verbose=0), engine_probs(Engine(tmp_path), images),
                  tolerance=1e-4)["same_label"] == 6
