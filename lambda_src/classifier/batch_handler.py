"""Lambda entry point of the batch state machine: a batch of S3 keys in, one row per key out.

Same container image as the API, run with CMD ``classifier.batch_handler.lambda_handler``. The Step
Functions Distributed Map lists the keys under a prefix (S3 ListObjectsV2 item reader), batches them
(item batcher) and sends each batch here as::

    {"Items": [{"Key": "input/study/a.png", "Size": 123456, ...}, ...],
     "BatchInput": {"bucket": "<input bucket>"}}

Each key is read from S3 and scored by ``classifier.batch.score_bytes`` (``Engine.analyse`` and
``ModelCard.decide``: what POST /predict answers). The return value is a list of rows; the map's
result writer flattens them into JSONL in the results bucket. A key that is missing, too large or
not an image becomes a row with an error code. S3 throttling (SlowDown, 503) is retried here with
backoff; if it persists the batch fails with ``BatchThrottled`` and the state machine retries it.

Research use only. Not a medical device; not for diagnosis or clinical decisions.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping

from .batch import error_row, load_engine, score_bytes
from .engine import Engine
from .settings import Settings

ENV_INPUT_BUCKET = "CLASSIFIER_BATCH_INPUT_BUCKET"
ENV_MAX_OBJECT_BYTES = "CLASSIFIER_BATCH_MAX_OBJECT_BYTES"
#: Larger objects are not read: an error row instead (the decoders' pixel limits bound the rest).
DEFAULT_MAX_OBJECT_BYTES = 32 * 1024 * 1024
#: S3 error codes that mean "slow down, try again".
THROTTLING_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
                              "TooManyRequestsException", "ServiceUnavailable", "503", "RequestTimeout",
                              "InternalError", "500"})
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden"})
ATTEMPTS = 5
#: Objects fetched at once per invocation (S3 GETs are latency-bound: ~20-50 ms each).
READ_THREADS = 8


class BatchThrottled(Exception):
    """S3 kept throttling after ATTEMPTS tries: the state machine retries the whole batch (by this name)."""


class BatchInputError(Exception):
    """The event is not a Distributed Map batch (no Items list, no bucket): a wiring error, not retried."""


_lock = threading.Lock()
_engine: Engine | None = None
_s3 = None


def engine() -> Engine:
    global _engine
    with _lock:
        if _engine is None:
            settings = Settings.from_env()
            _engine = load_engine(settings.model_dir, threads=settings.num_threads)
        return _engine


def s3_client():
    global _s3
    if _s3 is None:
        import boto3  # in the Lambda base image; the API path never imports it
        from botocore.config import Config

        _s3 = boto3.client("s3", config=Config(retries={"max_attempts": 3, "mode": "standard"}))
    return _s3


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        code = (response.get("Error") or {}).get("Code")
        if code:
            return str(code)
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        if status:
            return str(status)
    return None


def read_object(client, bucket: str, key: str, max_bytes: int, *, sleep: Callable[[float], None] = time.sleep,
                attempts: int = ATTEMPTS) -> bytes | tuple[str, str]:
    """The object's bytes, or (error code, message) for a key that cannot be scored. Reads at most
    max_bytes + 1 bytes (a Range request), so a huge object never fills the function's memory."""
    for attempt in range(attempts):
        try:
            response = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{max_bytes}")
            total = _total_size(response)
            if total is not None and total > max_bytes:
                return "object_too_large", f"the object is {total:,} bytes; the batch reads at most {max_bytes:,}"
            data = response["Body"].read(max_bytes + 1)
            if len(data) > max_bytes:
                return "object_too_large", f"the object is over {max_bytes:,} bytes"
            return data
        except Exception as exc:  # noqa: BLE001 - botocore's ClientError and transport errors
            code = _error_code(exc)
            if code in MISSING_CODES:
                return "missing_object", f"no object s3://{bucket}/{key} (deleted after it was listed?)"
            if code in DENIED_CODES:
                return "access_denied", f"the batch function may not read s3://{bucket}/{key}"
            if code == "InvalidRange":  # an empty object: no byte 0
                return b""
            if code in THROTTLING_CODES or code is None:
                if attempt + 1 < attempts:
                    # Full jitter, capped: 0.2, 0.4, 0.8, 1.6 s scales.
                    sleep(random.uniform(0, min(5.0, 0.2 * 2 ** attempt)))
                    continue
                raise BatchThrottled(f"s3://{bucket}/{key}: {code or type(exc).__name__} after {attempts} tries") from exc
            return "s3_error", f"S3 answered {code} for s3://{bucket}/{key}"
    raise AssertionError("unreachable")


def _total_size(response: Mapping[str, Any]) -> int | None:
    """The object's full size from Content-Range ('bytes 0-99/12345'), else ContentLength."""
    content_range = response.get("ContentRange")
    if isinstance(content_range, str) and "/" in content_range:
        tail = content_range.rsplit("/", 1)[1]
        if tail.isdigit():
            return int(tail)
    length = response.get("ContentLength")
    return int(length) if isinstance(length, int) else None


def handle(event: Mapping[str, Any], *, client=None, scorer: Engine | None = None,
           environ: Mapping[str, str] | None = None, sleep: Callable[[float], None] = time.sleep) -> list[dict]:
    env = os.environ if environ is None else environ
    if not isinstance(event, Mapping) or not isinstance(event.get("Items"), list):
        raise BatchInputError("expected a Distributed Map batch: {'Items': [...], 'BatchInput': {'bucket': ...}}")
    batch_input = event.get("BatchInput") or {}
    bucket = batch_input.get("bucket") or env.get(ENV_INPUT_BUCKET)
    if not bucket:
        raise BatchInputError(f"no bucket: set BatchInput.bucket or {ENV_INPUT_BUCKET}")
    max_bytes = int(env.get(ENV_MAX_OBJECT_BYTES) or DEFAULT_MAX_OBJECT_BYTES)
    client = client or s3_client()
    scorer = scorer or engine()

    # Keys to read, in order; rows for the items that need no read are made here.
    slots: list[dict | tuple[str, str] | None] = []
    for item in event["Items"]:
        key = item.get("Key") if isinstance(item, Mapping) else item
        if not isinstance(key, str) or not key:
            slots.append(error_row(str(item)[:200], "malformed_item", "an item without a Key", scorer.card))
            continue
        if key.endswith("/"):
            continue  # a "folder" placeholder object: nothing to score
        size = item.get("Size") if isinstance(item, Mapping) else None
        if isinstance(size, int) and size > max_bytes:
            slots.append(error_row(f"s3://{bucket}/{key}", "object_too_large",
                                   f"the object is {size:,} bytes; the batch reads at most {max_bytes:,}", scorer.card))
            continue
        slots.append((bucket, key))

    # S3 reads overlap (threads, I/O bound) while the engine scores one image at a time, in order.
    to_read = [s for s in slots if isinstance(s, tuple)]
    rows = []
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, max(1, len(to_read)))) as pool:
        reads = iter(pool.map(lambda bk: read_object(client, bk[0], bk[1], max_bytes, sleep=sleep), to_read))
        for slot in slots:
            if not isinstance(slot, tuple):
                rows.append(slot)
                continue
            path = f"s3://{slot[0]}/{slot[1]}"
            got = next(reads)  # re-raises BatchThrottled from the reading thread
            if isinstance(got, tuple):
                rows.append(error_row(path, got[0], got[1], scorer.card))
            else:
                rows.append(score_bytes(scorer, path, got))
    return rows


def lambda_handler(event: Mapping[str, Any], context: Any) -> list[dict]:
    return handle(event)
