"""Lambda entry point (``classifier.handler.lambda_handler``): routes REST proxy events, shapes JSON responses.

POST /predict -> {"label", "probabilities", "model", "disclaimer"} (+ "localisation", and "warnings" and
"input_check" when the model's input check ran); GET /health -> status and model metadata; GET / -> the page
to try the model (classifier/static/index.html). Every error is {"error": {"code", "message", "request_id"}}.
The model is loaded once per container; in Lambda that happens during the init
phase (which runs at full CPU), elsewhere on the first request.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from . import dicom_sr
from .drift_metrics import DriftMetrics
from .engine import Engine
from .errors import ClientError, MethodNotAllowed, ModelLoadError, NotFound, json_body
from .input_check import with_input_check
from .lambda_context import LocalContext
from .model_card import DISCLAIMER
from .page import page
from .prediction import prediction_body
from .response_model import error_body
from .request_body import check_event, decode_options, extract_image, header, normalise_event
from .settings import Settings, SettingsError

#: path -> the methods it serves; anything else on a known path is a 405.
ROUTES = {"/": ("GET",), "/predict": ("POST",), "/health": ("GET",)}
JSON_HEADERS = {"Cache-Control": "no-store"}
#: Every response once the model is loaded says which model answered (the pre-traffic hook checks it).
MODEL_VERSION_HEADER = "X-Model-Version"


class ServiceUnavailable(Exception):
    """The service cannot answer (model failed to load, bad settings): a 503, never the client's fault."""

    status = 503

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Service:
    """One configured classifier service; calling it is a Lambda handler.

    Powertools keeps per-request state in class attributes (the resolver's
    current event, the metric buffer), and Lambda never invokes one container
    concurrently, so concurrent in-process callers (the local API's threads)
    are serialised here, as Lambda would. The engine has its own lock too.
    """

    def __init__(self, settings: Settings, *, settings_error: str | None = None):
        self.settings = settings
        self._settings_error = settings_error
        self.logger = Logger(service=settings.service_name, level=settings.log_level)
        self.metrics = Metrics(service=settings.service_name, namespace=settings.metrics_namespace)
        self.app = APIGatewayRestResolver(debug=False)  # debug would print whole events, image bytes included
        self._engine: Engine | None = None
        self._engine_error: str | None = None
        self._load_lock = threading.Lock()
        self._invoke_lock = threading.Lock()
        self._label: str | None = None
        # The request's top probability and the name of the operating point its label was decided with
        # (the drift metrics' operating_point dimension; "default" is the card's operating_point).
        self._top_probability: float | None = None
        self._operating_point = "default"
        self.drift: DriftMetrics | None = None  # set when the model loads (metrics on)
        self._context_request_id = "unknown"
        self._routes()
        self._handle = self._wrap(self._invoke)

    # -- engine -------------------------------------------------------------
    def engine(self) -> Engine:
        """The loaded engine; raises ServiceUnavailable if it cannot be loaded.

        A failure is remembered: the image is immutable, so retrying on every
        request would only repeat the same error more slowly.
        """
        if self._settings_error:
            raise ServiceUnavailable("service_misconfigured", "the service is misconfigured; see its logs")
        if self._engine is None and self._engine_error is None:
            with self._load_lock:
                if self._engine is None and self._engine_error is None:
                    self._load_engine()
        if self._engine is None:
            raise ServiceUnavailable("model_unavailable", "the model could not be loaded; see the service's logs")
        return self._engine

    def _load_engine(self) -> None:
        start = time.perf_counter()
        try:
            engine = Engine(self.settings.model_dir, num_threads=self.settings.num_threads)
            self._engine, input_check = with_input_check(engine)
        except ModelLoadError as exc:
            self._engine_error = str(exc)
            self.logger.error("model load failed", extra={"reason": str(exc)})
            return
        except Exception as exc:  # anything else from LiteRT/numpy must not crash-loop the container
            self._engine_error = f"{type(exc).__name__}: {exc}"
            self.logger.exception("model load failed unexpectedly")
            return
        card = self._engine.card
        if self.settings.metrics_enabled:
            # Every metric carries the model version, so the dashboard and the alarms split by model.
            self.metrics.set_default_dimensions(model_version=card.version)
            self.drift = DriftMetrics(namespace=self.settings.metrics_namespace, service=self.settings.service_name,
                                      labels=list(card.labels), model_version=card.version,
                                      batch=self.settings.drift_batch)
        # From here on (this line, the rest of a first request that loaded it): _invoke re-adds it per request.
        self.logger.append_keys(model_version=card.version)
        self.logger.info(
            "model loaded",
            extra={"model": card.name, "version": card.version, "load_ms": _ms_since(start),
                   "num_threads": self.settings.num_threads, "input_check": input_check},
        )

    @property
    def load_error(self) -> str | None:
        """Why the engine could not be loaded (for operators and CLIs; never sent to clients)."""
        return self._settings_error or self._engine_error

    # -- routes -------------------------------------------------------------
    def _routes(self) -> None:
        app = self.app

        @app.post("/predict")
        def predict() -> Response:
            engine = self.engine()
            data = extract_image(app.current_event.raw_event, max_bytes=self.settings.max_body_bytes)
            options = decode_options(app.current_event.raw_event)  # ?frame=N, ?include=sop_instance_uid
            start = time.perf_counter()
            analysis = engine.analyse(data, frame=options.frame)
            probabilities = analysis.probabilities
            model_ms = _ms_since(start)
            self._check = analysis.check
            body = prediction_body(engine.card, analysis, include_uid=options.include_uid,
                                   operating_point=_query(app.current_event.raw_event, "operating_point"))
            label, self._operating_point = body["label"], body["operating_point"]
            self._label, self._top_probability = label, max(probabilities.values())
            if self.settings.metrics_enabled:
                self.metrics.add_metric(name="ModelLatency", unit=MetricUnit.Milliseconds, value=model_ms)
                if self.settings.log_predictions:
                    # A per-label count is a log line written next to the request's correlation id: it
                    # ties a result to a request (and, through the access log, to an IP). Opt-in only.
                    with single_metric(name="Predictions", unit=MetricUnit.Count, value=1,
                                       namespace=self.settings.metrics_namespace,
                                       default_dimensions={"service": self.settings.service_name}) as metric:
                        metric.add_dimension(name="label", value=label)
            self.logger.append_keys(model_ms=model_ms, image_bytes=len(data))
            if dicom_sr.wants_dicom(header(app.current_event.raw_event, "accept")):  # the result as a DICOM SR
                return Response(status_code=200, content_type=dicom_sr.DICOM_TYPE, headers=dict(JSON_HEADERS),
                                body=dicom_sr.build(body, analysis.dicom))
            return _json(200, body)

        @app.get("/")
        def index() -> Response:
            html, headers = page()
            return Response(status_code=200, content_type="text/html; charset=utf-8", body=html, headers=headers)

        @app.get("/health")
        def health() -> Response:
            return _json(200, self._health_body())

        @app.not_found
        def not_found(_exc: Exception) -> Response:
            path = app.current_event.path
            allowed = ROUTES.get(path)
            if allowed and app.current_event.http_method == "OPTIONS" and self.settings.cors_origins:
                # A browser's preflight (API Gateway answers it itself when deployed with CORS).
                return Response(status_code=204, body="", headers={
                    "Access-Control-Allow-Methods": ", ".join((*allowed, "OPTIONS")),
                    "Access-Control-Allow-Headers": "Content-Type, X-Api-Key",
                    "Access-Control-Max-Age": "600",
                })
            if allowed:
                error = MethodNotAllowed(f"{app.current_event.http_method} is not allowed on {path}; use {', '.join(allowed)}")
                return self._error(error.status, error.code, error.message, {"Allow": ", ".join(allowed)})
            error = NotFound(f"no route {path}; the routes are {', '.join(f'{m[0]} {p}' for p, m in ROUTES.items())}")
            return self._error(error.status, error.code, error.message)

        @app.exception_handler(ClientError)
        def client_error(exc: ClientError) -> Response:
            self.logger.append_keys(error_code=exc.code)
            self._check = getattr(exc, "check", None)  # a refusal by the input check: its score, for drift
            return self._error(exc.status, exc.code, exc.message)

        @app.exception_handler(ServiceUnavailable)
        def unavailable(exc: ServiceUnavailable) -> Response:
            self.logger.append_keys(error_code=exc.code)
            return self._error(exc.status, exc.code, exc.message)

        @app.exception_handler(Exception)
        def unexpected(exc: Exception) -> Response:
            self.logger.exception("unexpected error")
            return self._internal_error()

    def _health_body(self) -> dict:
        card = self.engine().card
        return {
            "status": "ok",
            "model": {
                "name": card.name, "version": card.version, "labels": list(card.labels),
                "input_size": card.input_size, "input_dtype": card.input_dtype,
                "preprocessing_id": card.preprocessing_id, "tflite_sha256": card.tflite_sha256,
                "backbone": card.backbone, "created_at": card.created_at,
                "operating_points": {name: {k: op.get(k) for k in ("malignant_threshold", "normal_threshold", "chosen_by")}
                                     for name, op in card.points().items()},
                "default_operating_point": card.point()[0],
            },
            "disclaimer": card.disclaimer or DISCLAIMER,
        }

    def _request_id(self) -> str:
        try:
            rid = (self.app.current_event.raw_event.get("requestContext") or {}).get("requestId")
        except Exception:
            rid = None
        return str(rid or self._context_request_id)

    def _error(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
        return _json(status, error_body(code, message, request_id=self._request_id()), headers)

    def _internal_error(self) -> Response:
        return _json(500, _fallback_500(self._request_id()))

    # -- invocation ---------------------------------------------------------
    def _wrap(self, func: Callable) -> Callable:
        func = self.logger.inject_lambda_context(
            func, log_event=False, correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
        )
        if self.settings.metrics_enabled:
            func = self.metrics.log_metrics(func, capture_cold_start_metric=True)
        return func

    def _invoke(self, event: Mapping[str, Any], context: Any) -> dict:
        start = time.perf_counter()
        # Per-invocation results of the predict route (a Lambda environment runs one invocation at a time).
        self._label, self._top_probability, self._operating_point, self._check = None, None, "default", None
        if self._engine is not None:  # every log line of the request names the model version
            self.logger.append_keys(model_version=self._engine.card.version)
        try:
            response = self.app.resolve(event, context)
        except Exception:  # an event the resolver cannot even read
            self.logger.exception("unexpected error outside the routes")
            response = _raw_json(500, _fallback_500(self._context_request_id))
        self._add_cors_headers(event, response)
        status = int(response.get("statusCode", 500))
        check = self._check
        if self._engine is not None:
            _add_header(response, MODEL_VERSION_HEADER, self._engine.card.version)
            if self.drift is not None and event.get("path") == "/predict":
                self.drift.record(label=self._label, operating_point=self._operating_point,
                                  top_probability=self._top_probability,
                                  verdict=check.verdict if check is not None else None,
                                  score=check.score if check is not None else None)
        latency_ms = _ms_since(start)
        if self.settings.metrics_enabled:
            self.metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=latency_ms)
            self.metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
            if status >= 400:
                name = "ServerErrors" if status >= 500 else "ClientErrors"
                self.metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
        # Method, path, status, latency: never the body, the caller's address or (unless the operator
        # set CLASSIFIER_LOG_PREDICTIONS) the result. README "What the logs hold" lists every key.
        extra = {"method": event.get("httpMethod"), "path": event.get("path"), "status": status,
                 "latency_ms": latency_ms}
        if self.settings.log_predictions and self._label is not None:
            extra["label"] = self._label
            extra["probabilities"] = _probabilities(response)
        self.logger.info("request", extra=extra)
        return response

    def _add_cors_headers(self, event: Mapping[str, Any], response: dict) -> None:
        """Proxy integrations pass the function's headers through, so CORS headers come from here."""
        origins = self.settings.cors_origins
        origin = header(event, "origin") if isinstance(event, Mapping) else None
        if not origins or not origin:
            return
        if "*" in origins:
            extra = {"Access-Control-Allow-Origin": "*"}
        elif origin in origins:
            extra = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        else:
            return
        multi = response.get("multiValueHeaders")
        if multi is not None:
            for key, value in extra.items():
                multi[key] = [value]
        else:
            response.setdefault("headers", {}).update(extra)

    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict:
        context = context if context is not None else LocalContext()
        try:
            check_event(event)
        except ClientError as exc:  # not a proxy event at all: 400 before Powertools reads it
            return self._refuse_event(exc, context)
        event = normalise_event(event)
        if _is_health(event) and not self._invoke_lock.acquire(blocking=False):
            # A prediction holds the lock (only in the local API: Lambda never runs two requests in
            # one container). /health does not wait behind it: answered without the resolver, and
            # without a log line or metrics, whose Powertools state belongs to the request in flight.
            return self._health_unlocked(event)
        if not _is_health(event):
            self._invoke_lock.acquire()
        try:
            self._context_request_id = getattr(context, "aws_request_id", "unknown")
            try:
                return self._handle(event, context)
            except Exception:  # a fault in logging/metrics themselves: still no stack trace to the client
                self.logger.exception("unexpected error in the handler wrapper")
                return _raw_json(500, _fallback_500(self._context_request_id))
        finally:
            self._invoke_lock.release()

    def _refuse_event(self, exc: ClientError, context: Any) -> dict:
        request_id = str(getattr(context, "aws_request_id", None) or "unknown")
        with self._invoke_lock:
            self.logger.info("request", extra={"status": exc.status, "error_code": exc.code,
                                               "function_request_id": request_id})
        return _raw_json(exc.status, error_body(exc.code, exc.message, request_id=request_id))

    def _health_unlocked(self, event: Mapping[str, Any]) -> dict:
        request_id = str((event.get("requestContext") or {}).get("requestId") or "unknown")
        try:
            response = _raw_json(200, self._health_body())
        except ServiceUnavailable as exc:
            response = _raw_json(exc.status, error_body(exc.code, exc.message, request_id=request_id))
        except Exception:
            response = _raw_json(500, _fallback_500(request_id))
        self._add_cors_headers(event, response)
        return response

    def warm(self) -> None:
        """Load the model now (Lambda's init phase) instead of on the first request."""
        if not self._settings_error:
            try:
                self.engine()
            except ServiceUnavailable:
                pass  # remembered; each request answers 503 with the reason in the logs


