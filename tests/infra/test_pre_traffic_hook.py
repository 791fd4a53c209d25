"""The pre-traffic hook against a local fake of exactly the two AWS calls it makes: lambda.invoke (here it runs
the real classifier handler on the tiny model, real LiteRT) and codedeploy.put_lifecycle_event_hook_execution_status."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from infra.pre_traffic_hook import index as hook
from infra.release import pre_traffic_expectations
from tests.infra.conftest import REPO

TARGET = "arn:aws:lambda:eu-west-1:123456789012:function:BusiClassifier-Fn:7"
EVENT = {"DeploymentId": "d-ABC123", "LifecycleEventHookExecutionId": "hook-exec-1"}


class FakeLambda:
    """lambda.invoke(FunctionName, InvocationType, Payload) -> {StatusCode, Payload[, FunctionError]}."""

    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def invoke(self, *, FunctionName, InvocationType, Payload):
        self.calls.append(FunctionName)
        assert InvocationType == "RequestResponse"
        result = self.answer(json.loads(Payload))
        if isinstance(result, Exception):
            return {"StatusCode": 200, "FunctionError": "Unhandled",
                    "Payload": io.BytesIO(json.dumps({"errorMessage": str(result)}).encode())}
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(result).encode())}


class FakeCodeDeploy:
    def __init__(self):
        self.reports = []

    def put_lifecycle_event_hook_execution_status(self, *, deploymentId, lifecycleEventHookExecutionId, status):
        self.reports.append((deploymentId, lifecycleEventHookExecutionId, status))
        return {"lifecycleEventHookExecutionId": lifecycleEventHookExecutionId}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory, lambda_src_copy) -> Path:
    """The hook's asset folder exactly as the stack stages it: index.py, the images, expectations.json."""
    card = json.loads((lambda_src_copy / "model" / "model.json").read_text())
    expectations, images = pre_traffic_expectations(card, REPO)
    folder = tmp_path_factory.mktemp("hook")
    for name, path in images.items():
        shutil.copy2(path, folder / name)
    (folder / "expectations.json").write_text(json.dumps(expectations))
    return folder


@pytest.fixture(scope="module")
def service(lambda_src_copy):
    from classifier.handler import Service
    from classifier.settings import Settings

    return Service(Settings(model_dir=lambda_src_copy / "model", metrics_enabled=False))


def _run(monkeypatch, packaged, answer):
    monkeypatch.setattr(hook, "HERE", packaged)
    monkeypatch.setenv("TARGET_VERSION_ARN", TARGET)
    lam, cd = FakeLambda(answer), FakeCodeDeploy()
    result = hook.handler(EVENT, None, lambda_client=lam, codedeploy_client=cd)
    return result, lam, cd


def test_the_new_version_answering_as_recorded_passes(monkeypatch, packaged, service):
    result, lam, cd = _run(monkeypatch, packaged, lambda event: service(event))
    assert result == {"status": "Succeeded", "problems": []}
    assert lam.calls == [TARGET] * 3  # every example, to the new version only
    assert cd.reports == [("d-ABC123", "hook-exec-1", "Succeeded")]


def _tamper(service, change):
    def answer(event):
        response = service(event)
        body = json.loads(response["body"])
        change(response, body)
        response["body"] = json.dumps(body)
        return response
    return answer


@pytest.mark.parametrize("change,problem", [
    (lambda r, b: b["model"].update(version="other"), "body model version"),
    (lambda r, b: [(r.get(k) or {}).pop("X-Model-Version", None) for k in ("headers", "multiValueHeaders")],
     "X-Model-Version header"),
    (lambda r, b: b["probabilities"].update({k: v * 0.9 + 0.1 / 3 for k, v in b["probabilities"].items()}), "recorded"),
    (lambda r, b: b.pop("disclaimer"), "disclaimer"),
    (lambda r, b: r.update(statusCode=503), "status 503"),
])
def test_a_wrong_answer_fails_the_deployment(monkeypatch, packaged, service, change, problem):
    result, _, cd = _run(monkeypatch, packaged, _tamper(service, change))
    assert result["status"] == "Failed" and any(problem in p for p in result["problems"]), result
    assert cd.reports == [("d-ABC123", "hook-exec-1", "Failed")]


def test_a_crashing_version_or_a_broken_check_still_reports_failed(monkeypatch, packaged):
    result, _, cd = _run(monkeypatch, packaged, lambda event: RuntimeError("boom"))
    assert result["status"] == "Failed" and "invocation failed" in result["problems"][0]
    assert cd.reports[-1][2] == "Failed"
    monkeypatch.delenv("TARGET_VERSION_ARN")
    cd = FakeCodeDeploy()
    result = hook.handler(EVENT, None, lambda_client=FakeLambda(lambda e: {}), codedeploy_client=cd)
    assert result["status"] == "Failed" and "TARGET_VERSION_ARN" in result["problems"][0]
    assert cd.reports == [("d-ABC123", "hook-exec-1", "Failed")]


def test_a_changed_image_is_caught_before_it_is_sent(monkeypatch, packaged, service, tmp_path):
    altered = tmp_path / "altered"
    shutil.copytree(packaged, altered)
    expectations = json.loads((altered / "expectations.json").read_text())
    (altered / expectations["images"][0]["file"]).write_bytes(b"not the image")
    result, lam, _ = _run(monkeypatch, altered, lambda event: service(event))
    assert result["status"] == "Failed" and "sha256" in result["problems"][0] and len(lam.calls) == 2


def test_the_bundled_models_recorded_answers_still_hold(monkeypatch, tmp_path):
    """The committed model.json's pre_traffic against today's serving code on the bundled model (input check
    on): a change to preprocessing or the label rule without `make expectations` would fail the next deploy."""
    from classifier.handler import Service
    from classifier.settings import Settings

    model_dir = REPO / "lambda_src" / "model"
    card = json.loads((model_dir / "model.json").read_text())
    if "pre_traffic" not in card:
        pytest.skip("the bundled model.json has no pre_traffic yet (make expectations writes it)")
    expectations, images = pre_traffic_expectations(card, REPO)
    for name, path in images.items():
        shutil.copy2(path, tmp_path / name)
    (tmp_path / "expectations.json").write_text(json.dumps(expectations))
    bundled = Service(Settings(model_dir=model_dir, metrics_enabled=False))
    result, lam, cd = _run(monkeypatch, tmp_path, lambda event: bundled(event))
    assert result == {"status": "Succeeded", "problems": []} and len(lam.calls) == len(images)
