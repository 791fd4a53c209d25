"""request_body: every way a client can send an image, and every way the envelope can be wrong."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classifier.errors import InvalidBase64, MalformedBody, PayloadTooLarge, UnsupportedMediaType
from classifier.request_body import BINARY_MEDIA_TYPES, extract_image, header, parse_content_type
from tests.serving.events import multipart_body, predict_json, predict_multipart, predict_raw, rest_event

LIMIT = 4_500_000
PAYLOAD = bytes(range(256)) * 4 + b"\r\n--x\r\n\r\n"  # every byte value, CRLFs and dashes


def test_binary_media_types_are_the_four_the_api_declares():
    assert BINARY_MEDIA_TYPES == ("image/png", "image/jpeg", "application/dicom", "multipart/form-data")


@pytest.mark.parametrize("name", ["content-type", "Content-Type", "CONTENT-TYPE", "cOnTeNt-TyPe"])
def test_header_names_are_case_insensitive(name):
    event = rest_event(body=PAYLOAD, headers={name: "image/png"}, base64_encoded=True)
    assert header(event, "Content-Type") == "image/png"
    assert extract_image(event, max_bytes=LIMIT) == PAYLOAD


def test_missing_headers_object_is_a_415_not_a_crash():
    event = rest_event(body=PAYLOAD, base64_encoded=True)
    event["headers"] = None
    with pytest.raises(UnsupportedMediaType):
        extract_image(event, max_bytes=LIMIT)


@pytest.mark.parametrize("ctype", ["image/png", "image/jpeg", "IMAGE/PNG", "image/png; charset=binary"])
def test_raw_image_body_is_base64_decoded(ctype):
    assert extract_image(predict_raw(PAYLOAD, content_type=ctype), max_bytes=LIMIT) == PAYLOAD


def test_raw_body_not_marked_base64_is_taken_as_text_bytes():
    event = rest_event(body="abc", content_type="image/png", base64_encoded=False)
    assert extract_image(event, max_bytes=LIMIT) == b"abc"


@pytest.mark.parametrize("prefix", ["", "data:image/png;base64,", "DATA:image/jpeg;base64,"])
def test_json_base64_with_or_without_data_url(prefix):
    assert extract_image(predict_json(PAYLOAD, prefix=prefix), max_bytes=LIMIT) == PAYLOAD


def test_json_base64_tolerates_line_breaks_missing_padding_and_urlsafe_alphabet():
    b64 = base64.b64encode(PAYLOAD).decode()
    wrapped = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    for text in (wrapped, b64.rstrip("="), base64.urlsafe_b64encode(PAYLOAD).decode()):
        event = rest_event(body=json.dumps({"image": text}), content_type="application/json; charset=utf-8")
        assert extract_image(event, max_bytes=LIMIT) == PAYLOAD


@pytest.mark.parametrize(
    "body, error",
    [
        ("{not json", MalformedBody),
        ("[1, 2]", MalformedBody),
        ('{"img": "aGk="}', MalformedBody),
        ('{"image": 12}', MalformedBody),
        ('{"image": null}', MalformedBody),
        ('{"image": ""}', InvalidBase64),
        ('{"image": "!!!not base64!!!"}', InvalidBase64),
        ('{"image": "data:image/png;base64,"}', InvalidBase64),
        ('{"image": "abcde"}', InvalidBase64),  # 5 chars: no padding can fix it
        ("[" * 100_000 + "]" * 100_000, MalformedBody),  # deep nesting: RecursionError inside json
    ],
)
def test_json_errors(body, error):
    event = rest_event(body=body, content_type="application/json")
    with pytest.raises(error) as info:
        extract_image(event, max_bytes=LIMIT)
    assert info.value.status == 400


def test_multipart_file_field_is_byte_exact_and_found_among_other_fields():
    assert extract_image(predict_multipart(PAYLOAD), max_bytes=LIMIT) == PAYLOAD


def test_multipart_with_quoted_boundary_preamble_and_epilogue():
    body, _ = multipart_body([("image", "a.png", PAYLOAD)], boundary="b0und")
    body = b"preamble to ignore\r\n" + body + b"epilogue"
    event = rest_event(body=body, content_type='multipart/form-data; boundary="b0und"')
    assert extract_image(event, max_bytes=LIMIT) == PAYLOAD


@settings(max_examples=60, deadline=None)
@given(content=st.binary(max_size=2000), other=st.binary(max_size=200))
def test_multipart_round_trips_any_bytes(content, other):
    boundary = "xYzBoundary0123456789"
    body, ctype = multipart_body([("caption", None, other), ("image", "f.bin", content)], boundary=boundary)
    event = rest_event(body=body, content_type=ctype)
    assert extract_image(event, max_bytes=LIMIT) == content


@pytest.mark.parametrize(
    "ctype, body, fragment",
    [
        ("multipart/form-data", b"--b\r\n\r\nx\r\n--b--", "boundary parameter"),
        ("multipart/form-data; boundary=zzz", b"--b\r\n\r\nx\r\n--b--", "does not contain its boundary"),
        ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--b--\r\n',
         'no field named "image"'),
        ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="image"\r\n\r\nxyz', "truncated"),
        ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="image"\r\nxyz\r\n--b--', "blank line"),
        ("multipart/form-data; boundary=b", b'--bjunk\r\n\r\nxyz\r\n--b--', "line break"),
    ],
)
def test_multipart_errors(ctype, body, fragment):
    with pytest.raises(MalformedBody) as info:
        extract_image(rest_event(body=body, content_type=ctype), max_bytes=LIMIT)
    assert fragment in info.value.message


@pytest.mark.parametrize(
    "ctype",
    [None, "", "text/plain", "image/gif", "image/webp", "application/x-www-form-urlencoded",
     "application/octet-stream", "not a content type", "image/png/extra"],
)
def test_unsupported_content_types_are_415(ctype):
    event = rest_event(body=PAYLOAD, content_type=ctype, base64_encoded=True)
    with pytest.raises(UnsupportedMediaType) as info:
        extract_image(event, max_bytes=LIMIT)
    assert info.value.status == 415 and info.value.code == "unsupported_media_type"


@pytest.mark.parametrize("ctype", ["image/png", "application/json", "multipart/form-data; boundary=b"])
def test_empty_body_is_400(ctype):
    for body in (None, ""):
        with pytest.raises(MalformedBody) as info:
            extract_image(rest_event(body=body, content_type=ctype), max_bytes=LIMIT)
        assert "empty" in info.value.message


def test_body_marked_base64_that_is_not_is_400():
    event = rest_event(body="%%%%", content_type="image/png", base64_encoded=True)
    with pytest.raises(MalformedBody):
        extract_image(event, max_bytes=LIMIT)


def test_size_limit_applies_to_the_raw_body():
    limit = 1000
    assert extract_image(predict_raw(b"x" * limit), max_bytes=limit) == b"x" * limit
    for event in (
        predict_raw(b"x" * (limit + 1)),
        predict_raw(b"x" * 50 * limit),  # refused from the base64 length, before decoding
        rest_event(body="x" * (limit + 1), content_type="image/png", base64_encoded=False),
        predict_json(b"x" * limit),  # the JSON text itself is over the limit
        predict_multipart(b"x" * limit),
    ):
        with pytest.raises(PayloadTooLarge) as info:
            extract_image(event, max_bytes=limit)
        assert info.value.status == 413 and "1,000-byte" in info.value.message


def test_parse_content_type():
    assert parse_content_type('multipart/form-data; boundary="a b"') == ("multipart/form-data", {"boundary": "a b"})
    assert parse_content_type("Image/PNG") == ("image/png", {})
    assert parse_content_type(None) == ("", {})
    assert parse_content_type("garbage") == ("garbage", {})  # not a media type: kept, so the 415 names it
    assert parse_content_type("image/png, application/json")[0] == "image/png, application/json"
