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
from classifier.local_api import proxy_event

#: Environment variable the handler reads its model folder from (classifier.settings.ENV_MODEL_DIR).
MODEL_DIR_ENV = "CLASSIFIER_MODEL_DIR"

Handler = Callable[[dict, object], dict]


def rest_event(
    body: bytes | str | None,
    *,
    content_type: str | None,
    method: str = "POST",
    path: str = "/predict",
) -> dict:
    """A REST (v1) proxy event as API Gateway sends it (the local API's own builder)."""
    headers = [("Host", "bench.local"), ("User-Agent", "bench")]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    data = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    return proxy_event(method, path, headers, data, request_id=str(uuid.uuid4()))


def json_event(image: bytes) -> dict:
    """The old contract, which both the new handler and the original path accept: {"image": base64}."""
    body = json.dumps({"image": base64.b64encode(image).decode("ascii")})
    return rest_event(body, content_type="application/json")


def load_handler(model_dir: Path) -> Handler:
    """Import the real handler with its model folder pointed at ``model_dir``."""
    os.environ[MODEL_DIR_ENV] = str(Path(model_dir).resolve())
    module = importlib.import_module("classifier.handler")
    return module.lambda_handler
