"""End to end, as a user runs it: train (weights=none, small input) -> export -> LiteRT evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from classifier.engine import Engine
from classifier.model_card import ModelCard, sha256_file
from classifier.preprocessing import PREPROCESSING_ID
from model_training.__main__ import main
from tests.training.synthetic import make_folder

pytestmark = pytest.mark.slow

METRIC_KEYS = ("n", "accuracy", "macro_f1", "per_class", "ece", "confusion_matrix", "ci95")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small training run shared by the tests below (about a minute on 2 cores)."""
    root = tmp_path_factory.mktemp("e2e")
    data = make_folder(root / "data", per_class=30, seed=1)
    # a duplicate across classes, to check conflicting groups stay out of the split
    (data / "malignant" / "dup.png").write_bytes((data / "benign" / "benign (1).png").read_bytes())
    args = ["train", "--recipe", "frozen", "--data", str(data), "--out", str(root / "model"), "--report", str(root / "report"),
            "--work", str(root / "work"), "--backbone", "efficientnet_b0", "--weights", "none", "--input-size", "48", "--epochs", "3",
            "--batch-size", "16", "--head-units", "0,32", "--head-dropout", "0.1", "--head-lr", "3e-3",
            "--head-epochs", "80", "--seed", "7", "--ensemble", "2", "--tta-flip", "auto"]
    assert main(args) == 0
    return root


def test_model_card_is_complete_and_verified(trained):
    card = ModelCard.load(trained / "model")  # verifies the sha256 too
    raw = json.loads((trained / "model" / "model.json").read_text())
    assert card.labels == ["normal", "benign", "malignant"]
    assert card.input_size == 48 and card.input_dtype == "float32"
    assert card.preprocessing_id == PREPROCESSING_ID
    assert card.tflite_sha256 == sha256_file(trained / "model" / "model.tflite")
    assert card.version == card.tflite_sha256[:16]
    assert card.temperature > 0 and card.backbone == "efficientnet_b0" and card.weights_source == "none"
    assert card.dataset_fingerprint.startswith("sha256:") and card.created_at
    assert "Research use only" in card.disclaimer
    assert set(card.split_counts) >= {"train", "val", "test"} and card.split_counts["excluded_conflicting"] == 2
    for key in ("accuracy", "macro_f1", "auc_ovr_macro", "ece", "confusion_matrix", "ci95"):
        assert key in card.test_metrics
    extra = raw["extra"]
    assert extra["config"]["seed"] == 7 and extra["config"]["input_size"] == 48
    assert extra["parity"]["same_label"] == extra["parity"]["n"] > 0
    assert extra["parity"]["max_abs_prob_diff"] <= 1e-3
    # 3 logistic-regression heads (default C grid) + 2 MLP heads (units 0 and 32)
    assert [r["kind"] for r in extra["head_search"]] == ["linear"] * 3 + ["mlp"] * 2
    assert extra["fine_tune"]["members"] == 2
    assert set(extra["stage_seconds"]) == {"data", "features", "head_search", "fine_tune", "export", "evaluate"}
    assert sum(extra["stage_seconds"].values()) <= extra["train_wall_seconds"] + 1
    assert extra["chosen"]["stage"] in ("stage1", "stage2", "stage2_ensemble")
    assert set(extra["validation"]) == {"stage1", "stage2", "stage2_ensemble"}


def test_report_files_and_split(trained):
    report = trained / "report"
    for name in ("metrics.json", "report.md", "audit.json", "split.json", "confusion_matrix.png", "roc.png",
                 "reliability.png", "training_curves.png"):
        assert (report / name).stat().st_size > 0, name
    split = json.loads((report / "split.json").read_text())["files"]
    assert split["malignant/dup.png"]["split"] == split["benign/benign (1).png"]["split"] == "excluded_conflict"
    groups = {}
    for entry in split.values():
        groups.setdefault(entry["group"], set()).add(entry["split"])
    assert all(len(s) == 1 for s in groups.values())  # no group crosses splits


