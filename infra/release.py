"""Releases: CodeDeploy shifts the `live` alias to each new version (canary by default) behind a pre-traffic
check, and rolls back when an alarm on the new version fires during the shift.

The alarms that gate a release watch the NEW version only: the function's errors and p99 duration through the
alias for that executed version, throttles on the alias, and the drift alarms of the new model version
(infra/drift_alarms.py, dimensioned by model version). Every one also notifies the stack's SNS topic.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.alarms import notified_alarm
from infra.config import InfraConfig
from infra.function import ALIAS_NAME, log_group
from infra.monitoring import DURATION_ALARM_FRACTION
from infra.nag import HIPAA, acknowledge

HOOK_CODE = Path(__file__).resolve().parent / "pre_traffic_hook"
#: cdk.json `deployment` -> CodeDeploy's predefined config.
_CONFIGS = {
    "canary": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES,
    "canary-30m": codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_30_MINUTES,
    "linear": codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_1_MINUTE,
    "all-at-once": codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE,
}
#: A canary lasts minutes: its alarms look at one-minute periods.
CANARY_PERIOD = Duration.minutes(1)
#: CodeDeploy accepts at most 10 alarms per deployment group.
MAX_ALARMS = 10


class PreTrafficError(ValueError):
    """model.json's pre_traffic section is missing or does not match the files it names."""


def pre_traffic_expectations(card: Mapping[str, Any], project_root: Path) -> tuple[dict, dict[str, Path]]:
    """(expectations.json for the hook, file name -> image path) from the card's ``pre_traffic`` section,
    each image checked against its recorded sha256 so the hook never ships an image the numbers are not for."""
    section = card.get("pre_traffic")
    if not isinstance(section, Mapping) or not section.get("images"):
        raise PreTrafficError(
            "model.json has no pre_traffic images: record them with `make promote RUN=...` (or, for the bundled "
            "model, `make expectations`), or turn the check off with -c preTrafficCheck=false")
    images, files = [], {}
    for entry in section["images"]:
        source = Path(entry["source"])
        path = source if source.is_absolute() else project_root / source
        if not path.is_file():
            raise PreTrafficError(f"model.json's pre_traffic image {entry['source']} does not exist")
        if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            raise PreTrafficError(f"{entry['source']} changed since its probabilities were recorded: "
                                  "`make expectations` records them again")
        name = f"{len(files)}-{path.name}"
        files[name] = path
        images.append({"file": name, "sha256": entry["sha256"], "probabilities": entry["probabilities"],
                       "label": entry["label"]})
    expectations = {"model_name": card.get("name"), "model_version": card.get("version"),
                    "tolerance": float(section.get("tolerance", 1e-3)), "images": images}
    return expectations, files


