"""Where the model looked: heatmap -> box in image pixels (letterbox undone), the label rule of the
model card, and the API response of a model with a heatmap output."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from classifier.engine import Engine
from classifier.localisation import localise
from classifier.model_card import ModelCard
from classifier.preprocessing import PREPROCESSING_ID, SQUASH_ID, placement, resize_for_model
from tests.model_factory import build_tiny_lesion_model


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_letterbox_keeps_aspect_and_pads_black():
    img = Image.new("RGB", (200, 100), (200, 200, 200))
    arr = resize_for_model(img, 64)
    assert arr.shape == (64, 64, 3)
    assert arr[:16].max() == 0 and arr[48:].max() == 0  # bars above and below
    assert arr[17:47].min() > 190  # the frame itself, unsquashed
    p = placement(200, 100, 64)
    assert (p.left, p.top, round(p.scale_x, 3)) == (0, 16, 0.32)
    assert resize_for_model(img, 64, SQUASH_ID).min() > 190  # old models keep their squash


def test_box_maps_back_to_image_pixels():
    heat = np.zeros((4, 4))
    heat[1:3, 2] = 0.9  # rows 1-2, column 2 of a 64 px letterboxed input of a 200x100 image
    loc = localise(heat, placement(200, 100, 64, PREPROCESSING_ID))
    # column 2 -> input x 32..48 -> image x 100..150; rows 1-2 -> input y 16..48 -> image y 0..100
    assert loc.box == [100, 0, 50, 100]
    assert loc.peak == pytest.approx(0.9)
    assert np.array(loc.heatmap).shape == (4, 4)


def test_only_the_peak_region_is_boxed():
    heat = np.zeros((8, 8))
    heat[1, 1] = 1.0
    heat[6, 6] = 0.4  # below half the peak: not part of the box
    heat[5, 5] = 0.8  # above half, but not connected to the peak
    loc = localise(heat, placement(128, 128, 128))
    assert loc.box == [16, 16, 16, 16]


def _decide_card(**op):
    return ModelCard(name="m", version="v", labels=["normal", "benign", "malignant"], input_size=32,
                     input_dtype="float32", preprocessing_id=PREPROCESSING_ID, tflite_sha256="x", operating_point=op)


def test_label_rule_of_the_operating_point():
    card = _decide_card(malignant_threshold=0.2, normal_threshold=0.8, chosen_by="test")
    assert card.decide({"normal": 0.1, "benign": 0.65, "malignant": 0.25})[0] == "malignant"  # below argmax
    # the malignant rule reads p(malignant | lesion): 0.15 / (0.15 + 0.05) = 0.75 >= 0.2 ...
    assert card.decide({"normal": 0.7, "benign": 0.05, "malignant": 0.25})[0] == "malignant"
    # ... but strong "no lesion" evidence comes first
    assert card.decide({"normal": 0.8, "benign": 0.05, "malignant": 0.15})[0] == "normal"
    assert card.decide({"normal": 0.1, "benign": 0.8, "malignant": 0.1})[0] == "benign"  # 0.11 < 0.2
    assert card.decide({"normal": 0.7, "benign": 0.28, "malignant": 0.02})[0] == "benign"  # normal needs 0.8
    assert card.decide({"normal": 0.85, "benign": 0.14, "malignant": 0.01})[0] == "normal"
    label, rule = card.decide({"normal": 0.85, "benign": 0.14, "malignant": 0.01})
    assert rule.startswith("normal if p(normal) >= 0.800, else malignant if p(malignant | lesion) >= 0.200")
    plain = _decide_card()
    assert plain.decide({"normal": 0.2, "benign": 0.5, "malignant": 0.3}) == ("benign", "argmax: the most probable class")


def test_training_rule_matches_the_served_rule():
    from model_training.site_metrics import decide

    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=500)
    card = _decide_card(malignant_threshold=0.3, normal_threshold=0.6)
    served = [card.labels.index(card.decide(dict(zip(card.labels, p)))[0]) for p in probs]
    assert decide(probs, 0.3, 0.6).tolist() == served


def test_bad_operating_point_is_refused():
    from classifier.errors import ModelLoadError

    with pytest.raises(ModelLoadError):
        _decide_card(malignant_threshold=1.5).validate()
    with pytest.raises(ModelLoadError):
        _decide_card(normal_threshold=0.9).validate()  # a normal threshold needs a malignant one


@pytest.fixture(scope="module")
def lesion_model(tmp_path_factory):
    return build_tiny_lesion_model(tmp_path_factory.mktemp("lesion-model"))


def test_engine_points_at_the_bright_lesion(lesion_model):
    img = Image.new("L", (160, 120), 20)
    img.paste(255, (100, 30, 140, 70))  # the "lesion"
    analysis = Engine(lesion_model).analyse(_png(img))
    x, y, w, h = analysis.localisation.box
    # 16 px cells of a 64 px input are 40 image px here: the box is coarse, but it is on the lesion
    cx, cy = x + w / 2, y + h / 2
    assert 100 <= cx <= 140 and 30 <= cy <= 70, analysis.localisation.box
    inter = max(0, min(x + w, 140) - max(x, 100)) * max(0, min(y + h, 70) - max(y, 30))
    assert inter / (w * h + 40 * 40 - inter) > 0.3, analysis.localisation.box


def test_api_response_carries_localisation_and_rule(lesion_model):
    from classifier.handler import Service
    from classifier.settings import Settings
    from tests.serving.events import rest_event

    service = Service(Settings(model_dir=lesion_model, metrics_enabled=False))
    img = Image.new("L", (96, 96), 30)
    img.paste(250, (10, 10, 40, 40))
    resp = service(rest_event("POST", "/predict", body=_png(img), content_type="image/png"))
    body = json.loads(resp["body"])
    assert resp["statusCode"] == 200, body
    assert set(body["localisation"]) == {"box", "peak", "heatmap", "placement"}
    assert np.array(body["localisation"]["heatmap"]).shape == (4, 4)
    assert body["label_rule"].startswith("normal if p(normal) >= 0.900, else malignant if p(malignant | lesion) >= 0.300")
    assert body["label"] in body["probabilities"] and "Research use only" in body["disclaimer"]


def _named_card(**extra):
    points = {"sensitive": {"malignant_threshold": 0.2, "normal_threshold": 0.8, "chosen_by": "test sens"},
              "balanced": {"malignant_threshold": 0.6, "normal_threshold": 0.8, "chosen_by": "test bal"}}
    return ModelCard(name="m", version="v", labels=["normal", "benign", "malignant"], input_size=32,
                     input_dtype="float32", preprocessing_id=PREPROCESSING_ID, tflite_sha256="x",
                     operating_point=points["sensitive"], operating_points=points,
                     default_operating_point="sensitive", **extra)


def test_named_operating_points_change_only_the_label():
    from classifier.errors import UnknownOperatingPoint

    card = _named_card()
    card.validate()
    probs = {"normal": 0.1, "benign": 0.5, "malignant": 0.4}  # p(malignant | lesion) 0.44
    assert card.decide(probs)[0] == card.decide(probs, "sensitive")[0] == "malignant"
    label, rule = card.decide(probs, "balanced")
    assert label == "benign" and "(balanced: test bal)" in rule and ">= 0.600" in rule
    assert card.point() == ("sensitive", card.operating_points["sensitive"])
    with pytest.raises(UnknownOperatingPoint, match="sensitive, balanced"):
        card.decide(probs, "lenient")
    assert card.decision(probs) == {"p_lesion": pytest.approx(0.9), "p_malignant_given_lesion": pytest.approx(4 / 9)}
    # a card with one unnamed point calls it "default"; none: "argmax"
    assert list(_decide_card(malignant_threshold=0.3).points()) == ["default"]
    assert _decide_card().point() == ("argmax", {})


def test_bad_named_operating_points_are_refused():
    from classifier.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="default_operating_point"):
        dataclasses_replace(_named_card(), default_operating_point="nope").validate()
    with pytest.raises(ModelLoadError, match="operating_points.bad.malignant_threshold"):
        dataclasses_replace(_named_card(), operating_points={"bad": {"malignant_threshold": 2}},
                            default_operating_point="bad").validate()
    with pytest.raises(ModelLoadError, match="is not a name"):
        dataclasses_replace(_named_card(), operating_points={"Bad Name!": {}}, default_operating_point="Bad Name!").validate()


def dataclasses_replace(card, **changes):
    import dataclasses

    return dataclasses.replace(card, **changes)


def test_prediction_body_names_its_point_and_draws_a_box_only_on_a_lesion():
    from classifier.engine import Analysis
    from classifier.input_check import CheckResult
    from classifier.localisation import Localisation
    from classifier.prediction import prediction_body

    card = _named_card()
    loc = Localisation(box=[1, 2, 3, 4], peak=0.9, heatmap=[[0.9]], placement=None)
    lesion = prediction_body(card, Analysis({"normal": 0.1, "benign": 0.5, "malignant": 0.4}, loc))
    assert lesion["operating_point"] == "sensitive" and lesion["label"] == "malignant"
    assert lesion["localisation"]["box"] == [1, 2, 3, 4]
    normal = prediction_body(card, Analysis({"normal": 0.85, "benign": 0.1, "malignant": 0.05}, loc), operating_point="balanced")
    assert normal["label"] == "normal" and normal["localisation"]["box"] is None  # no lesion found: no box
    assert normal["localisation"]["heatmap"] == [[0.9]]
    faint = Localisation(box=[1, 2, 3, 4], peak=0.3, heatmap=[[0.3]], placement=None)
    assert prediction_body(card, Analysis({"normal": 0.1, "benign": 0.5, "malignant": 0.4}, faint))["localisation"]["box"] is None
    warn = CheckResult(score=1.5, feature_distance=1.5, stats_distance=0.1, warn_threshold=1.2, reject_threshold=3.0)
    body = prediction_body(card, Analysis({"normal": 0.1, "benign": 0.5, "malignant": 0.4}, loc, check=warn))
    assert "input check: unusual input (score 1.50 >= warn threshold 1.20)" in body["label_rule"]
    assert body["warnings"] == ["unusual_input"] and body["input_check"]["verdict"] == "warn"
    ok = CheckResult(score=0.5, feature_distance=0.5, stats_distance=0.1, warn_threshold=1.2, reject_threshold=3.0)
    passed = prediction_body(card, Analysis({"normal": 0.1, "benign": 0.5, "malignant": 0.4}, loc, check=ok))
    assert "input check" not in passed["label_rule"]
    assert passed["warnings"] == [] and passed["input_check"]["score"] == 0.5
    assert "warnings" not in lesion and "input_check" not in lesion  # a model without an input check


def test_api_takes_operating_point_by_name(lesion_model):
    from classifier.handler import Service
    from classifier.settings import Settings
    from tests.serving.events import rest_event

    service = Service(Settings(model_dir=lesion_model, metrics_enabled=False))
    img = Image.new("L", (96, 96), 30)
    img.paste(250, (10, 10, 40, 40))
    event = rest_event("POST", "/predict", body=_png(img), content_type="image/png")
    body = json.loads(service(event)["body"])
    assert body["operating_point"] == "default"  # the tiny card has one unnamed point
    event["queryStringParameters"] = {"operating_point": "default"}
    assert json.loads(service(event)["body"])["label"] == body["label"]
    event["queryStringParameters"] = {"operating_point": "lenient"}
    resp = service(event)
    err = json.loads(resp["body"])["error"]
    assert resp["statusCode"] == 400 and err["code"] == "unknown_operating_point" and "default" in err["message"]
