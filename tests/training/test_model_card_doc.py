"""docs/model-card.md is generated from the bundled model's card: the committed page must be what the
generator writes now (numbers cannot drift), and the generator must show what the card says."""

from __future__ import annotations

import json
import shutil

from model_training.model_card_doc import render
from tests.conftest import REPO

BUNDLED = REPO / "lambda_src" / "model"


def test_committed_model_card_page_is_generated_from_the_bundled_card():
    page = (REPO / "docs" / "model-card.md").read_text()
    assert page == render(BUNDLED), ("docs/model-card.md is out of date with lambda_src/model/model.json: "
                                     "run .venv/bin/python -m model_training model-card")


def test_page_follows_the_card(tmp_path):
    shutil.copy(BUNDLED / "model.tflite", tmp_path / "model.tflite")
    card = json.loads((BUNDLED / "model.json").read_text())
    card["version"] = "abcdef0123456789"
    card["sites"][0]["leave_one_site_out"]["auc_malignant"] = 0.4242
    (tmp_path / "model.json").write_text(json.dumps(card))
    page = render(tmp_path)
    assert "`abcdef0123456789`" in page and "| 0.424 (" in page
    assert "Research use only. Not a medical device." in page
