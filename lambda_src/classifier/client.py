"""Command-line client for the API (stdlib only): images or URLs in, a table or JSON out.

    python -m classifier.client predict us.png https://host/us2.jpg --endpoint https://.../prod
    python -m classifier.client health --endpoint http://127.0.0.1:8080
    python -m classifier.client predict us.png --stack BusiClassifier [--profile P] [--region R]
    python -m classifier.client batch start s3://<input bucket>/input/study1/ --stack BusiClassifier --wait

URLs are downloaded here, on the client: the service never fetches URLs. ``--stack`` finds the API URL
and key from the deployed stack with boto3 (classifier.stack_lookup); without it the client is stdlib only.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from .settings import DEFAULT_MAX_BODY_BYTES

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
ENV_ENDPOINT = "CLASSIFIER_ENDPOINT"
ENV_API_KEY = "CLASSIFIER_API_KEY"
ENV_STACK = "CLASSIFIER_STACK"
USER_AGENT = "busi-classifier-client/1"


class ClientFailure(Exception):
    """One input could not be classified; ``message`` says why in a sentence."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 request_id: str | None = None):
        super().__init__(message)
        self.message, self.status, self.code, self.request_id = message, status, code, request_id


@dataclasses.dataclass(frozen=True)
class Result:
    source: str
    response: dict[str, Any] | None = None
    error: ClientFailure | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.error is None:
            return {"input": self.source, "ok": True, **(self.response or {})}
        err = self.error
        return {"input": self.source, "ok": False,
                "error": {"status": err.status, "code": err.code, "message": err.message,
                          "request_id": err.request_id}}


def route_url(endpoint: str, route: str) -> str:
    """'https://x.execute-api.../prod' or '.../prod/predict' -> the URL of ``route`` under that stage."""
    parts = urllib.parse.urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClientFailure(f"endpoint {endpoint!r} is not an http(s) URL")
    path = parts.path.rstrip("/")
    for known in ("/predict", "/health"):
        if path.endswith(known):
            path = path[: -len(known)]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"{path}/{route}", "", ""))


