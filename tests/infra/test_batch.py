"""-c batch=true: the S3 + Step Functions Distributed Map batch path, by CDK assertions on the template, cdk-nag
and cfn-lint; and the default template stays exactly what it was without the batch setting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Match, Template

from infra.batch import BATCH_HANDLER, RETRY_ERRORS
from infra.config import ConfigError, InfraConfig
from tests.infra.conftest import REPO, Synthesized, synthesize

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def batch_stack(tmp_path_factory, lambda_src_copy) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk_batch"), {"lambdaSrc": str(lambda_src_copy), "batch": True})


@pytest.fixture(scope="module")
def existing_buckets_stack(tmp_path_factory, lambda_src_copy) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk_batch_existing"), {
        "lambdaSrc": str(lambda_src_copy), "batch": "true", "batchInputBucket": "lab-archive-in",
        "batchResultsBucket": "lab-archive-out", "batchMaxConcurrency": 7, "batchItemsPerBatch": 20})


def _logical(stack: Synthesized, cfn_type: str, contains: str) -> str:
    (name,) = [k for k in stack.resources(cfn_type) if contains in k]
    return name


def _definition(stack: Synthesized) -> dict:
    """The state machine's ASL with every intrinsic replaced by '<Ref:X>' / '<GetAtt:X>' placeholders."""
    definition = stack.only("AWS::StepFunctions::StateMachine")["Properties"]["DefinitionString"]
    parts = definition["Fn::Join"][1] if isinstance(definition, dict) else [definition]
    text = ""
    for part in parts:
        if isinstance(part, str):
            text += part
        elif "Ref" in part:
            text += f"<Ref:{part['Ref']}>"
        else:
            text += f"<GetAtt:{part['Fn::GetAtt'][0]}>"
    return json.loads(text)


def _map_state(stack: Synthesized) -> dict:
    asl = _definition(stack)
    (state,) = [s for s in asl["States"].values() if s["Type"] == "Map"]
    return state


# --- the default template is unchanged -------------------------------------------------------------------


def test_default_template_is_unchanged_by_the_batch_code(default_stack: Synthesized, tmp_path, lambda_src_copy):
    explicit_off = synthesize(tmp_path / "off", {"lambdaSrc": str(lambda_src_copy), "batch": False})
    assert explicit_off.template == default_stack.template
    types = {r["Type"] for r in default_stack.template["Resources"].values()}
    assert not types & {"AWS::StepFunctions::StateMachine", "AWS::S3::Bucket", "AWS::S3::BucketPolicy"}
    assert not [k for k in default_stack.template["Outputs"] if k.startswith("Batch")]
    assert InfraConfig().batch is False


# --- the state machine ------------------------------------------------------------------------------------


def test_distributed_map_reads_s3_batches_keys_and_writes_jsonl(batch_stack: Synthesized):
    state = _map_state(batch_stack)
    input_bucket = _logical(batch_stack, "AWS::S3::Bucket", "BatchInput")
    results_bucket = _logical(batch_stack, "AWS::S3::Bucket", "BatchResults")
    assert state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    reader = state["ItemReader"]
    assert reader["Resource"].endswith(":states:::s3:listObjectsV2")
    assert reader["Parameters"] == {"Bucket": f"<Ref:{input_bucket}>", "Prefix.$": "$.prefix"}
    assert state["ItemBatcher"] == {"MaxItemsPerBatch": 50, "BatchInput": {"bucket": f"<Ref:{input_bucket}>"}}
    assert state["MaxConcurrency"] == 40
    writer = state["ResultWriter"]
    assert writer["Resource"].endswith(":states:::s3:putObject")
    assert writer["Parameters"] == {"Bucket": f"<Ref:{results_bucket}>", "Prefix": "results"}
    assert writer["WriterConfig"] == {"OutputType": "JSONL", "Transformation": "FLATTEN"}


def test_each_batch_invokes_the_batch_function_with_throttling_retries(batch_stack: Synthesized):
    processor = _map_state(batch_stack)["ItemProcessor"]
    (task,) = processor["States"].values()
    function = _logical(batch_stack, "AWS::Lambda::Function", "BatchFunction")
    assert task["Resource"] == f"<GetAtt:{function}>"
    (retry,) = task["Retry"]
    assert set(retry["ErrorEquals"]) == set(RETRY_ERRORS)
    assert {"Lambda.TooManyRequestsException", "BatchThrottled"} <= set(retry["ErrorEquals"])
    assert retry["MaxAttempts"] >= 3 and retry["BackoffRate"] > 1 and retry["JitterStrategy"] == "FULL"
    assert "States.ALL" not in retry["ErrorEquals"]  # a real bug must fail, not loop


