"""One preprocessing for real: the grey frames the lesion recipe trains on are, bit for bit, the input the
served engine builds from the same file (issue 19 item 5), on generated images and on real images of each
development site."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier.engine import Engine
from classifier.preprocessing import PREPROCESSING_ID, decode_rgb, resize_for_model
from model_training.sites import load_site
from tests.conftest import SHARED
from tests.model_factory import build_tiny_lesion_model

SIDE = 64


def _copy_site(src: Path, dst: Path, per_class: int = 2, pattern: str = "*.png") -> Path:
    """A small site folder in the BUSI layout: a few images of each class with their masks."""
    for cls_dir in sorted(p for p in src.iterdir() if p.is_dir()):
        images = sorted(p for p in cls_dir.glob(pattern) if "_mask" not in p.name)[:per_class]
        (dst / cls_dir.name).mkdir(parents=True, exist_ok=True)
        for img in images:
            for f in [img, *cls_dir.glob(f"{img.stem}_mask*.png")]:
                shutil.copy(f, dst / cls_dir.name / f.name)
    return dst


def _generated_site(root: Path) -> Path:
    rng = np.random.default_rng(3)
    for k, cls in enumerate(("normal", "benign", "malignant")):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            rgb = rng.integers(0, 256, (90 + 7 * i, 130, 3), dtype=np.uint8)
            rgb[..., 2] = rgb[..., 2] // 2  # a tint: the channels differ, as a vendor's export does
            img = Image.fromarray(rgb)
            if i:  # one JPEG, one PNG per class
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=90)
                (root / cls / f"{cls}_{i}.jpg").write_bytes(buf.getvalue())
            else:
                img.save(root / cls / f"{cls}_{i}.png")
            mask = np.zeros(rgb.shape[:2], np.uint8)
            mask[20:50, 30:70] = 255 if cls != "normal" else 0
            Image.fromarray(mask).save(root / cls / f"{cls}_{i}_mask.png")
    return root


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return Engine(build_tiny_lesion_model(tmp_path_factory.mktemp("parity-model"), input_size=SIDE))


def _assert_same_input(site_root: Path, engine: Engine, tmp_path: Path) -> int:
    site = load_site(site_root, side=SIDE, cache_dir=tmp_path / "cache")
    assert engine.card.preprocessing_id == PREPROCESSING_ID
    for i, sample in enumerate(site.samples):
        served = engine.inspect(sample.path.read_bytes()).image  # what the API feeds LiteRT
        trained = np.repeat(site.x[i][..., None].astype(np.float32), 3, axis=-1)  # what training feeds Keras
        assert served.dtype == np.float32 and np.array_equal(served, trained), sample.key
    again = load_site(site_root, side=SIDE, cache_dir=tmp_path / "cache")  # and from the on-disk cache
    assert np.array_equal(again.x, site.x)
    return len(site.samples)


def test_training_input_is_the_served_input_on_generated_images(engine, tmp_path):
    assert _assert_same_input(_generated_site(tmp_path / "gen"), engine, tmp_path) == 6


def test_served_input_is_grey_rounded_to_8_bits():
    img = Image.fromarray(np.dstack([np.full((40, 60), v, np.uint8) for v in (10, 20, 31)]))  # mean 20.33
    arr = resize_for_model(decode_rgb(_png(img)), 32)
    assert np.all(arr[..., 0] == arr[..., 2]) and set(np.unique(arr)) <= {0.0, 20.0}


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.shared
@pytest.mark.parametrize("site,pattern", [("busi", "*.png"), ("busbra", "*.png"), ("uclm_dev", "*.jpg")])
def test_training_input_is_the_served_input_on_each_site(site, pattern, engine, tmp_path):
    src = SHARED / "data" / site
    if not src.is_dir():
        pytest.skip(f"needs {src} (../shared is absent on this clone)")
    assert _assert_same_input(_copy_site(src, tmp_path / site, pattern=pattern), engine, tmp_path) >= 4
