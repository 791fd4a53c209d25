"""The compliance=hipaa profile's resources (CDK assertions), and the WAF web ACL it shares with waf=true."""

from __future__ import annotations

import json
import random
import re

import pytest
from aws_cdk.assertions import Template

from infra.config import InfraConfig
from infra.waf import greater_than_regex
from tests.infra.conftest import Synthesized


@pytest.fixture(scope="module")
def hipaa(hipaa_stack: Synthesized) -> Template:
    return Template.from_json(hipaa_stack.template)


def _key_id(stack: Synthesized) -> str:
    (key_id,) = stack.resources("AWS::KMS::Key").keys()
    return key_id


def _classifier(stack: Synthesized) -> dict:
    (function,) = [f for name, f in stack.resources("AWS::Lambda::Function").items() if name.startswith("Classifier")]
    return function["Properties"]


# --- one customer-managed key ----------------------------------------------------------------------------


def test_one_rotated_customer_managed_key(hipaa_stack: Synthesized):
    key = hipaa_stack.only("AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    by_sid = {s.get("Sid"): s for s in statements}
    logs = by_sid["CloudWatchLogsOfThisAccount"]
    assert "logs." in json.dumps(logs["Principal"])
    # Only for log groups of this account and region (bound by the encryption context).
    assert "kms:EncryptionContext:aws:logs:arn" in logs["Condition"]["ArnLike"]
    alarms = by_sid["CloudWatchAlarmsToTheEncryptedTopic"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert set(alarms["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert alarms["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    # The default removalPolicy=destroy schedules it for deletion with the stack.
    assert key["DeletionPolicy"] == "Delete"


def test_log_groups_repository_and_topic_use_the_key(hipaa_stack: Synthesized):
    key_arn = {"Fn::GetAtt": [_key_id(hipaa_stack), "Arn"]}
    groups = hipaa_stack.resources("AWS::Logs::LogGroup")
    # function, API access logs, image-copy function, VPC flow logs, WAF, the pre-traffic hook
    assert len(groups) == 6
    for name, group in groups.items():
        assert group["Properties"]["KmsKeyId"] == key_arn, name
        assert group["Properties"]["RetentionInDays"] == 30, name
    repository = hipaa_stack.only("AWS::ECR::Repository")["Properties"]
    assert repository["EncryptionConfiguration"] == {"EncryptionType": "KMS", "KmsKey": key_arn}
    topic = hipaa_stack.only("AWS::SNS::Topic")["Properties"]
    assert topic["KmsMasterKeyId"] == key_arn


# --- the function: concurrency, VPC, managed policies -------------------------------------------------------


def test_function_runs_in_the_isolated_subnets_with_a_concurrency_cap(hipaa_stack: Synthesized):
    props = _classifier(hipaa_stack)
    assert props["ReservedConcurrentExecutions"] == 10
    assert props["Timeout"] == 10
    subnets = {k for k, v in hipaa_stack.resources("AWS::EC2::Subnet").items()}
    assert len(subnets) == 2  # two AZs
    assert {s["Ref"] for s in props["VpcConfig"]["SubnetIds"]} == subnets
    (group,) = props["VpcConfig"]["SecurityGroupIds"]
    assert group["Fn::GetAtt"][0].startswith("NetworkFunctionSecurityGroup")
    # The deploy-time image-copy function is capped too.
    (copier,) = [f for name, f in hipaa_stack.resources("AWS::Lambda::Function").items() if "CDKECRDeployment" in name]
    assert copier["Properties"]["ReservedConcurrentExecutions"] == 2


def test_no_inline_policies_only_customer_managed_ones(hipaa_stack: Synthesized):
    assert not hipaa_stack.resources("AWS::IAM::Policy")
    for name, role in hipaa_stack.resources("AWS::IAM::Role").items():
        if role["Properties"].get("Policies"):
            # Only the CDK custom-resource provider that closes the default security group (a raw resource
            # cdk-nag does not inspect) keeps an inline policy; it runs at deploy time only.
            assert name.startswith("CustomVpcRestrictDefaultSG"), name
    managed = hipaa_stack.resources("AWS::IAM::ManagedPolicy")
    by_role = {
        policy["Properties"]["Roles"][0]["Ref"]: policy["Properties"]["PolicyDocument"]["Statement"]
        for policy in managed.values()
    }
    (classifier_role,) = [r for r in by_role if r.startswith("ClassifierRole")]
    actions = {a for s in by_role[classifier_role] for a in s["Action"]}
    assert {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "ec2:CreateNetworkInterface"} <= actions
    # Same grant as the default profile's inline policy: the log statement is scoped to the function's log group.
    logs = [s for s in by_role[classifier_role] if "logs:PutLogEvents" in s["Action"]]
    assert logs and all(s["Resource"] != "*" for s in logs)
    # The function waits for its permissions (network interfaces are created with them).
    function = next(
        f for name, f in hipaa_stack.resources("AWS::Lambda::Function").items() if name.startswith("Classifier")
    )
    (policy_id,) = [k for k, v in managed.items() if v["Properties"]["Roles"] == [{"Ref": classifier_role}]]
    assert policy_id in function["DependsOn"]


# --- the network -------------------------------------------------------------------------------------------


def test_vpc_has_no_route_out_of_aws(hipaa_stack: Synthesized, hipaa: Template):
    hipaa.resource_count_is("AWS::EC2::VPC", 1)
    for cfn_type in ("AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EgressOnlyInternetGateway",
                     "AWS::EC2::Route", "AWS::EC2::VPCGatewayAttachment", "AWS::EC2::EIP"):
        hipaa.resource_count_is(cfn_type, 0)
    for name, subnet in hipaa_stack.resources("AWS::EC2::Subnet").items():
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False, name
    hipaa.has_resource_properties("AWS::EC2::FlowLog", {"ResourceType": "VPC", "TrafficType": "ALL",
                                                        "LogDestinationType": "cloud-watch-logs"})
    hipaa.resource_count_is("Custom::VpcRestrictDefaultSG", 1)  # the default security group loses its rules


def test_interface_endpoints_are_exactly_logs_and_xray(hipaa_stack: Synthesized):
    endpoints = hipaa_stack.resources("AWS::EC2::VPCEndpoint")
    services = set()
    for endpoint in endpoints.values():
        props = endpoint["Properties"]
        assert props["VpcEndpointType"] == "Interface"
        assert props["PrivateDnsEnabled"] is True
        (group,) = props["SecurityGroupIds"]
        assert group["Fn::GetAtt"][0].startswith("NetworkEndpointSecurityGroup")
        services.add(json.dumps(props["ServiceName"]).split(".")[-1].strip('"]}'))
    # Not ECR: the Lambda service pulls the image, not the function's network interface.
    assert services == {"logs", "xray"}


def test_security_groups_allow_only_function_to_endpoints_on_443(hipaa_stack: Synthesized):
    groups = hipaa_stack.resources("AWS::EC2::SecurityGroup")
    (function_sg,) = [k for k in groups if k.startswith("NetworkFunctionSecurityGroup")]
    (endpoint_sg,) = [k for k in groups if k.startswith("NetworkEndpointSecurityGroup")]
    for name in (function_sg, endpoint_sg):
        props = groups[name]["Properties"]
        assert "SecurityGroupIngress" not in props, name
        # allow_all_outbound=False: no inline egress but, where no other rule exists, CDK's placeholder that
        # matches no traffic.
        assert all(rule["CidrIp"] == "255.255.255.255/32" for rule in props.get("SecurityGroupEgress", [])), name
    (egress,) = hipaa_stack.resources("AWS::EC2::SecurityGroupEgress").values()
    assert egress["Properties"]["GroupId"]["Fn::GetAtt"][0] == function_sg
    assert egress["Properties"]["DestinationSecurityGroupId"]["Fn::GetAtt"][0] == endpoint_sg
    assert (egress["Properties"]["FromPort"], egress["Properties"]["ToPort"]) == (443, 443)
    (ingress,) = hipaa_stack.resources("AWS::EC2::SecurityGroupIngress").values()
    assert ingress["Properties"]["GroupId"]["Fn::GetAtt"][0] == endpoint_sg
    assert ingress["Properties"]["SourceSecurityGroupId"]["Fn::GetAtt"][0] == function_sg
    assert (ingress["Properties"]["FromPort"], ingress["Properties"]["ToPort"]) == (443, 443)


# --- the WAF web ACL -----------------------------------------------------------------------------------------


def _rules(stack: Synthesized) -> dict[str, dict]:
    acl = stack.only("AWS::WAFv2::WebACL")["Properties"]
    return {rule["Name"]: rule for rule in acl["Rules"]}


@pytest.mark.parametrize("which", ["hipaa_stack", "variant_stack"])
def test_web_acl_rules_in_order(request, which):
    stack: Synthesized = request.getfixturevalue(which)
    acl = stack.only("AWS::WAFv2::WebACL")["Properties"]
    assert acl["Scope"] == "REGIONAL"
    assert acl["DefaultAction"] == {"Allow": {}}
    rules = _rules(stack)
    assert [r["Name"] for r in sorted(rules.values(), key=lambda r: r["Priority"])] == [
        "BodyTooLarge", "RatePerIp", "AWSCommonRuleSet", "AWSKnownBadInputsRuleSet",
    ]
    for rule in [*rules.values(), acl]:
        # Sampled requests would keep request headers (the API key) in the console.
        assert rule["VisibilityConfig"]["SampledRequestsEnabled"] is False


@pytest.mark.parametrize(("which", "limit"), [("hipaa_stack", 500), ("variant_stack", 1200)])
def test_rate_rule_blocks_one_ip_with_429(request, which, limit):
    stack: Synthesized = request.getfixturevalue(which)
    rule = _rules(stack)["RatePerIp"]
    assert rule["Statement"]["RateBasedStatement"] == {
        "AggregateKeyType": "IP", "Limit": limit, "EvaluationWindowSec": 300
    }
    response = rule["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 429
    bodies = stack.only("AWS::WAFv2::WebACL")["Properties"]["CustomResponseBodies"]
    body = json.loads(bodies[response["CustomResponseBodyKey"]]["Content"])
    assert body["error"]["code"] == "too_many_requests"
    assert body["disclaimer"].startswith("Research use only")


def test_body_too_large_answers_413_before_lambda(hipaa_stack: Synthesized):
    rule = _rules(hipaa_stack)["BodyTooLarge"]
    assert rule["Priority"] == 0  # before anything else, so a huge body is never inspected further
    statement = rule["Statement"]["RegexMatchStatement"]
    assert statement["FieldToMatch"] == {"SingleHeader": {"Name": "content-length"}}
    pattern = re.compile(statement["RegexString"])
    limit = InfraConfig().max_body_bytes
    assert pattern.fullmatch(str(limit + 1)) and pattern.fullmatch("10485760")  # up to API Gateway's 10 MB
    assert not pattern.fullmatch(str(limit)) and not pattern.fullmatch("123456")
    response = rule["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 413
    bodies = hipaa_stack.only("AWS::WAFv2::WebACL")["Properties"]["CustomResponseBodies"]
    body_spec = bodies[response["CustomResponseBodyKey"]]
    assert body_spec["ContentType"] == "APPLICATION_JSON"
    body = json.loads(body_spec["Content"])
    # The handler's code for the same condition, and the disclaimer every response carries.
    assert body["error"]["code"] == "payload_too_large"
    assert "4,500,000" in body["error"]["message"]
    assert body["disclaimer"].startswith("Research use only")


def test_managed_rule_groups_with_the_body_size_rule_counting(hipaa_stack: Synthesized):
    rules = _rules(hipaa_stack)
    common = rules["AWSCommonRuleSet"]
    assert common["OverrideAction"] == {"None": {}}
    group = common["Statement"]["ManagedRuleGroupStatement"]
    assert (group["VendorName"], group["Name"]) == ("AWS", "AWSManagedRulesCommonRuleSet")
    # SizeRestrictions_BODY (> 8 KB) would block every image upload: it only counts.
    assert group["RuleActionOverrides"] == [{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]
    bad = rules["AWSKnownBadInputsRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
    assert (bad["VendorName"], bad["Name"]) == ("AWS", "AWSManagedRulesKnownBadInputsRuleSet")


def test_web_acl_is_on_the_stage_and_logs_without_secrets(hipaa_stack: Synthesized):
    (acl_id,) = hipaa_stack.resources("AWS::WAFv2::WebACL").keys()
    association = hipaa_stack.only("AWS::WAFv2::WebACLAssociation")["Properties"]
    assert association["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert "/stages/" in json.dumps(association["ResourceArn"])
    logging = hipaa_stack.only("AWS::WAFv2::LoggingConfiguration")["Properties"]
    assert logging["ResourceArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    (destination,) = logging["LogDestinationConfigs"]
    assert ":log-group:" in json.dumps(destination) and ":*" not in json.dumps(destination)
    groups = [g for g in hipaa_stack.resources("AWS::Logs::LogGroup").values()
              if g["Properties"].get("LogGroupName") == "aws-waf-logs-BusiClassifier"]
    assert len(groups) == 1  # WAF only logs to groups named aws-waf-logs-*
    assert logging["RedactedFields"] == [{"SingleHeader": {"Name": "x-api-key"}}]
    assert logging["LoggingFilter"]["DefaultBehavior"] == "DROP"
    (keep,) = logging["LoggingFilter"]["Filters"]
    assert keep["Behavior"] == "KEEP"
    assert {c["ActionCondition"]["Action"] for c in keep["Conditions"]} == {"BLOCK", "COUNT"}


def test_waf_without_the_profile_has_no_key(variant_stack: Synthesized):
    assert not variant_stack.resources("AWS::KMS::Key")
    assert not variant_stack.resources("AWS::EC2::VPC")
    assert len(variant_stack.resources("AWS::WAFv2::WebACL")) == 1


# --- the regex behind BodyTooLarge ---------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 9, 10, 99, 1024, 4_500_000, 4_654_080, 4_718_591, 999_999])
def test_greater_than_regex_matches_exactly_the_larger_integers(limit):
    pattern = re.compile(greater_than_regex(limit))
    rng = random.Random(limit)
    samples = {0, 1, limit - 1, limit, limit + 1, limit * 10, 10 ** len(str(limit)), 10_485_760}
    samples |= {rng.randrange(0, max(2, limit * 3)) for _ in range(2000)}
    for n in (s for s in samples if s >= 0):
        assert bool(pattern.fullmatch(str(n))) == (n > limit), (limit, n)
        assert bool(pattern.fullmatch("00" + str(n))) == (n > limit), (limit, n)
    for text in ("", "-5", "4.5e6", "abc", " 5000000"):
        assert not pattern.fullmatch(text), text
    assert len(pattern.pattern) <= 200  # WAF's limit on a regex
