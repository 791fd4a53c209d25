"""examples/: one held-out BUSI image per class, attributed, byte-identical to the dataset's file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from classifier.preprocessing import decode_rgb

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SPLIT = REPO / "reports" / "split.json"


def originals() -> dict[str, str]:
    """examples/README.md's table: example file -> BUSI original path."""
    rows = re.findall(r"\| `(\w+\.png)` \| `([^`]+)` \|", (EXAMPLES / "README.md").read_text())
    return dict(rows)


def test_one_small_decodable_image_per_class():
    assert sorted(p.name for p in EXAMPLES.glob("*.png")) == ["benign.png", "malignant.png", "normal.png"]
    for path in EXAMPLES.glob("*.png"):
        assert path.stat().st_size < 200_000
        decode_rgb(path.read_bytes())  # raises on anything the API would refuse


def test_attribution():
    text = (EXAMPLES / "README.md").read_text()
    for needle in ("Al-Dhabyani", "104863", "CC0", "Research use only"):
        assert needle in text
    assert set(originals()) == {"normal.png", "benign.png", "malignant.png"}


def test_examples_are_held_out_by_the_bundled_models_split():
    if not SPLIT.is_file():
        pytest.skip("reports/split.json (the bundled model's split, from `make promote`) is absent")
    split = json.loads(SPLIT.read_text())
    files = split["sites"]["busi"]["files"] if "sites" in split else split["files"]
    for example, original in originals().items():
        entry = files[original]
        assert entry["split"] == "test", f"{example} ({original}) is in the {entry['split']} split"
        assert entry["label"] == Path(example).stem


def test_examples_are_the_dataset_files(busi_dir):
    for example, original in originals().items():
        assert (EXAMPLES / example).read_bytes() == (busi_dir / original).read_bytes()
