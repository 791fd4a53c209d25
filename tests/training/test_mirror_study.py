"""model_training.mirror_study: both views against the image alone, from saved logits (no model run)."""

from __future__ import annotations

import numpy as np
import pytest

from model_training.cross_fit import FILE as CROSS_FIT_FILE
from model_training.cross_fit import CrossFit
from model_training.mirror_study import LOSO_FILE, compare, main, markdown


def _report(tmp_path, *, mirror_noise: float, seed: int = 0):
    """Two sites (one with normals) whose mirror view is the image view plus noise."""
    rng = np.random.default_rng(seed)
    site = np.array(["a"] * 120 + ["b"] * 80)
    label = np.array((["normal"] * 40 + ["benign"] * 50 + ["malignant"] * 30) + (["benign"] * 50 + ["malignant"] * 30))
    lesion = np.where(label == "normal", -2.0, 2.0) + rng.normal(0, 1.5, len(label))
    malig = np.where(label == "malignant", 1.0, -1.0) + rng.normal(0, 1.2, len(label))
    views = lambda x: np.stack([x, x + rng.normal(0, mirror_noise, len(x))]).astype(np.float32)  # noqa: E731
    keys = np.array([f"k{i}" for i in range(len(label))])
    np.savez_compressed(tmp_path / LOSO_FILE, site=site, key=keys, label=label, lesion_logits=views(lesion),
                        malignant_logits=views(malig), heat_peak=np.zeros(len(label), np.float32))
    CrossFit(site, keys, label, np.arange(len(label)) % 3, views(lesion + 0.5), views(malig),
             np.zeros(len(label), np.float32)).save(tmp_path / CROSS_FIT_FILE)
    return tmp_path


def test_identical_views_give_identical_figures(tmp_path):
    result = compare(_report(tmp_path, mirror_noise=0.0), n_boot=20)
    both, one = result["image + mirror"], result["image only"]
    assert both["calibration"] == pytest.approx(one["calibration"])
    for name, figures in both["sites"].items():
        for key in ("auc_malignant", "sensitivity", "specificity", "lesions_called_normal"):
            assert figures[key] == pytest.approx(one["sites"][name][key]), (name, key)


def test_a_noisy_mirror_changes_the_figures_and_the_table_shows_both(tmp_path):
    result = compare(_report(tmp_path, mirror_noise=2.0), n_boot=20)
    assert result["image + mirror"]["calibration"] != result["image only"]["calibration"]
    assert set(result["image only"]["sites"]) == {"unseen a", "unseen b", "out of fold a", "out of fold b"}
    # the out-of-fold site with normals states how many were called normal; the unseen rows do not (no gate)
    assert result["image only"]["sites"]["out of fold a"]["normals_called_normal"] is not None
    text = markdown(result)
    assert text.count("| image + mirror |") == 4 and text.count("| image only |") == 4


def test_cli_says_what_is_missing(tmp_path, capsys):
    assert main(["--report", str(tmp_path)]) == 2
    assert LOSO_FILE in capsys.readouterr().err


def test_cli_writes_the_table(tmp_path):
    _report(tmp_path, mirror_noise=1.0)
    assert main(["--report", str(tmp_path), "--markdown", str(tmp_path / "m.md")]) == 0
    assert "| unseen a | image only |" in (tmp_path / "m.md").read_text()
