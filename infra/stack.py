"""The one stack: image repository -> function -> REST API, plus monitoring and the outputs users need."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra.api import ClassifierApi
from infra.build_context import BuildContext
from infra.config import InfraConfig
from infra.function import ClassifierFunction
from infra.image_repository import ImageRepository
from infra.monitoring import Monitoring


class ClassifierStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: InfraConfig, build_context: BuildContext, **kwargs
    ) -> None:
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

        self.images = ImageRepository(self, "Image", config=config, build_context=build_context)
        self.classifier = ClassifierFunction(
            self,
            "Classifier",
            config=config,
            build_context=build_context,
            repository=self.images.repository,
            image_tag=self.images.image_tag,
            image_ready=self.images.image_copy,
        )
        self.rest_api = ClassifierApi(
            self,
            "Http",
            config=config,
            function=self.classifier.function,
            disclaimer=build_context.disclaimer,
        )
        self.monitoring = Monitoring(
            self, "Monitoring", config=config, function=self.classifier.function, api=self.rest_api.api
        )

        api = self.rest_api.api
        CfnOutput(self, "ApiUrl", value=api.url, description="Base URL of the API stage")
        CfnOutput(self, "PredictUrl", value=api.url_for_path("/predict"), description="POST an image here")
        CfnOutput(self, "HealthUrl", value=api.url_for_path("/health"), description="GET: model name and version")
        CfnOutput(
            self, "RepositoryUri", value=self.images.repository.repository_uri, description="ECR repository of the image"
        )
        CfnOutput(self, "ImageTag", value=self.images.image_tag, description="Image tag (the asset hash) the function runs")
        CfnOutput(self, "FunctionName", value=self.classifier.function.function_name, description="Lambda function")
        if self.rest_api.api_key is not None:
            CfnOutput(
                self,
                "ApiKeyId",
                value=self.rest_api.api_key.key_id,
                description="aws apigateway get-api-key --include-value --api-key <id> --query value --output text",
            )
        if self.monitoring.topic is not None:
            CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn, description="SNS topic of the alarms")
