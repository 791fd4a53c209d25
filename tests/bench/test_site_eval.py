"""bench.site_eval: a labelled folder sent to the local API over HTTP, scored from the served labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.site_eval import main, score
from tests.model_factory import build_tiny_lesion_model, ultrasound_like


def test_score_counts_the_served_labels_and_resamples_patients():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 2, 1, 2, 2, 0])
    m = score(y, pred, [0.1, 0.9, 0.2, 0.7, 0.8, 0.3], ["a", "a", "b", "b", "c", "c"], n_boot=200)
    assert m["sensitivity"] == 0.5 and m["specificity"] == 0.5  # 1 of 2 malignant; 2 of 4 others not malignant
    assert m["normals_called_normal"] == 0.5 and m["lesions_called_normal"] == 0.25 and m["groups"] == 3
    lo, hi = m["ci95"]["sensitivity"]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0


@pytest.mark.slow
def test_site_eval_over_http(tmp_path):
    model = build_tiny_lesion_model(tmp_path / "model")
    for k, cls in enumerate(("normal", "benign", "malignant")):
        (tmp_path / "site" / cls).mkdir(parents=True)
        for i in range(3):
            ultrasound_like(seed=10 * k + i).save(tmp_path / "site" / cls / f"{cls}_{i}.png")
    assert main(["--model", str(model), "--data", str(tmp_path / "site"), "--out", str(tmp_path / "out")]) == 0
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    site = doc["sites"]["site"]
    assert site["images"] == 9 and doc["model"]["name"] == "tiny-lesion-model"
    m = site["points"]["default"]
    assert m["n"] == 9 and 0.0 <= m["specificity"] <= 1.0
    assert "| site | default | 9 of 9 |" in (tmp_path / "out" / "table.md").read_text()
