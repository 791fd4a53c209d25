"""Batch scoring on AWS (``-c batch=true``): S3 in, a Step Functions Distributed Map over a second entry point
of the API's container image, JSONL results in S3.

    s3://<input bucket>/<batchInputPrefix>...  --(ListObjectsV2 item reader, item batcher: 50 keys)-->
    child executions (at most batchMaxConcurrency at once) --> Lambda classifier.batch_handler.lambda_handler
    --> rows --(result writer, JSONL, flattened)--> s3://<results bucket>/<batchResultsPrefix><map run>/

IAM: the function may read only ``<input bucket>/<batchInputPrefix>*``; the state machine may list only that
prefix, invoke only that function, and write only under ``<results bucket>/<batchResultsPrefix>``.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct, IDependable

from infra.build_context import BuildContext
from infra.alarms import notified_alarm
from infra.config import InfraConfig
from infra.function import _ARCHITECTURES, log_group
from infra.nag import acknowledge

#: The batch entry point in the same image (lambda_src/classifier/batch_handler.py).
BATCH_HANDLER = "classifier.batch_handler.lambda_handler"
#: Errors the state machine retries a batch on: Lambda's throttling and transient service errors, and the
#: handler's own BatchThrottled (S3 kept answering SlowDown). A bad image is a row, never an error.
RETRY_ERRORS = (
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
    "BatchThrottled",
)
RETRY_ATTEMPTS = 6


class BatchScoring(Construct):
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
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.input_prefix = config.batch_input_prefix
        self.results_prefix = config.batch_results_prefix

        # --- buckets -------------------------------------------------------------------------------------
        self.access_logs: s3.Bucket | None = None
        if not (config.batch_input_bucket and config.batch_results_bucket):
            self.access_logs = s3.Bucket(
                self,
                "AccessLogs",
                encryption=s3.BucketEncryption.S3_MANAGED,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
                lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(365))],
                removal_policy=RemovalPolicy.RETAIN,
            )
            # cdk-nag's S1 (server access logs) does not flag a bucket that is itself an access-log target.
        self.input_bucket = self._bucket("Input", config.batch_input_bucket, config.batch_input_expiry_days,
                                         "input-bucket/")
        self.results_bucket = self._bucket("Results", config.batch_results_bucket, config.batch_results_expiry_days,
                                           "results-bucket/")

        # --- the function: same image, the batch entry point --------------------------------------------
        self.log_group = log_group(self, "FunctionLogs", config=config)
        self.role = iam.Role(
            self,
            "FunctionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="BUSI batch scoring function: read the batch input prefix, its log group, X-Ray",
        )
        self.log_group.grant_write(self.role)
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[self.input_bucket.arn_for_objects(f"{self.input_prefix}*")],
            )
        )
        self.function = lambda_.DockerImageFunction(
            self,
            "Function",
            description=(
                f"BUSI batch scoring (research use only), model {build_context.model_name} "
                f"{build_context.model_version}"
            )[:256],
            code=lambda_.DockerImageCode.from_ecr(repository, tag_or_digest=image_tag, cmd=[BATCH_HANDLER]),
            architecture=_ARCHITECTURES[config.architecture],
            memory_size=config.batch_memory_mb,
            timeout=Duration.seconds(config.batch_timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            role=self.role,
            environment={
                "CLASSIFIER_NUM_THREADS": str(max(1, config.batch_memory_mb // 1769)),
                "CLASSIFIER_BATCH_INPUT_BUCKET": self.input_bucket.bucket_name,
                "CLASSIFIER_BATCH_MAX_OBJECT_BYTES": str(config.batch_max_object_bytes),
                "POWERTOOLS_SERVICE_NAME": f"{config.service_name}-batch",
                "POWERTOOLS_METRICS_NAMESPACE": config.metrics_namespace,
                "POWERTOOLS_LOG_LEVEL": config.log_level,
            },
        )
        self.function.node.add_dependency(image_ready)
        acknowledge(
            self.role,
            "IAM5[Resource::*]",
            "Active tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords, which X-Ray only grants on "
            "Resource '*' (no resource-level permissions exist for them).",
        )
        acknowledge(
            self.role,
            f"IAM5[Resource::{self._nag_arn(self.input_bucket)}/{self.input_prefix}*]",
            "The function reads any image a user uploads for scoring, so it needs every key under the batch input "
            "prefix (s3:GetObject only; no list, no write, no other prefix or bucket).",
        )

        # --- the state machine ---------------------------------------------------------------------------
        score = tasks.LambdaInvoke(
            self,
            "ScoreBatch",
            lambda_function=self.function,
            payload_response_only=True,  # the handler's list of rows is the child's output
            retry_on_service_exceptions=False,  # replaced by the retry below, which also covers BatchThrottled
        )
        score.add_retry(
            errors=list(RETRY_ERRORS),
            interval=Duration.seconds(2),
            max_attempts=RETRY_ATTEMPTS,
            backoff_rate=2.0,
            max_delay=Duration.seconds(60),
            jitter_strategy=sfn.JitterType.FULL,
        )
        self.map = sfn.DistributedMap(
            self,
            "ScoreAll",
            comment="Score every image under the execution input's prefix; one row per key.",
            item_reader=sfn.S3ObjectsItemReader(bucket=self.input_bucket, prefix=sfn.JsonPath.string_at("$.prefix")),
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=config.batch_items_per_batch,
                batch_input={"bucket": self.input_bucket.bucket_name},
            ),
            max_concurrency=config.batch_max_concurrency,
            result_writer_v2=sfn.ResultWriterV2(
                bucket=self.results_bucket,
                prefix=self.results_prefix.rstrip("/"),
                writer_config=sfn.WriterConfig(
                    output_type=sfn.OutputType.JSONL, transformation=sfn.Transformation.FLATTEN
                ),
            ),
            tolerated_failure_percentage=0,
            map_execution_type=sfn.StateMachineType.STANDARD,
        )
        self.map.item_processor(score)
        self.state_machine_logs = log_group(self, "StateMachineLogs", config=config)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="BUSI batch scoring. Research use only, not a medical device.",
            definition_body=sfn.DefinitionBody.from_chainable(self.map),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=Duration.hours(24),
            tracing_enabled=True,
            # Every event, but never the execution data: inputs and outputs are keys and predictions of patients' images.
            logs=sfn.LogOptions(
                destination=self.state_machine_logs, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
        )
        self._scope_state_machine_policy()

        # --- alarms ----------------------------------------------------------------------------------------
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        period = Duration.minutes(5)
        for name, metric, description in (
            ("BatchExecutionsFailed", self.state_machine.metric_failed(period=period, statistic="Sum"),
             "A batch execution failed (a batch kept failing after its retries); the results it wrote are in S3."),
            ("BatchExecutionsTimedOut", self.state_machine.metric_timed_out(period=period, statistic="Sum"),
             "A batch execution ran past the state machine's 24 h timeout."),
            ("BatchExecutionsAborted", self.state_machine.metric_aborted(period=period, statistic="Sum"),
             "A batch execution was aborted."),
        ):
            self.alarms[name] = notified_alarm(self, name, alarm_name=f"{config.stack_name}-{name}",
                                               description=description, metric=metric, threshold=1,
                                               topic=alarm_topic)

    def _bucket(self, construct_id: str, existing: str | None, expiry_days: int, log_prefix: str) -> s3.IBucket:
        if existing:
            return s3.Bucket.from_bucket_name(self, construct_id, existing)
        return s3.Bucket(
            self,
            construct_id,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix=log_prefix,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire",
                    expiration=Duration.days(expiry_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            # Patients' images and their results are never deleted with the stack by accident: the lifecycle
            # rule expires them; empty and delete the buckets by hand after `make destroy`.
            removal_policy=RemovalPolicy.RETAIN,
        )

    @staticmethod
    def _nag_arn(bucket: s3.IBucket) -> str:
        """How cdk-nag writes a bucket's ARN in IAM5 findings: '<LogicalId.Arn>' for a bucket of this stack,
        the literal ARN for an existing one."""
        cfn = bucket.node.default_child
        if cfn is None:
            return f"arn:<AWS::Partition>:s3:::{bucket.bucket_name}"
        return f"<{Stack.of(bucket).get_logical_id(cfn)}.Arn>"

    def _scope_state_machine_policy(self) -> None:
        """CDK grants the result writer the whole results bucket and the item reader a list of the whole input
        bucket. Two denies narrow that to the configured prefixes, so an execution input naming another prefix
        (``{"prefix": "elsewhere/"}``) cannot list it, and results cannot land outside their prefix."""
        results_objects = self.results_bucket.arn_for_objects(f"{self.results_prefix}*")
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="ResultsOnlyUnderTheirPrefix",
                effect=iam.Effect.DENY,
                actions=["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                not_resources=[results_objects],
            )
        )
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="ListOnlyTheInputPrefix",
                effect=iam.Effect.DENY,
                actions=["s3:ListBucket"],
                resources=[self.input_bucket.bucket_arn],
                conditions={"StringNotLike": {"s3:prefix": f"{self.input_prefix}*"}},
            )
        )
        role = self.state_machine.role
        results_cfn = self.results_bucket.node.default_child
        results_ref = (f"<{Stack.of(self).get_logical_id(results_cfn)}>" if results_cfn is not None
                       else self.results_bucket.bucket_name)
        acknowledge(
            role,
            f"IAM5[Resource::arn:<AWS::Partition>:s3:::{results_ref}/*]",
            "The Distributed Map's result writer (CDK's grant) writes its manifest and JSONL files under the "
            "results bucket; the role's ResultsOnlyUnderTheirPrefix deny narrows every one of those actions to "
            f"the {self.results_prefix} prefix.",
        )
        acknowledge(
            role,
            "IAM5[Resource::*]",
            "Step Functions' CloudWatch Logs delivery (logs:*LogDelivery, DescribeLogGroups, ...) and X-Ray "
            "tracing actions have no resource-level permissions: AWS documents Resource '*' for them.",
        )
        acknowledge(
            role,
            f"IAM5[Resource::<{Stack.of(self).get_logical_id(self.function.node.default_child)}.Arn>:*]",
            "Invoking the batch function's versions and aliases (ARN suffix ':*'); it is still the one function.",
        )
        acknowledge(
            self.state_machine.node.find_child("DistributedMapPolicy"),
            "IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
            + '{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"'
            + Stack.of(self).get_logical_id(self.state_machine.node.default_child)
            + '"}]}]}:*]',
            "A Distributed Map starts, describes and stops its own child executions, whose names are generated "
            "at run time: the resource is this state machine's executions only.",
        )
        acknowledge(
            self.state_machine.node.find_child("DistributedMapPolicy"),
            "IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
            + '{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"'
            + Stack.of(self).get_logical_id(self.state_machine.node.default_child)
            + '"}]}]}/*:*]',
            "Redriving a failed map run's child executions (generated names), of this state machine only.",
        )
