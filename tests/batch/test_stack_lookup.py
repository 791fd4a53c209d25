"""`--stack NAME`: the API URL and key, and the batch resources, come from the stack through boto3 (moto's
CloudFormation, API Gateway, Step Functions and S3; no AWS account)."""

from __future__ import annotations

import json

import boto3
import pytest

moto = pytest.importorskip("moto")

from classifier import client, smoke, stack_lookup  # noqa: E402
from classifier.handler import create_service  # noqa: E402
from classifier.local_api import start_server, stop_server  # noqa: E402
from classifier.settings import Settings  # noqa: E402
from tests.batch.conftest import png  # noqa: E402
from tests.model_factory import ultrasound_like  # noqa: E402

REGION = "eu-west-1"
STACK = "BusiClassifierTest"
INPUT, RESULTS = "busi-in-test", "busi-out-test"


@pytest.fixture(scope="module")
def api(tiny_model_dir):
    service = create_service(Settings(model_dir=tiny_model_dir, log_level="WARNING", metrics_enabled=False))
    keys: list[str | None] = []

    def recording(event, context):
        keys.append({k.lower(): v for k, v in (event.get("headers") or {}).items()}.get("x-api-key"))
        return service(event, context)

    srv = start_server(recording, port=0, max_body_bytes=4_500_000)
    srv.keys = keys
    yield srv
    stop_server(srv)


@pytest.fixture
def aws(monkeypatch, api):
    """A deployed stack as moto sees it: outputs, a real API key, a state machine and the buckets."""
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with moto.mock_aws():
        key = boto3.client("apigateway", region_name=REGION).create_api_key(name="k", enabled=True)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(
            name="batch", definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
            roleArn="arn:aws:iam::123456789012:role/batch")["stateMachineArn"]
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in (INPUT, RESULTS):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        outputs = {"ApiUrl": api.url, "ApiKeyId": key["id"], "BatchStateMachineArn": machine,
                   "BatchInputBucket": INPUT, "BatchInputPrefix": "input/", "BatchResultsBucket": RESULTS,
                   "BatchResultsPrefix": "results/"}
        template = {"Resources": {"Placeholder": {"Type": "AWS::S3::Bucket"}},
                    "Outputs": {k: {"Value": v} for k, v in outputs.items()}}
        boto3.client("cloudformation", region_name=REGION).create_stack(StackName=STACK,
                                                                        TemplateBody=json.dumps(template))
        yield {"key": key["value"], "machine": machine, "s3": s3, "sfn": sfn}


def test_lookup_reads_outputs_and_the_key_value(aws, api):
    info = stack_lookup.lookup(STACK, region=REGION)
    assert info.api_url == api.url and info.api_key == aws["key"]
    assert info.outputs["BatchStateMachineArn"] == aws["machine"]
    with pytest.raises(stack_lookup.StackLookupError, match="NoSuchStack|does not exist|ValidationError"):
        stack_lookup.lookup("NoSuchStack", region=REGION)


def test_client_predict_and_health_with_stack(aws, api, tmp_path, capsys):
    image = tmp_path / "a.png"
    image.write_bytes(png(ultrasound_like(0)))
    assert client.main(["predict", str(image), "--stack", STACK, "--region", REGION, "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["label"] in result["probabilities"]
    assert api.keys[-1] == aws["key"]  # the key's value, looked up, was sent
    assert client.main(["health", "--stack", STACK, "--region", REGION]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"


def test_smoke_passes_against_the_stack(aws, tiny_model_dir, tmp_path, capsys):
    examples = tmp_path / "examples"
    examples.mkdir()
    for i in range(2):
        (examples / f"e{i}.png").write_bytes(png(ultrasound_like(i)))
    rc = smoke.main(["--stack", STACK, "--region", REGION, "--model", str(tiny_model_dir),
                     "--examples", str(examples)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.count("PASS") == 4 and "4/4 checks passed" in out and "Research use only" in out
    # Another bundled model than the deployed one: the health check fails and says why.
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.json").write_text(json.dumps({"version": "not-deployed"}))
    assert smoke.main(["--stack", STACK, "--region", REGION, "--model", str(other), "--examples",
                       str(examples)]) == 1
    assert "FAIL  health answers with the bundled model" in capsys.readouterr().out


def test_batch_start_sends_the_prefix_and_refuses_other_places(aws, capsys):
    rc = client.main(["batch", "start", f"s3://{INPUT}/input/study1/", "--stack", STACK, "--region", REGION])
    assert rc == 0
    started = json.loads(capsys.readouterr().out)
    desc = aws["sfn"].describe_execution(executionArn=started["executionArn"])
    assert json.loads(desc["input"]) == {"prefix": "input/study1/"}
    assert desc["stateMachineArn"] == aws["machine"]
    for url in (f"s3://{RESULTS}/input/x/", f"s3://{INPUT}/other/x/", "input/x"):
        assert client.main(["batch", "start", url, "--stack", STACK, "--region", REGION]) == 1
        assert "error:" in capsys.readouterr().err


def test_wait_and_result_objects(aws):
    s3 = aws["s3"]
    for name in ("manifest.json", "SUCCEEDED_0.json"):
        s3.put_object(Bucket=RESULTS, Key=f"results/run-1/{name}", Body=b"{}")
    s3.put_object(Bucket=RESULTS, Key="results/run-0/SUCCEEDED_0.json", Body=b"{}")

    class Sfn:
        def __init__(self):
            self.n = 0

        def describe_execution(self, executionArn):
            self.n += 1
            if self.n < 3:
                return {"executionArn": executionArn, "status": "RUNNING"}
            return {"executionArn": executionArn, "status": "SUCCEEDED", "output": json.dumps(
                {"ResultWriterDetails": {"Bucket": RESULTS, "Key": "results/run-1/manifest.json"}})}

    fake = Sfn()

    class Session:
        def client(self, name):
            return fake if name == "stepfunctions" else s3

    seen = []
    desc = stack_lookup.wait_batch("arn:x", boto_session=Session(), sleep=lambda s: None, progress=seen.append)
    assert desc["status"] == "SUCCEEDED" and len(seen) == 2
    assert stack_lookup.result_objects(desc, boto_session=Session()) == [
        f"s3://{RESULTS}/results/run-1/SUCCEEDED_0.json", f"s3://{RESULTS}/results/run-1/manifest.json"]
