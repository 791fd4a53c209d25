"""The ECR repository and the image in it: built from lambda_src/, copied in under a content-derived tag."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from cdk_ecr_deployment import DockerImageName, ECRDeployment
from constructs import Construct

from infra.build_context import BuildContext
from infra.config import InfraConfig
from infra.nag import HIPAA, acknowledge

_PLATFORMS = {"x86_64": ecr_assets.Platform.LINUX_AMD64, "arm64": ecr_assets.Platform.LINUX_ARM64}
_IMAGE_ARCH = {"x86_64": "amd64", "arm64": "arm64"}


class ImageRepository(Construct):
    """Repository (scan on push, immutable tags, AES-256, keeps the last N images) plus the image copy.

    The image is a CDK Docker image asset (built by `cdk deploy`, pushed to the bootstrap
    repository) that cdk-ecr-deployment copies here under its asset hash. A new model or
    code changes the hash, hence the tag, hence the function: a reused tag such as
    ``latest`` would leave the function on the old image.
    """

    #: compliance=hipaa: the copy function's reserved concurrency. It runs once per deployment; two lets the
    #: create of a new image copy overlap the delete of the old one.
    COPY_CONCURRENCY = 2

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        build_context: BuildContext,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        destroy = config.destroy_on_delete
        self.repository = ecr.Repository(
            self,
            "Repository",
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.KMS if encryption_key else ecr.RepositoryEncryption.AES_256,
            encryption_key=encryption_key,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description=f"keep the last {config.keep_images} images",
                    max_image_count=config.keep_images,
                    tag_status=ecr.TagStatus.ANY,
                )
            ],
            removal_policy=RemovalPolicy.DESTROY if destroy else RemovalPolicy.RETAIN,
            empty_on_delete=destroy,
        )
        if encryption_key is None:
            # CDK leaves AES-256 (ECR's default) out of the template; state it so the template shows the encryption.
            self.repository.node.default_child.add_property_override(
                "EncryptionConfiguration", {"EncryptionType": "AES256"}
            )

        self.asset = ecr_assets.DockerImageAsset(
            self,
            "ImageAsset",
            directory=str(build_context.directory),
            platform=_PLATFORMS[config.architecture],
            display_name=f"{config.stack_name} classifier image",
        )
        self.image_tag = self.asset.asset_hash
        self.image_copy = ECRDeployment(
            self,
            "CopyImage",
            src=DockerImageName(self.asset.image_uri),
            dest=DockerImageName(f"{self.repository.repository_uri}:{self.image_tag}"),
            image_arch=[_IMAGE_ARCH[config.architecture]],
        )
        self._tidy_copy_function(config, encryption_key)

    def _tidy_copy_function(self, config: InfraConfig, encryption_key: kms.IKey | None) -> None:
        """cdk-ecr-deployment's copy function is a stack-level singleton, outside this construct's subtree:
        give its log group our retention and removal policy (the library keeps it 2 years, retained), and
        acknowledge its IAM findings."""
        copiers = [c for c in Stack.of(self).node.children if c.node.id.startswith("Custom::CDKECRDeployment")]
        if not copiers:
            raise RuntimeError("cdk-ecr-deployment's copy function was not found: did its construct id change?")
        for copier in copiers:
            for log_group in (c for c in copier.node.find_all() if isinstance(c, logs.CfnLogGroup)):
                log_group.retention_in_days = config.log_retention_days
                log_group.apply_removal_policy(
                    RemovalPolicy.DESTROY if config.destroy_on_delete else RemovalPolicy.RETAIN
                )
                if encryption_key is not None:
                    log_group.kms_key_id = encryption_key.key_arn
            if config.hipaa:
                self._harden_copy_function(copier)
            acknowledge(
                copier,
                "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
                "cdk-ecr-deployment's image-copy function (cdklabs) writes its own logs with the AWS basic "
                "execution policy; it runs only while deploying, never on a request.",
            )
            acknowledge(
                copier,
                "IAM5[Resource::*]",
                "cdk-ecr-deployment grants its copy function ECR pull/push and s3:GetObject on '*' (the source "
                "is the CDK bootstrap repository, resolved at deploy time); it runs only while deploying.",
            )

    def _harden_copy_function(self, copier: Construct) -> None:
        """compliance=hipaa: a concurrency limit on the copy function, and the two HIPAA findings it keeps."""
        functions = [c for c in copier.node.find_all() if isinstance(c, lambda_.CfnFunction)]
        if len(functions) != 1:
            raise RuntimeError(f"expected one function in cdk-ecr-deployment's copier, found {len(functions)}")
        functions[0].reserved_concurrent_executions = self.COPY_CONCURRENCY
        acknowledge(
            copier,
            "LambdaInsideVPC",
            "cdk-ecr-deployment's copy function runs only while deploying and copies the image between two ECR "
            "repositories of this account; it never sees a request or patient data. In the isolated VPC it would "
            "need ECR API, ECR Docker and S3 endpoints (~$15-30/month more) for no protection of the data.",
            pack=HIPAA,
        )
        acknowledge(
            copier,
            "LambdaDLQ",
            "CloudFormation invokes the copy function as a custom resource and waits for its answer: a failed "
            "copy fails (and rolls back) the deployment, so a dead-letter queue would only hold a duplicate of "
            "a failure the operator already sees.",
            pack=HIPAA,
        )
