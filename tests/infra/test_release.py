"""Releases on the synthesized templates: versions and the `live` alias, the API calling the alias, CodeDeploy
with rollback on alarms, the pre-traffic hook, drift alarms from model.json's band, the dashboard."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Template

from infra.config import ConfigError, InfraConfig
from infra.drift_alarms import drift_entries
from tests.infra.conftest import Synthesized


@pytest.fixture(scope="module")
def default(default_stack: Synthesized) -> Template:
    return Template.from_json(default_stack.template)


def _card(stack_src) -> dict:
    return json.loads((stack_src / "model" / "model.json").read_text())


def _logical_id(stack: Synthesized, cfn_type: str, prefix: str) -> str:
    """The one resource of this type whose logical id starts with the construct path's ids (e.g. PreTraffic)."""
    (found,) = [k for k in stack.resources(cfn_type) if k.startswith(prefix)]
    return found


def test_every_deploy_publishes_a_kept_version_named_after_the_model(default_stack: Synthesized, lambda_src_copy):
    version = default_stack.only("AWS::Lambda::Version")
    assert version["DeletionPolicy"] == "Retain"  # make rollback needs the old versions
    assert version["Properties"]["Description"] == f"model tiny-test-model {_card(lambda_src_copy)['version']}"


def test_the_api_calls_the_live_alias_not_the_function(default_stack: Synthesized):
    alias_id = _logical_id(default_stack, "AWS::Lambda::Alias", "ClassifierLive")
    alias = default_stack.template["Resources"][alias_id]
    assert alias["Properties"]["Name"] == "live"
    version_id = next(iter(default_stack.resources("AWS::Lambda::Version")))
    assert alias["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}
    methods = default_stack.resources("AWS::ApiGateway::Method")
    uris = [json.dumps(m["Properties"]["Integration"]["Uri"]) for m in methods.values()
            if m["Properties"].get("Integration", {}).get("Type") == "AWS_PROXY"]
    assert len(uris) == 3 and all(alias_id in uri for uri in uris)
    # API Gateway may invoke the alias (the permission names the alias, not the bare function).
    permissions = [p for p in default_stack.resources("AWS::Lambda::Permission").values()
                   if p["Properties"]["Principal"] == "apigateway.amazonaws.com"]
    assert permissions and all(p["Properties"]["FunctionName"] == {"Ref": alias_id} for p in permissions)


def test_codedeploy_canary_rolls_back_on_alarms(default_stack: Synthesized):
    group = default_stack.only("AWS::CodeDeploy::DeploymentGroup")["Properties"]
    assert group["DeploymentConfigName"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    assert group["AutoRollbackConfiguration"] == {
        "Enabled": True, "Events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST", "DEPLOYMENT_STOP_ON_ALARM"]}
    gating = {a["Name"]["Ref"] for a in group["AlarmConfiguration"]["Alarms"]}
    assert group["AlarmConfiguration"]["Enabled"] and 1 <= len(gating) <= 10
    alarms = default_stack.resources("AWS::CloudWatch::Alarm")
    names = {alarms[i]["Properties"]["AlarmName"] for i in gating}
    assert {"BusiClassifier-NewVersionErrors", "BusiClassifier-AliasThrottles",
            "BusiClassifier-NewVersionDurationP99", "BusiClassifier-DriftPredictedMalignant"} <= names
    # The error and latency gates watch the new version through the alias, not the whole function.
    errors = next(a for a in alarms.values() if a["Properties"]["AlarmName"] == "BusiClassifier-NewVersionErrors")
    dims = {d["Name"] for d in errors["Properties"]["Dimensions"]}
    assert dims == {"FunctionName", "Resource", "ExecutedVersion"}
    alias = default_stack.only("AWS::Lambda::Alias")
    update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    assert update["BeforeAllowTrafficHook"]["Ref"] == _logical_id(default_stack, "AWS::Lambda::Function", "PreTraffic")


def test_every_alarm_notifies_the_topic(default_stack: Synthesized):
    topic = next(iter(default_stack.resources("AWS::SNS::Topic")))
    alarms = default_stack.resources("AWS::CloudWatch::Alarm")
    assert len(alarms) == 4 + 3 + 2  # service, release gates, drift (the tiny model has no input check: 2)
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}], name
        assert alarm["Properties"]["OKActions"] == [{"Ref": topic}], name


def test_drift_alarms_carry_the_cards_band_and_the_model_version(default_stack: Synthesized, lambda_src_copy):
    card = _card(lambda_src_copy)
    entries = {e["metric"]: e for e in drift_entries(card)}
    assert set(entries) == {"PredictedMalignant", "PredictedNormal"}  # the tiny model has no input check
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in default_stack.resources("AWS::CloudWatch::Alarm").values()}
    for metric, entry in entries.items():
        props = alarms[f"BusiClassifier-Drift{metric}"]
        expression = next(m["Expression"] for m in props["Metrics"] if "Expression" in m)
        lo, hi = entry["band"]
        assert f"v > {hi:.6g}" in expression and "n >= 30" in expression
        assert (f"v < {lo:.6g}" in expression) == (lo > 0)
        stats = [m["MetricStat"] for m in props["Metrics"] if "MetricStat" in m]
        assert {s["Stat"] for s in stats} == {"Average", "SampleCount"}
        for stat in stats:
            assert stat["Metric"]["MetricName"] == metric and stat["Period"] == 3600
            assert {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]} == {
                "service": "busi-classifier", "model_version": card["version"], "operating_point": "default"}


