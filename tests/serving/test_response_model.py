"""The typed response contract (classifier.response_model): every kind of handler answer validates against it,
the committed docs/openapi.json is the document it generates (and a valid OpenAPI 3.1 document), and the local
API serves that document at GET /openapi.json. (The robustness contract validates every fuzzed answer too.)"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from pydantic import ValidationError

from classifier import response_model as rm
from classifier.handler import create_service
from classifier.lambda_context import LocalContext
from classifier.settings import Settings
from bench import dicom_factory as f
from tests.model_factory import build_tiny_lesion_model
from tests.serving.events import predict_json, predict_raw, rest_event

REPO = Path(__file__).resolve().parents[2]
OPENAPI = REPO / "docs" / "openapi.json"


def test_the_committed_openapi_document_is_the_generated_one():
    assert OPENAPI.read_text(encoding="utf-8") == rm.document(), (
        "docs/openapi.json is stale: run `.venv/bin/python -m classifier.response_model docs/openapi.json`")


def test_the_document_is_valid_openapi_3_1():
    from openapi_spec_validator import validate

    validate(json.loads(OPENAPI.read_text()))


@pytest.fixture(scope="module")
def services(tiny_model_dir, tmp_path_factory):
    lesion = build_tiny_lesion_model(tmp_path_factory.mktemp("rm-lesion"))
    settings = dict(log_level="WARNING", metrics_enabled=False)
    return [create_service(Settings(model_dir=tiny_model_dir, **settings)),
            create_service(Settings(model_dir=lesion, **settings))]


def _answers(service):
    grey, colour = f.frame(1), f.frame(2, colour=True)
    events = [predict_raw(f.png(grey)), predict_json(f.png(colour)), predict_raw(f.dicom([grey, grey]), "application/dicom"),
              predict_raw(b"not an image"), predict_raw(f.dicom(grey, modality="CT"), "application/dicom"),
              rest_event("GET", "/nope"), rest_event("DELETE", "/predict")]
    uid = predict_raw(f.dicom(grey), "application/dicom")
    uid["queryStringParameters"] = {"include": "sop_instance_uid"}
    events.append(uid)
    for event in events:
        response = service(event, LocalContext())
        yield response["statusCode"], json.loads(response["body"])


def test_every_kind_of_answer_validates(services):
    seen = set()
    for service in services:
        for status, body in _answers(service):
            model = rm.Prediction if status == 200 else rm.ErrorBody
            model.model_validate(body)
            seen.add((status == 200, "localisation" in body, "dicom" in body, "decision" in body))
    assert (True, True, True, True) in seen and (True, False, False, True) in seen  # lesion model, tiny model
    assert any(not ok for ok, *_ in seen)


def test_the_models_refuse_what_the_contract_does_not_allow():
    good = {"label": "benign", "label_rule": "argmax", "operating_point": "default",
            "probabilities": {"normal": 0.2, "benign": 0.5, "malignant": 0.3},
            "model": {"name": "m", "version": "1"},
            "disclaimer": "Research use only. Not a medical device; not for diagnosis or clinical decisions."}
    rm.Prediction.model_validate(good)
    for bad in ({**good, "patient_name": "x"}, {**good, "disclaimer": "ok"},
                {k: v for k, v in good.items() if k != "label"},
                {**good, "dicom": {"frame": 0, "frames": 1, "region": None}}):
        with pytest.raises(ValidationError):
            rm.Prediction.model_validate(bad)


def test_error_body_is_the_one_error_shape():
    body = rm.error_body("not_dicom", "the body is not DICOM", request_id="r-1")
    assert body == {"error": {"code": "not_dicom", "message": "the body is not DICOM", "request_id": "r-1"},
                    "disclaimer": rm.DISCLAIMER}
    assert "request_id" not in rm.error_body("bad_request", "x")["error"]  # absent, not null, without one
    with pytest.raises(ValidationError):
        rm.ErrorBody.model_validate({"error": {"code": "x", "message": "y"}})  # no research-use statement


def test_the_local_api_s_own_refusals_are_error_bodies(services):
    """Refusals before the handler (framing, size) share the function's error model, disclaimer included."""
    import http.client

    from classifier.local_api import start_server, stop_server

    srv = start_server(services[0], port=0, max_body_bytes=1000)
    try:
        host, port = srv.url.removeprefix("http://").split(":")
        for headers in ({"Content-Length": "5000"}, {"Content-Length": "12abc"},
                        {"Transfer-Encoding": "gzip"}):
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            conn.putrequest("POST", "/predict")
            conn.putheader("Content-Type", "image/png")
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders()
            resp = conn.getresponse()
            body = json.loads(resp.read())
            conn.close()
            assert resp.status in (400, 413), (headers, resp.status)
            rm.ErrorBody.model_validate(body)
    finally:
        stop_server(srv)


def test_the_local_api_serves_the_document(services):
    from classifier.local_api import start_server, stop_server

    srv = start_server(services[0], port=0, max_body_bytes=services[0].settings.max_body_bytes)
    try:
        with urllib.request.urlopen(f"{srv.url}/openapi.json", timeout=30) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
            assert json.loads(resp.read()) == rm.openapi()
    finally:
        stop_server(srv)
