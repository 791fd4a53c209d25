"""aws_cdk.assertions on the synthesized template: the default config and a variant with every option flipped."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Match, Template

from tests.infra.conftest import Synthesized


@pytest.fixture(scope="module")
def default(default_stack: Synthesized) -> Template:
    return Template.from_json(default_stack.template)


@pytest.fixture(scope="module")
def variant(variant_stack: Synthesized) -> Template:
    return Template.from_json(variant_stack.template)


def _image_tag(stack: Synthesized) -> str:
    (asset_hash,) = stack.assets["dockerImages"].keys()
    return asset_hash


# --- ECR repository and the image copy -------------------------------------------------------------------


def test_repository_scans_keeps_n_immutable_encrypted_images(default: Template, default_stack: Synthesized):
    default.resource_count_is("AWS::ECR::Repository", 1)
    default.has_resource(
        "AWS::ECR::Repository",
        {
            "Properties": Match.object_like(
                {
                    "ImageScanningConfiguration": {"ScanOnPush": True},
                    "ImageTagMutability": "IMMUTABLE",
                    "EncryptionConfiguration": {"EncryptionType": "AES256"},
                    "EmptyOnDelete": True,
                }
            ),
            "DeletionPolicy": "Delete",
        },
    )
    lifecycle = json.loads(
        default_stack.only("AWS::ECR::Repository")["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"]
    )
    (rule,) = lifecycle["rules"]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 10}
    assert rule["action"] == {"type": "expire"}


def test_retain_keeps_repository_images_and_logs(variant: Template, variant_stack: Synthesized):
    variant.has_resource(
        "AWS::ECR::Repository",
        {"Properties": Match.object_like({"EmptyOnDelete": False}), "DeletionPolicy": "Retain"},
    )
    groups = variant_stack.resources("AWS::Logs::LogGroup")
    assert len(groups) == 4  # function, API access logs, the image-copy function, WAF (waf=true); no hook (off)
    for name, group in groups.items():
        assert group["DeletionPolicy"] == "Retain", name
        assert group["Properties"]["RetentionInDays"] == 90, name


def test_destroy_removes_every_log_group_with_the_stack(default_stack: Synthesized):
    groups = default_stack.resources("AWS::Logs::LogGroup")
    assert len(groups) == 4  # function, API access logs, the image-copy function, the pre-traffic hook
    for name, group in groups.items():
        assert group["DeletionPolicy"] == "Delete", name
        assert group["Properties"]["RetentionInDays"] == 30, name


def test_image_is_copied_under_the_asset_hash_and_the_function_waits_for_it(default_stack: Synthesized):
    tag = _image_tag(default_stack)
    assert re.fullmatch(r"[0-9a-f]{64}", tag)
    copy_name, copy = next(iter(default_stack.resources("Custom::CDKECRDeployment").items()))
    assert copy["Properties"]["ImageArch"] == "amd64"
    # From the CDK bootstrap repository, where `cdk deploy` pushes the asset...
    source = json.dumps(copy["Properties"]["SrcImage"])
    assert "container-assets" in source and f":{tag}" in source
    dest = copy["Properties"]["DestImage"]["Fn::Join"][1]
    assert dest[-1] == f":{tag}"
    # ...into ours, under the same tag the function names.
    classifier = [
        f for name, f in default_stack.resources("AWS::Lambda::Function").items() if "Classifier" in name
    ]
    assert len(classifier) == 1
    function = classifier[0]
    image_uri = function["Properties"]["Code"]["ImageUri"]["Fn::Join"][1]
    assert image_uri[-1] == f":{tag}"
    # The same repository as the copy's destination.
    assert image_uri[-2] == dest[-2] and "Ref" in image_uri[-2]
    assert copy_name in function["DependsOn"]
    assert default_stack.template["Outputs"]["ImageTag"]["Value"] == tag


def test_asset_is_built_from_lambda_src_for_the_configured_platform(
    default_stack: Synthesized, variant_stack: Synthesized, lambda_src_copy
):
    for stack, platform, arch in ((default_stack, "linux/amd64", "amd64"), (variant_stack, "linux/arm64", "arm64")):
        (image,) = stack.assets["dockerImages"].values()
        assert image["source"]["platform"] == platform
        asset_dir = stack.outdir / image["source"]["directory"]
        assert (asset_dir / "Dockerfile").read_bytes() == (lambda_src_copy / "Dockerfile").read_bytes()
        assert (asset_dir / "model" / "model.tflite").read_bytes() == (
            lambda_src_copy / "model" / "model.tflite"
        ).read_bytes()
        (copy,) = stack.resources("Custom::CDKECRDeployment").values()
        assert copy["Properties"]["ImageArch"] == arch


# --- the function ----------------------------------------------------------------------------------------


def test_function_is_an_image_with_memory_timeout_tracing_and_settings(default: Template):
    default.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "PackageType": "Image",
            "MemorySize": 1769,
            "Timeout": 10,  # under API Gateway's 29 s: no 504 while the function keeps billing
            "ReservedConcurrentExecutions": 10,
            "Architectures": ["x86_64"],
            "TracingConfig": {"Mode": "Active"},
            "LoggingConfig": {"LogGroup": Match.any_value()},
            "Environment": {
                "Variables": {
                    "CLASSIFIER_NUM_THREADS": "1",
                    "CLASSIFIER_MAX_BODY_BYTES": "4500000",
                    "POWERTOOLS_SERVICE_NAME": "busi-classifier",
                    "POWERTOOLS_METRICS_NAMESPACE": "BusiClassifier",
                    "POWERTOOLS_LOG_LEVEL": "INFO",
                }
            },
        },
    )
    function = default.find_resources("AWS::Lambda::Function", {"Properties": {"PackageType": "Image"}})
    (props,) = [f["Properties"] for f in function.values()]
    assert "VpcConfig" not in props  # the VPC is the HIPAA profile's
    default.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})


def test_function_role_is_scoped_to_its_log_group(default_stack: Synthesized):
    roles = {k: v for k, v in default_stack.resources("AWS::IAM::Role").items() if k.startswith("ClassifierRole")}
    (role,) = roles.values()
    assert "ManagedPolicyArns" not in role["Properties"]
    policies = [
        p for k, p in default_stack.resources("AWS::IAM::Policy").items() if k.startswith("ClassifierRole")
    ]
    (policy,) = policies
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    wildcard = [s for s in statements if s["Resource"] == "*"]
    assert {a for s in wildcard for a in s["Action"]} <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    logs = [s for s in statements if any(str(a).startswith("logs:") for a in s["Action"])]
    assert logs and all(s["Resource"] != "*" for s in logs)


def test_variant_function_arm64_no_concurrency_cap_threads_and_cors(variant: Template):
    function = variant.find_resources("AWS::Lambda::Function", {"Properties": {"PackageType": "Image"}})
    (props,) = [f["Properties"] for f in function.values()]
    assert "ReservedConcurrentExecutions" not in props  # reservedConcurrency=null opts out of the cap
    variant.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "PackageType": "Image",
            "Architectures": ["arm64"],
            "MemorySize": 3584,
            "Timeout": 28,
            "Environment": {
                "Variables": Match.object_like(
                    {"CLASSIFIER_NUM_THREADS": "2", "CLASSIFIER_CORS_ORIGINS": "https://research.example.org"}
                )
            },
        },
    )


# --- the REST API ----------------------------------------------------------------------------------------


def _methods(stack: Synthesized) -> dict[str, dict]:
    """'POST predict' -> properties, found through the Resource each method hangs on."""
    paths = {k: v["Properties"]["PathPart"] for k, v in stack.resources("AWS::ApiGateway::Resource").items()}
    out = {}
    for method in stack.resources("AWS::ApiGateway::Method").values():
        props = method["Properties"]
        resource = props["ResourceId"].get("Ref")
        out[f"{props['HttpMethod']} {paths.get(resource, '/')}"] = props
    return out


def test_api_routes_are_lambda_proxy_integrations(default_stack: Synthesized):
    methods = _methods(default_stack)
    assert set(methods) == {"POST predict", "GET health", "GET /"}
    for route, props in methods.items():
        assert props["Integration"]["Type"] == "AWS_PROXY"
        assert props["Integration"]["IntegrationHttpMethod"] == "POST"
        assert "ClassifierLive" in json.dumps(props["Integration"]["Uri"])  # the alias (tests/infra/test_release.py)
        # the page is static HTML for everyone; it sends the key with its own calls to the protected routes
        assert props["ApiKeyRequired"] is (route != "GET /")
    assert "RootResourceId" in json.dumps(methods["GET /"]["ResourceId"])
    predict = methods["POST predict"]
    assert predict["RequestParameters"] == {"method.request.header.Content-Type": True}
    assert "RequestValidatorId" in predict and "application/json" in predict["RequestModels"]


def test_binary_media_types_are_the_image_and_form_types_only(default: Template):
    default.has_resource_properties(
        "AWS::ApiGateway::RestApi",
        {
            # application/dicom since issue 20 (DICOM in): base64-encoded like the images.
            "BinaryMediaTypes": ["image/png", "image/jpeg", "application/dicom", "multipart/form-data"],
            "EndpointConfiguration": {"Types": ["REGIONAL"]},
        },
    )


def test_stage_throttles_traces_and_writes_json_access_logs(default_stack: Synthesized):
    stage = default_stack.only("AWS::ApiGateway::Stage")["Properties"]
    assert stage["StageName"] == "v1"
    assert stage["TracingEnabled"] is True
    (settings,) = stage["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == 10
    assert settings["ThrottlingBurstLimit"] == 20
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False  # request bodies are patients' images: never logged
    access = stage["AccessLogSetting"]
    assert "Ref" in json.dumps(access["DestinationArn"])
    fields = json.loads(access["Format"])  # one JSON object per request
    assert {"requestId", "status", "ip", "latencyMs", "apiKeyId", "xrayTraceId"} <= set(fields)


def test_usage_plan_and_api_key_when_enabled(default: Template, default_stack: Synthesized):
    default.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    default.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    default.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {
            "Throttle": {"RateLimit": 10, "BurstLimit": 20},
            "Quota": {"Limit": 5000, "Period": "DAY"},
            "ApiStages": [Match.object_like({"Stage": {"Ref": Match.string_like_regexp("Stage")}})],
        },
    )
    (key_id,) = default.find_resources("AWS::ApiGateway::ApiKey").keys()
    assert default_stack.template["Outputs"]["ApiKeyId"]["Value"] == {"Ref": key_id}


def test_no_key_no_usage_plan_when_disabled(variant: Template, variant_stack: Synthesized):
    variant.resource_count_is("AWS::ApiGateway::ApiKey", 0)
    variant.resource_count_is("AWS::ApiGateway::UsagePlan", 0)
    assert "ApiKeyId" not in variant_stack.template["Outputs"]
    methods = _methods(variant_stack)
    assert methods["POST predict"]["ApiKeyRequired"] is False
    assert methods["GET health"]["ApiKeyRequired"] is False


def test_cors_preflight_only_when_origins_are_configured(default_stack: Synthesized, variant_stack: Synthesized):
    assert not [m for m in _methods(default_stack) if m.startswith("OPTIONS")]
    options = {m: p for m, p in _methods(variant_stack).items() if m.startswith("OPTIONS")}
    assert {"OPTIONS predict", "OPTIONS health"} <= set(options)
    preflight = json.dumps(options["OPTIONS predict"]["Integration"])
    assert "https://research.example.org" in preflight
    # Errors API Gateway answers itself carry the origin too, or browsers would hide them.
    for response in variant_stack.resources("AWS::ApiGateway::GatewayResponse").values():
        headers = response["Properties"]["ResponseParameters"]
        assert headers["gatewayresponse.header.Access-Control-Allow-Origin"] == "'https://research.example.org'"
    # Without corsOrigins, no CORS header anywhere.
    for response in default_stack.resources("AWS::ApiGateway::GatewayResponse").values():
        assert "ResponseParameters" not in response["Properties"]


def _render(template: str) -> str:
    # What API Gateway substitutes (messageString arrives already quoted).
    return (
        template.replace("$context.error.messageString", '"Forbidden"')
        .replace("$context.error.responseType", "ACCESS_DENIED")
        .replace("$context.requestId", "c0ffee00-1234-5678-9abc-def012345678")
    )


def test_gateway_errors_are_json_with_the_disclaimer(default_stack: Synthesized):
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in default_stack.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    assert {"DEFAULT_4XX", "DEFAULT_5XX", "MISSING_AUTHENTICATION_TOKEN", "INVALID_API_KEY"} <= set(responses)
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"
    for response_type, props in responses.items():
        template = props["ResponseTemplates"]["application/json"]
        assert '"request_id": "$context.requestId"' in template, response_type
        assert template.endswith("}\n") and template.count("\n") == 1, response_type  # one line, as the handler's
        body = json.loads(_render(template))
        assert body["disclaimer"].startswith("Research use only"), response_type
        assert body["error"]["code"] and body["error"]["message"], response_type
        # The handler's shape exactly: code, message and API Gateway's request id (quotable to support).
        assert set(body["error"]) == {"code", "message", "request_id"}, response_type
        assert body["error"]["request_id"] == "c0ffee00-1234-5678-9abc-def012345678", response_type


# --- alarms and outputs ----------------------------------------------------------------------------------


def test_alarms_on_errors_throttles_p99_duration_and_5xx(default_stack: Synthesized):
    alarms = {a["Properties"]["AlarmName"]: a["Properties"] for a in default_stack.resources("AWS::CloudWatch::Alarm").values()}
    assert {
        "BusiClassifier-FunctionErrors",
        "BusiClassifier-FunctionThrottles",
        "BusiClassifier-FunctionDurationP99",
        "BusiClassifier-Api5xx",
    } <= set(alarms)  # + the release's gates and the drift alarms (tests/infra/test_release.py)
    assert alarms["BusiClassifier-FunctionErrors"]["MetricName"] == "Errors"
    assert alarms["BusiClassifier-FunctionThrottles"]["MetricName"] == "Throttles"
    duration = alarms["BusiClassifier-FunctionDurationP99"]
    assert (duration["MetricName"], duration["ExtendedStatistic"]) == ("Duration", "p99")
    assert duration["Threshold"] == 8_000  # 80 % of the 10 s timeout, in ms
    api = alarms["BusiClassifier-Api5xx"]
    assert (api["Namespace"], api["MetricName"]) == ("AWS/ApiGateway", "5XXError")
    # Every alarm has an action even with no e-mail configured: the stack's topic.
    (topic_id,) = default_stack.resources("AWS::SNS::Topic").keys()
    for props in alarms.values():
        assert props["TreatMissingData"] == "notBreaching"
        assert props["AlarmActions"] == [{"Ref": topic_id}]
        assert props["OKActions"] == [{"Ref": topic_id}]
    assert not default_stack.resources("AWS::SNS::Subscription")
    assert default_stack.template["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": topic_id}


def test_alarm_email_subscribes_to_an_ssl_only_topic(variant: Template, variant_stack: Synthesized):
    variant.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "alerts@example.org"}
    )
    (topic_id,) = variant.find_resources("AWS::SNS::Topic").keys()
    policy = json.dumps(variant_stack.only("AWS::SNS::TopicPolicy")["Properties"]["PolicyDocument"])
    assert "aws:SecureTransport" in policy
    for alarm in variant_stack.resources("AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    assert variant_stack.template["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": topic_id}


def test_outputs_give_urls_repository_function_and_key(default_stack: Synthesized):
    outputs = default_stack.template["Outputs"]
    assert {"ApiUrl", "PredictUrl", "HealthUrl", "RepositoryUri", "FunctionName", "ApiKeyId", "ImageTag"} <= set(
        outputs
    )
    assert json.dumps(outputs["PredictUrl"]["Value"]).endswith('"/predict"]]}')
    assert json.dumps(outputs["HealthUrl"]["Value"]).endswith('"/health"]]}')
    assert ".dkr.ecr." in json.dumps(outputs["RepositoryUri"]["Value"])
    assert "ClassifierFunction" in outputs["FunctionName"]["Value"]["Ref"]
    # No unnamed duplicate of the API URL.
    assert not [name for name in outputs if name.startswith("HttpApiEndpoint")]


def test_default_profile_has_no_kms_key_vpc_or_waf(default_stack: Synthesized):
    # The cheap default: nothing that costs money at rest beyond what it had before the HIPAA profile.
    types = {r["Type"] for r in default_stack.template["Resources"].values()}
    for cfn_type in (
        "AWS::KMS::Key",
        "AWS::EC2::VPC",
        "AWS::EC2::VPCEndpoint",
        "AWS::EC2::FlowLog",
        "AWS::WAFv2::WebACL",
        "AWS::WAFv2::WebACLAssociation",
        "AWS::IAM::ManagedPolicy",
    ):
        assert cfn_type not in types, cfn_type
    assert default_stack.only("AWS::ECR::Repository")["Properties"]["EncryptionConfiguration"] == {
        "EncryptionType": "AES256"
    }
    for name, group in default_stack.resources("AWS::Logs::LogGroup").items():
        assert "KmsKeyId" not in group["Properties"], name
    assert "KmsMasterKeyId" not in default_stack.only("AWS::SNS::Topic")["Properties"]
