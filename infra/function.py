"""The classifier Lambda: the container image from the repository, settings by environment."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IDependable

from infra.build_context import BuildContext
from infra.config import LOG_RETENTION_DAYS, InfraConfig
from infra.nag import HIPAA, acknowledge

#: The alias the API integration calls and CodeDeploy shifts (the operator commands look it up by this name).
ALIAS_NAME = "live"
_ARCHITECTURES = {"x86_64": lambda_.Architecture.X86_64, "arm64": lambda_.Architecture.ARM_64}
# jsii enums carry names, not day counts.
_R = logs.RetentionDays
RETENTION = {
    1: _R.ONE_DAY, 3: _R.THREE_DAYS, 5: _R.FIVE_DAYS, 7: _R.ONE_WEEK, 14: _R.TWO_WEEKS, 30: _R.ONE_MONTH,
    60: _R.TWO_MONTHS, 90: _R.THREE_MONTHS, 120: _R.FOUR_MONTHS, 150: _R.FIVE_MONTHS, 180: _R.SIX_MONTHS,
    365: _R.ONE_YEAR, 400: _R.THIRTEEN_MONTHS, 545: _R.EIGHTEEN_MONTHS, 731: _R.TWO_YEARS, 1096: _R.THREE_YEARS,
    1827: _R.FIVE_YEARS, 2192: _R.SIX_YEARS, 2557: _R.SEVEN_YEARS, 2922: _R.EIGHT_YEARS, 3288: _R.NINE_YEARS,
    3653: _R.TEN_YEARS,
}
assert tuple(RETENTION) == LOG_RETENTION_DAYS, "infra.config.LOG_RETENTION_DAYS and RETENTION disagree"


def log_group(
    scope: Construct,
    construct_id: str,
    *,
    config: InfraConfig,
    encryption_key: kms.IKey | None = None,
    log_group_name: str | None = None,
) -> logs.LogGroup:
    """A log group with the configured retention, deleted with the stack when the removal policy is destroy;
    encrypted with ``encryption_key`` when given (compliance=hipaa), else with CloudWatch's own key."""
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=log_group_name,
        retention=RETENTION[config.log_retention_days],
        encryption_key=encryption_key,
        removal_policy=RemovalPolicy.DESTROY if config.destroy_on_delete else RemovalPolicy.RETAIN,
    )


@dataclass(frozen=True)
class Placement:
    """Where the function runs when it runs in a VPC (compliance=hipaa)."""

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_group: ec2.ISecurityGroup


class ClassifierFunction(Construct):
    """Image-based function running classifier.handler.lambda_handler with active X-Ray tracing."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        build_context: BuildContext,
        repository: ecr.IRepository,
        image_tag: str,
        image_ready: IDependable,
        encryption_key: kms.IKey | None = None,
        placement: Placement | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        environment = {
            "CLASSIFIER_NUM_THREADS": str(config.threads),
            "CLASSIFIER_MAX_BODY_BYTES": str(config.max_body_bytes),
            "POWERTOOLS_SERVICE_NAME": config.service_name,
            "POWERTOOLS_METRICS_NAMESPACE": config.metrics_namespace,
            "POWERTOOLS_LOG_LEVEL": config.log_level,
        }
        if config.cors_origins:
            # Proxy integrations return the function's headers untouched, so the handler adds CORS headers.
            environment["CLASSIFIER_CORS_ORIGINS"] = ",".join(config.cors_origins)

        self.log_group = log_group(self, "Logs", config=config, encryption_key=encryption_key)
        # Its own role instead of AWSLambdaBasicExecutionRole: write to this one log group, nothing else.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="BUSI classifier function: its log group and X-Ray only",
        )
        self.log_group.grant_write(self.role)
        if placement is not None:
            # What AWSLambdaVPCAccessExecutionRole grants, stated here: Lambda manages the function's network
            # interfaces in the VPC with the execution role. EC2 has no resource-level permissions for these.
            self.role.add_to_policy(
                iam.PolicyStatement(
                    actions=[
                        "ec2:CreateNetworkInterface",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DescribeSubnets",
                        "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses",
                        "ec2:UnassignPrivateIpAddresses",
                    ],
                    resources=["*"],
                )
            )
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description=f"BUSI classifier (research use only), model {build_context.model_name} {build_context.model_version}"[:256],
            code=lambda_.DockerImageCode.from_ecr(repository, tag_or_digest=image_tag),
            architecture=_ARCHITECTURES[config.architecture],
            memory_size=config.memory_mb,
            timeout=Duration.seconds(config.timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            role=self.role,
            environment=environment,
            reserved_concurrent_executions=config.reserved_concurrency,
            vpc=placement.vpc if placement else None,
            vpc_subnets=placement.subnets if placement else None,
            security_groups=[placement.security_group] if placement else None,
            # Every deploy that changes the image or the configuration publishes a new version; old versions are
            # kept (RETAIN) so that `make rollback` can point the alias back at the previous one.
            current_version_options=lambda_.VersionOptions(
                description=f"model {build_context.model_name} {build_context.model_version}"[:256],
                removal_policy=RemovalPolicy.RETAIN,
            ),
        )
        # The function may only be created or updated once the tag it names exists in the repository.
        self.function.node.add_dependency(image_ready)
        self.version = self.function.current_version
        # What the API calls. CodeDeploy (infra/release.py) moves it from version to version; provisioned
        # concurrency (-c provisioned=N) keeps N environments of the alias's version warm.
        self.alias = lambda_.Alias(
            self,
            "Live",
            alias_name=ALIAS_NAME,
            version=self.version,
            description=f"what the API serves: model {build_context.model_name} {build_context.model_version}"[:256],
            provisioned_concurrent_executions=config.provisioned or None,
        )
        acknowledge(
            self.role,
            "IAM5[Resource::*]",
            "Active tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords, which X-Ray only "
            "grants on Resource '*' (no resource-level permissions exist for them)"
            + (
                "; in the VPC (compliance=hipaa), Lambda's ec2 network-interface actions, which have none either."
                if placement is not None
                else "."
            ),
        )
        if config.hipaa:
            acknowledge(
                self.function,
                "LambdaDLQ",
                "API Gateway invokes the function synchronously (RequestResponse): a failure goes straight back "
                "to the caller as an error with its request id, and Lambda never queues or retries the event, so "
                "a dead-letter queue (which only catches asynchronous invocations) would stay empty. It would also "
                "be one more store of patient images.",
                pack=HIPAA,
            )
