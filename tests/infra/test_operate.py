"""make status / make rollback (infra.operate) against moto: CloudFormation outputs, Lambda versions and the
alias, CloudWatch alarms and CodeDeploy deployments are moto's; CodeDeploy's StopDeployment, which moto does
not implement, is a local fake of exactly that call on top of moto's client."""

from __future__ import annotations

import io
import json
import zipfile

import boto3
import pytest
from moto import mock_aws

from infra.operate import Clients, main, rollback, status

REGION = "eu-west-1"
STACK = "BusiClassifier"


class StopRecorder:
    """moto's CodeDeploy client plus stop_deployment (moto lacks it), recording the call it gets."""

    def __init__(self, client):
        self._client, self.stopped = client, []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def stop_deployment(self, *, deploymentId, autoRollbackEnabled):
        self.stopped.append((deploymentId, autoRollbackEnabled))
        return {"status": "Pending", "statusMessage": "stopping"}


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("index.py", "def handler(e, c):\n    return {}\n")
    return buf.getvalue()


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        iam = session.client("iam")
        role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
        lam = session.client("lambda")
        lam.create_function(FunctionName="BusiClassifier-Fn", Runtime="python3.12", Role=role, Handler="index.handler",
                            Code={"ZipFile": _zip()}, Description="model busi-classifier aaaa")
        lam.publish_version(FunctionName="BusiClassifier-Fn", Description="model busi-classifier aaaa")  # 1
        lam.update_function_configuration(FunctionName="BusiClassifier-Fn", Description="model busi-classifier bbbb")
        lam.publish_version(FunctionName="BusiClassifier-Fn", Description="model busi-classifier bbbb")  # 2
        lam.create_alias(FunctionName="BusiClassifier-Fn", Name="live", FunctionVersion="2")
        template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": {
            "FunctionName": {"Value": "BusiClassifier-Fn"}, "AliasName": {"Value": "live"},
            "DeploymentApplication": {"Value": STACK}, "DeploymentGroup": {"Value": f"{STACK}-live"}}}
        session.client("cloudformation").create_stack(StackName=STACK, TemplateBody=json.dumps(template))
        cw = session.client("cloudwatch")
        for name in ("NewVersionErrors", "DriftPredictedMalignant"):
            cw.put_metric_alarm(AlarmName=f"{STACK}-{name}", MetricName="Errors", Namespace="AWS/Lambda",
                                Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                                ComparisonOperator="GreaterThanOrEqualToThreshold")
        cw.put_metric_alarm(AlarmName="OtherStack-Errors", MetricName="Errors", Namespace="AWS/Lambda",
                            Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=1,
                            ComparisonOperator="GreaterThanOrEqualToThreshold")
        cw.set_alarm_state(AlarmName=f"{STACK}-DriftPredictedMalignant", StateValue="ALARM", StateReason="test")
        cd = session.client("codedeploy")
        cd.create_application(applicationName=STACK, computePlatform="Lambda")
        cd.create_deployment_group(applicationName=STACK, deploymentGroupName=f"{STACK}-live", serviceRoleArn=role)
        clients = Clients(session.client("cloudformation"), lam, cw, StopRecorder(cd))
        yield clients


def test_status_names_each_versions_model_weights_and_alarms(aws, capsys):
    aws.lambda_.update_alias(FunctionName="BusiClassifier-Fn", Name="live", FunctionVersion="1",
                             RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})  # a canary in flight
    doc = status(aws, STACK)
    assert doc["versions"] == {"1": {"weight": 0.9, "model": "busi-classifier aaaa"},
                               "2": {"weight": 0.1, "model": "busi-classifier bbbb"}}
    assert doc["alarms"] == {f"{STACK}-NewVersionErrors": "OK", f"{STACK}-DriftPredictedMalignant": "ALARM"}  # not OtherStack-
    assert doc["deployment"] is None
    assert main(["status", "--stack", STACK], clients=aws) == 0
    out = capsys.readouterr().out
    assert "90.0% of traffic  model busi-classifier aaaa" in out and "ALARM" in out and "Research use only" in out


def test_rollback_without_a_deployment_moves_the_alias_to_the_previous_version(aws, capsys):
    assert main(["rollback", "--stack", STACK], clients=aws) == 0
    assert aws.lambda_.get_alias(FunctionName="BusiClassifier-Fn", Name="live")["FunctionVersion"] == "1"
    assert "now serves version 1 (model busi-classifier aaaa), was 2" in capsys.readouterr().out
    # Nothing before version 1: a clear error, exit 2, the alias untouched.
    assert main(["rollback", "--stack", STACK], clients=aws) == 2
    assert "no version before 1" in capsys.readouterr().err
    assert aws.lambda_.get_alias(FunctionName="BusiClassifier-Fn", Name="live")["FunctionVersion"] == "1"


def test_rollback_during_a_deployment_stops_it_with_automatic_rollback(aws):
    deployment = aws.codedeploy.create_deployment(
        applicationName=STACK, deploymentGroupName=f"{STACK}-live",
        revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": "{}"}})["deploymentId"]
    assert status(aws, STACK)["deployment"]["id"] == deployment
    said = rollback(aws, STACK)
    assert aws.codedeploy.stopped == [(deployment, True)] and "stopped deployment" in said
    assert aws.lambda_.get_alias(FunctionName="BusiClassifier-Fn", Name="live")["FunctionVersion"] == "2"


def test_an_unknown_stack_is_a_one_line_error(aws, capsys):
    assert main(["status", "--stack", "Nope"], clients=aws) == 2
    assert capsys.readouterr().err.startswith("error: stack 'Nope' not found")
