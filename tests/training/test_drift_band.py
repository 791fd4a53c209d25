"""The drift band is computed from the out-of-site predictions and the card, never hard-coded; promote and
`expectations` write it and the pre-traffic answers (real LiteRT) into model.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from classifier.model_card import label_indices
from model_training.__main__ import main
from model_training.drift_band import MARGIN, DriftBandError, compute_drift_band, drift_band_from_files
from model_training.site_metrics import LABELS, hierarchical_probs
from tests.release_factory import REPO, make_release_ready, synthetic_loso, with_calibration

BUNDLED = REPO / "lambda_src" / "model" / "model.json"
BUNDLED_PREDICTIONS = REPO / "reports" / "loso_predictions.npz"


def _card(**extra) -> dict:
    """A valid card (the band reads its labels, operating points, calibration and input check)."""
    card = {"name": "m", "version": "v", "labels": list(LABELS), "input_size": 32, "input_dtype": "float32",
            "preprocessing_id": json.loads(BUNDLED.read_text())["preprocessing_id"], "tflite_sha256": "0" * 64}
    return with_calibration({**card, **extra}, n=300)


def _arrays(path: Path) -> dict:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_band_spans_each_sites_interval_and_the_served_rule_gives_the_expected_rate(tmp_path):
    arrays = _arrays(synthetic_loso(tmp_path / "p.npz"))
    card = _card()
    band = compute_drift_band(arrays, card, n_boot=500)
    # The expected rate is the served rule applied to the calibrated out-of-site probabilities.
    probs = hierarchical_probs(arrays["lesion_logits"], arrays["malignant_logits"], t_lesion=1.0, t_malig=1.4)
    predicted = np.asarray(LABELS)[label_indices(probs, LABELS, card["operating_point"])]
    malignant = band["rates"]["predicted_malignant"]
    assert malignant["expected"] == pytest.approx((predicted == "malignant").mean(), abs=1e-6)
    lo, hi = malignant["band"]
    for site in malignant["per_site"].values():
        assert lo <= site["ci95"][0] - MARGIN + 1e-9 and site["ci95"][1] + MARGIN - 1e-9 <= hi
        assert site["ci95"][0] <= site["rate"] <= site["ci95"][1]
    assert malignant["metric"] == "PredictedMalignant" and band["rates"]["predicted_normal"]["metric"] == "PredictedNormal"
    assert band["input_check"] == {}  # this card has no input check
    assert compute_drift_band(arrays, card, n_boot=500) == band  # deterministic for a seed


def test_the_band_moves_with_the_model(tmp_path):
    card = _card()
    calm = compute_drift_band(_arrays(synthetic_loso(tmp_path / "a.npz")), card, n_boot=300)
    eager = compute_drift_band(_arrays(synthetic_loso(tmp_path / "b.npz", malignant_shift=2.0)), card, n_boot=300)
    assert eager["rates"]["predicted_malignant"]["band"][0] > calm["rates"]["predicted_malignant"]["band"][0]
    looser = _card()
    looser["operating_point"]["malignant_threshold"] = 0.8  # fewer malignant calls at a higher threshold
    higher = compute_drift_band(_arrays(synthetic_loso(tmp_path / "a.npz")), looser, n_boot=300)
    assert higher["rates"]["predicted_malignant"]["expected"] < calm["rates"]["predicted_malignant"]["expected"]


def test_every_named_operating_point_gets_a_band_and_the_alarms_watch_the_default(tmp_path):
    points = {"sensitive": {"malignant_threshold": 0.2, "normal_threshold": 0.8},
              "balanced": {"malignant_threshold": 0.6, "normal_threshold": 0.8}}
    card = _card(operating_points=points, default_operating_point="balanced")
    card["operating_point"] = points["balanced"]
    band = compute_drift_band(_arrays(synthetic_loso(tmp_path / "p.npz")), card, n_boot=300)
    assert band["operating_point"] == "balanced" and set(band["by_operating_point"]) == {"sensitive", "balanced"}
    sensitive = band["by_operating_point"]["sensitive"]["predicted_malignant"]["expected"]
    assert sensitive > band["rates"]["predicted_malignant"]["expected"]  # a lower threshold calls more malignant
    assert band["by_operating_point"]["balanced"]["predicted_malignant"]["band"] == band["rates"]["predicted_malignant"]["band"]


def test_input_check_bands_come_from_the_cards_held_out_counts(tmp_path):
    card = _card()
    card["input_check"] = {"warn_threshold": 1.4, "fitted": {"held_out_ultrasound": {
        "a": {"test": {"n": 100, "warn": 4, "reject": 1, "score_median": 0.6}},
        "b": {"test": {"n": 300, "warn": 2, "reject": 0, "score_median": 0.8}}}}}
    check = compute_drift_band(_arrays(synthetic_loso(tmp_path / "p.npz")), card, n_boot=500)["input_check"]
    assert check["warn_rate"]["expected"] == pytest.approx(6 / 400)
    assert check["refusal_rate"]["expected"] == pytest.approx(1 / 400)
    assert check["warn_rate"]["band"][1] == pytest.approx(check["warn_rate"]["ci95"][1] + MARGIN, abs=1e-6)
    median = (0.6 * 100 + 0.8 * 300) / 400
    assert check["score_median"]["expected"] == pytest.approx(median)
    assert check["score_median"]["band"][1] == pytest.approx(median + 0.5 * (1.4 - median), abs=1e-6)
    assert check["score_median"]["statistic"] == "p50"


def test_missing_or_foreign_inputs_are_clear_errors(tmp_path):
    arrays = _arrays(synthetic_loso(tmp_path / "p.npz"))
    with pytest.raises(DriftBandError, match="calibration"):
        compute_drift_band(arrays, {**_card(), "extra": {}})
    with pytest.raises(DriftBandError, match="belong to another model"):
        compute_drift_band(arrays, with_calibration(_card(), n=999))
    with pytest.raises(DriftBandError, match="does not exist"):
        drift_band_from_files(tmp_path / "none.npz", _card())


def test_the_bundled_cards_band_is_what_the_code_computes_from_the_bundled_report():
    card = json.loads(BUNDLED.read_text())
    if "drift" not in card:
        pytest.skip("the bundled model.json has no drift band yet (make expectations writes it)")
    recomputed = drift_band_from_files(BUNDLED_PREDICTIONS, card)
    assert recomputed["rates"] == card["drift"]["rates"]
    assert recomputed["input_check"] == card["drift"]["input_check"]


def test_promote_writes_the_band_and_pre_traffic_answers_through_litert(tiny_model_dir, tmp_path):
    from classifier.engine import Engine

    run = tmp_path / "runs" / "20261207-000000-tiny"
    shutil.copytree(tiny_model_dir, run / "model")
    make_release_ready(run / "model", run / "report")  # the run's own card + report, as train leaves them
    model_dir, report_dir = tmp_path / "bundled" / "model", tmp_path / "bundled" / "reports"
    assert main(["promote", str(run), "--model-dir", str(model_dir), "--report-dir", str(report_dir),
                 "--examples", str(REPO / "examples"), "--allow-no-input-check"]) == 0
    card = json.loads((model_dir / "model.json").read_text())
    assert card["drift"]["rates"] == drift_band_from_files(report_dir / "loso_predictions.npz", card)["rates"]
    engine = Engine(model_dir)
    images = card["pre_traffic"]["images"]
    assert [Path(i["source"]).name for i in images] == ["benign.png", "malignant.png", "normal.png"]
    for image in images:
        probabilities = engine.analyse((REPO / image["source"]).read_bytes()).probabilities
        assert image["probabilities"] == pytest.approx(probabilities, abs=1e-7)
        assert image["label"] == engine.card.decide(probabilities)[0]


def test_promote_of_a_run_without_out_of_site_predictions_notes_no_band(tiny_model_dir, tmp_path, capsys):
    run = tmp_path / "runs" / "20261207-000000-nobnd"
    shutil.copytree(tiny_model_dir, run / "model")
    (run / "report").mkdir()
    model_dir = tmp_path / "m"
    assert main(["promote", str(run), "--model-dir", str(model_dir), "--report-dir", str(tmp_path / "r"),
                 "--examples", str(REPO / "examples"), "--allow-no-input-check"]) == 0
    card = json.loads((model_dir / "model.json").read_text())
    assert "drift" not in card and card["pre_traffic"]["images"]
    assert "no drift band" in capsys.readouterr().out


def test_a_cross_fit_card_scores_single_site_models_without_the_normal_gate_and_out_of_fold_with_it(tmp_path):
    """With the normal threshold from cross-fitting, the out-of-site rows never say "normal" (their models did
    not set that threshold) and the out-of-fold rows, labelled by the whole rule, are sites of the band."""
    loso = _arrays(synthetic_loso(tmp_path / "loso.npz"))
    oof = _arrays(synthetic_loso(tmp_path / "oof.npz", malignant_shift=1.0))
    card = _card()
    card["operating_point"]["normal_threshold"] = 0.5  # low enough that some out-of-site frames reach it
    plain = compute_drift_band(loso, card, n_boot=200)
    assert plain["rates"]["predicted_normal"]["expected"] > 0
    band = compute_drift_band(loso, card, n_boot=200, out_of_fold=oof)
    per_site = band["rates"]["predicted_normal"]["per_site"]
    assert {s for s in per_site if s.startswith("unseen ")} and {s for s in per_site if s.startswith("out of fold ")}
    assert all(per_site[s]["rate"] == 0.0 for s in per_site if s.startswith("unseen "))
    probs = hierarchical_probs(oof["lesion_logits"], oof["malignant_logits"], t_lesion=1.0, t_malig=1.4)
    predicted = np.asarray(LABELS)[label_indices(probs, LABELS, card["operating_point"])]
    oof_sites = np.asarray(oof["site"]).astype(str)
    for site in set(oof_sites.tolist()):
        assert per_site[f"out of fold {site}"]["rate"] == pytest.approx((predicted[oof_sites == site] == "normal").mean(), abs=1e-6)
    # drift_band_from_files finds the cross-fit file beside the out-of-site one when the card says it was used
    card["extra"]["calibration"]["normal_threshold_cross_fit"] = {"normal_threshold": 0.5, "rule": "r"}
    with pytest.raises(DriftBandError, match="cross-fit"):
        drift_band_from_files(tmp_path / "loso.npz", card)
    shutil.copy(tmp_path / "oof.npz", tmp_path / "cross_fit_predictions.npz")
    from_files = drift_band_from_files(tmp_path / "loso.npz", card, n_boot=200)
    assert from_files["rates"] == band["rates"] and "cross_fit_predictions.npz" in from_files["computed_from"]["predictions"]
