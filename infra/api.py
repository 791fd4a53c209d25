"""The REST API: POST /predict, GET /health and GET / (the page) proxied to the function, logged, traced, throttled."""

from __future__ import annotations

import json

from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import InfraConfig
from infra.function import log_group
from infra.nag import HIPAA, acknowledge

#: Bodies of these types reach the function base64-encoded. Not */*: that would encode JSON too.
BINARY_MEDIA_TYPES = ("image/png", "image/jpeg", "application/dicom", "multipart/form-data")


class ClassifierApi(Construct):
    """Regional REST API; with ``config.api_key`` both routes need an x-api-key header from a usage plan."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        function: lambda_.IFunction,
        disclaimer: str,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = log_group(self, "AccessLogs", config=config, encryption_key=encryption_key)
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=config.stack_name,
            description="BUSI breast-ultrasound classifier. Research use only, not a medical device.",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            binary_media_types=list(BINARY_MEDIA_TYPES),
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
            # Stage execution logs need the account-level API Gateway -> CloudWatch role.
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name=config.stage_name,
                throttling_rate_limit=config.throttle_rate_limit,
                throttling_burst_limit=config.throttle_burst_limit,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                # Never log bodies: they are patients' images.
                data_trace_enabled=False,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(_ACCESS_LOG_FIELDS)),
            ),
            default_cors_preflight_options=(
                apigw.CorsOptions(
                    allow_origins=list(config.cors_origins),
                    allow_methods=["GET", "POST", "OPTIONS"],
                    # SigV4's headers too with auth=iam.
                    allow_headers=["Content-Type", "X-Api-Key"]
                    + (["Authorization", "X-Amz-Date", "X-Amz-Security-Token"] if config.auth == "iam" else []),
                )
                if config.cors_origins
                else None
            ),
        )

        # The stack's own ApiUrl output replaces the RestApi's unnamed duplicate.
        self.api.node.try_remove_child("Endpoint")

        integration = apigw.LambdaIntegration(function, proxy=True, allow_test_invoke=False)
        # Refused here, before an invocation is paid for: a request without Content-Type (it cannot be
        # parsed) and a JSON body without an "image" string. Binary bodies have no model; the handler checks them.
        validator = self.api.add_request_validator(
            "ValidateRequest", validate_request_parameters=True, validate_request_body=True
        )
        json_request = self.api.add_model(
            "PredictJsonRequest",
            content_type="application/json",
            description='{"image": "<base64 or data: URL of a PNG/JPEG>"}',
            schema=apigw.JsonSchema(
                schema=apigw.JsonSchemaVersion.DRAFT4,
                type=apigw.JsonSchemaType.OBJECT,
                required=["image"],
                properties={"image": apigw.JsonSchema(type=apigw.JsonSchemaType.STRING, min_length=1)},
            ),
        )
        # auth=iam: SigV4-signed calls from principals granted execute-api:Invoke, instead of the API key.
        iam_auth = config.auth == "iam"
        key_required = config.api_key and not iam_auth
        authorization = apigw.AuthorizationType.IAM if iam_auth else None
        self.predict_method = self.api.root.add_resource("predict").add_method(
            "POST",
            integration,
            api_key_required=key_required,
            authorization_type=authorization,
            request_validator=validator,
            request_parameters={"method.request.header.Content-Type": True},
            request_models={"application/json": json_request},
        )
        self.health_method = self.api.root.add_resource("health").add_method(
            "GET", integration, api_key_required=key_required, authorization_type=authorization
        )
        # The page to try the model (static HTML from the function; it asks for the API key and sends it with its
        # own calls to predict/health, so the page itself needs none).
        self.page_method = self.api.root.add_method("GET", integration, api_key_required=False)
        self._add_gateway_responses(config=config, disclaimer=disclaimer)
        self._acknowledge_findings(config=config)

        self.api_key: apigw.IApiKey | None = None
        if key_required:
            plan = self.api.add_usage_plan(
                "UsagePlan",
                name=f"{config.stack_name}-default",
                description="Per-key throttle and daily quota for the classifier API.",
                throttle=apigw.ThrottleSettings(
                    rate_limit=config.throttle_rate_limit, burst_limit=config.throttle_burst_limit
                ),
                quota=apigw.QuotaSettings(limit=config.api_key_daily_quota, period=apigw.Period.DAY),
                api_stages=[apigw.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
            )
            self.api_key = self.api.add_api_key(
                "ApiKey", description=f"{config.stack_name}: default key; value via `aws apigateway get-api-key`"
            )
            plan.add_api_key(self.api_key)

    def _add_gateway_responses(self, *, config: InfraConfig, disclaimer: str) -> None:
        """Errors API Gateway answers itself (bad key, throttled, unknown route, ...) in the handler's JSON shape."""
        headers = {}
        if len(config.cors_origins) == 1:
            headers["Access-Control-Allow-Origin"] = f"'{config.cors_origins[0]}'"
        specific = {
            # API Gateway answers unknown routes with 403 "Missing Authentication Token"; say what exists.
            apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN: (
                "404", "not_found", json.dumps("no such route: use POST /predict, GET /health or GET / (the page)")
            ),
            apigw.ResponseType.INVALID_API_KEY: (
                "403", "invalid_api_key", json.dumps("missing or unknown x-api-key header")
            ),
            apigw.ResponseType.BAD_REQUEST_PARAMETERS: (
                "400", "missing_content_type", json.dumps("set a Content-Type header: image/png, image/jpeg, "
                                                          "application/json or multipart/form-data")
            ),
            apigw.ResponseType.BAD_REQUEST_BODY: (
                "400", "malformed_body", json.dumps('a JSON body must be an object with an "image" string (base64 or a data: URL)')
            ),
        }
        for response_type, (status, code, message) in specific.items():
            self.api.add_gateway_response(
                f"Gateway{response_type.response_type}",
                type=response_type,
                status_code=status,
                response_headers=headers or None,
                templates={"application/json": _error_template(code, message, disclaimer)},
            )
        for response_type in (apigw.ResponseType.DEFAULT_4_XX, apigw.ResponseType.DEFAULT_5_XX):
            self.api.add_gateway_response(
                f"Gateway{response_type.response_type}",
                type=response_type,
                response_headers=headers or None,
                templates={
                    "application/json": _error_template(
                        "$context.error.responseType", "$context.error.messageString", disclaimer
                    )
                },
            )

    def _acknowledge_findings(self, *, config: InfraConfig) -> None:
        """AwsSolutions findings this API keeps on purpose, each with its reason."""
        acknowledge(
            self.api.node.find_child("CloudWatchRole"),
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
            "The account-wide API Gateway logging role (needed for stage execution logs). It serves every REST "
            "API in the account and region, so it takes AWS's managed policy; narrowing it to this API would "
            "break other APIs' logging.",
        )
        if not config.waf_enabled:
            acknowledge(
                self.api.deployment_stage,
                "APIG3",
                "No WAF web ACL: it would cost about $5/month plus $1 per rule at rest, more than this research API. "
                "Abuse is bounded by stage throttling, request validation and, with apiKey on, the usage plan's "
                "per-key throttle and daily quota. waf=true (or compliance=hipaa) adds one.",
            )
        if config.hipaa:
            acknowledge(
                self.api.deployment_stage,
                "APIGWCacheEnabledAndEncrypted",
                "No stage cache, on purpose: every POST /predict carries a different image and must be classified, "
                "never answered from a cache (which would also keep predictions at rest); GET /health is cheap. "
                "With no cache there is nothing to encrypt.",
                pack=HIPAA,
            )
            acknowledge(
                self.api.deployment_stage,
                "APIGWSSLEnabled",
                "A stage client certificate lets an HTTP backend verify that calls come from API Gateway. This "
                "API's only backend is a Lambda proxy integration, invoked through the Lambda API with a resource "
                "policy scoped to this API's ARN; the certificate would never be presented to anything.",
                pack=HIPAA,
            )
        if config.auth == "iam":
            why = (
                "auth=iam: predict and health take only SigV4-signed requests from IAM principals this account "
                "grants execute-api:Invoke on the API; callers are AWS identities, so no Cognito user pool is needed."
            )
        elif config.api_key:
            why = (
                "Callers (a research team's scripts and notebooks) are identified by an API key from a usage plan "
                "(apiKey=true) with per-key throttle and quota; nothing is stored per user. Put an IAM or Cognito "
                "authorizer in front before opening it wider."
            )
        else:
            why = (
                "apiKey=false was set explicitly in cdk.json or with -c: an open endpoint, e.g. for a short demo, "
                "bounded only by stage throttling. The default (apiKey=true) requires a usage-plan API key."
            )
        for method in (self.predict_method, self.health_method):
            if config.auth != "iam":  # with IAM authorisation APIG4 (no authorisation) does not apply
                acknowledge(method, "APIG4", why)
            acknowledge(method, "COG4", why)
        page = ("GET / returns the same static HTML page to everyone (no data, no model output, no image); the page "
                "asks for the API key and sends it with its own calls to the protected predict and health routes.")
        acknowledge(self.page_method, "APIG4", page)
        acknowledge(self.page_method, "COG4", page)


def _error_template(code: str, message_json: str, disclaimer: str) -> str:
    """A mapping template for the handler's error shape {"error": {"code", "message", "request_id"}, "disclaimer"};
    message_json is already quoted. The request id is API Gateway's, the one its access log and the function's
    logs (as correlation_id) carry. One line ending with a newline, like the handler's bodies."""
    return (
        '{"error": {"code": "' + code + '", "message": ' + message_json + ', "request_id": "$context.requestId"}, '
        '"disclaimer": ' + json.dumps(disclaimer) + "}\n"
    )


# One JSON object per request. No bodies, no headers except the API key id (which client).
_ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "apiKeyId": "$context.identity.apiKeyId",
    "method": "$context.httpMethod",
    "path": "$context.resourcePath",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integrationLatency",
    "integrationStatus": "$context.integration.status",
    "error": "$context.error.message",
    "errorType": "$context.error.responseType",
    "xrayTraceId": "$context.xrayTraceId",
}