def read_input(source: str, *, timeout: float, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> bytes:
    """A local file's bytes, or an http(s) URL downloaded here (bounded by ``max_bytes``)."""
    if urllib.parse.urlsplit(source).scheme in ("http", "https"):
        request = urllib.request.Request(source, headers={"User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                data = resp.read(max_bytes + 1)
        except urllib.error.HTTPError as exc:
            raise ClientFailure(f"download failed: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ClientFailure(f"download failed: {getattr(exc, 'reason', exc)}") from None
    else:
        path = Path(source)
        if not path.is_file():
            raise ClientFailure(f"no such file: {source}")
        if path.stat().st_size > max_bytes:
            raise ClientFailure(f"{source} is {path.stat().st_size:,} bytes; the API takes at most {max_bytes:,}")
        data = path.read_bytes()
    if len(data) > max_bytes:
        raise ClientFailure(f"the image is over the API's {max_bytes:,}-byte limit")
    return data


def encode_request(data: bytes) -> tuple[bytes, str]:
    """PNG, JPEG and DICOM go raw (smallest); anything else as JSON base64, and the API judges it."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data, "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return data, "image/jpeg"
    if data[128:132] == b"DICM":  # DICOM Part 10: 128-byte preamble, then DICM
        return data, "application/dicom"
    return json.dumps({"image": base64.b64encode(data).decode("ascii")}).encode(), "application/json"


def call(url: str, *, method: str = "GET", body: bytes | None = None, content_type: str | None = None,
         api_key: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """One API call -> its JSON; an error response or a network failure -> ClientFailure."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    if api_key:
        headers["x-api-key"] = api_key
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return _json_or_fail(resp.read(), resp.status)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}
        err = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(err, dict):
            raise ClientFailure(str(err.get("message", "")), status=exc.code, code=err.get("code"),
                                request_id=err.get("request_id")) from None
        # API Gateway's own errors (bad key, throttling) are {"message": ...}
        message = doc.get("message") if isinstance(doc, dict) else None
        raise ClientFailure(message or f"HTTP {exc.code} {exc.reason}", status=exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ClientFailure(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None


def _json_or_fail(raw: bytes, status: int) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ClientFailure(f"the API answered HTTP {status} with a body that is not JSON", status=status) from None
    if not isinstance(doc, dict):
        raise ClientFailure(f"the API answered HTTP {status} with unexpected JSON", status=status)
    return doc


def predict_bytes(endpoint: str, data: bytes, *, api_key: str | None = None, timeout: float = 30.0,
                  frame: int | None = None, operating_point: str | None = None) -> dict:
    """POST /predict; ``frame`` (1-based) picks a DICOM file's frame (``?frame=N``), ``operating_point``
    the label rule (``?operating_point=NAME``; the model's default when None)."""
    body, content_type = encode_request(data)
    query = {k: v for k, v in (("frame", frame), ("operating_point", operating_point)) if v is not None}
    url = route_url(endpoint, "predict") + (f"?{urllib.parse.urlencode(query)}" if query else "")
    return call(url, method="POST", body=body, content_type=content_type, api_key=api_key, timeout=timeout)


def predict_sources(endpoint: str, sources: list[str], *, api_key: str | None = None,
                    timeout: float = 30.0, frame: int | None = None,
                    operating_point: str | None = None) -> list[Result]:
    results = []
    for source in sources:
        try:
            data = read_input(source, timeout=timeout)
            results.append(Result(source, response=predict_bytes(endpoint, data, api_key=api_key, timeout=timeout,
                                                                 frame=frame, operating_point=operating_point)))
        except ClientFailure as exc:
            results.append(Result(source, error=exc))
    return results


def format_table(results: list[Result], *, truth: dict[str, str] | None = None, footer: bool = True) -> str:
    """A fixed-width table: one row per input, probabilities in the model's label order.

    ``truth`` (source -> known label) adds a column, as the demo does for its examples.
    """
    labels: list[str] = []
    for r in results:
        for label in (r.response or {}).get("probabilities", {}):
            if label not in labels:
                labels.append(label)
    width = max([len("input")] + [len(_short(r.source)) for r in results])
    known = f"  {'known':<10}" if truth else ""
    head = f"{'input':<{width}}{known}  {'label':<10}" + "".join(f"  {label:>9}" for label in labels)
    lines = [head, "-" * len(head)]
    for r in results:
        row = f"{_short(r.source):<{width}}" + (f"  {truth.get(r.source, '?'):<10}" if truth else "")
        if r.error is not None:
            status = f"HTTP {r.error.status} {r.error.code}: " if r.error.status else ""
            lines.append(f"{row}  ERROR  {status}{r.error.message}")
            continue
        probs = r.response.get("probabilities", {})
        cells = "".join(f"  {probs[label]:>9.3f}" if label in probs else f"  {'':>9}" for label in labels)
        lines.append(f"{row}  {str(r.response.get('label')):<10}{cells}")
    first = next((r.response for r in results if r.response), None)
    if footer and first:
        model = first.get("model", {})
        lines += ["", f"model: {model.get('name')} {model.get('version')}", first.get("disclaimer", "")]
    return "\n".join(lines)


def _short(source: str, limit: int = 48) -> str:
    return source if len(source) <= limit else "..." + source[-(limit - 3):]


def _batch(args: argparse.Namespace, info, aws) -> int:
    from . import stack_lookup

    try:
        if args.action == "status":
            desc = aws.client("stepfunctions").describe_execution(executionArn=args.target)
        else:
            started = stack_lookup.start_batch(info, args.target, boto_session=aws)
            print(f"started {started['executionArn']} on prefix {started['prefix']!r}", file=sys.stderr)
            if not args.wait:
                print(json.dumps(started, indent=2))
                return 0
            desc = stack_lookup.wait_batch(
                started["executionArn"], boto_session=aws, poll_s=args.poll,
                progress=lambda d: print(f"{d['status']} ...", file=sys.stderr))
    except stack_lookup.StackLookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - botocore errors: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = {"executionArn": desc.get("executionArn"), "status": desc.get("status")}
    if desc.get("status") != "RUNNING":
        report["results"] = stack_lookup.result_objects(desc, boto_session=aws)
    if desc.get("error"):
        report["error"], report["cause"] = desc.get("error"), desc.get("cause")
    report["disclaimer"] = "Research use only. Not a medical device; not for diagnosis or clinical decisions."
    print(json.dumps(report, indent=2, default=str))
    return 0 if desc.get("status") in ("SUCCEEDED", "RUNNING") else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m classifier.client",
        description="Call the breast-ultrasound classifier API. Research use only, not a medical device.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", default=os.environ.get(ENV_ENDPOINT, DEFAULT_ENDPOINT),
                        help=f"API base URL, e.g. the stack's ApiUrl output (default: ${ENV_ENDPOINT} or {DEFAULT_ENDPOINT})")
    common.add_argument("--api-key", default=os.environ.get(ENV_API_KEY),
                        help=f"sent as x-api-key when the API requires one (default: ${ENV_API_KEY})")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    common.add_argument("--stack", default=os.environ.get(ENV_STACK),
                        help=f"a deployed stack's name: its ApiUrl output and API key are looked up with boto3 "
                             f"(overrides --endpoint/--api-key; default: ${ENV_STACK})")
    common.add_argument("--profile", default=None, help="AWS profile for --stack (default: boto3's resolution)")
    common.add_argument("--region", default=None, help="AWS region for --stack (default: boto3's resolution)")
    p_predict = sub.add_parser("predict", parents=[common], help="classify image files or http(s) URLs",
                               description="Classify PNG/JPEG/BMP/DICOM files or URLs (downloaded here, on the "
                                           "client). DICOM files go raw as application/dicom.")
    p_predict.add_argument("inputs", nargs="+", metavar="IMG_OR_URL")
    p_predict.add_argument("--operating-point", default=None, metavar="NAME",
                           help="the label rule: one of the model's named operating points, e.g. sensitive or "
                                "balanced (default: the model's own; `health` lists them)")
    p_predict.add_argument("--frame", type=int, default=None, metavar="N",
                           help="DICOM: classify frame N (1-based) of each multi-frame file (default: the "
                                "file's representative frame, else the first)")
    sub.add_parser("health", parents=[common], help="show the service's status and model")
    p_batch = sub.add_parser("batch", parents=[common], help="batch scoring on AWS (needs --stack, -c batch=true)",
                             description="Start the stack's batch state machine on every object under an S3 "
                                         "prefix of its input bucket; --wait polls until it ends and lists the "
                                         "JSONL results. Research use only, not a medical device.")
    p_batch.add_argument("action", choices=("start", "status"))
    p_batch.add_argument("target", metavar="S3_URL_OR_EXECUTION_ARN",
                         help="start: s3://<BatchInputBucket>/<BatchInputPrefix>...; status: an execution ARN")
    p_batch.add_argument("--wait", action="store_true", help="start: wait for the execution to end")
    p_batch.add_argument("--poll", type=float, default=10.0, help="seconds between status polls (default 10)")
    args = parser.parse_args(argv)

    aws = None
    if args.stack:
        from . import stack_lookup

        try:
            aws = stack_lookup.session(args.profile, args.region)
            info = stack_lookup.lookup(args.stack, boto_session=aws, with_key=args.command != "batch")
        except stack_lookup.StackLookupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        args.endpoint = info.api_url
        args.api_key = info.api_key or args.api_key
    if args.command == "batch":
        if aws is None:
            parser.error("batch needs --stack NAME (the stack deployed with -c batch=true)")
        return _batch(args, info, aws)

    try:
        route_url(args.endpoint, "predict")
    except ClientFailure as exc:
        parser.error(exc.message)

    if args.command == "health":
        try:
            doc = call(route_url(args.endpoint, "health"), api_key=args.api_key, timeout=args.timeout)
        except ClientFailure as exc:
            print(f"error: {exc.message}" + (f" (HTTP {exc.status} {exc.code})" if exc.status else ""),
                  file=sys.stderr)
            return 1
        print(json.dumps(doc, indent=2))
        return 0

    results = predict_sources(args.endpoint, args.inputs, api_key=args.api_key, timeout=args.timeout,
                              frame=args.frame, operating_point=args.operating_point)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(format_table(results))
    failed = sum(r.error is not None for r in results)
    if failed:
        print(f"{failed} of {len(results)} input(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
