"""The Lambda handler on real LiteRT (the tiny model): routes, response shape, every error path, logs, metrics."""

from __future__ import annotations

import io
import json
import shutil
import threading
import time
import uuid

import numpy as np
import pytest
from classifier.model_card import DISCLAIMER
from PIL import Image

from classifier import handler as handler_module
from classifier.engine import Engine
from classifier.handler import Service, create_service
from classifier.lambda_context import LocalContext
from classifier.preprocessing import preprocess, preprocess_file
from classifier.request_body import extract_image
from classifier.settings import Settings
from tests.serving.events import image_bytes, predict_json, predict_multipart, predict_raw, rest_event

LABELS = ["normal", "benign", "malignant"]


@pytest.fixture(scope="module")
def service(tiny_model_dir) -> Service:
    return create_service(Settings(model_dir=tiny_model_dir, log_level="WARNING", metrics_enabled=False))


@pytest.fixture(scope="module")
def engine(tiny_model_dir) -> Engine:
    return Engine(tiny_model_dir)


def call(service, event, context=None):
    response = service(event, context or LocalContext())
    body = response["body"]
    assert body.endswith("\n") and "\n" not in body[:-1], f"not one line ending with a newline: {body[:200]!r}"
    return response["statusCode"], json.loads(body), _headers(response)


def _headers(response) -> dict[str, str]:
    out = {k.lower(): ", ".join(v) for k, v in (response.get("multiValueHeaders") or {}).items()}
    out.update({k.lower(): v for k, v in (response.get("headers") or {}).items()})
    return out


def assert_prediction(body, engine, data):
    assert {"label", "label_rule", "operating_point", "probabilities", "model", "disclaimer"} <= set(body) <= {
        "label", "label_rule", "operating_point", "decision", "probabilities", "model", "disclaimer", "localisation"}
    if "decision" in body:  # the two numbers the rule reads, from the probabilities themselves
        p = body["probabilities"]
        assert body["decision"]["p_lesion"] == pytest.approx(1 - p["normal"], abs=1e-6)
        assert body["decision"]["p_malignant_given_lesion"] == pytest.approx(
            p["malignant"] / (p["benign"] + p["malignant"]), abs=1e-6)
    probs = body["probabilities"]
    assert list(probs) == LABELS
    assert all(isinstance(p, float) and 0.0 <= p <= 1.0 for p in probs.values())
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-9)
    assert (body["label"], body["label_rule"]) == engine.card.decide(probs)
    assert body["model"] == {"name": engine.card.name, "version": engine.card.version}
    assert body["disclaimer"].startswith("Research use only")
    expected = engine.predict_bytes(data)
    assert probs == pytest.approx(expected, abs=1e-12)


# -- the three input kinds -----------------------------------------------------------------------

@pytest.mark.parametrize("build", [
    lambda d: predict_raw(d, "image/png"),
    lambda d: predict_raw(d, "image/png", headers={"content-type": "image/png"}),
    lambda d: predict_json(d),
    lambda d: predict_json(d, prefix="data:image/png;base64,"),
    lambda d: predict_multipart(d),
], ids=["raw", "raw-lowercase-header", "json", "json-data-url", "multipart"])
def test_each_input_kind_predicts(service, engine, build):
    data = image_bytes(80, 60, seed=1)
    status, body, headers = call(service, build(data))
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    assert_prediction(body, engine, data)


def test_raw_jpeg(service, engine):
    data = image_bytes(80, 60, fmt="JPEG", quality=90)
    status, body, _ = call(service, predict_raw(data, "image/jpeg"))
    assert status == 200
    assert_prediction(body, engine, data)


