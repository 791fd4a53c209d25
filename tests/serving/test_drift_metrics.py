"""Drift metrics (classifier/drift_metrics.py) and the model version in every response, log line and metric:
the handler on the tiny model (real LiteRT), its stdout parsed as CloudWatch would (EMF and JSON logs)."""

from __future__ import annotations

import json
import uuid

import pytest

from classifier.drift_metrics import DriftMetrics
from classifier.handler import MODEL_VERSION_HEADER, Service
from classifier.lambda_context import LocalContext
from classifier.settings import Settings, SettingsError
from tests.serving.events import image_bytes, predict_raw, rest_event

LABELS = ["normal", "benign", "malignant"]


def _fresh() -> str:
    return f"drift-test-{uuid.uuid4().hex[:8]}"


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _emf(lines: list[dict], metric: str) -> list[dict]:
    return [line for line in lines if "_aws" in line
            and any(m["Name"] == metric for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"])]


def test_values_are_batched_sorted_and_carry_no_request_identity(capsys):
    drift = DriftMetrics(namespace="NS", service="svc", labels=LABELS, model_version="v9", batch=3)
    drift.record(label="malignant", operating_point="sensitive", top_probability=0.7, verdict="pass", score=0.6)
    drift.record(label="benign", operating_point="sensitive", top_probability=0.5, verdict="warn", score=1.5)
    assert capsys.readouterr().out == ""  # fewer than `batch` requests: nothing written yet
    drift.record(label=None, operating_point="sensitive", top_probability=None, verdict="reject", score=3.1)
    lines = _lines(capsys.readouterr().out)
    (labels,) = _emf(lines, "PredictedMalignant")
    assert labels["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["model_version", "operating_point", "service"]]
    assert (labels["model_version"], labels["operating_point"], labels["service"]) == ("v9", "sensitive", "svc")
    # Two labelled requests (the refused one has no label): one value per request, sorted.
    assert labels["PredictedMalignant"] == [0.0, 1.0] and labels["PredictedBenign"] == [0.0, 1.0]
    assert labels["PredictedNormal"] == [0.0, 0.0] and labels["TopProbability"] == [0.5, 0.7]
    (checks,) = _emf(lines, "InputCheckRefused")
    assert checks["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["model_version", "service"]]
    assert checks["InputCheckRefused"] == [0.0, 0.0, 1.0] and checks["InputCheckWarn"] == [0.0, 0.0, 1.0]
    assert checks["InputCheckScore"] == [0.6, 1.5, 3.1]
    for line in lines:
        assert not {"request_id", "correlation_id", "function_request_id", "xray_trace_id"} & set(line)


def test_flush_writes_a_partial_batch_and_bad_batches_are_refused(capsys):
    drift = DriftMetrics(namespace="NS", service="svc", labels=LABELS, model_version="v9", batch=10)
    drift.record(label="normal", operating_point="default", top_probability=0.9, verdict=None, score=None)
    drift.flush()
    (line,) = _lines(capsys.readouterr().out)
    assert line["PredictedNormal"] in (1.0, [1.0]) and "InputCheckScore" not in line
    drift.flush()  # nothing buffered: nothing written (and no Powertools "no metrics" warning)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError):
        DriftMetrics(namespace="NS", service="svc", labels=LABELS, model_version="v", batch=0)
    with pytest.raises(SettingsError, match="CLASSIFIER_DRIFT_BATCH"):
        Settings.from_env({"CLASSIFIER_DRIFT_BATCH": "101"})


def test_the_handler_names_its_model_in_headers_logs_and_metrics(tiny_model_dir, capsys):
    # A service name of its own: Powertools keeps one logger per name, bound to the stdout of the test that made it.
    service = Service(Settings(model_dir=tiny_model_dir, drift_batch=2, log_level="INFO", service_name=_fresh()))
    service.warm()
    version = service.engine().card.version
    capsys.readouterr()
    responses = [service(predict_raw(image_bytes(seed=s)), LocalContext()) for s in (1, 2)]
    responses.append(service(rest_event("POST", "/predict", body=b"not an image", content_type="image/png"),
                             LocalContext()))
    responses.append(service(rest_event("GET", "/health"), LocalContext()))
    for response in responses:
        headers = {k: v for k, v in (response.get("headers") or {}).items()}
        headers.update({k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()})
        assert headers[MODEL_VERSION_HEADER] == version, response["statusCode"]
    assert [r["statusCode"] for r in responses] == [200, 200, 400, 200]
    lines = _lines(capsys.readouterr().out)
    logs = [line for line in lines if line.get("message") == "request"]
    assert len(logs) == 4 and all(line["model_version"] == version for line in logs)
    # A service that loads its model on the first request (the local API) names it from that request on.
    lazy = Service(Settings(model_dir=tiny_model_dir, log_level="INFO", metrics_enabled=False, service_name=_fresh()))
    lazy(predict_raw(image_bytes(seed=3)), LocalContext())
    first = [line for line in _lines(capsys.readouterr().out) if line.get("message") in ("model loaded", "request")]
    assert [line["message"] for line in first] == ["model loaded", "request"]
    assert all(line["model_version"] == version for line in first)
    service_metrics = [line for line in _emf(lines, "Requests")]
    assert len(service_metrics) == 4 and all(line["model_version"] == version for line in service_metrics)
    (drift,) = _emf(lines, "PredictedMalignant")  # two predictions = one batch; the 400 adds nothing
    bodies = [json.loads(r["body"]) for r in responses[:2]]
    for label in LABELS:
        assert drift[f"Predicted{label.capitalize()}"] == sorted(float(b["label"] == label) for b in bodies)
    assert drift["TopProbability"] == sorted(max(b["probabilities"].values()) for b in bodies)
    assert drift["operating_point"] == bodies[0]["operating_point"] and drift["model_version"] == version


def test_each_line_is_what_powertools_writes_for_the_same_values(capsys):
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    drift = DriftMetrics(namespace="NS", service="svc", labels=LABELS, model_version="v9", batch=2)
    drift.record(label="benign", operating_point="balanced", top_probability=0.61, verdict="warn", score=1.4)
    drift.record(label="malignant", operating_point="balanced", top_probability=0.52, verdict="pass", score=0.7)
    ours = _lines(capsys.readouterr().out)
    expected = []
    for dims, metrics in (({"operating_point": "balanced"}, {"PredictedNormal": [0.0, 0.0], "PredictedBenign": [0.0, 1.0],
                                                             "PredictedMalignant": [0.0, 1.0], "TopProbability": [0.52, 0.61]}),
                          ({}, {"InputCheckWarn": [0.0, 1.0], "InputCheckRefused": [0.0, 0.0], "InputCheckScore": [0.7, 1.4]})):
        emf = EphemeralMetrics(namespace="NS", service="svc")
        emf.add_dimension(name="model_version", value="v9")
        for name, value in dims.items():
            emf.add_dimension(name=name, value=value)
        for name, values in metrics.items():
            for value in values:
                unit = MetricUnit.NoUnit if name in ("TopProbability", "InputCheckScore") else MetricUnit.Count
                emf.add_metric(name=name, unit=unit, value=value)
        expected.append(emf.serialize_metric_set())
    for mine, theirs in zip(ours, expected, strict=True):
        mine["_aws"]["Timestamp"] = theirs["_aws"]["Timestamp"] = 0
        assert mine == theirs
