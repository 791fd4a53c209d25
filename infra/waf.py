"""A WAF web ACL on the API stage (compliance=hipaa, or waf=true): body size, per-IP rate, AWS managed rules, logs.

Rules, in order (the first that blocks answers):
0. BodyTooLarge: a Content-Length over maxBodyBytes is answered 413 in the handler's JSON shape, before API
   Gateway invokes the function. Without it, bodies between Lambda's 6 MB event limit (~4.7 MB of raw image
   once base64-encoded) and API Gateway's 10 MB limit come back as a 5xx from the failed invocation.
1. RatePerIp: more than wafRateLimit requests from one client IP in 5 minutes: 429.
2. AWS common rule set (OWASP-style patterns), with SizeRestrictions_BODY set to count (see below).
3. AWS known-bad-inputs rule set (Log4j/Java deserialization probes, localhost Host headers, ...).

Logs go to a CloudWatch log group (WAF requires the aws-waf-logs- prefix), only for requests a rule blocked or
counted. WAF logs never hold request bodies; the x-api-key header is redacted, and sampled requests (which
keep headers in the console for 3 hours) are off.
"""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_kms as kms
from aws_cdk import aws_wafv2 as waf
from constructs import Construct

from infra.config import InfraConfig
from infra.function import log_group

#: WAF only logs to log groups whose name starts with this.
WAF_LOG_PREFIX = "aws-waf-logs-"
#: WAF regex patterns are at most 200 characters.
MAX_REGEX_LENGTH = 200


