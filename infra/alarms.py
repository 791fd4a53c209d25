"""The one kind of alarm this stack makes: at or above a threshold in one period, quiet without data,
notifying a topic when it fires and when it clears."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct


def notified_alarm(
    scope: Construct,
    construct_id: str,
    *,
    alarm_name: str,
    description: str,
    metric: cloudwatch.IMetric,
    threshold: float,
    topic: sns.ITopic,
) -> cloudwatch.Alarm:
    alarm = cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_name=alarm_name,
        alarm_description=description,
        metric=metric,
        threshold=threshold,
        evaluation_periods=1,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        # No traffic is not a failure.
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
    )
    alarm.add_alarm_action(cw_actions.SnsAction(topic))
    alarm.add_ok_action(cw_actions.SnsAction(topic))
    return alarm
