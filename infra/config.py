"""The stack's settings: one typed, validated object read from cdk.json context, with defaults.

Every key can be overridden on the command line, e.g. ``npx cdk deploy -c memoryMb=3008 -c apiKey=false``
(values given with ``-c`` arrive as strings, so each field is parsed from str as well as from JSON).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

ARCHITECTURES = ("x86_64", "arm64")
REMOVAL_POLICIES = ("destroy", "retain")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: "none": the cheap default stack. "hipaa": cdk-nag's HIPAA Security pack on top of AwsSolutions, with what it
#: takes to pass it (customer-managed KMS key, the function in an isolated VPC, WAF, ...); see docs/security.md.
COMPLIANCE_PROFILES = ("none", "hipaa")
#: How CodeDeploy shifts the `live` alias to a new version (infra/release.py maps each to CodeDeploy's config):
#: canary = 10 % for 5 minutes then the rest; canary-30m = 10 % for 30 minutes (long enough for the drift alarms'
#: window to see traffic); linear = 10 % more every minute; all-at-once = no canary (dev stacks).
DEPLOYMENTS = ("canary", "canary-30m", "linear", "all-at-once")
#: Who may call predict/health: "key" (the API key when apiKey is true, else open) or "iam" (SigV4-signed
#: requests from principals with execute-api:Invoke; no API key).
AUTH_MODES = ("key", "iam")
#: API Gateway's REST integration timeout: a function running longer is answered 504 while it keeps running (and billing).
API_GATEWAY_TIMEOUT_SECONDS = 29
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
# Lambda gives one full vCPU at 1769 MB and CPU in proportion to memory around it.
MB_PER_VCPU = 1769
# A synchronous Lambda invocation carries at most 6 MB; API Gateway base64-encodes binary
# bodies (x4/3) inside a JSON event, so ~4.6 MB of raw image is the most that can arrive.
LAMBDA_EVENT_LIMIT_BYTES = 6 * 1024 * 1024
MAX_RAW_BODY_BYTES = LAMBDA_EVENT_LIMIT_BYTES * 3 // 4 - 64 * 1024  # leave room for headers and context


class ConfigError(ValueError):
    """A context value in cdk.json or ``-c key=value`` is missing, malformed or out of range."""


@dataclass(frozen=True, kw_only=True)
class InfraConfig:
    """Settings of the classifier stack. Field names are the snake_case of the cdk.json context keys."""

    stack_name: str = "BusiClassifier"
    # Image build context (Dockerfile + classifier/ + model/), relative to the app's directory.
    lambda_src: str = "lambda_src"
    # One full vCPU: the cheapest size that fits and the fastest of the tied ones (make bench, cost table).
    memory_mb: int = 1769
    # Below API Gateway's 29 s integration timeout: past it the caller gets a 504 while the function keeps billing.
    # A prediction takes well under a second warm and a few seconds cold; 10 s leaves room for a cold start.
    timeout_seconds: int = 10
    architecture: str = "x86_64"
    # None: derive from memory (one thread per whole vCPU the memory buys).
    num_threads: int | None = None
    # Raw request bodies above this are refused by the handler with 413 (the handler's own default).
    max_body_bytes: int = 4_500_000
    # Caps the function's concurrent executions (and so its cost and its share of the account's pool): at most
    # this many requests in flight, the rest throttled (429). 10 at ~0.1-1 s per request serves the stage's
    # 10 req/s default throttle. Reserving takes it out of the account's unreserved pool, and Lambda keeps at least
    # 100 unreserved: an account whose concurrency quota is still the new-account 10 must set null (no cap) or
    # ask for a quota increase. None: no cap, shares the account pool.
    reserved_concurrency: int | None = 10
    stage_name: str = "v1"
    throttle_rate_limit: float = 10.0
    throttle_burst_limit: int = 20
    api_key: bool = True
    # Per-key quota of the usage plan (requests per day) when api_key is on.
    api_key_daily_quota: int = 5000
    cors_origins: tuple[str, ...] = ()
    alarm_email: str | None = None
    log_retention_days: int = 30
    log_level: str = "INFO"
    removal_policy: str = "destroy"
    # "hipaa": the HIPAA Security profile (see COMPLIANCE_PROFILES). Costs money at rest; off by default.
    compliance: str = "none"
    # A WAF web ACL on the stage. None: on with compliance=hipaa, off otherwise.
    waf: bool | None = None
    # WAF rate-based rule: requests one client IP may send in any 5 minutes before it is blocked (429).
    waf_rate_limit: int = 500
    keep_images: int = 10
    # Batch scoring on AWS (infra/batch.py): S3 buckets + a Step Functions Distributed Map over a second entry
    # point of the same image. Off by default; with it off the template is exactly the API stack.
    batch: bool = False
    # Existing buckets to use instead of creating them (their encryption, lifecycle and logging are then yours).
    batch_input_bucket: str | None = None
    batch_results_bucket: str | None = None
    # The state machine may only list and read keys under this prefix, and only write results under the other.
    batch_input_prefix: str = "input/"
    batch_results_prefix: str = "results/"
    # Keys per Lambda invocation (item batcher). Each row is ~0.5 KB and a child's output must stay under
    # Step Functions' 256 KiB payload limit, hence the cap of 200.
    batch_items_per_batch: int = 50
    # Child executions (so Lambda invocations) in flight at once: bounds the load on S3, Lambda's concurrency
    # pool (1,000 by default per account and region, shared with the API) and the cost rate.
    batch_max_concurrency: int = 40
    batch_memory_mb: int = 2048
    # Per invocation; a batch of 50 takes a few seconds warm. Must stay under the max of 900.
    batch_timeout_seconds: int = 300
    # Objects above this are not read (an error row instead).
    batch_max_object_bytes: int = 32 * 1024 * 1024
    # Lifecycle of the buckets the stack creates: uploaded images and results expire after these many days.
    batch_input_expiry_days: int = 30
    batch_results_expiry_days: int = 90
    # Releases (infra/release.py): every deploy publishes a version; CodeDeploy shifts the `live` alias to it
    # with this config and rolls back when an alarm of the new version fires.
    deployment: str = "canary"
    # A hook that sends the bundled examples to the new version before any traffic moves (model.json's pre_traffic).
    pre_traffic_check: bool = True
    # Drift alarms (infra/drift_alarms.py): the window their rates are averaged over, and the fewest predictions
    # in a window for them to judge (fewer: the alarm stays OK; a rate of 3 requests is noise).
    drift_period_minutes: int = 60
    drift_min_samples: int = 30
    # Provisioned concurrency on the alias (0: none, pay per request; N: N warm environments, billed by the hour).
    provisioned: int = 0
    auth: str = "key"
    # Training on SageMaker (infra/training.py): the training image, a bucket and an execution role for
    # `python -m model_training train --on sagemaker`. Off by default; with it off the template is unchanged.
    training: bool = False
    # A job's checkpoints only serve its own spot restarts: they expire after these many days.
    training_checkpoint_expiry_days: int = 14
    service_name: str = "busi-classifier"
    metrics_namespace: str = "BusiClassifier"
    tags: Mapping[str, str] = field(default_factory=lambda: {"project": "busi-classifier"})

    def __post_init__(self) -> None:
        _check(re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", self.stack_name) is not None, "stackName",
               f"must start with a letter and hold only letters, digits and '-': {self.stack_name!r}")
        _check(bool(self.lambda_src), "lambdaSrc", "must name the Lambda image build context directory")
        _check(128 <= self.memory_mb <= 10240, "memoryMb", f"must be 128..10240 (MB), got {self.memory_mb}")
        _check(3 <= self.timeout_seconds < API_GATEWAY_TIMEOUT_SECONDS, "timeoutSeconds",
               f"must be 3..{API_GATEWAY_TIMEOUT_SECONDS - 1}, below API Gateway's {API_GATEWAY_TIMEOUT_SECONDS} s "
               f"integration timeout (a longer run is answered 504 and keeps billing), got {self.timeout_seconds}")
        _check(self.architecture in ARCHITECTURES, "architecture",
               f"must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}")
        _check(self.num_threads is None or 1 <= self.num_threads <= 16, "numThreads",
               f"must be 1..16, got {self.num_threads}")
        _check(1024 <= self.max_body_bytes <= MAX_RAW_BODY_BYTES, "maxBodyBytes",
               f"must be 1024..{MAX_RAW_BODY_BYTES} (its base64 must fit Lambda's 6 MB event), got {self.max_body_bytes}")
        _check(self.reserved_concurrency is None or self.reserved_concurrency >= 1, "reservedConcurrency",
               f"must be >= 1 or null, got {self.reserved_concurrency}")
        _check(re.fullmatch(r"[A-Za-z0-9_]{1,128}", self.stage_name) is not None, "stageName",
               f"must be letters, digits or '_': {self.stage_name!r}")
        _check(self.throttle_rate_limit > 0, "throttleRateLimit", f"must be > 0, got {self.throttle_rate_limit}")
        _check(self.throttle_burst_limit >= 1, "throttleBurstLimit", f"must be >= 1, got {self.throttle_burst_limit}")
        _check(self.api_key_daily_quota >= 1, "apiKeyDailyQuota", f"must be >= 1, got {self.api_key_daily_quota}")
        for origin in self.cors_origins:
            _check(origin == "*" or re.fullmatch(r"https?://[^/\s]+", origin) is not None, "corsOrigins",
                   f"each origin must be '*' or scheme://host[:port] without a path, got {origin!r}")
        _check(self.alarm_email is None or re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", self.alarm_email) is not None,
               "alarmEmail", f"must be an e-mail address or null, got {self.alarm_email!r}")
        _check(self.log_retention_days in LOG_RETENTION_DAYS, "logRetentionDays",
               f"must be one of CloudWatch's periods {LOG_RETENTION_DAYS}, got {self.log_retention_days}")
        _check(self.log_level in LOG_LEVELS, "logLevel", f"must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        _check(self.removal_policy in REMOVAL_POLICIES, "removalPolicy",
               f"must be one of {', '.join(REMOVAL_POLICIES)}, got {self.removal_policy!r}")
        _check(self.compliance in COMPLIANCE_PROFILES, "compliance",
               f"must be one of {', '.join(COMPLIANCE_PROFILES)}, got {self.compliance!r}")
        if self.compliance == "hipaa":
            _check(self.reserved_concurrency is not None, "reservedConcurrency",
                   "must be set with compliance=hipaa (a function-level concurrency limit is one of its controls)")
            _check(self.waf is not False, "waf", "cannot be false with compliance=hipaa (the profile includes the WAF)")
        _check(10 <= self.waf_rate_limit <= 2_000_000_000, "wafRateLimit",
               f"must be 10..2000000000 (requests per IP per 5 minutes), got {self.waf_rate_limit}")
        _check(1 <= self.keep_images <= 1000, "keepImages", f"must be 1..1000, got {self.keep_images}")
        _check(not (self.batch and self.hipaa), "batch",
               "cannot be combined with compliance=hipaa yet (the batch buckets and state machine have not been "
               "through the HIPAA Security pack)")
        for key, name in (("batchInputBucket", self.batch_input_bucket), ("batchResultsBucket", self.batch_results_bucket)):
            _check(name is None or re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name) is not None, key,
                   f"must be an S3 bucket name or null, got {name!r}")
        for key, prefix in (("batchInputPrefix", self.batch_input_prefix),
                            ("batchResultsPrefix", self.batch_results_prefix)):
            _check(re.fullmatch(r"[A-Za-z0-9!_.()'-][A-Za-z0-9!_.()'/-]{0,200}/", prefix) is not None, key,
                   f"must be a non-empty key prefix ending in '/' (no wildcards), got {prefix!r}")
        _check(not (self.batch_input_bucket and self.batch_input_bucket == self.batch_results_bucket
                    and (self.batch_input_prefix.startswith(self.batch_results_prefix)
                         or self.batch_results_prefix.startswith(self.batch_input_prefix))),
               "batchResultsPrefix", "must not overlap batchInputPrefix when both use the same bucket")
        _check(1 <= self.batch_items_per_batch <= 200, "batchItemsPerBatch",
               f"must be 1..200 (a batch's rows must fit Step Functions' 256 KiB payload), got {self.batch_items_per_batch}")
        _check(1 <= self.batch_max_concurrency <= 1000, "batchMaxConcurrency",
               f"must be 1..1000 (Lambda's default concurrency quota), got {self.batch_max_concurrency}")
        _check(128 <= self.batch_memory_mb <= 10240, "batchMemoryMb", f"must be 128..10240, got {self.batch_memory_mb}")
        _check(30 <= self.batch_timeout_seconds <= 900, "batchTimeoutSeconds",
               f"must be 30..900 (Lambda's maximum), got {self.batch_timeout_seconds}")
        _check(1024 <= self.batch_max_object_bytes <= 1024 ** 3, "batchMaxObjectBytes",
               f"must be 1024..1073741824, got {self.batch_max_object_bytes}")
        _check(self.batch_input_expiry_days >= 1 and self.batch_results_expiry_days >= 1, "batchInputExpiryDays",
               "batchInputExpiryDays and batchResultsExpiryDays must be >= 1")
        _check(self.deployment in DEPLOYMENTS, "deployment",
               f"must be one of {', '.join(DEPLOYMENTS)}, got {self.deployment!r}")
        _check(self.drift_period_minutes in (5, 10, 15, 30, 60, 120, 180, 360, 720, 1440), "driftPeriodMinutes",
               f"must be 5, 10, 15, 30, 60, 120, 180, 360, 720 or 1440, got {self.drift_period_minutes}")
        _check(1 <= self.drift_min_samples <= 100_000, "driftMinSamples",
               f"must be 1..100000, got {self.drift_min_samples}")
        _check(0 <= self.provisioned <= 1000, "provisioned", f"must be 0..1000, got {self.provisioned}")
        _check(self.reserved_concurrency is None or self.provisioned <= self.reserved_concurrency, "provisioned",
               f"must not exceed reservedConcurrency ({self.reserved_concurrency}), got {self.provisioned}")
        _check(self.auth in AUTH_MODES, "auth", f"must be one of {', '.join(AUTH_MODES)}, got {self.auth!r}")
        _check(1 <= self.training_checkpoint_expiry_days <= 3650, "trainingCheckpointExpiryDays",
               f"must be 1..3650, got {self.training_checkpoint_expiry_days}")
        _check(bool(self.service_name), "serviceName", "must not be empty")
        _check(bool(self.metrics_namespace), "metricsNamespace", "must not be empty")

    @property
    def threads(self) -> int:
        """LiteRT threads: the override, else one per whole vCPU that memory_mb buys (at least one)."""
        if self.num_threads is not None:
            return self.num_threads
        return max(1, math.floor(self.memory_mb / MB_PER_VCPU))

    @property
    def hipaa(self) -> bool:
        return self.compliance == "hipaa"

    @property
    def waf_enabled(self) -> bool:
        return self.waf if self.waf is not None else self.hipaa

    @property
    def destroy_on_delete(self) -> bool:
        return self.removal_policy == "destroy"

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> "InfraConfig":
        """Build from a context lookup such as ``app.node.try_get_context``; absent keys keep their defaults.

        A JSON null cannot be told from an absent key (jsii drops nulls on the way), so it keeps the default
        too: to turn a default off (``reservedConcurrency``), give the string ``"null"`` (``-c reservedConcurrency=null``).
        """
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = context_key(f.name)
            raw = get(key)
            if raw is None:
                continue
            values[f.name] = _PARSERS[f.name](key, raw)
        return cls(**values)


def context_key(field_name: str) -> str:
    """snake_case field -> the camelCase key used in cdk.json (memory_mb -> memoryMb)."""
    head, *rest = field_name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"cdk.json context {key!r} {message}")


def _as_int(key: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ConfigError(f"cdk.json context {key!r} must be an integer, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"cdk.json context {key!r} must be an integer, got {raw!r}") from None
    if not value.is_integer():
        raise ConfigError(f"cdk.json context {key!r} must be an integer, got {raw!r}")
    return int(value)


def _as_optional_int(key: str, raw: Any) -> int | None:
    if isinstance(raw, str) and raw.strip().lower() in ("", "null", "none"):
        return None
    return _as_int(key, raw)


def _as_float(key: str, raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"cdk.json context {key!r} must be a number, got {raw!r}") from None


def _as_bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        return raw.strip().lower() in ("true", "1", "yes", "on")
    raise ConfigError(f"cdk.json context {key!r} must be true or false, got {raw!r}")


def _as_optional_bool(key: str, raw: Any) -> bool | None:
    if isinstance(raw, str) and raw.strip().lower() in ("", "null", "none"):
        return None
    return _as_bool(key, raw)


def _as_str(key: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ConfigError(f"cdk.json context {key!r} must be a string, got {raw!r}")
    return raw


def _as_optional_str(key: str, raw: Any) -> str | None:
    value = _as_str(key, raw).strip()
    return None if value.lower() in ("", "null", "none") else value


def _as_upper_str(key: str, raw: Any) -> str:
    return _as_str(key, raw).strip().upper()


def _as_origins(key: str, raw: Any) -> tuple[str, ...]:
    # JSON list in cdk.json; comma-separated string from `-c corsOrigins=https://a,https://b`.
    if isinstance(raw, str):
        items = [part.strip() for part in raw.split(",")]
    elif isinstance(raw, (list, tuple)):
        items = [_as_str(key, item).strip() for item in raw]
    else:
        raise ConfigError(f"cdk.json context {key!r} must be a list of origins, got {raw!r}")
    return tuple(item for item in items if item)


def _as_tags(key: str, raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ConfigError(f"cdk.json context {key!r} must be an object of string tags, got {raw!r}")
    return dict(raw)


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "stack_name": _as_str,
    "lambda_src": _as_str,
    "memory_mb": _as_int,
    "timeout_seconds": _as_int,
    "architecture": lambda key, raw: _as_str(key, raw).strip().lower(),
    "num_threads": _as_optional_int,
    "max_body_bytes": _as_int,
    "reserved_concurrency": _as_optional_int,
    "stage_name": _as_str,
    "throttle_rate_limit": _as_float,
    "throttle_burst_limit": _as_int,
    "api_key": _as_bool,
    "api_key_daily_quota": _as_int,
    "cors_origins": _as_origins,
    "alarm_email": _as_optional_str,
    "log_retention_days": _as_int,
    "log_level": _as_upper_str,
    "removal_policy": lambda key, raw: _as_str(key, raw).strip().lower(),
    "compliance": lambda key, raw: _as_str(key, raw).strip().lower(),
    "waf": _as_optional_bool,
    "waf_rate_limit": _as_int,
    "keep_images": _as_int,
    "batch": _as_bool,
    "batch_input_bucket": _as_optional_str,
    "batch_results_bucket": _as_optional_str,
    "batch_input_prefix": _as_str,
    "batch_results_prefix": _as_str,
    "batch_items_per_batch": _as_int,
    "batch_max_concurrency": _as_int,
    "batch_memory_mb": _as_int,
    "batch_timeout_seconds": _as_int,
    "batch_max_object_bytes": _as_int,
    "batch_input_expiry_days": _as_int,
    "batch_results_expiry_days": _as_int,
    "deployment": lambda key, raw: _as_str(key, raw).strip().lower(),
    "pre_traffic_check": _as_bool,
    "drift_period_minutes": _as_int,
    "drift_min_samples": _as_int,
    "provisioned": _as_int,
    "auth": lambda key, raw: _as_str(key, raw).strip().lower(),
    "training": _as_bool,
    "training_checkpoint_expiry_days": _as_int,
    "service_name": _as_str,
    "metrics_namespace": _as_str,
    "tags": _as_tags,
}
