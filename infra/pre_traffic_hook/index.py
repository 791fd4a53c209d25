"""CodeDeploy BeforeAllowTraffic hook: send the bundled example images to the NEW version of the classifier
before any traffic moves to it, and fail the deployment when an answer is wrong.

Wrong means: the invocation failed, the response is not a 200 JSON prediction with the research-use disclaimer,
the model version (body or X-Model-Version header) is not the one this stack ships, a probability differs from
the one `make promote` recorded with the real LiteRT engine (model.json's pre_traffic) by more than the
tolerance, or the label differs from the recorded one.

It makes exactly two kinds of AWS call: lambda:InvokeFunction on the new version (TARGET_VERSION_ARN) and
codedeploy:PutLifecycleEventHookExecutionStatus. Standard library + boto3 only (both are in Lambda's Python
runtime). Images are public BUSI examples (examples/README.md), never patient data.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXPECTATIONS = "expectations.json"
DISCLAIMER_WORDS = "research use only"


def proxy_event(image: bytes, index: int) -> dict:
    """An API Gateway REST proxy event for POST /predict with a raw PNG/JPEG body, as the API sends it."""
    kind = "image/jpeg" if image[:3] == b"\xff\xd8\xff" else "image/png"
    return {
        "resource": "/predict", "path": "/predict", "httpMethod": "POST",
        "headers": {"Content-Type": kind, "User-Agent": "pre-traffic-hook"},
        "multiValueHeaders": {"Content-Type": [kind], "User-Agent": ["pre-traffic-hook"]},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {"resourcePath": "/predict", "httpMethod": "POST", "path": "/predict",
                           "stage": "pre-traffic", "requestId": f"pre-traffic-{index}",
                           "identity": {"sourceIp": "0.0.0.0", "userAgent": "pre-traffic-hook"}},
        "body": base64.b64encode(image).decode("ascii"), "isBase64Encoded": True,
    }


def load_expectations(folder: Path) -> dict:
    return json.loads((folder / EXPECTATIONS).read_text(encoding="utf-8"))


def _header(response: dict, name: str) -> str | None:
    for key, value in (response.get("headers") or {}).items():
        if key.lower() == name.lower():
            return value
    for key, values in (response.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower() and values:
            return values[-1]
    return None


def check_response(response: Any, image: dict, expected: dict) -> list[str]:
    """Every way this response differs from what the recorded model answers for this image ([] = good)."""
    name = image["file"]
    if not isinstance(response, dict) or response.get("statusCode") != 200:
        status = response.get("statusCode") if isinstance(response, dict) else type(response).__name__
        return [f"{name}: status {status}, expected 200"]
    try:
        body = json.loads(response.get("body") or "")
    except ValueError:
        return [f"{name}: the body is not JSON"]
    if not isinstance(body, dict):
        return [f"{name}: the body is not a JSON object"]
    problems = []
    version = (body.get("model") or {}).get("version") if isinstance(body.get("model"), dict) else None
    if version != expected["model_version"]:
        problems.append(f"{name}: body model version {version!r}, expected {expected['model_version']!r}")
    header = _header(response, "X-Model-Version")
    if header != expected["model_version"]:
        problems.append(f"{name}: X-Model-Version header {header!r}, expected {expected['model_version']!r}")
    if DISCLAIMER_WORDS not in str(body.get("disclaimer", "")).lower():
        problems.append(f"{name}: no research-use disclaimer")
    probabilities = body.get("probabilities")
    recorded = image["probabilities"]
    if not isinstance(probabilities, dict) or set(probabilities) != set(recorded):
        return problems + [f"{name}: probabilities {probabilities!r}, expected one per label {sorted(recorded)}"]
    values = [probabilities[k] for k in recorded]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
        return problems + [f"{name}: probabilities are not numbers in [0, 1]: {probabilities}"]
    if abs(sum(values) - 1.0) > 1e-3:
        problems.append(f"{name}: probabilities sum to {sum(values):.5f}, not 1")
    tolerance = float(expected["tolerance"])
    for label, want in recorded.items():
        if abs(probabilities[label] - want) > tolerance:
            problems.append(f"{name}: p({label}) {probabilities[label]:.6f}, recorded {want:.6f} (tolerance {tolerance})")
    if body.get("label") != image["label"]:
        problems.append(f"{name}: label {body.get('label')!r}, recorded {image['label']!r}")
    return problems


def run_checks(lambda_client: Any, target: str, expected: dict, folder: Path) -> list[str]:
    """Invoke ``target`` once per recorded image; every problem found (an empty list means all passed)."""
    problems = []
    if not expected.get("images"):
        return ["model.json records no pre-traffic images (make promote writes them)"]
    for index, image in enumerate(expected["images"]):
        data = (folder / image["file"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != image["sha256"]:
            problems.append(f"{image['file']}: the packaged image does not match its recorded sha256")
            continue
        reply = lambda_client.invoke(FunctionName=target, InvocationType="RequestResponse",
                                     Payload=json.dumps(proxy_event(data, index)).encode("utf-8"))
        payload = reply["Payload"].read()
        if reply.get("FunctionError"):
            problems.append(f"{image['file']}: the invocation failed ({reply['FunctionError']}): {payload[:300]!r}")
            continue
        try:
            response = json.loads(payload)
        except ValueError:
            problems.append(f"{image['file']}: the function returned no JSON")
            continue
        problems += check_response(response, image, expected)
    return problems


def handler(event: dict, context: Any, *, lambda_client: Any = None, codedeploy_client: Any = None) -> dict:
    """Lambda entry point; the clients are parameters so that tests can pass fakes of exactly these two calls."""
    if lambda_client is None or codedeploy_client is None:
        import boto3

        lambda_client = lambda_client or boto3.client("lambda")
        codedeploy_client = codedeploy_client or boto3.client("codedeploy")
    status, problems = "Failed", []
    try:
        problems = run_checks(lambda_client, os.environ["TARGET_VERSION_ARN"], load_expectations(HERE), HERE)
        status = "Succeeded" if not problems else "Failed"
    except Exception as exc:  # any fault fails the deployment (reported below), never leaves it hanging
        problems = [f"the check itself failed: {type(exc).__name__}: {exc}"]
    finally:
        print(json.dumps({"pre_traffic_check": status, "target": os.environ.get("TARGET_VERSION_ARN"),
                          "problems": problems}))
        codedeploy_client.put_lifecycle_event_hook_execution_status(
            deploymentId=event["DeploymentId"],
            lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"],
            status=status,
        )
    return {"status": status, "problems": problems}
