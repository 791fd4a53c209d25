"""Hypothesis fuzzing of the Lambda handler: whatever arrives, a 4xx JSON error or a valid prediction.

Never a 5xx, never an exception escaping the handler. ``ROBUSTNESS_FUZZ_EXAMPLES``
sets the examples per test (default 1000; the count actually sent is printed
at the end of the run).
"""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classifier.settings import DEFAULT_MAX_BODY_BYTES

from . import corpus as c
from .conftest import env_int
from .events import b64, event, json_event, multipart_event

EXAMPLES = env_int("ROBUSTNESS_FUZZ_EXAMPLES", 1000)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CONTENT_TYPES = ["image/png", "image/jpeg", "application/dicom", "application/json", "multipart/form-data",
                 "multipart/form-data; boundary=x", "text/plain", "image/gif", "application/octet-stream",
                 "IMAGE/JPEG", "image/png; charset=utf-8", "", ";", "image/", "/", None]
SEEDS = {
    "png": c.png(), "png-grey": c.png(mode="L"), "jpeg": c.jpeg(), "progressive": c.progressive_jpeg(),
    "cmyk": c.cmyk_jpeg(), "png16": c.png16_grey(), "png48": c.png16_rgb(), "bmp": c.bmp(),
    "exif": c.exif_rotated_jpeg(), "palette": c.palette_png_with_transparency(), "apng": c.animated_png(),
    "gif": c.animated_gif(),
    "dicom": c.dicom(), "dicom-jpeg": c.dicom(syntax="jpeg"), "dicom-rle": c.dicom(syntax="rle"),
    "dicom-cine": c.dicom(frames=3, window=(128, 256), regions=[(4, 4, 90, 70)]),
}

# -- mutations of a valid image ----------------------------------------------


def _patch_png_ihdr(data: bytes, width: int, height: int) -> bytes:
    if not data.startswith(b"\x89PNG") or len(data) < 33:
        return data
    ihdr = struct.pack(">II", width, height) + data[24:29]
    return data[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF) + data[33:]


@st.composite
def mutated_image(draw) -> tuple[str, bytes, str]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    ops = draw(st.lists(st.sampled_from(["truncate", "flip", "insert", "delete", "duplicate", "dims"]),
                        min_size=1, max_size=4))
    for op in ops:
        n = len(data)
        if n < 2:
            break
        pos = draw(st.integers(0, n - 1))
        if op == "truncate":
            del data[pos:]
        elif op == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 256))]
        elif op == "duplicate":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 512))]
        elif op == "dims":
            big = st.integers(0, 2**31 - 1) | st.sampled_from([0, 1, 31, 32, 100_000, 65_535, 2**31 - 1])
            data = bytearray(_patch_png_ihdr(bytes(data), draw(big), draw(big)))
    ctype = draw(st.sampled_from(["image/png", "image/jpeg", "application/dicom"]))
    return f"{name} after {ops}", bytes(data), ctype


@FUZZ
@given(case=mutated_image(), as_json=st.booleans())
def test_damaged_images(call, case, as_json):
    what, data, ctype = case
    ev = event(json.dumps({"image": b64(data)}), "application/json") if as_json else event(data, ctype)
    call(ev, what=what, kind="damaged image")


# -- random bodies, headers, methods and paths --------------------------------


@FUZZ
@given(body=st.one_of(st.none(), st.binary(max_size=4096), st.text(max_size=512)),
       ctype=st.sampled_from(CONTENT_TYPES) | st.text(max_size=40),
       encoded=st.sampled_from([None, True, False]),
       header_name=st.sampled_from(["Content-Type", "content-type", "CONTENT-TYPE"]),
       method=st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
       path=st.sampled_from(["/predict"] * 6 + ["/health", "/", "/predict/", "/PREDICT", "/predict/../health"])
       | st.text(alphabet=st.characters(codec="ascii"), max_size=20).map(lambda s: "/" + s))
def test_random_requests(call, service, labels, body, ctype, encoded, header_name, method, path):
    if isinstance(body, str) and encoded:
        encoded = True  # arbitrary text claimed to be base64: usually invalid base64
    ev = event(body, ctype, method=method, path=path, base64_encoded=encoded, header_name=header_name)
    if method == "GET" and path in ("/health", "/"):  # the health check and the page (HTML)
        from classifier.lambda_context import LocalContext

        assert service(ev, LocalContext())["statusCode"] == 200
        return
    call(ev, what=f"{method} {path} {ctype!r} body {str(body)[:60]!r}", kind="random request")