def greater_than_regex(limit: int) -> str:
    """A regex (WAF's PCRE subset: no lookarounds) that matches exactly the decimal integers above ``limit``,
    leading zeros allowed. Content-Length is a string to WAF, which has no numeric comparison for headers."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    digits = str(limit)
    n = len(digits)
    # More digits than the limit (ignoring leading zeros) is always greater.
    alternatives = [f"[1-9][0-9]{{{n},}}"]
    # Same length: equal up to position i, then a bigger digit, then anything.
    for i, d in enumerate(digits):
        if d == "9":
            continue
        rest = n - i - 1
        tail = f"[0-9]{{{rest}}}" if rest > 1 else ("[0-9]" if rest == 1 else "")
        alternatives.append(f"{digits[:i]}[{int(d) + 1}-9]{tail}")
    pattern = "^0*(" + "|".join(alternatives) + ")$"
    if len(pattern) > MAX_REGEX_LENGTH:
        raise ValueError(f"the regex for {limit} is {len(pattern)} characters, over WAF's {MAX_REGEX_LENGTH}")
    return pattern


def _visibility(name: str) -> waf.CfnWebACL.VisibilityConfigProperty:
    # Sampled requests would keep full request headers (the API key among them) in the WAF console.
    return waf.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=False
    )


def _block(status: int, body_key: str) -> waf.CfnWebACL.RuleActionProperty:
    return waf.CfnWebACL.RuleActionProperty(
        block=waf.CfnWebACL.BlockActionProperty(
            custom_response=waf.CfnWebACL.CustomResponseProperty(
                response_code=status, custom_response_body_key=body_key
            )
        )
    )


def _error_body(code: str, message: str, disclaimer: str) -> str:
    # The handler's error shape. WAF answers before API Gateway assigns a request id, so there is none to quote.
    return json.dumps({"error": {"code": code, "message": message, "request_id": None}, "disclaimer": disclaimer})


class WebAcl(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        stage: apigw.Stage,
        disclaimer: str,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = config.stack_name
        self.body_limit_regex = greater_than_regex(config.max_body_bytes)
        rules = [
            waf.CfnWebACL.RuleProperty(
                name="BodyTooLarge",
                priority=0,
                action=_block(413, "payload_too_large"),
                statement=waf.CfnWebACL.StatementProperty(
                    regex_match_statement=waf.CfnWebACL.RegexMatchStatementProperty(
                        field_to_match=waf.CfnWebACL.FieldToMatchProperty(single_header={"Name": "content-length"}),
                        regex_string=self.body_limit_regex,
                        text_transformations=[waf.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")],
                    )
                ),
                visibility_config=_visibility(f"{prefix}-BodyTooLarge"),
            ),
            waf.CfnWebACL.RuleProperty(
                name="RatePerIp",
                priority=1,
                action=_block(429, "too_many_requests"),
                statement=waf.CfnWebACL.StatementProperty(
                    rate_based_statement=waf.CfnWebACL.RateBasedStatementProperty(
                        aggregate_key_type="IP", limit=config.waf_rate_limit, evaluation_window_sec=300
                    )
                ),
                visibility_config=_visibility(f"{prefix}-RatePerIp"),
            ),
            waf.CfnWebACL.RuleProperty(
                name="AWSCommonRuleSet",
                priority=2,
                override_action=waf.CfnWebACL.OverrideActionProperty(none={}),
                statement=waf.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=waf.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS",
                        name="AWSManagedRulesCommonRuleSet",
                        # SizeRestrictions_BODY blocks any body over 8 KB: every image upload. The body size
                        # is bounded by BodyTooLarge above (and by the handler); keep the rule counting only,
                        # so its metric still shows large bodies.
                        rule_action_overrides=[
                            waf.CfnWebACL.RuleActionOverrideProperty(
                                name="SizeRestrictions_BODY",
                                action_to_use=waf.CfnWebACL.RuleActionProperty(count={}),
                            )
                        ],
                    )
                ),
                visibility_config=_visibility(f"{prefix}-AWSCommonRuleSet"),
            ),
            waf.CfnWebACL.RuleProperty(
                name="AWSKnownBadInputsRuleSet",
                priority=3,
                override_action=waf.CfnWebACL.OverrideActionProperty(none={}),
                statement=waf.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=waf.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS", name="AWSManagedRulesKnownBadInputsRuleSet"
                    )
                ),
                visibility_config=_visibility(f"{prefix}-AWSKnownBadInputsRuleSet"),
            ),
        ]
        self.web_acl = waf.CfnWebACL(
            self,
            "WebAcl",
            name=f"{prefix}-api",
            description="BUSI classifier API: body size, per-IP rate, AWS common and known-bad-inputs rules",
            scope="REGIONAL",
            default_action=waf.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(f"{prefix}-WebAcl"),
            custom_response_bodies={
                "payload_too_large": waf.CfnWebACL.CustomResponseBodyProperty(
                    content_type="APPLICATION_JSON",
                    content=_error_body(
                        "payload_too_large",
                        f"the request body is over the {config.max_body_bytes:,}-byte limit",
                        disclaimer,
                    ),
                ),
                "too_many_requests": waf.CfnWebACL.CustomResponseBodyProperty(
                    content_type="APPLICATION_JSON",
                    content=_error_body(
                        "too_many_requests", "too many requests from this address: retry in a few minutes", disclaimer
                    ),
                ),
            },
            rules=rules,
        )
        self.association = waf.CfnWebACLAssociation(
            self, "Association", resource_arn=stage.stage_arn, web_acl_arn=self.web_acl.attr_arn
        )

        self.log_group = log_group(
            self,
            "Logs",
            config=config,
            encryption_key=encryption_key,
            log_group_name=f"{WAF_LOG_PREFIX}{config.stack_name}",
        )
        # WAF wants the log group's ARN without the ":*" that LogGroup.log_group_arn ends with.
        log_group_arn = Stack.of(self).format_arn(
            service="logs",
            resource="log-group",
            resource_name=self.log_group.log_group_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.logging = waf.CfnLoggingConfiguration(
            self,
            "Logging",
            resource_arn=self.web_acl.attr_arn,
            log_destination_configs=[log_group_arn],
            # Bodies are never in WAF logs; the API key is a credential.
            redacted_fields=[waf.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": "x-api-key"})],
            # Only what a rule blocked or counted: allowed requests are in the API's access log already.
            logging_filter={
                "DefaultBehavior": "DROP",
                "Filters": [
                    {
                        "Behavior": "KEEP",
                        "Requirement": "MEETS_ANY",
                        "Conditions": [
                            {"ActionCondition": {"Action": "BLOCK"}},
                            {"ActionCondition": {"Action": "COUNT"}},
                        ],
                    }
                ],
            },
        )
        self.logging.node.add_dependency(self.log_group)
