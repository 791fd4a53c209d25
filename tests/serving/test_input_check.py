"""The out-of-distribution input check: fitted by `python -m model_training input-check` into model.json, scored
on the served model's own features in the same pass as the prediction; 422 not_ultrasound, or 200 with
warnings ["unusual_input"] in the borderline band; models without features or without the card field skip it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
import pytest

from classifier.engine import Engine
from classifier.errors import ModelLoadError
from classifier.handler import create_service
from classifier.input_check import STAT_NAMES, CheckedEngine, InputCheck, encode_array, image_stats
from classifier.model_card import ModelCard, sha256_file
from classifier.settings import Settings
from tests.model_factory import (build_tiny_lesion_model, colour_photo_like, feature_dim, to_png,
                                 ultrasound_like, write_synthetic_site)
from tests.serving.events import rest_event

SITES = {"site_a": (0, 90), "site_b": (50_000, 70)}


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("sites")
    return [write_synthetic_site(root / name, offset, n, with_patients=(name == "site_b"))
            for name, (offset, n) in SITES.items()]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, sites) -> tuple[Path, dict, dict]:
    """A tiny lesion model with a features output, its input check fitted by the CLI: (dir, card before, doc)."""
    from model_training.__main__ import main

    model = build_tiny_lesion_model(tmp_path_factory.mktemp("checked_model"), features=True)
    before = json.loads((model / "model.json").read_text())
    report = tmp_path_factory.mktemp("report")
    args = ["input-check", "--model", str(model), "--report", str(report), "--components", "4"]
    for site in sites:
        args += ["--data", str(site)]
    assert main(args) == 0
    return model, before, json.loads((report / "input_check.json").read_text())


def _service(model_dir: Path):
    return create_service(Settings(model_dir=model_dir, log_level="WARNING", metrics_enabled=False))


def _predict(service, data: bytes) -> tuple[int, dict]:
    resp = service(rest_event("POST", "/predict", body=data, content_type="image/png"))
    return resp["statusCode"], json.loads(resp["body"])


def test_cli_adds_only_input_check_and_keeps_the_tflite_valid(fitted):
    model, before, doc = fitted
    after = json.loads((model / "model.json").read_text())
    assert set(after) - set(before) <= {"input_check"} and before.get("input_check", {}) == {}
    assert {k: v for k, v in after.items() if k != "input_check"} == {k: v for k, v in before.items() if k != "input_check"}
    card = ModelCard.load(model)  # sha256 of the unchanged tflite still matches
    assert card.tflite_sha256 == sha256_file(model / "model.tflite")
    ic = card.input_check
    assert 0 < ic["warn_threshold"] < ic["reject_threshold"]
    assert ic["features"]["dim"] == feature_dim()
    fitted_doc = ic["fitted"]
    assert fitted_doc["sites"] == list(SITES)
    assert fitted_doc["groups"]["site_b"]["grouped_by"].startswith("patient")
    # parts are disjoint groups: every image in exactly one, masks skipped
    for name, (_, n) in SITES.items():
        assert sum(fitted_doc["parts"][name].values()) == n
        held = fitted_doc["held_out_ultrasound"][name]["test"]
        assert held["n"] > 0 and held["reject"] == 0
    nu = doc["fitted"]["non_ultrasound"]
    assert {"blank frame", "noise frame", "text screenshot"} <= set(nu["categories"])
    assert nu["all"]["flagged_rate"] >= 0.8  # a 22-feature toy model still flags most of them


def test_served_check_passes_new_ultrasound_and_refuses_a_photo_and_blank(fitted):
    model, _, _ = fitted
    service = _service(model)
    statuses = []
    for seed in range(900, 920):  # frames from the same generator, never seen in the fit
        status, body = _predict(service, to_png(ultrasound_like(seed)))
        assert status == 200, body
        statuses.append(body["warnings"])
        assert body["input_check"]["verdict"] in ("pass", "warn")
        assert body["disclaimer"].startswith("Research use only")
    assert sum(w == [] for w in statuses) >= 17
    status, body = _predict(service, to_png(colour_photo_like(1)))
    assert status == 422, body
    assert body["error"]["code"] == "not_ultrasound"
    assert "breast-ultrasound" in body["error"]["message"]
    # blank frames (white, black, one flat grey, a faint ramp): refused whatever the fitted score says
    flat = colour_photo_like(1).convert("L")
    ramp = Image.fromarray((np.arange(200 * 150).reshape(150, 200) % 6 + 100).astype(np.uint8))  # std ~1.7
    for blank in (flat.point(lambda v: 255), flat.point(lambda v: 0), flat.point(lambda v: 90), ramp):
        status, body = _predict(service, to_png(blank))
        assert status == 422 and body["error"]["code"] == "not_ultrasound", body
        assert "blank" in body["error"]["message"]


def test_borderline_band_answers_200_with_the_warning_and_score(fitted, tmp_path):
    model, _, _ = fitted
    data = to_png(ultrasound_like(7001))
    engine = Engine(model)
    check = InputCheck(engine.card.input_check)
    img_arr = np.asarray(ultrasound_like(7001), dtype=np.float32)
    assert image_stats(img_arr).shape == (len(STAT_NAMES),)
    from classifier.preprocessing import decode_rgb, placement, resize_for_model

    img = decode_rgb(data)
    arr = resize_for_model(img, engine.card.input_size)
    score = check.score(engine.features(arr), arr, placement(*img.size, engine.card.input_size)).score
    # a copy of the model whose thresholds put this very image in the borderline band
    shutil.copytree(model, tmp_path / "m")
    raw = json.loads((tmp_path / "m" / "model.json").read_text())
    raw["input_check"]["warn_threshold"], raw["input_check"]["reject_threshold"] = score * 0.9, score * 1.1
    (tmp_path / "m" / "model.json").write_text(json.dumps(raw))
    status, body = _predict(_service(tmp_path / "m"), data)
    assert status == 200
    assert body["warnings"] == ["unusual_input"]
    assert body["input_check"]["score"] == pytest.approx(score, abs=1e-3)
    assert body["input_check"]["verdict"] == "warn"
    assert body["label"] in ("normal", "benign", "malignant") and "localisation" in body


def test_one_model_pass_per_prediction(fitted, monkeypatch):
    model, _, _ = fitted
    service = _service(model)
    engine = service.engine()
    assert isinstance(engine, CheckedEngine)
    calls = []
    real = engine._engine._run
    monkeypatch.setattr(engine._engine, "_run", lambda arr: calls.append(1) or real(arr))
    assert _predict(service, to_png(ultrasound_like(1)))[0] == 200
    assert len(calls) == 1


def test_models_without_features_or_without_the_card_field_skip_the_check(fitted, tmp_path):
    model, _, _ = fitted
    photo = to_png(colour_photo_like(2))
    # no input_check in the card: the same model answers the photo, without warnings/input_check keys
    shutil.copytree(model, tmp_path / "nocheck")
    raw = json.loads((tmp_path / "nocheck" / "model.json").read_text())
    del raw["input_check"]
    (tmp_path / "nocheck" / "model.json").write_text(json.dumps(raw))
    status, body = _predict(_service(tmp_path / "nocheck"), photo)
    assert status == 200 and "warnings" not in body and "input_check" not in body
    # a model without a features output, with a check in its card: skipped, not refused
    plain = build_tiny_lesion_model(tmp_path / "plain")
    raw = json.loads((plain / "model.json").read_text())
    raw["input_check"] = json.loads((model / "model.json").read_text())["input_check"]
    (plain / "model.json").write_text(json.dumps(raw))
    service = _service(plain)
    status, body = _predict(service, photo)
    assert status == 200 and "warnings" not in body
    assert not isinstance(service.engine(), CheckedEngine)


def _doc(dim: int = 5, k: int = 2) -> dict:
    comps = np.linalg.qr(np.random.default_rng(0).normal(size=(dim, k)))[0].T
    return {"features": {"dim": dim, "mean": encode_array(np.zeros(dim)), "components": encode_array(comps),
                         "eigenvalues": [2.0, 1.0], "residual_scale": 0.5, "mahalanobis_q99": 3.0,
                         "residual_q99": 4.0},
            "stats": {"names": list(STAT_NAMES), "center": [0.0] * 3, "scale": [1.0] * 3, "q99": 4.0},
            "warn_threshold": 1.0, "reject_threshold": 2.0}


def test_score_formula():
    check = InputCheck(_doc())
    f = check.components[0] * 5.0  # scaled to unit length: c = (1, 0), residual 0
    assert check.feature_parts(f) == pytest.approx((1 / 2.0 / 2, 0.0))
    assert check.feature_distance(f) == pytest.approx(0.25 / 3.0)
    g = check.components[0] * 0.6 + check.components[1] * 0.8  # unit length already: c = (0.6, 0.8)
    assert check.feature_parts(g) == pytest.approx(((0.36 / 2 + 0.64 / 1) / 2, 0.0))
    off = np.ones(5) / np.sqrt(5)
    c = check.components @ off
    assert check.feature_parts(off)[1] == pytest.approx((1 - c @ c) / 0.5)
    stats = np.array([0.0, 8.0, 0.0])
    assert check.stats_distance(stats) == pytest.approx(8.0)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(warn_threshold=3.0), "reject_threshold must be >="),
    (lambda d: d["features"].update(eigenvalues=[1.0]), "do not fit together"),
    (lambda d: d["features"]["mean"].update(b64="!!"), "not an encoded float32 array"),
    (lambda d: d["stats"].update(names=["x"]), "stats.names"),
    (lambda d: d["stats"].update(scale=[0.0] * 3), "scales > 0"),
    (lambda d: d.update(reject_threshold=float("nan")), "positive number"),
    (lambda d: d.pop("features"), '"features" and "stats"'),
])
def test_card_validation_refuses_inconsistent_parameters(change, message):
    doc = _doc()
    change(doc)
    with pytest.raises(ModelLoadError, match=message):
        ModelCard(name="m", version="v", labels=["normal", "benign", "malignant"], input_size=64,
                  input_dtype="float32", preprocessing_id="rgb-letterbox-bilinear-float255-v2",
                  tflite_sha256="x", input_check=doc).validate()


def test_a_check_fitted_on_other_features_is_a_load_error(fitted, tmp_path):
    model, _, _ = fitted
    shutil.copytree(model, tmp_path / "m")
    raw = json.loads((tmp_path / "m" / "model.json").read_text())
    raw["input_check"] = _doc(dim=5)
    (tmp_path / "m" / "model.json").write_text(json.dumps(raw))
    service = _service(tmp_path / "m")
    resp = service(rest_event("GET", "/health"))
    assert resp["statusCode"] == 503
    assert "refit it" in service.load_error


def test_refit_replaces_an_outdated_check(fitted, sites, tmp_path):
    """A card whose input_check no longer loads (older format) can still be refitted by the CLI."""
    from model_training.__main__ import main

    model, _, _ = fitted
    shutil.copytree(model, tmp_path / "m")
    raw = json.loads((tmp_path / "m" / "model.json").read_text())
    raw["input_check"]["features"].pop("residual_q99")
    (tmp_path / "m" / "model.json").write_text(json.dumps(raw, indent=2))
    with pytest.raises(ModelLoadError):
        ModelCard.load(tmp_path / "m")
    args = ["input-check", "--model", str(tmp_path / "m"), "--report", str(tmp_path / "r"), "--components", "4"]
    for site in sites:
        args += ["--data", str(site)]
    assert main(args) == 0
    assert ModelCard.load(tmp_path / "m").input_check["features"]["residual_q99"] > 0


def test_parts_from_the_models_split(fitted, sites, tmp_path):
    """--split: the model's trainval images fit the density; its test images, halved by group, calibrate and test."""
    from model_training.__main__ import main

    model, _, _ = fitted
    split = {"sites": {}}
    for site in sites:
        files = {}
        for path in sorted(p for p in site.rglob("img_*.png") if "_mask" not in p.name):
            i = int(path.stem.split("_")[1])
            files[f"{path.parent.name}/{path.name}"] = {"split": "test" if i % 5 < 2 else "trainval",
                                                        "group": f"{site.name}:{i // 2}"}
        split["sites"][site.name] = {"files": files}
    (tmp_path / "split.json").write_text(json.dumps(split))
    before = (model / "model.json").read_text()
    args = ["input-check", "--model", str(model), "--report", str(tmp_path / "r"), "--components", "4",
            "--split", str(tmp_path / "split.json"), "--dry-run"]
    for site in sites:
        args += ["--data", str(site)]
    assert main(args) == 0
    doc = json.loads((tmp_path / "r" / "input_check.json").read_text())
    for name, (_, n) in SITES.items():
        parts = doc["fitted"]["parts"][name]
        n_test = sum(1 for i in range(n) if i % 5 < 2)
        assert parts["fit"] == n - n_test and parts["calibration"] + parts["test"] == n_test
        assert abs(parts["calibration"] - parts["test"]) <= 4  # halves, whole groups of two
    assert "the model's split" in doc["fitted"]["parts_from"]
    assert (model / "model.json").read_text() == before  # --dry-run leaves the card alone