# -- JSON bodies ---------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
image_values = st.one_of(
    json_values,
    st.binary(max_size=2048).map(b64),
    st.text(max_size=200),
    mutated_image().map(lambda case: b64(case[1])),
    st.sampled_from(sorted(SEEDS)).map(lambda k: b64(SEEDS[k])),
    st.sampled_from(sorted(SEEDS)).map(lambda k: "data:image/png;base64," + b64(SEEDS[k])),
)


@FUZZ
@given(doc=st.one_of(st.dictionaries(st.text(max_size=8), json_values, max_size=4),
                     st.builds(lambda extra, image: {**extra, "image": image},
                               st.dictionaries(st.text(max_size=8), json_values, max_size=3), image_values),
                     json_values),
       raw_suffix=st.sampled_from(["", "", "", "}", "\x00", "garbage"]))
def test_json_bodies(call, doc, raw_suffix):
    body = json.dumps(doc) + raw_suffix
    call(event(body, "application/json"), what=f"json {body[:80]!r}", kind="json body")


# -- multipart ------------------------------------------------------------------

boundaries = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789'()+_,-./:=?", min_size=1, max_size=70)
parts = st.lists(st.tuples(st.sampled_from(["image", "image", "file", "name", "", "IMAGE", 'ima"ge']),
                           st.one_of(st.sampled_from(sorted(SEEDS)).map(SEEDS.get), st.binary(max_size=512)),
                           st.sampled_from([None, "us.png", "x.jpg", ""])),
                 max_size=4)


@FUZZ
@given(fields=parts, boundary=boundaries, header_boundary=st.none() | boundaries,
       damage=st.sampled_from(["none", "none", "truncate", "lf-only", "no-close", "junk-prefix", "header-mismatch"]),
       cut=st.floats(0, 1))
def test_multipart_bodies(call, fields, boundary, header_boundary, damage, cut):
    body = c.multipart(fields, boundary)
    declared = boundary
    if damage == "truncate":
        body = body[: int(len(body) * cut)]
    elif damage == "lf-only":
        body = body.replace(b"\r\n", b"\n")
    elif damage == "no-close":
        body = body[: body.rfind(b"--" + boundary.encode())]
    elif damage == "junk-prefix":
        body = b"preamble junk\r\n" + body
    elif damage == "header-mismatch":
        declared = header_boundary
    call(multipart_event(body, declared), what=f"multipart {damage} {[f[0] for f in fields]}", kind="multipart")


# -- real images of random (often absurd) dimensions ----------------------------

sides = st.one_of(st.integers(1, 64), st.integers(1, 2000), st.sampled_from([1, 31, 32, 33, 255, 256, 4000]))


@settings(FUZZ, max_examples=max(10, EXAMPLES // 5))  # encoding the images costs more than sending them
@given(width=sides, height=sides, fmt=st.sampled_from(["PNG", "JPEG", "BMP"]),
       mode=st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16", "CMYK", "LA"]))
def test_random_dimensions_and_modes(call, width, height, fmt, mode):
    from PIL import Image

    img = Image.new("L", (width, height), 90)
    if mode == "I;16":
        img = img.convert("I").point(lambda v: v * 257).convert("I;16") if fmt == "PNG" else img
    else:
        try:
            img = img.convert(mode)
        except ValueError:
            pass
    try:
        data = c.encode(img, fmt)
    except (OSError, KeyError, ValueError):  # this format cannot store this mode
        data = c.encode(img.convert("RGB"), fmt)
    # Each format declared as itself (BMP has no raw route: JSON); a mismatch is tested in test_named_cases.
    ev = json_event({"image": b64(data)}) if fmt == "BMP" else event(data, "image/jpeg" if fmt == "JPEG" else "image/png")
    status, doc = call(ev, what=f"{fmt} {mode} {width}x{height}", kind="dimensions")
    small, aspect = min(width, height) < 32, max(width, height) / min(width, height) > 8
    sent = len(ev["body"]) if fmt == "BMP" else len(data)  # BMP goes as JSON base64: 4/3 the bytes
    expected = 413 if sent > DEFAULT_MAX_BODY_BYTES else 422 if (small or aspect) else 200
    assert status == expected, f"{fmt} {mode} {width}x{height}: expected {expected}, got {status} {doc}"


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_images_are_valid(call, name):
    """The fuzz seeds themselves: every one is a servable image except the GIF (not an accepted format)."""
    data = SEEDS[name]
    ev = (event(data, "image/jpeg") if data.startswith(b"\xff\xd8") else
          json_event({"image": b64(data)}) if data.startswith(b"BM") else
          event(data, "application/dicom") if data[128:132] == b"DICM" else event(data, "image/png"))
    status, _ = call(ev, what=name, kind="seed")
    assert status == (400 if name == "gif" else 200)
