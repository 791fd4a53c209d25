"""Alarms on the function and the API, all acting on one SNS topic (e-mail subscription optional)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.alarms import notified_alarm
from infra.config import InfraConfig

PERIOD = Duration.minutes(5)
# p99 duration above this share of the timeout means requests are close to being cut off.
DURATION_ALARM_FRACTION = 0.8


class Monitoring(Construct):
    """Function errors, throttles, p99 duration near the timeout, API 5XX.

    Every alarm notifies the stack's topic (alarm and OK), so an alarm always has an action: subscribe to it
    (e-mail with ``alarm_email``, or chat/paging tools by the topic ARN output) instead of finding it by chance.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        function: lambda_.IFunction,
        api: apigw.RestApi,
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name=f"{config.stack_name} alarms",
            enforce_ssl=True,
            master_key=encryption_key,
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        timeout_ms = config.timeout_seconds * 1000
        specs = [
            (
                "FunctionErrors",
                function.metric_errors(period=PERIOD, statistic="Sum"),
                1,
                "The function raised or timed out (client errors are 4xx responses, not errors).",
            ),
            (
                "FunctionThrottles",
                function.metric_throttles(period=PERIOD, statistic="Sum"),
                1,
                "Invocations were throttled: concurrency limit reached.",
            ),
            (
                "FunctionDurationP99",
                function.metric_duration(period=PERIOD, statistic="p99"),
                DURATION_ALARM_FRACTION * timeout_ms,
                f"p99 duration above {DURATION_ALARM_FRACTION:.0%} of the {config.timeout_seconds} s timeout.",
            ),
            (
                "Api5xx",
                api.metric_server_error(period=PERIOD, statistic="Sum"),
                1,
                "The API answered 5XX (function failure, timeout or integration error).",
            ),
        ]
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for name, metric, threshold, description in specs:
            self.alarms[name] = notified_alarm(self, name, alarm_name=f"{config.stack_name}-{name}",
                                               description=description, metric=metric, threshold=threshold,
                                               topic=self.topic)
