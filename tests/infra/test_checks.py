"""cdk-nag (AwsSolutions, and HIPAA Security in the hipaa profile) and cfn-lint on the synthesized templates;
the pinned CDK CLI's synth, offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sns as sns
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks

from tests.infra.conftest import REPO, STACK_NAME, Synthesized, cdk_json_context

VENV_BIN = Path(sys.executable).parent
#: Every AwsSolutions finding this stack keeps on purpose (each with a reason in the code next to its cause).
EXPECTED_ACKNOWLEDGEMENTS = {
    "AwsSolutions-APIG4",
    "AwsSolutions-COG4",
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
    "AwsSolutions-IAM5[Resource::*]",
    # Releases (infra/release.py): CodeDeploy's own service role, and its grant to invoke the pre-traffic hook.
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited]",
}
#: With the pre-traffic hook (the default; the variant turns it off): CodeDeploy's grant to invoke it.
HOOK = {"AwsSolutions-IAM5[Resource::<PreTrafficFunction69D0A421.Arn>:*]"}
#: Without a web ACL (the default), APIG3 (no WAF) is kept too; the variant (waf=true) and hipaa have one.
WITHOUT_WAF = {"AwsSolutions-APIG3"}
ACKNOWLEDGED = {
    "default_stack": EXPECTED_ACKNOWLEDGEMENTS | WITHOUT_WAF | HOOK,
    "variant_stack": EXPECTED_ACKNOWLEDGEMENTS,
    "hipaa_stack": EXPECTED_ACKNOWLEDGEMENTS | HOOK,
}
#: HIPAA Security findings the hipaa profile keeps (at most 5 rules), and who owns each: "Classifier",
#: "Copier" (cdk-ecr-deployment's deploy-time copy function) or "Stage". Everything else it fixes.
HIPAA_ACKNOWLEDGEMENTS = {
    "HIPAA.Security-LambdaDLQ": {"Classifier", "Copier", "PreTraffic"},
    "HIPAA.Security-LambdaInsideVPC": {"Copier", "PreTraffic"},
    "HIPAA.Security-APIGWCacheEnabledAndEncrypted": {"Stage"},
    "HIPAA.Security-APIGWSSLEnabled": {"Stage"},
}
STACKS = ["default_stack", "variant_stack", "hipaa_stack"]


def _nag(stack: Synthesized, pack: str = "AwsSolutions") -> dict:
    assert stack.report is not None, "cdk-nag did not run: no validation-report.json"
    (report,) = [r for r in stack.report["pluginReports"] if r["pluginName"] == pack]
    return report


def _owner(construct_path: str) -> str:
    top = construct_path.split("/")[1]
    if top.startswith("Custom::CDKECRDeployment"):
        return "Copier"
    if top == "Http" and "/DeploymentStage." in construct_path:
        return "Stage"
    return top


@pytest.mark.parametrize("which", STACKS)
def test_cdk_nag_reports_no_unacknowledged_finding(request, which):
    report = _nag(request.getfixturevalue(which))
    assert report["conclusion"] == "success"
    assert report["violations"] == []


@pytest.mark.parametrize("which", STACKS)
def test_every_acknowledgement_is_expected_and_explained(request, which):
    suppressed = _nag(request.getfixturevalue(which))["suppressedViolations"]
    assert {s["ruleName"] for s in suppressed} == ACKNOWLEDGED[which]
    for s in suppressed:
        assert len(s["reason"]) >= 80, f"{s['ruleName']}: reason too thin: {s['reason']!r}"
    # The function's wildcard is X-Ray (and, in the VPC, network interfaces) only; the others are the
    # image-copy library's and CodeDeploy's grant on the pre-traffic hook's own versions.
    owners = {
        _owner(v["constructPath"])
        for s in suppressed
        if s["ruleName"].startswith("AwsSolutions-IAM5")
        for v in s["violatingConstructs"]
    }
    assert owners == {"Classifier", "Copier"} | ({"Release"} if which != "variant_stack" else set()), owners


def test_hipaa_pack_runs_only_in_the_profile(default_stack: Synthesized, variant_stack: Synthesized):
    for stack in (default_stack, variant_stack):
        assert {r["pluginName"] for r in stack.report["pluginReports"]} == {"AwsSolutions"}


def test_hipaa_profile_has_no_unacknowledged_hipaa_finding(hipaa_stack: Synthesized):
    report = _nag(hipaa_stack, "HIPAA.Security")
    assert report["conclusion"] == "success"
    assert report["violations"] == []


def test_hipaa_profile_keeps_only_the_explained_findings(hipaa_stack: Synthesized):
    suppressed = _nag(hipaa_stack, "HIPAA.Security")["suppressedViolations"]
    owners: dict[str, set[str]] = {}
    for s in suppressed:
        assert len(s["reason"]) >= 120, f"{s['ruleName']}: reason too thin: {s['reason']!r}"
        owners.setdefault(s["ruleName"], set()).update(_owner(v["constructPath"]) for v in s["violatingConstructs"])
    assert owners == HIPAA_ACKNOWLEDGEMENTS
    assert len(owners) <= 5


def test_hipaa_pack_fails_the_synth_on_an_unacknowledged_finding(tmp_path, lambda_src_copy):
    # The same app without the profile, with the HIPAA pack added: synth must fail, naming findings the
    # profile fixes (unencrypted log groups, a function outside a VPC, inline policies).
    from infra.application import build_app

    app = build_app(context={**cdk_json_context(), "lambdaSrc": str(lambda_src_copy)}, outdir=str(tmp_path))
    cdk.Validations.of(app).add_plugins(HIPAASecurityChecks(app))
    with pytest.raises(RuntimeError, match=r"HIPAA\.Security-CloudWatchLogGroupEncrypted"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    (hipaa,) = [r for r in report["pluginReports"] if r["pluginName"] == "HIPAA.Security"]
    rules = {v["ruleName"] for v in hipaa["violations"]}
    assert {
        "HIPAA.Security-CloudWatchLogGroupEncrypted",
        "HIPAA.Security-LambdaInsideVPC",
        "HIPAA.Security-IAMNoInlinePolicy",
        "HIPAA.Security-SNSEncryptedKMS",
    } <= rules
    # Item A of issue 10 holds in the default profile: every alarm has an action, the function has a cap.
    assert "HIPAA.Security-CloudWatchAlarmAction" not in rules
    classifier_findings = {
        v["ruleName"]
        for v in hipaa["violations"]
        for c in v["violatingConstructs"]
        if c["constructPath"].startswith(f"{STACK_NAME}/Classifier/")
    }
    assert "HIPAA.Security-LambdaConcurrency" not in classifier_findings


def test_cdk_nag_does_fail_a_real_finding(tmp_path):
    # The check is not vacuous: the same plugin setup fails a topic that allows plain-HTTP publishing.
    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Probe")
    sns.Topic(stack, "Topic")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="AwsSolutions-SNS3"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for r in report["pluginReports"] for v in r["violations"]}
    assert "AwsSolutions-SNS3" in rules


@pytest.mark.parametrize("which", STACKS)
def test_cfn_lint_finds_nothing(request, which):
    stack: Synthesized = request.getfixturevalue(which)
    # Run from the repository root so .cfnlintrc.yaml (the one documented ignore) applies, as in `make lint`.
    result = subprocess.run(
        [str(VENV_BIN / "cfn-lint"), str(stack.template_path)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_pinned_cdk_cli_synthesizes_offline(tmp_path, lambda_src_copy):
    cli = REPO / "node_modules" / ".bin" / "cdk"
    if not cli.exists():
        pytest.skip("node_modules is not installed (make install runs npm ci)")
    out = tmp_path / "cdk.out"
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `python3 app.py` must be the venv's
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
    }
    result = subprocess.run(
        [shutil.which("npx") or "npx", "--no-install", "cdk", "synth", "--quiet", "--no-notices",
         "-c", f"lambdaSrc={lambda_src_copy}", "-o", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    template = json.loads((out / f"{STACK_NAME}.template.json").read_text())
    assert any(r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("PackageType") == "Image"
               for r in template["Resources"].values())
    assets = json.loads((out / f"{STACK_NAME}.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    asset_dir = out / image["source"]["directory"]
    assert (asset_dir / "Dockerfile").is_file()
    assert (asset_dir / "model" / "model.tflite").is_file() and (asset_dir / "model" / "model.json").is_file()
    assert (asset_dir / "classifier").is_dir()
