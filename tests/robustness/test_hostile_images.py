"""Issue 10's hostile images (bench/hostile_corpus.py) through the real handler: the exact status and
code, a generous wall-time bound and a generous peak-memory bound. The request budget itself
(<= 2 s, <= 400 MB above idle) is measured by `python -m bench --only hostile`, not asserted here.
"""

from __future__ import annotations

import gc
import io
import time

import numpy as np
import pytest
from PIL import Image, ImageFile

from classifier import decoding
from classifier.lambda_context import LocalContext
from classifier.preprocessing import decode_rgb

from . import corpus as c
from bench import hostile_corpus as hostile
from .contract import CASES, check_lambda_response

#: Safety bounds only (a shared 2-core CI machine): ten times the budget's time, twice its memory.
MAX_WALL_S = 20.0
MAX_PEAK_GROWTH_MB = 800


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


@pytest.mark.parametrize("case", hostile.CORPUS, ids=[k.name for k in hostile.CORPUS])
def test_hostile_image(service, labels, case):
    event = hostile.event(case, case.build())
    gc.collect()
    measured = _reset_peak()
    rss0 = _status_kb("VmRSS")
    start = time.perf_counter()
    resp = service(event, LocalContext())
    wall = time.perf_counter() - start
    peak = _status_kb("VmHWM")
    CASES["hostile"] += 1
    status, doc = check_lambda_response(resp, labels, what=case.name)
    assert status == case.status, f"{case.name}: expected {case.status}, got {status}: {doc}"
    if case.code is not None:
        assert doc["error"]["code"] == case.code, f"{case.name}: {doc}"
    assert wall < MAX_WALL_S, f"{case.name}: {wall:.1f} s"
    if measured and rss0 and peak:
        growth_mb = (peak - rss0) / 1024
        assert growth_mb < MAX_PEAK_GROWTH_MB, f"{case.name}: peak RSS grew {growth_mb:.0f} MB"


# -- the 16-bit rule -----------------------------------------------------------------------------------


def _grey(img: Image.Image) -> np.ndarray:
    rgb = np.asarray(img)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0]


def test_twelve_bit_png_with_sbit_reads_as_twelve_bit():
    values = hostile.twelve_bit()
    got = _grey(decode_rgb(hostile.png16_grey(values, sbit=12)))
    expected = (values.astype(np.uint32) * 255 + 4095 // 2) // 4095
    assert np.array_equal(got, expected)
    assert got.max() > 200  # not the near-black image the full-range rule makes of it


def test_sixteen_bit_png_without_sbit_is_full_range():
    values = hostile.twelve_bit().astype(np.uint32) * 16
    got = _grey(decode_rgb(hostile.png16_grey(values)))
    assert np.array_equal(got, (values * 255 + 65535 // 2) // 65535)
    full = np.array([[0, 1, 128, 129, 255, 256, 32767, 32768, 65279, 65280, 65534, 65535]] * 32 * 3, dtype=np.uint16)
    got = _grey(decode_rgb(hostile.png16_grey(full.reshape(32, -1))))
    assert np.array_equal(got, ((full.reshape(32, -1).astype(np.uint32) * 255 + 32767) // 65535))


def test_sixteen_bit_rule_does_not_depend_on_the_image_maximum():
    """Raising one pixel from 255 to 256 changes that pixel by at most one level, and nothing else."""
    values = (hostile.twelve_bit().astype(np.uint32) * 255 // 4095).astype(np.uint16)  # all <= 255
    bumped = values.copy()
    bumped[0, 0] = 256
    a = _grey(decode_rgb(hostile.png16_grey(values)))
    b = _grey(decode_rgb(hostile.png16_grey(bumped)))
    assert np.array_equal(a[1:], b[1:]) and np.array_equal(a[0, 1:], b[0, 1:])
    assert abs(int(a[0, 0]) - int(b[0, 0])) <= 1


def test_sbit_on_sixteen_bit_is_sixteen_bit():
    values = hostile.twelve_bit().astype(np.uint32) * 16
    assert np.array_equal(_grey(decode_rgb(hostile.png16_grey(values, sbit=16))),
                          _grey(decode_rgb(hostile.png16_grey(values))))


# -- JPEG: strict decoding, same pixels -----------------------------------------------------------------


@pytest.mark.parametrize("mode, kwargs", [("RGB", {}), ("RGB", {"subsampling": 0}), ("RGB", {"subsampling": 1}),
                                          ("L", {}), ("RGB", {"progressive": True}), ("L", {"progressive": True})])
def test_strict_jpeg_path_gives_pillows_pixels(mode, kwargs):
    data = c.jpeg(123, 77, mode=mode, **kwargs)
    ours = decode_rgb(data)
    pil = Image.open(io.BytesIO(data))
    pil.load()
    assert ours.mode == "RGB" and np.array_equal(np.asarray(ours), np.asarray(pil.convert("RGB")))


def test_cmyk_jpeg_is_checked_then_decoded_by_pillow():
    data = c.cmyk_jpeg()
    pil = Image.open(io.BytesIO(data)).convert("RGB")
    assert np.array_equal(np.asarray(decode_rgb(data)), np.asarray(pil))
    with pytest.raises(Exception) as info:
        decode_rgb(data[: len(data) // 3] + b"\xff\xd9")
    assert getattr(info.value, "code", None) == "corrupt_image"


def test_truncated_images_are_never_filled_in():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_scan_counter_matches_the_file():
    assert decoding.inspect(c.jpeg()).jpeg_scans == 1
    assert decoding.inspect(c.jpeg(progressive=True)).jpeg_scans >= 6
    assert decoding.inspect(c.jpeg(mode="L", progressive=True)).jpeg_scans <= 10


def test_mpo_is_decoded_strictly_like_any_jpeg():
    """Pillow opens a multi-picture JPEG as format MPO: the strict path must still apply (first frame)."""
    img = c.grey_image(96, 80).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="MPO", save_all=True, append_images=[img])
    data = buf.getvalue()
    assert decode_rgb(data).size == (96, 80)
    with pytest.raises(Exception) as info:
        decode_rgb(data[: len(data) // 4] + b"\xff\xd9")
    assert getattr(info.value, "code", None) == "corrupt_image"