def _query(event: Mapping[str, Any], name: str) -> str | None:
    query = event.get("queryStringParameters") or {}
    value = query.get(name) if isinstance(query, Mapping) else None
    return None if value is None else str(value)


def _is_health(event: Mapping[str, Any]) -> bool:
    return event.get("httpMethod") == "GET" and event.get("path") == "/health"


def _add_header(response: dict, name: str, value: str) -> None:
    multi = response.get("multiValueHeaders")
    if multi is not None:
        multi[name] = [value]
    else:
        response.setdefault("headers", {})[name] = value


def _probabilities(response: Mapping[str, Any]) -> Any:
    try:
        return json.loads(response.get("body") or "{}").get("probabilities")
    except (ValueError, AttributeError):
        return None


def _fallback_500(request_id: str) -> dict:
    return error_body("internal_error", f"unexpected server error; quote request id {request_id} when reporting it",
                      request_id=request_id)


def _json(status: int, body: dict, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type="application/json", body=json_body(body),
                    headers={**JSON_HEADERS, **(headers or {})})


def _raw_json(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json", **JSON_HEADERS},
            "body": json_body(body), "isBase64Encoded": False}


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def create_service(settings: Settings | None = None) -> Service:
    """A Service from explicit settings, or from the environment (the edge) when none are given."""
    if settings is not None:
        return Service(settings)
    try:
        return Service(Settings.from_env())
    except SettingsError as exc:
        # Start anyway and answer 503: a crash at import would make Lambda retry the init forever.
        service = Service(Settings(), settings_error=str(exc))
        service.logger.error("invalid settings", extra={"reason": str(exc)})
        return service


_service: Service | None = None
_service_lock = threading.Lock()


def default_service() -> Service:
    """The process's Service, built from the environment once."""
    global _service
    if _service is None:
        with _service_lock:
            if _service is None:
                _service = create_service()
    return _service


def lambda_handler(event: Mapping[str, Any], context: Any) -> dict:
    return default_service()(event, context)


if os.environ.get("AWS_LAMBDA_RUNTIME_API"):  # inside Lambda (or its emulator): load during init
    default_service().warm()
