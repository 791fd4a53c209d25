"""API Gateway REST proxy events as API Gateway would build them, with knobs for hostile variants."""

from __future__ import annotations

import base64
import json
import uuid


def event(body: bytes | str | None, content_type: str | None = "image/png", *, method: str = "POST",
          path: str = "/predict", base64_encoded: bool | None = None, header_name: str = "Content-Type",
          extra_headers: dict | None = None) -> dict:
    """``base64_encoded`` None: bytes bodies are base64-encoded (a binary media type), str bodies passed as text."""
    headers = {"Host": "robustness.local", **(extra_headers or {})}
    if content_type is not None:
        headers[header_name] = content_type
    if base64_encoded is None:
        base64_encoded = isinstance(body, bytes)
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode("ascii") if base64_encoded else body.decode("utf-8", "replace")
    return {
        "resource": path, "path": path, "httpMethod": method,
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {"resourcePath": path, "httpMethod": method, "path": "/prod" + path, "stage": "prod",
                           "requestId": str(uuid.uuid4()), "identity": {"sourceIp": "127.0.0.1"}},
        "body": body, "isBase64Encoded": bool(base64_encoded),
    }


def json_event(doc, **kwargs) -> dict:
    return event(json.dumps(doc), "application/json", **kwargs)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def multipart_event(body: bytes, boundary: str | None = "----fuzzboundary7MA4YWxk") -> dict:
    ctype = "multipart/form-data" + (f"; boundary={boundary}" if boundary is not None else "")
    return event(body, ctype)
