"""The contract every response must meet, whatever was sent: a 4xx JSON error or a valid prediction."""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np

from classifier import errors
from classifier.model_card import label_indices

#: error code -> HTTP status, from the one table in classifier.errors.
CLIENT_CODES = {cls.code: cls.status for cls in errors.ClientError.__subclasses__()}
#: http.server's own refusals in the local API (a bad request line, a bad Content-Length).
CLIENT_CODES.setdefault("bad_request", 400)

#: How many cases each robustness test sent, reported at the end of the run.
CASES: Counter = Counter()


def header(headers: dict | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


_OPERATING_POINT = re.compile(r"(?:normal if p\(normal\) >= (?P<normal>[0-9.]+), else )?malignant if "
                              r"p\(malignant \| lesion\) >= (?P<malignant>[0-9.]+), else ")


def labels_by_rule(rule: str, probs: dict[str, float], labels: list[str]) -> set[str]:
    """The labels the response's own `label_rule` allows for its probabilities, worked out from the rule as a
    client reads it (thresholds printed to 3 decimals: a probability that close to one may go either way).
    No operating point in the rule (tiny test models): the most probable class."""
    match = _OPERATING_POINT.match(rule)
    if not match:
        return {max(probs, key=probs.__getitem__)}
    row = np.array([[probs[label] for label in labels]], dtype=np.float64)
    allowed = set()
    for nudge in (-5e-4, 5e-4):  # both ends of the printed rounding
        point = {"malignant_threshold": float(match["malignant"]) + nudge}
        if match["normal"]:
            point["normal_threshold"] = float(match["normal"]) + nudge
        allowed.add(labels[int(label_indices(row, labels, point)[0])])
    return allowed


def _check_schema(status: int, doc: dict, what: str) -> None:
    """The typed contract (classifier.response_model, the models docs/openapi.json is built from)."""
    from pydantic import ValidationError

    from classifier.response_model import ErrorBody, Prediction

    try:
        (Prediction if status == 200 else ErrorBody).model_validate(doc)
    except ValidationError as exc:
        raise AssertionError(f"{what}: status {status} body breaks the response model: {exc}") from None


def check_body(status: int, body: bytes | str, labels: list[str], *, what: str) -> dict:
    """Status and body must be a valid prediction (200) or a client error (4xx) in the documented shape."""
    assert status == 200 or 400 <= status < 500, f"{what}: status {status}, body {str(body)[:300]!r}"
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    assert text.endswith("\n") and "\n" not in text[:-1], f"{what}: not one line ending with a newline: {text[:200]!r}"
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise AssertionError(f"{what}: status {status} with a non-JSON body {str(body)[:200]!r}") from exc
    assert isinstance(doc, dict), f"{what}: body is not a JSON object: {doc!r:.200}"
    _check_schema(status, doc, what)
    if status == 200:
        assert set(doc) >= {"label", "probabilities", "model", "disclaimer"}, f"{what}: keys {sorted(doc)}"
        probs = doc["probabilities"]
        assert list(probs) == labels, f"{what}: probability keys {list(probs)} != {labels}"
        assert all(isinstance(p, float) and math.isfinite(p) and 0.0 <= p <= 1.0 for p in probs.values()), probs
        assert abs(sum(probs.values()) - 1.0) < 1e-6, f"{what}: probabilities sum to {sum(probs.values())}"
        allowed = labels_by_rule(doc.get("label_rule", ""), probs, labels)
        assert doc["label"] in allowed, f"{what}: label {doc['label']} breaks its rule {doc.get('label_rule')!r}: {probs}"
        assert "not a medical device" in doc["disclaimer"].lower(), doc["disclaimer"]
        assert doc["model"].get("name") and doc["model"].get("version"), doc["model"]
    else:
        err = doc.get("error")
        assert isinstance(err, dict), f"{what}: error body without an 'error' object: {doc!r:.200}"
        assert isinstance(err.get("message"), str) and err["message"], f"{what}: no message: {err}"
        code = err.get("code")
        assert code in CLIENT_CODES, f"{what}: unknown error code {code!r}"
        assert CLIENT_CODES[code] == status, f"{what}: code {code} should be {CLIENT_CODES[code]}, got {status}"
        assert "Traceback" not in err["message"], f"{what}: a stack trace leaked: {err['message'][:200]}"
        assert "not a medical device" in doc.get("disclaimer", "").lower(), f"{what}: error without the disclaimer"
    return doc


def check_lambda_response(resp: dict, labels: list[str], *, what: str) -> tuple[int, dict]:
    """A proxy response dict from the handler: JSON content type and the body contract."""
    assert isinstance(resp, dict) and isinstance(resp.get("statusCode"), int), f"{what}: not a proxy response: {resp!r:.200}"
    status = resp["statusCode"]
    multi = {k: ", ".join(v) for k, v in (resp.get("multiValueHeaders") or {}).items()}
    ctype = header({**multi, **(resp.get("headers") or {})}, "Content-Type") or ""
    assert ctype.startswith("application/json"), f"{what}: Content-Type {ctype!r}"
    assert not resp.get("isBase64Encoded"), f"{what}: JSON responses are not base64-encoded"
    return status, check_body(status, resp.get("body") or "", labels, what=what)
