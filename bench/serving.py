"""The serving path under test: API Gateway REST proxy events fed to the real Lambda handler."""

from __future__ import annotations

import base64
import importlib
import json
import os
import uuid
from pathlib import Path
from typing import Callable

from classifier.lambda_context import LocalContext as LambdaContext  # noqa: F401 (re-exported)

#: Environment variable the handler reads its model folder from (classifier.settings.ENV_MODEL_DIR).
MODEL_DIR_ENV = "CLASSIFIER_MODEL_DIR"

Handler = Callable[[dict, object], dict]


def rest_event(
    body: bytes | str | None,
    *,
    content_type: str | None,
    method: str = "POST",
    path: str = "/predict",
    base64_body: bool = True,
) -> dict:
    """A REST (v1) proxy event as API Gateway sends it; binary bodies arrive base64-encoded."""
    headers = {"Host": "bench.local", "User-Agent": "bench"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode("ascii") if base64_body else body.decode("latin-1")
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": "/prod" + path,
            "stage": "prod",
            "requestId": str(uuid.uuid4()),
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "bench"},
            "accountId": "000000000000",
            "apiId": "bench",
        },
        "body": body,
        "isBase64Encoded": bool(base64_body and body is not None),
    }


def json_event(image: bytes) -> dict:
    """The old contract, which both the new handler and the original path accept: {"image": base64}."""
    body = json.dumps({"image": base64.b64encode(image).decode("ascii")})
    return rest_event(body, content_type="application/json", base64_body=False)


def load_handler(model_dir: Path) -> Handler:
    """Import the real handler with its model folder pointed at ``model_dir``."""
    os.environ[MODEL_DIR_ENV] = str(Path(model_dir).resolve())
    module = importlib.import_module("classifier.handler")
    return module.lambda_handler
