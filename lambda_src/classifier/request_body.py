"""API Gateway REST proxy event -> the uploaded image's bytes (raw image or DICOM, JSON base64, or multipart
form) and the query's decode options.

Only the envelope is checked here; whether the bytes are a usable image is
``preprocessing``'s job.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email.message
import email.utils
import json
import re
from collections.abc import Mapping
from typing import Any

from .errors import (InvalidBase64, MalformedBody, MalformedRequest, MediaTypeMismatch, PayloadTooLarge,
                     UnsupportedMediaType)

#: Content types API Gateway must treat as binary (the REST API's binaryMediaTypes):
#: their bodies reach the Lambda base64-encoded with isBase64Encoded=true.
BINARY_MEDIA_TYPES = ("image/png", "image/jpeg", "application/dicom", "multipart/form-data")
RAW_IMAGE_TYPES = ("image/png", "image/jpeg", "application/dicom")
DICOM_TYPE = "application/dicom"
JSON_TYPE = "application/json"
MULTIPART_TYPE = "multipart/form-data"
ACCEPTED_TYPES = (*RAW_IMAGE_TYPES, JSON_TYPE, MULTIPART_TYPE)
#: The JSON key and the form field that carry the image.
IMAGE_FIELD = "image"

_DATA_URL = re.compile(r"^data:([^,]{0,200});base64,", re.IGNORECASE)
#: RFC 9110 media type: token "/" token (then parameters after ";").
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}")
#: The image formats ``preprocessing`` decodes, by the media type that names each. A declared type
#: (raw body's Content-Type, a data: URL, a form part's Content-Type) must name the bytes' format.
IMAGE_MEDIA_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/pjpeg": "JPEG",
                     "image/bmp": "BMP", "image/x-bmp": "BMP", "image/x-ms-bmp": "BMP",
                     "application/dicom": "DICOM"}
#: Declarations that say nothing about the format (a form part from a generic client).
_UNDECLARED = ("", "application/octet-stream", "binary/octet-stream")
_MAX_MULTIPART_PARTS = 32


def header(event: Mapping[str, Any], name: str) -> str | None:
    """A request header, matched case-insensitively (API Gateway passes the client's spelling)."""
    headers = event.get("headers") or {}
    wanted = name.lower()
    if isinstance(headers, Mapping):
        for key, value in headers.items():
            if isinstance(key, str) and key.lower() == wanted and value is not None:
                return str(value)
    if not headers:  # an event with only multiValueHeaders: API Gateway's headers keep the last value
        multi = event.get("multiValueHeaders") or {}
        if isinstance(multi, Mapping):
            for key, values in multi.items():
                if isinstance(key, str) and key.lower() == wanted and isinstance(values, list) and values:
                    return None if values[-1] is None else str(values[-1])
    return None


def check_event(event: Any) -> None:
    """Refuse (400 malformed_request) what is not a REST proxy request event: a 400, never a 500.

    ``httpMethod`` and ``path`` must be strings; ``headers``/``multiValueHeaders`` objects (or null);
    ``body`` a string (or null). Other fields are optional here.
    """
    if not isinstance(event, Mapping):
        raise MalformedRequest(f"the event is not a JSON object ({type(event).__name__}); "
                               "expected an API Gateway REST proxy event")
    for key in ("httpMethod", "path"):
        if not isinstance(event.get(key), str) or not event.get(key):
            raise MalformedRequest(f"the event has no {key!r} string; expected an API Gateway REST proxy event")
    for key in ("headers", "multiValueHeaders", "requestContext", "queryStringParameters"):
        if event.get(key) is not None and not isinstance(event.get(key), Mapping):
            raise MalformedRequest(f"the event's {key!r} is not an object")
    if event.get("body") is not None and not isinstance(event.get("body"), str):
        raise MalformedRequest("the event's 'body' is not a string")


def normalise_event(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """An event with ``multiValueHeaders`` but no ``headers`` gets ``headers`` (last value of each),
    as API Gateway fills both; everything else is returned as it is."""
    multi = event.get("multiValueHeaders")
    if event.get("headers") or not isinstance(multi, Mapping) or not multi:
        return event
    headers = {k: str(v[-1]) for k, v in multi.items() if isinstance(k, str) and isinstance(v, list) and v
               and v[-1] is not None}
    return {**event, "headers": headers}


def parse_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """'multipart/form-data; boundary="x"' -> ('multipart/form-data', {'boundary': 'x'}).

    The media type is what precedes the first ';', lower-cased; when it is not one RFC 9110
    ``type/subtype`` (a list such as 'image/png, application/json', garbage) it is returned as
    sent, so the 415 names the actual offending value.
    """
    if not value:
        return "", {}
    media_type = value.split(";", 1)[0].strip().lower()
    if not _MEDIA_TYPE.fullmatch(media_type):
        return media_type, {}
    msg = email.message.Message()
    msg["content-type"] = value
    try:
        params = {k.lower(): v for k, v in (msg.get_params() or [])[1:] if isinstance(v, str)}
    except Exception:  # a parameter the email parser cannot read: no parameters
        params = {}
    return media_type, params


def _shown(value: str) -> str:
    """A client-sent value, safe and short for an error message."""
    text = value if len(value) <= 80 else value[:77] + "..."
    return ascii(text)[1:-1]


def check_declared_format(declared: str | None, data: bytes, where: str) -> None:
    """The declared media type (if it names an image format) must be the format the bytes are in.

    Bytes that are no known image are left to the decoder (400 not_an_image).
    """
    from .decoding import sniff_format

    declared = (declared or "").split(";", 1)[0].strip().lower()
    if declared in _UNDECLARED:
        return
    actual = sniff_format(data)
    expected = IMAGE_MEDIA_TYPES.get(declared)
    if actual is None:
        if expected == "DICOM":  # declared DICOM, and the bytes are no known format at all
            from .errors import NotDicom

            raise NotDicom(f"{where} declares {DICOM_TYPE} but the bytes are not a DICOM Part 10 file "
                           "(no 'DICM' after the 128-byte preamble)")
        return
    if expected != actual:
        raise MediaTypeMismatch(f"{where} declares {_shown(declared)} but the bytes are a {actual} image; "
                                f"declare {_MEDIA_TYPE_OF[actual]} (or send it as it is declared)")


_MEDIA_TYPE_OF = {"PNG": "image/png", "JPEG": "image/jpeg", "BMP": "image/bmp", "DICOM": "application/dicom"}


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """What the query string asks of the decoding: ``?frame=N`` (1-based; a DICOM file's frame) and
    ``?include=sop_instance_uid`` (echo the DICOM SOP Instance UID; off by default: no header value leaves)."""

    frame: int | None = None
    include_uid: bool = False


#: ``?include=`` values (comma-separated).
INCLUDE_VALUES = ("sop_instance_uid",)


def decode_options(event: Mapping[str, Any]) -> DecodeOptions:
    """The query parameters of POST /predict; a value they cannot take -> 400 invalid_parameter."""
    from .errors import InvalidParameter

    query = event.get("queryStringParameters") or {}
    frame = query.get("frame") if isinstance(query, Mapping) else None
    include = query.get("include") if isinstance(query, Mapping) else None
    number = None
    if frame is not None:
        text = str(frame).strip()
        if not text.isascii() or not text.isdigit() or len(text) > 6 or int(text) < 1:
            raise InvalidParameter(f"frame must be a whole number from 1 (the first frame), not {_shown(str(frame))}")
        number = int(text)
    wanted = [v.strip() for v in str(include).split(",") if v.strip()] if include is not None else []
    unknown = [v for v in wanted if v not in INCLUDE_VALUES]
    if unknown:
        raise InvalidParameter(f"include takes {', '.join(INCLUDE_VALUES)}, not {_shown(unknown[0])}")
    return DecodeOptions(number, "sop_instance_uid" in wanted)


def raw_body(event: Mapping[str, Any], *, max_bytes: int) -> bytes:
    """The HTTP body as the client sent it, undoing API Gateway's base64; over ``max_bytes`` -> 413."""
    body = event.get("body")
    if body is None or body == "":
        return b""
    if not isinstance(body, str):
        raise MalformedBody("the event body is not a string")
    if event.get("isBase64Encoded"):
        # Refuse before decoding: 4 base64 characters carry 3 bytes.
        if len(body) > 4 * ((max_bytes + 2) // 3) + 4:
            raise _too_large(max_bytes)
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedBody("the body was marked base64-encoded but is not valid base64") from None
    else:
        if len(body) > max_bytes:  # each character is at least one byte
            raise _too_large(max_bytes)
        try:
            data = body.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate: not text any client could have sent
            raise MalformedBody("the request body is not valid Unicode text") from None
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    return data


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is over the {max_bytes:,}-byte limit")


def extract_image(event: Mapping[str, Any], *, max_bytes: int) -> bytes:
    """The image bytes a POST /predict event carries, whichever of the three encodings it uses."""
    media_type, params = parse_content_type(header(event, "content-type"))
    if media_type not in ACCEPTED_TYPES:
        shown = f"Content-Type {_shown(media_type)}" if media_type else "no Content-Type"
        raise UnsupportedMediaType(
            f"{shown} is not accepted; send {', '.join(RAW_IMAGE_TYPES)} (raw bytes), "
            f'{JSON_TYPE} ({{"{IMAGE_FIELD}": "<base64>"}}) or {MULTIPART_TYPE} (file field "{IMAGE_FIELD}")'
        )
    data = raw_body(event, max_bytes=max_bytes)
    if not data:
        raise MalformedBody("the request body is empty; send an image")
    if media_type in RAW_IMAGE_TYPES:
        check_declared_format(media_type, data, "the Content-Type")
        return data
    if media_type == JSON_TYPE:
        return image_from_json(data)
    return image_from_multipart(data, params.get("boundary"))


def image_from_json(data: bytes) -> bytes:
    """{"image": "<base64>"} (a data: URL prefix is tolerated) -> bytes."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeError, RecursionError):
        raise MalformedBody("the body is not valid JSON") from None
    if not isinstance(doc, dict) or IMAGE_FIELD not in doc:
        raise MalformedBody(f'the JSON body must be an object with an "{IMAGE_FIELD}" key holding base64 image data')
    value = doc[IMAGE_FIELD]
    if not isinstance(value, str):
        raise MalformedBody(f'"{IMAGE_FIELD}" must be a base64 string, not {type(value).__name__}')
    prefix = _DATA_URL.match(value.strip())
    data = decode_base64(value)
    if prefix:
        check_declared_format(prefix.group(1), data, "the data: URL")
    return data


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, whitespace and missing padding tolerated; anything else -> 400."""
    text = _DATA_URL.sub("", text.strip(), count=1)
    text = "".join(text.split())
    if not text:
        raise InvalidBase64(f'"{IMAGE_FIELD}" is empty')
    altchars = b"-_" if ("-" in text or "_" in text) else None
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64(f'"{IMAGE_FIELD}" is not valid base64') from None


def image_from_multipart(data: bytes, boundary: str | None) -> bytes:
    """The content of the form's file field ``image`` (RFC 7578), byte-exact."""
    if not boundary or len(boundary) > 200:
        raise MalformedBody("multipart/form-data needs a boundary parameter in the Content-Type header")
    delimiter = b"\r\n--" + boundary.encode("latin-1", errors="replace")
    # Prefixing CRLF lets the first delimiter match like the others.
    chunks = (b"\r\n" + data).split(delimiter)
    if len(chunks) < 2:
        raise MalformedBody("the multipart body does not contain its boundary; is the Content-Type boundary right?")
    if not any(chunk.startswith(b"--") for chunk in chunks[1:]):
        raise MalformedBody("the multipart body is truncated: its closing boundary is missing")
    seen: list[str] = []
    for chunk in chunks[1 : _MAX_MULTIPART_PARTS + 1]:
        if chunk.startswith(b"--"):
            break  # the close delimiter; the rest is epilogue
        name, content, part_type = _multipart_part(chunk)
        if name == IMAGE_FIELD:
            check_declared_format(part_type, content, f'the form field "{IMAGE_FIELD}"')
            return content
        seen.append(name or "?")
    fields = ", ".join(repr(n) for n in seen) or "none"
    raise MalformedBody(f'the form has no field named "{IMAGE_FIELD}" (fields seen: {fields})')


def _multipart_part(chunk: bytes) -> tuple[str | None, bytes, str | None]:
    # After the delimiter: optional transport padding, CRLF, headers, CRLF CRLF, content.
    line_end = chunk.find(b"\r\n")
    if line_end < 0 or chunk[:line_end].strip(b" \t"):
        raise MalformedBody("a multipart delimiter is not followed by a line break")
    head_end = chunk.find(b"\r\n\r\n", line_end)
    if head_end < 0:
        if chunk[line_end:] == b"\r\n":  # a part with no headers and no content
            return None, b"", None
        raise MalformedBody("a multipart part has no blank line after its headers")
    head = chunk[line_end + 2 : head_end].decode("utf-8", errors="replace")
    msg = email.message.Message()
    for line in head.split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            msg[key.strip()] = value.strip()
    name = msg.get_param("name", header="content-disposition")
    if isinstance(name, tuple):  # RFC 2231 encoded
        name = email.utils.collapse_rfc2231_value(name)
    return name, chunk[head_end + 4 :], msg.get("content-type")
