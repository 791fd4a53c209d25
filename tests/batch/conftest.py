"""Fixtures of the batch tests: a lesion-aware tiny model (heatmap + operating point) and generated images."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.model_factory import build_checked_model, build_tiny_lesion_model, colour_photo_like, ultrasound_like


@pytest.fixture(scope="session")
def lesion_model(tmp_path_factory) -> Path:
    return build_tiny_lesion_model(tmp_path_factory.mktemp("batch-lesion-model"))


@pytest.fixture(scope="session")
def checked_model(tmp_path_factory) -> Path:
    """The lesion model with a features output and its input check fitted (warnings, 422 not_ultrasound)."""
    return build_checked_model(tmp_path_factory.mktemp("batch-checked-model"), tmp_path_factory.mktemp("sites"))


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_folder(root: Path, n_per_class: int = 4, *, photo: bool = False) -> dict[str, bytes]:
    """A labelled folder in the BUSI layout with PNG and JPEG frames, a mask file, and two bad files."""
    files: dict[str, bytes] = {}
    seed = 0
    for label in ("normal", "benign", "malignant"):
        for i in range(n_per_class):
            img = ultrasound_like(seed)
            seed += 1
            name = f"{label}/{label} ({i}).{'png' if i % 2 == 0 else 'jpg'}"
            files[name] = png(img) if i % 2 == 0 else jpeg(img)
    files["benign/benign (0)_mask.png"] = png(Image.new("L", (64, 64), 0))  # skipped, as training skips masks
    files["malignant/broken.png"] = png(ultrasound_like(99))[:200]  # truncated: corrupt_image
    files["normal/notes.png"] = b"not an image at all"  # not_an_image
    if photo:
        files["normal/holiday.png"] = png(colour_photo_like(7))  # not_ultrasound, where the input check is on
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files
