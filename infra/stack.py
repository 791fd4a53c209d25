"""The one stack: image repository -> function -> REST API, plus monitoring and the outputs users need."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra.api import ClassifierApi
from infra.batch import BatchScoring
from infra.build_context import BuildContext
from infra.config import InfraConfig
from infra.dashboard import Dashboard
from infra.drift_alarms import DriftAlarms
from infra.function import ClassifierFunction, Placement, log_group
from infra.image_repository import ImageRepository
from infra.monitoring import Monitoring
from infra.release import PreTrafficHook, Release, pre_traffic_expectations
from infra.security import EncryptionKey, IsolatedNetwork, managed_instead_of_inline
from infra.training import TrainingResources
from infra.waf import WebAcl


class ClassifierStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        build_context: BuildContext,
        project_root: Path | None = None,
        **kwargs,
    ) -> None:
        # Relative paths in model.json (the pre-traffic images) are relative to the repository root.
        project_root = project_root or Path(__file__).resolve().parents[1]
        super().__init__(
            scope,
            construct_id,
            stack_name=config.stack_name,
            description=(
                f"BUSI breast-ultrasound classifier API, model {build_context.model_name} "
                f"{build_context.model_version}. Research use only, not a medical device."
            )[:1024],
            **kwargs,
        )
        for key, value in {**config.tags, "model-version": build_context.model_version}.items():
            Tags.of(self).add(key, value[:256])

        # compliance=hipaa only: one customer-managed key and an isolated network (the default stays free at rest).
        self.encryption: EncryptionKey | None = None
        self.network: IsolatedNetwork | None = None
        key = None
        placement = None
        if config.hipaa:
            self.encryption = EncryptionKey(self, "Encryption", config=config)
            key = self.encryption.key
            self.network = IsolatedNetwork(
                self,
                "Network",
                config=config,
                flow_log_group=log_group(self, "FlowLogs", config=config, encryption_key=key),
            )
            placement = Placement(
                vpc=self.network.vpc,
                subnets=self.network.subnets,
                security_group=self.network.function_security_group,
            )

        self.images = ImageRepository(self, "Image", config=config, build_context=build_context, encryption_key=key)
        self.classifier = ClassifierFunction(
            self,
            "Classifier",
            config=config,
            build_context=build_context,
            repository=self.images.repository,
            image_tag=self.images.image_tag,
            image_ready=self.images.image_copy,
            encryption_key=key,
            placement=placement,
        )
        self.rest_api = ClassifierApi(
            self,
            "Http",
            config=config,
            function=self.classifier.alias,  # the API calls the alias; CodeDeploy moves it (infra/release.py)
            disclaimer=build_context.disclaimer,
            encryption_key=key,
        )
        self.web_acl: WebAcl | None = None
        if config.waf_enabled:
            self.web_acl = WebAcl(
                self,
                "Firewall",
                config=config,
                stage=self.rest_api.api.deployment_stage,
                disclaimer=build_context.disclaimer,
                encryption_key=key,
            )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            function=self.classifier.function,
            api=self.rest_api.api,
            encryption_key=key,
        )
        # Releases: drift alarms of this model version, the pre-traffic hook, CodeDeploy on the alias, the dashboard.
        self.drift = DriftAlarms(self, "Drift", config=config, card=build_context.card, topic=self.monitoring.topic)
        self.pre_traffic: PreTrafficHook | None = None
        if config.pre_traffic_check:
            expectations, images = pre_traffic_expectations(build_context.card, project_root)
            self.pre_traffic = PreTrafficHook(
                self, "PreTraffic", config=config, version=self.classifier.version, expectations=expectations,
                images=images, encryption_key=key)
        self.release = Release(
            self,
            "Release",
            config=config,
            function=self.classifier.function,
            alias=self.classifier.alias,
            version=self.classifier.version,
            topic=self.monitoring.topic,
            extra_alarms=list(self.drift.alarms.values()),
            hook=self.pre_traffic.function if self.pre_traffic else None,
        )
        self.dashboard = Dashboard(
            self,
            "Dashboard",
            config=config,
            api=self.rest_api.api,
            alias=self.classifier.alias,
            labels=[str(label) for label in build_context.card.get("labels") or ()],
            alarms=[*self.monitoring.alarms.values(), *self.release.alarms.values(), *self.drift.alarms.values()],
        )
        self.batch: BatchScoring | None = None
        if config.batch:
            self.batch = BatchScoring(
                self,
                "Batch",
                config=config,
                build_context=build_context,
                repository=self.images.repository,
                image_tag=self.images.image_tag,
                image_ready=self.images.image_copy,
                alarm_topic=self.monitoring.topic,
            )
        self.training: TrainingResources | None = None
        if config.training:
            self.training = TrainingResources(self, "Training", config=config, encryption_key=key)
        if config.hipaa:
            # Last, once every grant is made: the roles' inline policies become customer-managed ones.
            managed_instead_of_inline(self)

        api = self.rest_api.api
        CfnOutput(self, "ApiUrl", value=api.url, description="Base URL of the API stage")
        CfnOutput(self, "PredictUrl", value=api.url_for_path("/predict"), description="POST an image here")
        CfnOutput(self, "HealthUrl", value=api.url_for_path("/health"), description="GET: model name and version")
        CfnOutput(
            self, "RepositoryUri", value=self.images.repository.repository_uri, description="ECR repository of the image"
        )
        CfnOutput(self, "ImageTag", value=self.images.image_tag, description="Image tag (the asset hash) the function runs")
        CfnOutput(self, "FunctionName", value=self.classifier.function.function_name, description="Lambda function")
        CfnOutput(self, "AliasName", value=self.classifier.alias.alias_name,
                  description="The alias the API calls (make status / make rollback move and read it)")
        CfnOutput(self, "DeploymentApplication", value=self.release.application.application_name,
                  description="CodeDeploy application of the releases")
        CfnOutput(self, "DeploymentGroup", value=self.release.group.deployment_group_name,
                  description="CodeDeploy deployment group shifting the alias (canary, rollback on alarm)")
        CfnOutput(self, "DashboardName", value=self.dashboard.dashboard.dashboard_name,
                  description="CloudWatch dashboard: traffic, latency, errors, label mix per model version")
        if self.rest_api.api_key is not None:
            CfnOutput(
                self,
                "ApiKeyId",
                value=self.rest_api.api_key.key_id,
                description="aws apigateway get-api-key --include-value --api-key <id> --query value --output text",
            )
        CfnOutput(
            self,
            "AlarmTopicArn",
            value=self.monitoring.topic.topic_arn,
            description="SNS topic every alarm notifies: subscribe to it (alarmEmail does that for one address)",
        )
        if self.batch is not None:
            batch = self.batch
            CfnOutput(self, "BatchStateMachineArn", value=batch.state_machine.state_machine_arn,
                      description="Batch scoring: python -m classifier.client batch start s3://<BatchInputBucket>/<BatchInputPrefix>.../ --stack <name> --wait")
            CfnOutput(self, "BatchInputBucket", value=batch.input_bucket.bucket_name, description="Upload images here")
            CfnOutput(self, "BatchInputPrefix", value=batch.input_prefix, description="...under this prefix")
            CfnOutput(self, "BatchResultsBucket", value=batch.results_bucket.bucket_name, description="JSONL results land here")
            CfnOutput(self, "BatchResultsPrefix", value=batch.results_prefix, description="...under this prefix, one folder per map run")
            CfnOutput(self, "BatchFunctionName", value=batch.function.function_name, description="Batch scoring function")
        if self.training is not None:
            training = self.training
            CfnOutput(self, "TrainingBucketName", value=training.bucket.bucket_name,
                      description="make upload BUCKET=<this>; train --on sagemaker reads data/ and writes output/ here")
            CfnOutput(self, "TrainingRoleArn", value=training.role.role_arn, description="SageMaker execution role")
            CfnOutput(self, "TrainingImageUri", value=training.image.image_uri,
                      description="The training image (model_training/Dockerfile)")
            if key is not None:
                CfnOutput(self, "TrainingKmsKeyArn", value=key.key_arn,
                          description="compliance=hipaa: the key for the job's output and volume")