def test_state_machine_logs_without_data_traces_and_times_out(batch_stack: Synthesized):
    t = Template.from_json(batch_stack.template)
    t.has_resource_properties("AWS::StepFunctions::StateMachine", {
        "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": False}),
        "TracingConfiguration": {"Enabled": True},
    })
    assert _definition(batch_stack)["TimeoutSeconds"] == 86400


def test_batch_function_is_the_same_image_with_the_batch_entry_point(batch_stack: Synthesized):
    functions = batch_stack.resources("AWS::Lambda::Function")
    api_fn = functions[_logical(batch_stack, "AWS::Lambda::Function", "ClassifierFunction")]
    batch_fn = functions[_logical(batch_stack, "AWS::Lambda::Function", "BatchFunction")]
    assert batch_fn["Properties"]["Code"] == api_fn["Properties"]["Code"]
    assert batch_fn["Properties"]["ImageConfig"] == {"Command": [BATCH_HANDLER]}
    assert batch_fn["Properties"]["Timeout"] == 300 and batch_fn["Properties"]["MemorySize"] == 2048
    env = batch_fn["Properties"]["Environment"]["Variables"]
    assert env["CLASSIFIER_BATCH_MAX_OBJECT_BYTES"] == str(32 * 1024 * 1024)
    assert "DependsOn" in batch_fn  # waits for the image copy, like the API function


# --- buckets -------------------------------------------------------------------------------------------------