def test_the_hook_ships_the_examples_and_invokes_only_the_new_version(default_stack: Synthesized, lambda_src_copy):
    hook_id = _logical_id(default_stack, "AWS::Lambda::Function", "PreTraffic")
    hook = default_stack.template["Resources"][hook_id]["Properties"]
    version_id = next(iter(default_stack.resources("AWS::Lambda::Version")))
    assert hook["Environment"]["Variables"]["TARGET_VERSION_ARN"] == {"Ref": version_id}
    assert hook["Runtime"].startswith("python3.")
    asset = default_stack.outdir / f"asset.{hook['Code']['S3Key'].split('.')[0]}"
    expected = json.loads((asset / "expectations.json").read_text())
    card = _card(lambda_src_copy)
    assert expected["model_version"] == card["version"]
    assert [i["probabilities"] for i in expected["images"]] == [i["probabilities"] for i in card["pre_traffic"]["images"]]
    assert all((asset / i["file"]).is_file() for i in expected["images"]) and (asset / "index.py").is_file()
    policies = [p["Properties"]["PolicyDocument"]["Statement"] for k, p in default_stack.resources("AWS::IAM::Policy").items()
                if k.startswith("PreTraffic")]
    invoke = [s for statements in policies for s in statements if s["Action"] == "lambda:InvokeFunction"]
    assert invoke and all(s["Resource"] == {"Ref": version_id} for s in invoke)


def test_dashboard_splits_the_label_mix_by_model_version(default_stack: Synthesized):
    dashboard = default_stack.only("AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for needle in ("PredictedMalignant", "PredictedNormal", "InputCheckRefused", "ColdStart", "model_version",
                   "p99", "5XXError", "Throttles"):
        assert needle in body, needle
    assert {"AliasName", "DeploymentGroup", "DeploymentApplication", "DashboardName"} <= set(default_stack.template["Outputs"])


def test_variant_all_at_once_without_hook_and_with_provisioned_concurrency(variant_stack: Synthesized):
    group = variant_stack.only("AWS::CodeDeploy::DeploymentGroup")["Properties"]
    assert group["DeploymentConfigName"] == "CodeDeployDefault.LambdaAllAtOnce"
    alias = variant_stack.only("AWS::Lambda::Alias")
    assert "BeforeAllowTrafficHook" not in alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    assert alias["Properties"]["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 2}
    assert not [k for k in variant_stack.resources("AWS::Lambda::Function") if k.startswith("PreTraffic")]


def test_a_card_without_pre_traffic_fails_the_synth_with_how_to_fix(tmp_path, lambda_src_copy):
    import shutil

    from infra.application import build_app
    from infra.release import PreTrafficError
    from tests.infra.conftest import cdk_json_context

    src = tmp_path / "lambda_src"
    shutil.copytree(lambda_src_copy, src)
    card = _card(src)
    del card["pre_traffic"]
    (src / "model" / "model.json").write_text(json.dumps(card))
    with pytest.raises(PreTrafficError, match="make promote"):
        build_app(context={**cdk_json_context(), "lambdaSrc": str(src)}, outdir=str(tmp_path / "out"))


@pytest.mark.parametrize("key,value", [("deployment", "blue-green"), ("provisioned", "-1"), ("auth", "cognito"),
                                       ("driftPeriodMinutes", "7"), ("driftMinSamples", "0")])
def test_bad_release_settings_are_refused(key, value):
    with pytest.raises(ConfigError, match=key):
        InfraConfig.from_context({key: value}.get)


def test_provisioned_cannot_exceed_the_reserved_cap():
    with pytest.raises(ConfigError, match="provisioned"):
        InfraConfig.from_context({"provisioned": "11", "reservedConcurrency": "10"}.get)


def test_auth_iam_signs_predict_and_health_instead_of_an_api_key(tmp_path_factory, lambda_src_copy):
    from tests.infra.conftest import synthesize

    stack = synthesize(tmp_path_factory.mktemp("cdk_iam"), {"lambdaSrc": str(lambda_src_copy), "auth": "iam",
                                                             "deployment": "canary-30m"})
    methods = {m["Properties"]["HttpMethod"] + " " + json.dumps(m["Properties"]["ResourceId"]): m["Properties"]
               for m in stack.resources("AWS::ApiGateway::Method").values()}
    auth = sorted(p["AuthorizationType"] for p in methods.values())
    assert auth == ["AWS_IAM", "AWS_IAM", "NONE"]  # predict and health signed; the static page open
    assert all(p["ApiKeyRequired"] is False for p in methods.values())
    assert not stack.resources("AWS::ApiGateway::ApiKey") and not stack.resources("AWS::ApiGateway::UsagePlan")
    assert stack.only("AWS::CodeDeploy::DeploymentGroup")["Properties"]["DeploymentConfigName"] == \
        "CodeDeployDefault.LambdaCanary10Percent30Minutes"
    assert stack.report is not None and all(r["conclusion"] == "success" for r in stack.report["pluginReports"])
