"""Duplicate audit and the group-aware split: planted duplicates found, groups never cut, conflicts reported."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from model_training.__main__ import main
from model_training.data import decode_all, discover
from model_training.dedup import find_duplicates
from model_training.split import assign_folds, split_groups
from tests.training.synthetic import make_folder


def _jpeg_resized(src, scale: float, quality: int = 80) -> Image.Image:
    img = Image.open(src).convert("RGB")
    img = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def _planted(root):
    make_folder(root, per_class=6, seed=3)
    # exact duplicate across classes (same pixels, another file name): a conflicting group
    (root / "malignant" / "copy of benign 1.png").write_bytes((root / "benign" / "benign (1).png").read_bytes())
    # near duplicates: resized and re-encoded as JPEG, same class
    _jpeg_resized(root / "normal" / "normal (2).png", 1.7).save(root / "normal" / "normal big.jpg")
    _jpeg_resized(root / "benign" / "benign (3).png", 0.8, quality=60).save(root / "benign" / "benign small.jpg")
    return root


def test_planted_duplicates_are_grouped_and_conflicts_reported(tmp_path):
    root = _planted(tmp_path / "data")
    samples, _ = discover(root)
    samples, images = decode_all(samples, skip_bad=False)
    audit = find_duplicates(images)
    key = {s.key: i for i, s in enumerate(samples)}
    group = lambda k: audit.group_of[key[k]]  # noqa: E731
    assert group("benign/benign (1).png") == group("malignant/copy of benign 1.png")
    assert group("normal/normal (2).png") == group("normal/normal big.jpg")
    assert group("benign/benign (3).png") == group("benign/benign small.jpg")
    assert (key["benign/benign (1).png"], key["malignant/copy of benign 1.png"]) in audit.exact_pairs
    # distinct synthetic frames are not merged
    assert len(audit.duplicate_groups()) == 3
    conflicts = audit.conflicting_groups([s.label for s in samples])
    assert [sorted(samples[i].key for i in g) for g in conflicts] == [
        ["benign/benign (1).png", "malignant/copy of benign 1.png"]]


def test_audit_cli_writes_json(tmp_path, capsys):
    root = _planted(tmp_path / "data")
    out = tmp_path / "audit.json"
    assert main(["audit", str(root), "--out", str(out)]) == 0
    audit = json.loads(out.read_text())
    assert audit["images"] == 21 and audit["per_class"] == {"benign": 7, "malignant": 7, "normal": 7}
    assert audit["exact_duplicate_pairs"] == [["benign/benign (1).png", "malignant/copy of benign 1.png"]]
    assert len(audit["conflicting_groups"]) == 1 and audit["conflicting_groups"][0]["labels"] == ["benign", "malignant"]
    assert "conflicting-label groups: 1" in capsys.readouterr().out


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=6, max_size=60),
    seed=st.integers(0, 2**16),
)
def test_split_never_cuts_a_group(sizes, seed):
    group_of = [g for g, n in enumerate(sizes) for _ in range(n)]
    labels = [("benign", "malignant", "normal")[g % 3] for g in group_of]
    split = split_groups(group_of, labels, val_fraction=0.15, test_fraction=0.2, seed=seed)
    for g in set(group_of):
        assert len({s for s, gg in zip(split, group_of) if gg == g}) == 1
    assert split == split_groups(group_of, labels, val_fraction=0.15, test_fraction=0.2, seed=seed)


def test_split_is_stratified_and_seeded():
    group_of = list(range(300))  # singletons: the split can hit the targets exactly
    labels = ["benign"] * 150 + ["malignant"] * 100 + ["normal"] * 50
    split = split_groups(group_of, labels, val_fraction=0.2, test_fraction=0.2, seed=1)
    for label, n in (("benign", 150), ("malignant", 100), ("normal", 50)):
        got = [s for s, l in zip(split, labels) if l == label]
        assert got.count("test") == round(0.2 * n) and got.count("val") == round(0.2 * n)
    assert split != split_groups(group_of, labels, val_fraction=0.2, test_fraction=0.2, seed=2)
    assert np.mean([s == "train" for s in split]) == 0.6


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=6, max_size=60),
    k=st.integers(2, 5),
    seed=st.integers(0, 2**16),
)
def test_folds_never_cut_a_group(sizes, k, seed):
    group_of = [g for g, n in enumerate(sizes) for _ in range(n)]
    labels = [("benign", "malignant", "normal")[g % 3] for g in group_of]
    folds = assign_folds(group_of, labels, k=k, seed=seed)
    assert set(folds) <= set(range(k))
    for g in set(group_of):
        assert len({f for f, gg in zip(folds, group_of) if gg == g}) == 1
    assert folds == assign_folds(group_of, labels, k=k, seed=seed)


def test_folds_are_stratified():
    group_of = list(range(300))
    labels = ["benign"] * 150 + ["malignant"] * 100 + ["normal"] * 50
    folds = assign_folds(group_of, labels, k=5, seed=3)
    for label, n in (("benign", 150), ("malignant", 100), ("normal", 50)):
        got = [f for f, l in zip(folds, labels) if l == label]
        assert [got.count(f) for f in range(5)] == [n // 5] * 5
    with pytest.raises(ValueError):
        assign_folds(group_of, labels, k=1, seed=0)