@pytest.mark.parametrize("mode, fmt", [
    ("L", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("I;16", "PNG"), ("1", "PNG"),
    ("CMYK", "JPEG"), ("L", "JPEG"), ("RGB", "BMP"),
])
def test_image_modes(service, engine, mode, fmt):
    data = image_bytes(70, 50, mode=mode, fmt=fmt)
    event = predict_json(data) if fmt == "BMP" else predict_raw(data, "image/jpeg" if fmt == "JPEG" else "image/png")
    status, body, _ = call(service, event)
    assert status == 200, body
    assert_prediction(body, engine, data)


def test_exif_rotated_image_is_served_upright(service):
    upright = Image.fromarray((np.random.default_rng(3).random((40, 90, 3)) * 255).astype(np.uint8))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes, with orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    buf_rot, buf_up = io.BytesIO(), io.BytesIO()
    stored.save(buf_rot, format="PNG", exif=exif)
    upright.save(buf_up, format="PNG")
    assert np.array_equal(preprocess(buf_rot.getvalue(), 32), preprocess(buf_up.getvalue(), 32))
    _, rotated, _ = call(service, predict_raw(buf_rot.getvalue()))
    _, plain, _ = call(service, predict_raw(buf_up.getvalue()))
    assert rotated["probabilities"] == plain["probabilities"]


# -- preprocessing parity: the training path (preprocess_file) and the handler path ------------------

@pytest.mark.parametrize("fmt, ctype", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("BMP", None)])
def test_preprocessing_parity_with_training_path(service, engine, tmp_path, fmt, ctype):
    path = tmp_path / f"frame.{fmt.lower()}"
    path.write_bytes(image_bytes(123, 77, mode="RGB", fmt=fmt, seed=5))
    size = engine.card.input_size
    training = preprocess_file(path, size)
    data = path.read_bytes()
    events = [predict_json(data), predict_multipart(data)] + ([predict_raw(data, ctype)] if ctype else [])
    for event in events:
        served = preprocess(extract_image(event, max_bytes=4_500_000), size)
        assert served.dtype == training.dtype and np.array_equal(served, training)
        _, body, _ = call(service, event)
        expected = engine.predict_array(training)
        assert list(body["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-12)


# -- routes -----------------------------------------------------------------------------------------

def test_health(service, engine):
    status, body, _ = call(service, rest_event("GET", "/health"))
    assert status == 200
    assert body["status"] == "ok"
    assert body["model"]["name"] == engine.card.name and body["model"]["labels"] == LABELS
    assert body["model"]["tflite_sha256"] == engine.card.tflite_sha256
    assert body["model"]["default_operating_point"] in body["model"]["operating_points"]
    assert body["disclaimer"].startswith("Research use only")


@pytest.mark.parametrize("method, path, status, code, allow", [
    ("GET", "/predict", 405, "method_not_allowed", "POST"),
    ("PUT", "/predict", 405, "method_not_allowed", "POST"),
    ("POST", "/health", 405, "method_not_allowed", "GET"),
    ("DELETE", "/health", 405, "method_not_allowed", "GET"),
    ("POST", "/", 405, "method_not_allowed", "GET"),
    ("POST", "/predict/extra", 404, "not_found", None),
    ("GET", "/admin", 404, "not_found", None),
])
def test_other_routes_and_methods(service, method, path, status, code, allow):
    rid = str(uuid.uuid4())
    got, body, headers = call(service, rest_event(method, path, request_id=rid))
    assert got == status
    assert body == {"error": {"code": code, "message": body["error"]["message"], "request_id": rid},
                    "disclaimer": DISCLAIMER}  # the same shape as API Gateway's own errors
    assert headers.get("allow") == allow


def test_cors_headers_only_for_allowed_origins(tiny_model_dir):
    svc = create_service(Settings(model_dir=tiny_model_dir, log_level="WARNING", metrics_enabled=False,
                                  cors_origins=("https://ok.example",)))
    ok = svc(predict_raw(image_bytes(), headers={"Origin": "https://ok.example"}), LocalContext())
    assert _headers(ok)["access-control-allow-origin"] == "https://ok.example" and _headers(ok)["vary"] == "Origin"
    err = svc(rest_event("GET", "/nope", headers={"origin": "https://ok.example"}), LocalContext())
    assert err["statusCode"] == 404 and _headers(err)["access-control-allow-origin"] == "https://ok.example"
    other = svc(predict_raw(image_bytes(), headers={"Origin": "https://evil.example"}), LocalContext())
    assert "access-control-allow-origin" not in _headers(other)
    preflight = svc(rest_event("OPTIONS", "/predict", headers={"Origin": "https://ok.example"}), LocalContext())
    assert preflight["statusCode"] == 204 and "POST" in _headers(preflight)["access-control-allow-methods"]
    # without CORS settings: no headers, and OPTIONS is just another method
    plain = create_service(Settings(model_dir=tiny_model_dir, log_level="WARNING", metrics_enabled=False))
    response = plain(rest_event("OPTIONS", "/predict", headers={"Origin": "https://ok.example"}), LocalContext())
    assert response["statusCode"] == 405 and "access-control-allow-origin" not in _headers(response)


# -- client errors: status and code -------------------------------------------------------------------

def _tiny_png():
    return image_bytes(16, 16)


def _bomb_png():
    buf = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buf, format="PNG")  # 64 MP, a few kB compressed
    return buf.getvalue()


def _truncated_png():
    data = image_bytes(200, 150, seed=9)
    return data[: len(data) // 2]


@pytest.mark.parametrize("event_factory, status, code", [
    (lambda: predict_raw(b"hello, this is text", "image/png"), 400, "not_an_image"),
    (lambda: predict_raw(b"GIF89a" + b"\0" * 64, "image/png"), 400, "not_an_image"),
    (lambda: predict_raw(_truncated_png(), "image/png"), 400, "corrupt_image"),
    (lambda: predict_raw(image_bytes(200, 150, fmt="JPEG")[:600], "image/jpeg"), 400, "corrupt_image"),
    (lambda: rest_event(body='{"image": "@@@"}', content_type="application/json"), 400, "invalid_base64"),
    (lambda: rest_event(body="{oops", content_type="application/json"), 400, "malformed_body"),
    (lambda: rest_event(body=None, content_type="image/png"), 400, "malformed_body"),
    (lambda: rest_event(body=b"--x\r\n\r\n--x--", content_type="multipart/form-data; boundary=x"), 400,
     "malformed_body"),
    (lambda: predict_raw(b"\0" * 4_500_001, "image/png"), 413, "payload_too_large"),
    (lambda: predict_raw(image_bytes(), "image/gif"), 415, "unsupported_media_type"),
    (lambda: rest_event(body="x", content_type="text/plain"), 415, "unsupported_media_type"),
    (lambda: predict_raw(_tiny_png()), 422, "image_too_small"),
    (lambda: predict_raw(image_bytes(1000, 40)), 422, "bad_image_dimensions"),
    (lambda: predict_raw(_bomb_png()), 422, "bad_image_dimensions"),
], ids=["text", "gif", "truncated-png", "truncated-jpeg", "bad-base64", "bad-json", "empty", "multipart-no-image",
        "too-large", "gif-type", "text-type", "too-small", "aspect", "bomb"])
def test_client_errors(service, event_factory, status, code):
    event = event_factory()
    got, body, headers = call(service, event)
    assert (got, body["error"]["code"]) == (status, code), body
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["message"] and body["error"]["request_id"] == event["requestContext"]["requestId"]
    assert headers["content-type"] == "application/json"


def test_unexpected_fault_is_a_500_with_request_id_and_no_details(tiny_model_dir, monkeypatch):
    svc = create_service(Settings(model_dir=tiny_model_dir, log_level="CRITICAL", metrics_enabled=False))

    def boom(_data):
        raise RuntimeError("secret internal detail /opt/path")

    monkeypatch.setattr(svc.engine(), "analyse", boom)
    rid = str(uuid.uuid4())
    status, body, _ = call(svc, predict_raw(image_bytes(), request_id=rid))
    assert status == 500
    assert body["error"]["code"] == "internal_error" and body["error"]["request_id"] == rid
    assert rid in body["error"]["message"]
    text = json.dumps(body)
    assert "secret" not in text and "Traceback" not in text and "RuntimeError" not in text


def test_event_that_is_not_a_proxy_request_is_a_400_not_a_500(service):
    ctx = LocalContext()
    for event in ({}, {"httpMethod": None}, {"path": "/predict"}, {"httpMethod": "POST"}, [], "x", None, 5,
                  {"httpMethod": "POST", "path": "/predict", "headers": "x"},
                  {"httpMethod": "POST", "path": "/predict", "headers": {}, "body": 5},
                  {"httpMethod": "POST", "path": "/predict", "requestContext": []}):
        response = service(event, ctx)
        assert response["statusCode"] == 400, event
        error = json.loads(response["body"])["error"]
        assert error["code"] == "malformed_request" and error["request_id"] == ctx.aws_request_id


def test_event_without_headers_key_is_served(service, engine):
    """API Gateway always sends headers; an event that omits them (or has only multiValueHeaders) still works."""
    data = image_bytes(60, 50)
    event = predict_raw(data)
    multi = {k: [v] for k, v in event["headers"].items()}
    for variant in ({**event, "headers": None, "multiValueHeaders": multi},
                    {k: v for k, v in event.items() if k not in ("headers",)} | {"multiValueHeaders": multi}):
        status, body, _ = call(service, variant)
        assert status == 200, body
    no_headers = {k: v for k, v in event.items() if k not in ("headers", "multiValueHeaders")}
    status, body, _ = call(service, no_headers)
    assert status == 415 and body["error"]["code"] == "unsupported_media_type"


# -- a model that cannot be loaded: 503, every time, no crash -------------------------------------------

def _broken_model_dirs(tiny_model_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_model_dir, tampered)
    (tampered / "model.tflite").write_bytes(b"\0" * 100)
    bad_card = tmp_path / "bad_card"
    shutil.copytree(tiny_model_dir, bad_card)
    card = json.loads((bad_card / "model.json").read_text())
    card["preprocessing_id"] = "something-else-v9"
    (bad_card / "model.json").write_text(json.dumps(card))
    return [empty, tampered, bad_card]


def test_model_that_fails_to_load_answers_503(tiny_model_dir, tmp_path):
    for model_dir in _broken_model_dirs(tiny_model_dir, tmp_path):
        svc = create_service(Settings(model_dir=model_dir, log_level="CRITICAL", metrics_enabled=False))
        svc.warm()  # what the Lambda init phase does: must not raise
        assert svc.load_error
        for _ in range(2):  # remembered, still answered
            for event in (predict_raw(image_bytes()), rest_event("GET", "/health")):
                status, body, _ = call(svc, event)
                assert (status, body["error"]["code"]) == (503, "model_unavailable")
                assert str(model_dir) not in body["error"]["message"]


def test_bad_settings_answer_503_instead_of_crashing(monkeypatch):
    monkeypatch.setenv("CLASSIFIER_NUM_THREADS", "lots")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "CRITICAL")
    svc = create_service()
    assert "CLASSIFIER_NUM_THREADS" in svc.load_error
    status, body, _ = call(svc, rest_event("GET", "/health"))
    assert (status, body["error"]["code"]) == (503, "service_misconfigured")


def test_module_lambda_handler_reads_the_environment(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("CLASSIFIER_MODEL_DIR", str(tiny_model_dir))
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    monkeypatch.setattr(handler_module, "_service", None)
    response = handler_module.lambda_handler(predict_raw(image_bytes()), LocalContext())
    assert response["statusCode"] == 200
    assert handler_module.default_service().settings.model_dir == tiny_model_dir
    assert handler_module.default_service() is handler_module.default_service()


# -- concurrency: Powertools' per-request state must not cross between threads ---------------------------

def test_concurrent_callers_get_their_own_answers(tiny_model_dir, monkeypatch):
    svc = create_service(Settings(model_dir=tiny_model_dir, log_level="WARNING", metrics_enabled=False))
    images = [image_bytes(64 + i, 48, seed=i) for i in range(6)]
    expected = [call(svc, predict_raw(d))[1]["probabilities"] for d in images]
    # Widen the window between the resolver storing the event (class-level state in
    # Powertools) and the route reading it: without the service's lock, answers cross.
    real_engine = svc.engine

    def slow_engine():
        time.sleep(0.002)
        return real_engine()

    monkeypatch.setattr(svc, "engine", slow_engine)
    wrong: list[str] = []

    def worker(i):
        for _ in range(4):
            try:
                status, body, _ = call(svc, predict_raw(images[i]))
                if status != 200 or body["probabilities"] != expected[i]:
                    wrong.append(f"image {i}: HTTP {status} {body}")
            except Exception as exc:  # noqa: BLE001 - reported below, in the test's thread
                wrong.append(f"image {i}: {exc!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, wrong[:3]


# -- logs and metrics ----------------------------------------------------------------------------------

def test_logs_have_request_id_and_latency_but_never_the_image(tiny_model_dir, capsys):
    # A fresh service name gives a fresh Powertools logger bound to the captured stdout.
    name = f"log-test-{uuid.uuid4().hex[:8]}"
    svc = create_service(Settings(model_dir=tiny_model_dir, service_name=name, metrics_namespace="TestNs",
                                  log_level="INFO", metrics_enabled=True))
    data = image_bytes(90, 70, seed=11)
    rid = str(uuid.uuid4())
    for event in (predict_raw(data, request_id=rid), predict_json(data, request_id=rid),
                  predict_multipart(data, request_id=rid)):
        status, body, _ = call(svc, event)
        assert status == 200
    out = capsys.readouterr().out
    import base64

    b64 = base64.b64encode(data).decode()
    assert b64[:40] not in out and b64[-40:] not in out
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    requests = [r for r in records if r.get("message") == "request"]
    assert len(requests) == 3
    for r in requests:
        assert r["correlation_id"] == rid and r["function_request_id"]
        assert r["status"] == 200 and r["latency_ms"] > 0
        # Privacy by default: no result and no caller address beside the request id.
        assert "label" not in r and "probabilities" not in r and "127.0.0.1" not in json.dumps(r)
    # EMF: latency and model latency; no per-label count by default (it would sit beside the request id)
    emf = [r for r in records if "_aws" in r]
    assert not [r for r in emf if "Predictions" in r]
    assert sum("Latency" in r and "ModelLatency" in r for r in emf) == 3
    assert all(r["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TestNs" for r in emf)


def test_errors_are_counted_as_client_or_server_errors(tiny_model_dir, capsys):
    name = f"metric-test-{uuid.uuid4().hex[:8]}"
    svc = create_service(Settings(model_dir=tiny_model_dir, service_name=name, log_level="CRITICAL"))
    call(svc, predict_raw(b"not an image"))
    call(svc, rest_event("GET", "/nope"))
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert sum(r.get("ClientErrors") == [1.0] for r in emf) == 2
    assert not any("ServerErrors" in r for r in emf)


def test_log_predictions_setting_adds_the_result_to_the_request_line(tiny_model_dir, capsys):
    name = f"log-pred-{uuid.uuid4().hex[:8]}"
    svc = create_service(Settings(model_dir=tiny_model_dir, service_name=name, metrics_enabled=False,
                                  log_predictions=True))
    status, body, _ = call(svc, predict_raw(image_bytes(90, 70, seed=11)))
    assert status == 200
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (r,) = [r for r in records if r.get("message") == "request"]
    assert r["label"] == body["label"] and r["probabilities"] == body["probabilities"]
