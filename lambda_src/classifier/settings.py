"""The serving settings, typed, read from the environment in one place (the edge: handler start-up, CLIs).

The environment variable names are shared with the CDK stack, which sets them
on the function; the Dockerfile sets the same defaults.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

#: lambda_src/model beside the package; $LAMBDA_TASK_ROOT/model in the image.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "model"
#: 4.5 MB of raw body: base64-encoded by API Gateway it is 6.0 MB, just under
#: Lambda's 6 MB (6,291,456 bytes) synchronous payload limit with the event's headers.
DEFAULT_MAX_BODY_BYTES = 4_500_000
#: Bodies above this could not reach the Lambda once base64-encoded (with 64 KiB for
#: headers and request context); the CDK config uses the same bound.
HARD_MAX_BODY_BYTES = 6_291_456 * 3 // 4 - 64 * 1024

ENV_MODEL_DIR = "CLASSIFIER_MODEL_DIR"
ENV_NUM_THREADS = "CLASSIFIER_NUM_THREADS"
ENV_MAX_BODY_BYTES = "CLASSIFIER_MAX_BODY_BYTES"
ENV_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
ENV_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
ENV_LOG_LEVEL = "POWERTOOLS_LOG_LEVEL"
#: Comma-separated origins allowed to call the API from a browser ("*" for any); empty: no CORS headers.
ENV_CORS_ORIGINS = "CLASSIFIER_CORS_ORIGINS"
#: "true": the request log line also holds the label and probabilities. Off by default: with it
#: on, a prediction sits beside the request id, which API Gateway's access log pairs with the caller's IP.
ENV_LOG_PREDICTIONS = "CLASSIFIER_LOG_PREDICTIONS"
#: Drift metrics (classifier/drift_metrics.py) are written once this many requests are buffered (privacy: no
#: line describes one request); 1 writes every request's values at once.
ENV_DRIFT_BATCH = "CLASSIFIER_DRIFT_BATCH"
#: Powertools' own switch; read here too so the handler skips metrics work when it is set.
ENV_METRICS_DISABLED = "POWERTOOLS_METRICS_DISABLED"

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot run with (an operator error)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    model_dir: Path = DEFAULT_MODEL_DIR
    num_threads: int = 1
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    service_name: str = "busi-classifier"
    metrics_namespace: str = "BusiClassifier"
    log_level: str = "INFO"
    metrics_enabled: bool = True
    cors_origins: tuple[str, ...] = ()
    log_predictions: bool = False
    drift_batch: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        if not 1 <= self.num_threads <= 64:
            raise SettingsError(f"{ENV_NUM_THREADS} must be between 1 and 64, not {self.num_threads}")
        if not 1 <= self.max_body_bytes <= HARD_MAX_BODY_BYTES:
            raise SettingsError(
                f"{ENV_MAX_BODY_BYTES} must be between 1 and {HARD_MAX_BODY_BYTES:,} "
                f"(Lambda's 6 MB payload limit after base64), not {self.max_body_bytes:,}"
            )
        if not 1 <= self.drift_batch <= 100:
            raise SettingsError(f"{ENV_DRIFT_BATCH} must be between 1 and 100 (EMF's values per metric), not {self.drift_batch}")
        if self.log_level.upper() not in _LOG_LEVELS:
            raise SettingsError(f"{ENV_LOG_LEVEL} must be one of {', '.join(_LOG_LEVELS)}, not {self.log_level!r}")
        object.__setattr__(self, "log_level", self.log_level.upper())
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        for origin in self.cors_origins:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s,]+", origin):
                raise SettingsError(f"{ENV_CORS_ORIGINS}: {origin!r} is not '*' or an origin like https://host[:port]")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            model_dir=Path(env.get(ENV_MODEL_DIR) or defaults.model_dir),
            num_threads=_int(env, ENV_NUM_THREADS, defaults.num_threads),
            max_body_bytes=_int(env, ENV_MAX_BODY_BYTES, defaults.max_body_bytes),
            service_name=env.get(ENV_SERVICE_NAME) or defaults.service_name,
            metrics_namespace=env.get(ENV_METRICS_NAMESPACE) or defaults.metrics_namespace,
            log_level=env.get(ENV_LOG_LEVEL) or defaults.log_level,
            metrics_enabled=not _bool(env, ENV_METRICS_DISABLED, False),
            cors_origins=tuple(o.strip() for o in (env.get(ENV_CORS_ORIGINS) or "").split(",") if o.strip()),
            log_predictions=_bool(env, ENV_LOG_PREDICTIONS, False),
            drift_batch=_int(env, ENV_DRIFT_BATCH, defaults.drift_batch),
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw.strip().replace("_", ""))
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {raw!r}") from None


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")
