"""Training on SageMaker (``-c training=true``): what `python -m model_training train --on sagemaker` needs.

    the training image   a Docker image asset built from model_training/Dockerfile (context: the repository,
                         cut down by model_training/Dockerfile.dockerignore), pushed by `cdk deploy`
    the bucket           data/ (make upload), weights/, checkpoints/<job>/ (spot restarts), output/<job>/
                         (model.tar.gz); private, TLS only, access-logged, encrypted (the stack's KMS key with
                         compliance=hipaa, versioned there too), lifecycle rules
    the execution role   trusted by sagemaker.amazonaws.com of this account only; may read data/ and weights/,
                         read and write checkpoints/, write output/, pull that one image, write the training
                         jobs' own log group and metrics

Nothing here exists with training off: the default template is unchanged. Research use only.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import ArnFormat, Aws, Duration, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import InfraConfig
from infra.nag import HIPAA, acknowledge

#: The repository root: the training image's build context (model_training/ and lambda_src/classifier/).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = "model_training/Dockerfile"
#: The key prefixes the CLI uses (model_training/sagemaker_job.py); the role is scoped to them.
DATA, WEIGHTS, CHECKPOINTS, OUTPUT = "data/", "weights/", "checkpoints/", "output/"
#: Every SageMaker training job of the account and region logs here (SageMaker creates it on first use).
JOB_LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def dockerignore_patterns(root: Path = PROJECT_ROOT) -> list[str]:
    """The build context's patterns, from the file BuildKit reads beside the Dockerfile (one list for both)."""
    lines = (root / f"{DOCKERFILE}.dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


class TrainingResources(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig,
                 encryption_key: kms.IKey | None = None) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        # --- the image: built by `cdk deploy` (Docker), pushed to the CDK bootstrap repository -------------
        self.image = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(PROJECT_ROOT),
            file=DOCKERFILE,
            exclude=dockerignore_patterns(),
            ignore_mode=IgnoreMode.DOCKER,
            platform=ecr_assets.Platform.LINUX_AMD64,  # SageMaker's GPU instances are x86_64
            display_name=f"{config.stack_name} training image",
        )

        # --- the bucket ----------------------------------------------------------------------------------------
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            # S3 delivers server access logs only to SSE-S3 buckets (not SSE-KMS).
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=config.hipaa,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(365),
                                              noncurrent_version_expiration=Duration.days(30))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        rules = [
            s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(1)),
            # A finished job's checkpoints only serve a restart of that job.
            s3.LifecycleRule(id="expire-checkpoints", prefix=CHECKPOINTS,
                             expiration=Duration.days(config.training_checkpoint_expiry_days)),
        ]
        if config.hipaa:  # versioned: old versions of overwritten or deleted objects go after 30 days
            rules.append(s3.LifecycleRule(id="expire-old-versions", noncurrent_version_expiration=Duration.days(30)))
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS if encryption_key else s3.BucketEncryption.S3_MANAGED,
            encryption_key=encryption_key,
            bucket_key_enabled=encryption_key is not None,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=config.hipaa,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="training-bucket/",
            lifecycle_rules=rules,
            # Patients' images and the models trained on them are never deleted with the stack by accident:
            # empty and delete the bucket by hand after `make destroy`.
            removal_policy=RemovalPolicy.RETAIN,
        )

        # --- the execution role --------------------------------------------------------------------------------
        self.role = iam.Role(
            self,
            "ExecutionRole",
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
            description="BUSI SageMaker training jobs: the training bucket's prefixes, the training image, job logs",
            max_session_duration=Duration.hours(12),
        )
        b = self.bucket
        statements = [
            ("ListTheBucket", ["s3:ListBucket", "s3:GetBucketLocation"], [b.bucket_arn]),
            ("ReadDataAndWeights", ["s3:GetObject"], [b.arn_for_objects(f"{DATA}*"), b.arn_for_objects(f"{WEIGHTS}*")]),
            ("Checkpoints", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
             [b.arn_for_objects(f"{CHECKPOINTS}*")]),
            ("Output", ["s3:PutObject", "s3:AbortMultipartUpload"], [b.arn_for_objects(f"{OUTPUT}*")]),
        ]
        for sid, actions, resources in statements:
            self.role.add_to_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))
        self.image.repository.grant_pull(self.role)
        log_group_arn = stack.format_arn(service="logs", resource="log-group", resource_name=f"{JOB_LOG_GROUP}:*",
                                         arn_format=ArnFormat.COLON_RESOURCE_NAME)
        self.role.add_to_policy(iam.PolicyStatement(
            sid="TrainingJobLogs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[log_group_arn],
        ))
        self.role.add_to_policy(iam.PolicyStatement(
            sid="TrainingJobMetrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": JOB_LOG_GROUP}},
        ))
        if encryption_key is not None:
            # The objects (bucket key), the output model.tar.gz and the instance volume are encrypted with it;
            # the actions S3 and SageMaker use, named (no kms:GenerateDataKey* / ReEncrypt* wildcards).
            self.role.add_to_policy(iam.PolicyStatement(
                sid="UseTheStackKey",
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[encryption_key.key_arn],
            ))
            self.role.add_to_policy(iam.PolicyStatement(
                sid="VolumeEncryptionGrant",
                actions=["kms:CreateGrant"],
                resources=[encryption_key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ))
        self._acknowledge(config, stack)

    def _acknowledge(self, config: InfraConfig, stack: Stack) -> None:
        bucket = f"<{stack.get_logical_id(self.bucket.node.default_child)}.Arn>"
        prefixes = {DATA: "reads every image and metadata CSV that `make upload` put under data/ (s3:GetObject "
                          "only)",
                    WEIGHTS: "reads the backbone weights file the CLI uploaded under weights/<checksum>/",
                    CHECKPOINTS: "syncs /opt/ml/checkpoints with checkpoints/<job>/ while the job runs and restores "
                                 "it on a spot restart (names chosen by the training code)",
                    OUTPUT: "writes output/<job>/output/model.tar.gz; the job name is chosen at submission"}
        for prefix, why in prefixes.items():
            acknowledge(self.role, f"IAM5[Resource::{bucket}/{prefix}*]",
                        f"A SageMaker training job {why}: the role is limited to that prefix of the training bucket.")
        acknowledge(self.role, "IAM5[Resource::*]",
                    "ecr:GetAuthorizationToken has no resource-level permissions (AWS documents Resource '*'); "
                    "cloudwatch:PutMetricData is limited by its condition to the training jobs' namespace.")
        acknowledge(self.role, f"IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
                               f"{JOB_LOG_GROUP}:*]",
                    f"SageMaker writes each job's logs to streams <job>/algo-1-<time> of the account's {JOB_LOG_GROUP} "
                    "log group, named at run time: the role may write that one group's streams only.")
        if config.hipaa:
            acknowledge(self.access_logs, "S3DefaultEncryptionKMS",
                        "S3 delivers server access logs only to buckets encrypted with SSE-S3, never SSE-KMS; this "
                        "bucket holds the training bucket's access logs (request metadata, no images).", pack=HIPAA)
            for bucket_construct in (self.bucket, self.access_logs):
                acknowledge(bucket_construct, "S3BucketReplicationEnabled",
                            "Cross-region replication would copy patients' images to a second region; the data "
                            "stays where the user uploaded it (versioned, retained on stack deletion), and the source "
                            "archive is the copy of record.", pack=HIPAA)