def test_buckets_are_encrypted_private_logged_and_expire(batch_stack: Synthesized):
    buckets = batch_stack.resources("AWS::S3::Bucket")
    assert len(buckets) == 3  # input, results, their access logs
    logs = _logical(batch_stack, "AWS::S3::Bucket", "AccessLogs")
    expiry = {"BatchInput": 30, "BatchResults": 90, "AccessLogs": 365}
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}, name
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True}, name
        (days,) = [d for k, d in expiry.items() if k in name]
        assert props["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == days, name
        assert bucket["DeletionPolicy"] == "Retain", name
        if name != logs:
            assert props["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs}, name
            assert props["LifecycleConfiguration"]["Rules"][0]["AbortIncompleteMultipartUpload"] == {
                "DaysAfterInitiation": 1}
    # enforce_ssl: every bucket policy denies requests without TLS
    policies = batch_stack.resources("AWS::S3::BucketPolicy")
    assert len(policies) == 3
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
                   for s in statements)


# --- IAM -----------------------------------------------------------------------------------------------------


def _statements(stack: Synthesized, contains: str) -> list[dict]:
    return [s for k, p in stack.resources("AWS::IAM::Policy").items() if contains in k
            for s in p["Properties"]["PolicyDocument"]["Statement"]]


def _s3(statements: list[dict]) -> list[dict]:
    def actions(s):
        return [s["Action"]] if isinstance(s["Action"], str) else s["Action"]
    return [s for s in statements if any(a.startswith("s3:") for a in actions(s))]


def test_function_reads_only_the_input_prefix(batch_stack: Synthesized):
    input_bucket = _logical(batch_stack, "AWS::S3::Bucket", "BatchInput")
    (statement,) = _s3(_statements(batch_stack, "BatchFunctionRole"))
    assert statement["Action"] == "s3:GetObject" and statement["Effect"] == "Allow"
    assert statement["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [input_bucket, "Arn"]}, "/input/*"]]}


def test_state_machine_lists_the_input_prefix_and_writes_the_results_prefix_only(batch_stack: Synthesized):
    input_bucket = _logical(batch_stack, "AWS::S3::Bucket", "BatchInput")
    results_bucket = _logical(batch_stack, "AWS::S3::Bucket", "BatchResults")
    statements = _statements(batch_stack, "BatchStateMachineRole")
    s3 = _s3(statements)
    for s in s3:
        assert s.get("Resource") != "*"
    (deny_list,) = [s for s in s3 if s.get("Sid") == "ListOnlyTheInputPrefix"]
    assert deny_list["Effect"] == "Deny" and deny_list["Condition"] == {"StringNotLike": {"s3:prefix": "input/*"}}
    assert deny_list["Resource"] == {"Fn::GetAtt": [input_bucket, "Arn"]}
    (deny_write,) = [s for s in s3 if s.get("Sid") == "ResultsOnlyUnderTheirPrefix"]
    assert deny_write["Effect"] == "Deny" and "s3:PutObject" in deny_write["Action"]
    assert deny_write["NotResource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [results_bucket, "Arn"]}, "/results/*"]]}
    allowed = {a for s in s3 if s["Effect"] == "Allow" for a in ([s["Action"]] if isinstance(s["Action"], str)
                                                                 else s["Action"])}
    assert allowed == {"s3:ListBucket", "s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload",
                       "s3:ListMultipartUploadParts"}
    (invoke,) = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]
    function = _logical(batch_stack, "AWS::Lambda::Function", "BatchFunction")
    assert invoke["Resource"][0] == {"Fn::GetAtt": [function, "Arn"]}


def test_existing_buckets_are_used_and_scoped_by_name(existing_buckets_stack: Synthesized):
    assert not existing_buckets_stack.resources("AWS::S3::Bucket")
    state = _map_state(existing_buckets_stack)
    assert state["ItemReader"]["Parameters"]["Bucket"] == "lab-archive-in"
    assert state["MaxConcurrency"] == 7 and state["ItemBatcher"]["MaxItemsPerBatch"] == 20
    (statement,) = _s3(_statements(existing_buckets_stack, "BatchFunctionRole"))
    assert json.dumps(statement["Resource"]).endswith(':s3:::lab-archive-in/input/*"]]}')
    outputs = existing_buckets_stack.template["Outputs"]
    assert outputs["BatchInputBucket"]["Value"] == "lab-archive-in"


# --- alarms, outputs, checks ----------------------------------------------------------------------------------


def test_failed_executions_alarm_on_the_stack_topic(batch_stack: Synthesized):
    alarms = {a["Properties"]["MetricName"]: a["Properties"] for a in batch_stack.resources("AWS::CloudWatch::Alarm")
              .values() if a["Properties"].get("Namespace") == "AWS/States"}
    assert set(alarms) == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    topic = _logical(batch_stack, "AWS::SNS::Topic", "AlarmTopic")
    for props in alarms.values():
        assert props["AlarmActions"] == [{"Ref": topic}] and props["Threshold"] == 1


def test_outputs_name_what_the_client_needs(batch_stack: Synthesized):
    outputs = batch_stack.template["Outputs"]
    for key in ("BatchStateMachineArn", "BatchInputBucket", "BatchInputPrefix", "BatchResultsBucket",
                "BatchResultsPrefix", "ApiUrl", "ApiKeyId"):
        assert key in outputs, key
    assert outputs["BatchInputPrefix"]["Value"] == "input/"


def test_cdk_nag_clean_with_explained_acknowledgements(batch_stack: Synthesized):
    (report,) = [r for r in batch_stack.report["pluginReports"] if r["pluginName"] == "AwsSolutions"]
    assert report["conclusion"] == "success" and report["violations"] == []
    batch_acks = [s for s in report["suppressedViolations"]
                  if any("/Batch/" in v["constructPath"] for v in s["violatingConstructs"])]
    assert {s["ruleName"].split("[")[0] for s in batch_acks} == {"AwsSolutions-IAM5"}
    for s in batch_acks:
        assert len(s["reason"]) >= 80, s


def test_cfn_lint_finds_nothing_in_the_batch_template(batch_stack: Synthesized):
    result = subprocess.run([str(VENV_BIN / "cfn-lint"), str(batch_stack.template_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overrides, key", [
    ({"batch": True, "compliance": "hipaa"}, "batch"),
    ({"batch_input_prefix": "input"}, "batchInputPrefix"),
    ({"batch_input_prefix": "in/*/"}, "batchInputPrefix"),
    ({"batch_items_per_batch": 500}, "batchItemsPerBatch"),
    ({"batch_max_concurrency": 0}, "batchMaxConcurrency"),
    ({"batch_input_bucket": "Bad_Name"}, "batchInputBucket"),
    ({"batch_input_bucket": "same", "batch_results_bucket": "same", "batch_results_prefix": "input/out/"},
     "batchResultsPrefix"),
])
def test_bad_batch_settings_are_refused(overrides, key):
    with pytest.raises(ConfigError, match=key):
        InfraConfig(**overrides)
