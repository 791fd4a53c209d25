"""`cv`: k-fold cross-validation on train + val only; every pooled image gets one out-of-fold prediction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_training.__main__ import main
from model_training.oof import crossfit_probs
from tests.training.synthetic import make_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    data = make_folder(root / "data", per_class=16, seed=3)
    args = ["cv", "--data", str(data), "--out", str(root / "cv"), "--work", str(root / "work"),
            "--backbone", "efficientnet_b0", "--weights", "none", "--input-size", "40", "--epochs", "1",
            "--head-units", "0", "--head-dropout", "0.1", "--head-lr", "3e-3", "--head-epochs", "30",
            "--ensemble", "2", "--folds", "3", "--seed", "5"]
    assert main(args) == 0
    return root / "cv"


def test_cv_predicts_every_pooled_image_once_and_never_the_test_split(cv_run):
    result = json.loads((cv_run / "cv.json").read_text())
    split = json.loads((cv_run / "split.json").read_text())["files"]
    with np.load(cv_run / "oof_logits.npz") as oof:
        keys, fold_of, stage1, members = list(oof["keys"]), oof["fold_of"], oof["stage1"], oof["members"]
    pooled = {k for k, v in split.items() if v["split"] in ("train", "val")}
    assert set(keys) == pooled and len(keys) == len(pooled) == result["n"]
    assert not {k for k, v in split.items() if v["split"] == "test"} & set(keys)
    assert result["test_split_used"] is False
    # a duplicate group sits in one fold only
    group_fold = {}
    for key, fold in zip(keys, fold_of):
        assert group_fold.setdefault(split[key]["group"], fold) == fold
    assert sorted(set(fold_of.tolist())) == [0, 1, 2]
    assert sum(r["held_out"] for r in result["fold_rows"]) == result["n"]
    # every image got logits from its fold's models (no row left at the zero it started from)
    assert stage1.shape[:2] == (2, len(keys)) and members.shape[:3] == (2, 2, len(keys))
    assert np.all(np.abs(stage1).sum(axis=-1) > 0) and np.all(np.abs(members).sum(axis=-1) > 0)


def test_cv_reports_every_candidate(cv_run):
    result = json.loads((cv_run / "cv.json").read_text())
    assert set(result["candidates"]) == {f"{c}/{v}" for c in ("stage1", "stage2", "stage2_ensemble")
                                         for v in ("single", "flip")}
    for m in result["candidates"].values():
        assert m["n"] == result["n"] and 0 <= m["accuracy"] <= 1 and m["nll"] > 0
        assert len(m["temperatures"]) == 3
    assert "| stage2_ensemble/flip |" in (cv_run / "cv.md").read_text()


def test_crossfit_temperature_is_fitted_without_the_fold_it_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    logits = rng.normal(size=(600, 3))
    logits[np.arange(600), y] += 2.0
    fold_of = np.repeat([0, 1], 300)
    # fold 1's logits are 4x sharper: a T fitted on fold 0 alone cannot tame them, a pooled T would
    sharp = logits.copy()
    sharp[300:] *= 4
    probs, temps = crossfit_probs([sharp], y, fold_of)
    assert len(temps) == 2 and temps[0] > 2 * temps[1]  # fold 0 scored with T from fold 1 (sharp) and vice versa
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
