"""Data loading: BUSI layout, masks skipped, every format to RGB, bad files in one clear error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from model_training.__main__ import main
from model_training.data import decode_all, discover, fingerprint, is_mask, to_arrays
from model_training.errors import BadFilesError, DataFolderError


def _save(path, img, fmt="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)


def test_masks_are_skipped_and_labels_ordered(tmp_path):
    grey = Image.new("L", (40, 40), 100)
    for name in ("benign (1).png", "benign (1)_mask.png", "benign (1)_mask_1.png", "benign (2).PNG"):
        _save(tmp_path / "benign" / name, grey)
    _save(tmp_path / "malignant" / "malignant (1).png", grey)
    (tmp_path / "malignant" / "notes.txt").write_text("not an image")
    samples, labels = discover(tmp_path)
    assert [s.key for s in samples] == ["benign/benign (1).png", "benign/benign (2).PNG", "malignant/malignant (1).png"]
    assert labels == ["benign", "malignant"]  # a subset of the classes is fine
    assert is_mask(tmp_path / "x_mask_12.png") and not is_mask(tmp_path / "mask (1).png")


def test_every_format_and_mode_becomes_rgb(tmp_path):
    rng = np.random.default_rng(0)
    grey = Image.fromarray((rng.random((50, 60)) * 255).astype(np.uint8), mode="L")
    sixteen = Image.fromarray((rng.random((50, 60)) * 65535).astype(np.uint16))
    rgba = grey.convert("RGBA")
    palette = grey.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    _save(tmp_path / "normal" / "a.png", grey)
    _save(tmp_path / "normal" / "b.png", sixteen)
    _save(tmp_path / "normal" / "c.png", rgba)
    _save(tmp_path / "normal" / "d.png", palette)
    _save(tmp_path / "normal" / "e.jpg", grey.convert("RGB"), "JPEG")
    _save(tmp_path / "normal" / "f.bmp", grey.convert("RGB"), "BMP")
    samples, _ = discover(tmp_path)
    kept, images = decode_all(samples, skip_bad=False)
    assert len(kept) == 6 and all(img.mode == "RGB" for img in images)
    arrays = to_arrays(images, 32)
    assert arrays.shape == (6, 32, 32, 3) and arrays.dtype == np.float32
    assert 0 <= arrays.min() and arrays.max() <= 255 and arrays.std() > 10


def _folder_with_bad_files(root):
    _save(root / "benign" / "good.png", Image.new("L", (40, 40), 100))
    (root / "benign" / "truncated.png").write_bytes(
        (lambda b: b.getvalue()[:60])(_png_buffer()))
    (root / "malignant" ).mkdir(parents=True, exist_ok=True)
    (root / "malignant" / "text.png").write_bytes(b"hello, not a png")
    _save(root / "malignant" / "tiny.png", Image.new("L", (8, 8), 100))


def _png_buffer():
    buf = io.BytesIO()
    Image.new("L", (64, 64), 50).save(buf, format="PNG")
    return buf


def test_bad_files_are_listed_in_one_error(tmp_path):
    _folder_with_bad_files(tmp_path)
    samples, _ = discover(tmp_path)
    with pytest.raises(BadFilesError) as info:
        decode_all(samples, skip_bad=False)
    message = str(info.value)
    assert len(info.value.bad) == 3
    for name in ("truncated.png", "text.png", "tiny.png"):
        assert name in message
    assert "--skip-bad" in message
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        kept, images = decode_all(samples, skip_bad=True)
    assert [s.path.name for s in kept] == ["good.png"]


def test_cli_reports_bad_files_without_traceback(tmp_path, capsys):
    _folder_with_bad_files(tmp_path / "data")
    assert main(["audit", str(tmp_path / "data"), "--out", str(tmp_path / "a.json")]) == 2
    err = capsys.readouterr().err
    assert "error: 3 image file(s) could not be read" in err and "Traceback" not in err
    with pytest.warns(UserWarning, match="skipping unreadable image") as skipped:
        assert main(["audit", str(tmp_path / "data"), "--out", str(tmp_path / "a.json"), "--skip-bad"]) == 0
    assert len(skipped) == 3


def test_missing_or_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataFolderError, match="does not exist"):
        discover(tmp_path / "nope")
    (tmp_path / "benign").mkdir()
    with pytest.raises(DataFolderError, match="BUSI layout"):
        discover(tmp_path)


def test_fingerprint_changes_with_content(tmp_path):
    _save(tmp_path / "benign" / "a.png", Image.new("L", (40, 40), 100))
    before = fingerprint(discover(tmp_path)[0])
    _save(tmp_path / "benign" / "a.png", Image.new("L", (40, 40), 101))
    assert fingerprint(discover(tmp_path)[0]) != before
