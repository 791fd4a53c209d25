"""Every hostile or unusual input the robustness issue names, each with the exact status and code it must get.

The fuzz tests (test_fuzz_handler.py) then vary these at random; here each
case is pinned so a regression says precisely which input broke.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from classifier.preprocessing import MAX_IMAGE_PIXELS, decode_rgb
from classifier.settings import DEFAULT_MAX_BODY_BYTES

from . import corpus as c
from .events import b64, event, json_event, multipart_event

LIMIT = DEFAULT_MAX_BODY_BYTES
BOUNDARY = "----fuzzboundary7MA4YWxk"


def _random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size=n, dtype=np.uint8).tobytes()


def _near_limit_png() -> bytes:
    side = int(MAX_IMAGE_PIXELS**0.5) - 10  # just under the pixel limit: must be served, not refused
    return encode_zero_png(side)


def encode_zero_png(side: int) -> bytes:
    return c.encode(Image.new("L", (side, side)), "PNG")


# (id, event factory, expected status, expected error code or None for a prediction)
CASES = [
    # random bytes and damaged images
    ("random-bytes-as-png", lambda: event(_random_bytes(5000), "image/png"), 400, "not_an_image"),
    ("random-bytes-as-jpeg", lambda: event(_random_bytes(5000, 1), "image/jpeg"), 400, "not_an_image"),
    ("png-signature-only", lambda: event(b"\x89PNG\r\n\x1a\n", "image/png"), 400, None),
    ("truncated-png-half", lambda: event(c.truncated(c.png(), 0.5), "image/png"), 400, "corrupt_image"),
    ("truncated-png-header", lambda: event(c.truncated(c.png(), 0.002), "image/png"), 400, None),
    ("truncated-jpeg-half", lambda: event(c.truncated(c.jpeg(), 0.5), "image/jpeg"), 400, "corrupt_image"),
    ("truncated-jpeg-header", lambda: event(c.jpeg()[:20], "image/jpeg"), 400, None),
    ("png-bad-crc", lambda: event(c.png()[:-8] + b"\x00\x00\x00\x00" + c.png()[-4:], "image/png"), None, None),
    ("jpeg-no-eoi", lambda: event(c.jpeg()[:-2], "image/jpeg"), None, None),
    # decompression bombs and absurd sizes
    ("png-declares-10-gigapixels", lambda: event(c.png_bomb_header(), "image/png"), 422, "bad_image_dimensions"),
    ("jpeg-declares-65000x65000", lambda: event(c.jpeg_bomb_header(), "image/jpeg"), 422, "bad_image_dimensions"),
    ("png-deflate-bomb-144-megapixels", lambda: event(c.png_zlib_bomb(), "image/png"), 422, "bad_image_dimensions"),
    ("png-just-under-pixel-limit", lambda: event(_near_limit_png(), "image/png"), 200, None),
    ("png-1x1", lambda: event(c.png(1, 1), "image/png"), 422, "image_too_small"),
    ("png-100000x1", lambda: event(c.png(100_000, 1), "image/png"), 422, "image_too_small"),
    ("png-1x100000", lambda: event(c.png(1, 100_000), "image/png"), 422, "image_too_small"),
    ("png-300x32-aspect", lambda: event(c.png(300, 32), "image/png"), 422, "bad_image_dimensions"),
    ("png-32x32-smallest", lambda: event(c.png(32, 32), "image/png"), 200, None),
    # formats and colour modes
    ("animated-gif-as-png", lambda: event(c.animated_gif(), "image/png"), 400, "not_an_image"),
    ("animated-gif-as-gif", lambda: event(c.animated_gif(), "image/gif"), 415, "unsupported_media_type"),
    ("animated-png", lambda: event(c.animated_png(), "image/png"), 200, None),
    ("cmyk-jpeg", lambda: event(c.cmyk_jpeg(), "image/jpeg"), 200, None),
    ("png-16-bit-grey", lambda: event(c.png16_grey(), "image/png"), 200, None),
    ("png-48-bit-rgb", lambda: event(c.png16_rgb(), "image/png"), 200, None),
    ("png-palette-transparency", lambda: event(c.palette_png_with_transparency(), "image/png"), 200, None),
    ("png-rgba", lambda: event(c.rgba_png(), "image/png"), 200, None),
    ("png-grey", lambda: event(c.png(mode="L"), "image/png"), 200, None),
    ("jpeg-grey", lambda: event(c.jpeg(mode="L"), "image/jpeg"), 200, None),
    ("jpeg-progressive", lambda: event(c.progressive_jpeg(), "image/jpeg"), 200, None),
    ("jpeg-exif-rotated", lambda: event(c.exif_rotated_jpeg(), "image/jpeg"), 200, None),
    ("jpeg-broken-exif", lambda: event(c.broken_exif_jpeg(), "image/jpeg"), 200, None),
    # the declared type must name the bytes' format, wherever it is declared
    ("bmp-sent-as-png", lambda: event(c.bmp(), "image/png"), 415, "media_type_mismatch"),
    ("png-sent-as-jpeg", lambda: event(c.png(), "image/jpeg"), 415, "media_type_mismatch"),
    ("jpeg-sent-as-png", lambda: event(c.jpeg(), "image/png"), 415, "media_type_mismatch"),
    ("bmp-in-json", lambda: json_event({"image": b64(c.bmp())}), 200, None),
    ("bmp-in-json-data-url-bmp", lambda: json_event({"image": "data:image/bmp;base64," + b64(c.bmp())}), 200, None),
    ("bmp-in-json-data-url-png", lambda: json_event({"image": "data:image/png;base64," + b64(c.bmp())}), 415, "media_type_mismatch"),
    ("jpeg-in-form-declared-png", lambda: multipart_event(c.multipart_typed("image", c.jpeg(), "image/png")), 415, "media_type_mismatch"),
    ("jpeg-in-form-declared-jpeg", lambda: multipart_event(c.multipart_typed("image", c.jpeg(), "image/jpeg")), 200, None),
    ("bmp-in-form-declared-bmp", lambda: multipart_event(c.multipart_typed("image", c.bmp(), "image/bmp")), 200, None),
    ("content-type-list", lambda: event(c.png(), "image/png, application/json"), 415, "unsupported_media_type"),
    ("image-bmp-raw", lambda: event(c.bmp(), "image/bmp"), 415, "unsupported_media_type"),
    ("tiff-as-png", lambda: event(c.other_format("TIFF"), "image/png"), 400, "not_an_image"),
    ("webp-as-jpeg", lambda: event(c.other_format("WEBP"), "image/jpeg"), 400, "not_an_image"),
    # empty bodies
    ("empty-body-none", lambda: event(None, "image/png"), 400, "malformed_body"),
    ("empty-body-string", lambda: event("", "image/png", base64_encoded=False), 400, "malformed_body"),
    ("empty-body-base64", lambda: event("", "image/png", base64_encoded=True), 400, "malformed_body"),
    ("empty-json", lambda: event("", "application/json"), 400, "malformed_body"),
    # base64
    ("invalid-base64-body", lambda: event("!!not*base64~~", "image/png", base64_encoded=True), 400, "malformed_body"),
    ("invalid-base64-in-json", lambda: json_event({"image": "%%%%"}), 400, "invalid_base64"),
    ("empty-base64-in-json", lambda: json_event({"image": ""}), 400, "invalid_base64"),
    ("base64-of-random-bytes-in-json", lambda: json_event({"image": b64(_random_bytes(999))}), 400, "not_an_image"),
    ("json-data-url", lambda: json_event({"image": "data:image/png;base64," + b64(c.png())}), 200, None),
    ("json-urlsafe-unpadded", lambda: json_event({"image": b64(c.png()).replace("+", "-").replace("/", "_").rstrip("=")}), 200, None),
    # content types
    ("content-type-missing", lambda: event(c.png(), None), 415, "unsupported_media_type"),
    ("content-type-text-plain", lambda: event(c.png(), "text/plain"), 415, "unsupported_media_type"),
    ("content-type-octet-stream", lambda: event(c.png(), "application/octet-stream"), 415, "unsupported_media_type"),
    ("content-type-garbage", lambda: event(c.png(), "\x00;;=/"), 415, "unsupported_media_type"),
    ("content-type-upper-case", lambda: event(c.png(), "IMAGE/PNG"), 200, None),
    ("content-type-with-params", lambda: event(c.png(), "image/png; charset=binary"), 200, None),
    ("content-type-lower-case-header", lambda: event(c.png(), "image/png", header_name="content-type"), 200, None),
    ("json-sent-as-png", lambda: event(b'{"image": "abc"}', "image/png"), 400, "not_an_image"),
    # JSON without an image
    ("json-empty-object", lambda: json_event({}), 400, "malformed_body"),
    ("json-array", lambda: json_event([b64(c.png())]), 400, "malformed_body"),
    ("json-null", lambda: json_event(None), 400, "malformed_body"),
    ("json-image-number", lambda: json_event({"image": 5}), 400, "malformed_body"),
    ("json-image-null", lambda: json_event({"image": None}), 400, "malformed_body"),
    ("json-wrong-key", lambda: json_event({"img": b64(c.png())}), 400, "malformed_body"),
    ("json-invalid", lambda: event('{"image": ', "application/json"), 400, "malformed_body"),
    ("json-deeply-nested", lambda: event("[" * 200_000 + "]" * 200_000, "application/json"), 400, "malformed_body"),
    ("json-lone-surrogate-text", lambda: event('{"image": "\ud800"}', "application/json"), 400, "malformed_body"),
    ("json-lone-surrogate-escape", lambda: event('{"image": "\\ud800"}', "application/json"), 400, "invalid_base64"),
    ("only-multi-value-headers", lambda: {**event(c.png(), "image/png"), "headers": None}, 200, None),
    ("json-not-utf8", lambda: event(b'{"image": "\xff\xfe"}', "application/json", base64_encoded=True), 400, None),
    # oversized bodies
    ("raw-body-at-limit", lambda: event(_random_bytes(LIMIT), "image/png"), 400, "not_an_image"),
    ("raw-body-over-limit", lambda: event(_random_bytes(LIMIT + 1), "image/png"), 413, "payload_too_large"),
    ("json-body-over-limit", lambda: json_event({"image": "A" * (LIMIT + 10)}), 413, "payload_too_large"),
    ("multipart-over-limit", lambda: multipart_event(c.multipart([("image", _random_bytes(LIMIT), "x.png")])), 413, "payload_too_large"),
    # multipart
    ("multipart-ok", lambda: multipart_event(c.multipart([("note", b"hi", None), ("image", c.png(), "us.png")])), 200, None),
    ("multipart-no-boundary-param", lambda: multipart_event(c.multipart([("image", c.png(), "us.png")]), None), 400, "malformed_body"),
    ("multipart-wrong-boundary", lambda: multipart_event(c.multipart([("image", c.png(), "us.png")]), "other"), 400, "malformed_body"),
    ("multipart-no-closing-boundary", lambda: multipart_event(c.multipart([("image", c.png(), "us.png")])[:-30]), 400, "malformed_body"),
    ("multipart-no-image-field", lambda: multipart_event(c.multipart([("file", c.png(), "us.png")])), 400, "malformed_body"),
    ("multipart-empty-image-field", lambda: multipart_event(c.multipart([("image", b"", "us.png")])), 400, None),
    ("multipart-headers-without-blank-line", lambda: multipart_event(
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"\r\n--{BOUNDARY}--\r\n".encode()), 400, "malformed_body"),
    ("multipart-huge-boundary", lambda: multipart_event(c.multipart([("image", c.png(), "a")], "b" * 300), "b" * 300), 400, "malformed_body"),
    ("multipart-random-bytes", lambda: multipart_event(_random_bytes(3000)), 400, "malformed_body"),
    ("multipart-1000-parts", lambda: multipart_event(c.multipart([("f", b"x", None)] * 1000 + [("image", c.png(), "a")])), 400, "malformed_body"),
    # routes and methods
    ("get-predict", lambda: event(None, None, method="GET"), 405, "method_not_allowed"),
    ("put-predict", lambda: event(c.png(), "image/png", method="PUT"), 405, "method_not_allowed"),
    ("post-unknown-path", lambda: event(c.png(), "image/png", path="/nope"), 404, "not_found"),
    ("post-health", lambda: event(c.png(), "image/png", path="/health"), 405, "method_not_allowed"),
]


@pytest.mark.parametrize("name,make,status,code", CASES, ids=[c[0] for c in CASES])
def test_named_case(call, name, make, status, code):
    got_status, doc = call(make(), what=name, kind="named")
    if status is None:  # damage the decoder may or may not notice: either answer is fine, a 5xx is not
        assert got_status in (200, 400), f"{name}: {got_status} {doc}"
    else:
        assert got_status == status, f"{name}: expected {status}, got {got_status}: {doc}"
    if code is not None:
        assert doc["error"]["code"] == code, f"{name}: expected {code}, got {doc}"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    """A 120x64 frame tagged with each EXIF orientation decodes upright (5-8 swap width and height)."""
    img = decode_rgb(c.exif_rotated_jpeg(120, 64, orientation))
    assert img.size == ((64, 120) if orientation >= 5 else (120, 64))


def test_exif_rotation_matches_a_physically_rotated_image(call):
    """The rotated JPEG predicts like the same pixels rotated before encoding (lossless PNG of the upright frame)."""
    data = c.exif_rotated_jpeg(120, 64, 6)
    upright = decode_rgb(data)
    buf = io.BytesIO()
    upright.save(buf, format="PNG")
    _, a = call(event(data, "image/jpeg"), what="exif-6", kind="named")
    _, b = call(event(buf.getvalue(), "image/png"), what="exif-6-upright", kind="named")
    assert a["probabilities"] == b["probabilities"]


def test_health_still_answers_after_the_named_cases(service, labels):
    import json

    from classifier.lambda_context import LocalContext

    resp = service(event(None, None, method="GET", path="/health"), LocalContext())
    assert resp["statusCode"] == 200
    assert json.loads(resp["body"])["model"]["labels"] == labels


def test_content_type_error_names_the_value_sent(call):
    status, doc = call(event(c.png(), "image/png, application/json"), what="ctype-list", kind="named")
    assert status == 415 and "image/png, application/json" in doc["error"]["message"], doc