class PreTrafficHook(Construct):
    """A small zip function (Python runtime, no image) that CodeDeploy runs before any traffic moves."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        version: lambda_.IVersion,
        expectations: dict,
        images: Mapping[str, Path],
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        logs = log_group(self, "Logs", config=config, encryption_key=encryption_key)
        role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description="Pre-traffic hook: its log group, invoke the new version, report to CodeDeploy")
        logs.grant_write(role)
        # The asset: the hook's code, the images and what they must give. Staged (copied) when constructed.
        with tempfile.TemporaryDirectory() as tmp:
            staging = Path(tmp)
            shutil.copy2(HOOK_CODE / "index.py", staging / "index.py")
            for name, path in images.items():
                shutil.copy2(path, staging / name)
            (staging / "expectations.json").write_text(json.dumps(expectations, indent=1) + "\n")
            self.function = lambda_.Function(
                self,
                "Function",
                description="Pre-traffic check: the bundled examples through the new version (research use only)",
                runtime=lambda_.Runtime.PYTHON_3_14,
                handler="index.handler",
                code=lambda_.Code.from_asset(str(staging)),
                memory_size=256,
                # Three invocations of a possibly cold image function (a few seconds each).
                timeout=Duration.minutes(5),
                role=role,
                log_group=logs,
                environment={"TARGET_VERSION_ARN": version.function_arn},
                reserved_concurrent_executions=1 if config.hipaa else None,
            )
        version.grant_invoke(role)
        if config.hipaa:
            acknowledge(
                self.function, "LambdaInsideVPC",
                "The hook handles no patient data: it sends the three public BUSI example images to the new "
                "version and reports to CodeDeploy. Inside the isolated VPC it would need Lambda and CodeDeploy "
                "interface endpoints (about $15/month at rest) for a function that runs once per deploy.",
                pack=HIPAA)
            acknowledge(
                self.function, "LambdaDLQ",
                "CodeDeploy invokes the hook once per deployment; every failure inside it (checks failed, an "
                "exception) is reported to CodeDeploy as Failed in a finally block, which rolls the deployment "
                "back. An invocation that never runs times the lifecycle event out, which fails it too, so a "
                "queue would hold nothing anyone acts on.",
                pack=HIPAA)


class Release(Construct):
    """The CodeDeploy application and deployment group on the alias, with its gating alarms and hook."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        function: lambda_.IFunction,
        alias: lambda_.Alias,
        version: lambda_.IVersion,
        topic: sns.ITopic,
        extra_alarms: Sequence[cloudwatch.IAlarm] = (),
        hook: lambda_.IFunction | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarms = self._canary_alarms(config=config, function=function, version=version, topic=topic)
        gating = [*self.alarms.values(), *extra_alarms]
        if len(gating) > MAX_ALARMS:
            raise ValueError(f"CodeDeploy takes at most {MAX_ALARMS} alarms per deployment group, got {len(gating)}")
        self.application = codedeploy.LambdaApplication(self, "Application", application_name=config.stack_name)
        self.group = codedeploy.LambdaDeploymentGroup(
            self,
            "DeploymentGroup",
            application=self.application,
            deployment_group_name=f"{config.stack_name}-{ALIAS_NAME}",
            alias=alias,
            deployment_config=_CONFIGS[config.deployment],
            alarms=gating,
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
            pre_hook=hook,
        )
        if hook is not None:
            acknowledge(
                self.group.role,
                f"IAM5[Resource::<{Stack.of(self).get_logical_id(hook.node.default_child)}.Arn>:*]",
                "CDK's grant for CodeDeploy to invoke the pre-traffic hook: the function's ARN and its qualified "
                "ARNs (':*', versions and aliases of that one hook function), because CodeDeploy may call it "
                "qualified. No other function is reachable through it.",
            )
        acknowledge(
            self.group.role,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited]",
            "CodeDeploy's own service role for Lambda deployments. AWS maintains this policy for exactly this "
            "role: read the alias's alarms, update the alias, invoke the lifecycle hooks (only functions whose "
            "name starts with CodeDeployHook_ or that the hook's own grant names), nothing else.",
        )

    def _canary_alarms(self, *, config: InfraConfig, function: lambda_.IFunction, version: lambda_.IVersion,
                       topic: sns.ITopic) -> dict[str, cloudwatch.Alarm]:
        alias_resource = f"{function.function_name}:{ALIAS_NAME}"
        executed = {"FunctionName": function.function_name, "Resource": alias_resource,
                    "ExecutedVersion": version.version}
        specs = [
            ("NewVersionErrors", "Errors", "Sum", executed, 1,
             "The new version raised or timed out while the alias shifted to it."),
            ("AliasThrottles", "Throttles", "Sum", {"FunctionName": function.function_name, "Resource": alias_resource},
             1, "Calls to the alias were throttled during the shift (a throttled call runs no version)."),
            ("NewVersionDurationP99", "Duration", "p99", executed,
             DURATION_ALARM_FRACTION * config.timeout_seconds * 1000,
             f"The new version's p99 duration is above {DURATION_ALARM_FRACTION:.0%} of the "
             f"{config.timeout_seconds} s timeout."),
        ]
        alarms = {}
        for name, metric_name, statistic, dimensions, threshold, description in specs:
            alarms[name] = notified_alarm(
                self,
                name,
                alarm_name=f"{config.stack_name}-{name}",
                description=description + " Gates the release: CodeDeploy rolls the alias back.",
                metric=cloudwatch.Metric(namespace="AWS/Lambda", metric_name=metric_name, statistic=statistic,
                                         dimensions_map=dimensions, period=CANARY_PERIOD),
                threshold=threshold,
                topic=topic,
            )
        return alarms
