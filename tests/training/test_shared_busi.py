"""Facts about the shared BUSI folder and the bundled model (skipped when ../shared is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classifier.engine import Engine
from model_training.__main__ import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.shared
def test_audit_finds_busi_duplicates_and_conflicts(busi_dir, tmp_path):
    out = tmp_path / "audit.json"
    assert main(["audit", str(busi_dir), "--out", str(out)]) == 0
    audit = json.loads(out.read_text())
    assert audit["images"] == 624  # masks skipped
    assert audit["per_class"] == {"benign": 349, "malignant": 168, "normal": 107}
    # the known byte-identical pair across classes
    assert ["benign/benign (433).png", "malignant/malignant (145).png"] in audit["exact_duplicate_pairs"]
    conflict_files = {f for g in audit["conflicting_groups"] for f in g["files"]}
    assert {"benign/benign (433).png", "malignant/malignant (145).png"} <= conflict_files
    assert audit["images_in_duplicate_groups"] > 100  # BUSI has many near-duplicate frames


def test_bundled_model_card_is_complete():
    model_dir = REPO / "lambda_src" / "model"
    engine = Engine(model_dir)  # verifies sha256, preprocessing id, input/output shapes
    card = engine.card
    assert card.labels == ["normal", "benign", "malignant"] and card.backbone == "mobilenet_v2"
    assert card.weights_source and "sha256:" in card.dataset_fingerprint and card.created_at
    for key in ("n", "accuracy", "macro_f1", "auc_ovr_macro", "auc_malignant", "ece", "confusion_matrix"):
        assert key in card.test_metrics
    assert card.extra["parity"]["same_label"] == card.extra["parity"]["n"] == card.test_metrics["n"]
    assert [s["name"] for s in card.sites] == ["busi", "busbra"]
    for site in card.sites:  # per-site metrics, unseen (leave-one-site-out) and held-out test
        assert site["leave_one_site_out"]["auc_malignant"] and site["test_metrics"]["auc_malignant"]
    assert 0 < card.operating_point["malignant_threshold"] < card.operating_point["normal_threshold"] <= 1
    assert card.localisation["grid"] == card.input_size // 16
    metrics = json.loads((REPO / "reports" / "metrics.json").read_text())
    assert metrics["version"] == card.version  # the committed report is this model's
    assert metrics["pooled_test"]["accuracy"] == card.test_metrics["accuracy"]


@pytest.mark.shared
def test_evaluate_reproduces_the_bundled_test_metrics(busi_dir, tmp_path):
    """`evaluate` on BUSI's test split (reports/split.json) gives the labels the report counted."""
    out = tmp_path / "ev"
    assert main(["evaluate", "--model", str(REPO / "lambda_src" / "model"), "--data", str(busi_dir),
                 "--split", str(REPO / "reports" / "split.json"), "--out", str(out), "--bootstrap", "50"]) == 0
    got = json.loads((out / "predictions.json").read_text())
    committed = json.loads((REPO / "reports" / "metrics.json").read_text())["test"]["busi"]
    assert len(got) == committed["n"]
    assert sum(p["predicted"] == p["label"] for p in got) / len(got) == pytest.approx(committed["accuracy"], abs=1e-9)
    malignant = [p for p in got if p["label"] == "malignant"]
    assert sum(p["predicted"] == "malignant" for p in malignant) / len(malignant) == pytest.approx(
        committed["sensitivity"], abs=1e-9)