def test_tflite_beats_chance_on_fresh_images(trained, tmp_path):
    fresh = make_folder(tmp_path / "fresh", per_class=12, seed=99)
    assert main(["evaluate", "--model", str(trained / "model"), "--data", str(fresh), "--out", str(tmp_path / "ev"),
                 "--bootstrap", "200"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in METRIC_KEYS + ("auc_ovr_macro", "auc_malignant"):
        assert key in metrics
    assert metrics["n"] == 36 and set(metrics["per_class"]) == {"normal", "benign", "malignant"}
    assert metrics["accuracy"] > 0.6, metrics["accuracy"]  # chance is 1/3
    assert (tmp_path / "ev" / "report.md").is_file() and (tmp_path / "ev" / "predictions.json").is_file()
    # what was scored is said: no split file, so every image, with the caveat
    assert metrics["scored"].startswith("all 36 images of fresh, with no split file")
    assert "Scored: all 36 images" in (tmp_path / "ev" / "report.md").read_text()
    # the served labels (the card's rule) are counted from the same predictions the API would return
    predictions = json.loads((tmp_path / "ev" / "predictions.json").read_text())
    served = metrics["served_labels"]
    assert sum(map(sum, served["confusion_matrix"]["matrix"])) == 36
    hits = sum(p["predicted"] == p["label"] for p in predictions)
    assert served["accuracy"] == pytest.approx(hits / 36) and served["rule"]


def test_evaluate_two_class_subset(trained, tmp_path):
    subset = make_folder(tmp_path / "subset", per_class=8, seed=5, classes=("benign", "malignant"))
    assert main(["evaluate", "--model", str(trained / "model"), "--data", str(subset), "--out", str(tmp_path / "ev"),
                 "--bootstrap", "100"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == 16 and "auc_ovr_macro" not in metrics and "auc_malignant" in metrics
    assert metrics["per_class"]["normal"]["support"] == 0
    assert metrics["classes_absent_from_data"] == ["normal"]
    predicted_normal = sum(row[0] for row in metrics["confusion_matrix"]["matrix"])
    assert metrics["predictions_of_absent_classes"] == predicted_normal
    assert "Classes absent from this data: normal" in (tmp_path / "ev" / "report.md").read_text()


def test_evaluate_refuses_unknown_class(trained, tmp_path, capsys):
    other = make_folder(tmp_path / "other", per_class=2, seed=5, classes=("benign", "cyst"))
    assert main(["evaluate", "--model", str(trained / "model"), "--data", str(other), "--out", str(tmp_path / "ev")]) == 2
    assert "cyst" in capsys.readouterr().err


def test_engine_serves_the_exported_probabilities(trained):
    engine = Engine(trained / "model")
    probs = engine.predict_array(np.full((48, 48, 3), 100.0, dtype=np.float32))
    assert probs.shape == (3,) and abs(probs.sum() - 1) < 1e-5


def test_default_stage1_is_chosen_by_cross_validation_and_refit(tmp_path):
    """--epochs 0 (the default): head, flip TTA and temperature chosen out of fold on train + val,
    the head refit on both, the test split still evaluated once by LiteRT."""
    data = make_folder(tmp_path / "data", per_class=20, seed=2)
    args = ["train", "--recipe", "frozen", "--data", str(data), "--out", str(tmp_path / "model"), "--report", str(tmp_path / "report"),
            "--work", str(tmp_path / "work"), "--backbone", "efficientnet_b0", "--weights", "none",
            "--input-size", "40", "--head-c", "0.01,1", "--seed", "3", "--cv-folds", "3"]
    assert main(args) == 0
    extra = json.loads((tmp_path / "model" / "model.json").read_text())["extra"]
    assert extra["selection"].startswith("3-fold cross-validation over train + val")
    assert extra["chosen"]["stage"] == "stage1" and extra["fine_tune"]["members"] == 0
    assert [r["head"] for r in extra["head_search"]] == ["logistic regression, C 0.01", "logistic regression, C 1"]
    n_dev = sum(extra["cv_estimate"]["per_class"][c]["support"] for c in ("normal", "benign", "malignant"))
    split = json.loads((tmp_path / "report" / "split.json").read_text())["files"]
    assert n_dev == extra["cv_estimate"]["n"] == sum(v["split"] in ("train", "val") for v in split.values())
    assert extra["parity"]["same_label"] == extra["parity"]["n"] == sum(v["split"] == "test" for v in split.values())
    assert "Stage 2 (fine-tuning): off" in (tmp_path / "report" / "report.md").read_text()
    assert ModelCard.load(tmp_path / "model").temperature == pytest.approx(
        extra["validation"]["stage1"][extra["chosen"]["tta"]]["temperature"])
