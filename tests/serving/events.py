"""Builders for API Gateway REST proxy events and test images (shared by the serving tests and benchmarks)."""

from __future__ import annotations

import base64
import io
import json
import uuid

import numpy as np
from PIL import Image

from classifier.request_body import BINARY_MEDIA_TYPES as BINARY


def rest_event(method: str = "POST", path: str = "/predict", *, body: bytes | str | None = None,
               content_type: str | None = None, headers: dict | None = None,
               base64_encoded: bool | None = None, request_id: str | None = None) -> dict:
    """The event API Gateway sends for a REST proxy integration; binary types arrive base64-encoded."""
    all_headers = dict(headers or {})
    if content_type is not None:
        all_headers.setdefault("Content-Type", content_type)
    media = (content_type or "").split(";")[0].strip().lower()
    if base64_encoded is None:
        base64_encoded = media in BINARY and body is not None
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode() if base64_encoded else body.decode("utf-8", errors="replace")
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": None,
        "pathParameters": None,
        "requestContext": {"requestId": request_id or str(uuid.uuid4()), "stage": "test",
                           "httpMethod": method, "resourcePath": path},
        "body": body,
        "isBase64Encoded": bool(base64_encoded),
    }


def predict_raw(data: bytes, content_type: str = "image/png", **kw) -> dict:
    return rest_event(body=data, content_type=content_type, **kw)


def predict_json(data: bytes, *, prefix: str = "", **kw) -> dict:
    return rest_event(body=json.dumps({"image": prefix + base64.b64encode(data).decode()}),
                      content_type="application/json", **kw)


def multipart_body(fields: list[tuple[str, str | None, bytes]], boundary: str = "----busiTestBoundary7MA4YWxk") -> tuple[bytes, str]:
    """(name, filename or None, content) parts -> (body, content type), as a browser form sends them."""
    out = io.BytesIO()
    for name, filename, content in fields:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.write(f"Content-Disposition: {disposition}\r\n".encode())
        if filename:
            out.write(b"Content-Type: application/octet-stream\r\n")
        out.write(b"\r\n" + content + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def predict_multipart(data: bytes, **kw) -> dict:
    body, ctype = multipart_body([("note", None, b"hello"), ("image", "us.png", data)])
    return rest_event(body=body, content_type=ctype, **kw)


def image_bytes(width: int = 64, height: int = 48, *, mode: str = "RGB", fmt: str = "PNG", seed: int = 0,
                **save_kw) -> bytes:
    """A synthetic speckled frame in any Pillow mode and format."""
    rng = np.random.default_rng(seed)
    grey = (rng.random((height, width)) * 255).astype(np.uint8)
    if mode in ("I;16", "I;16B"):
        img = Image.fromarray(grey.astype(np.uint16) * 257)  # uint16 -> mode I;16
    else:
        img = Image.fromarray(grey, mode="L").convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save_kw)
    return buf.getvalue()
