"""One CloudWatch dashboard: traffic, latency, errors, the label mix and input-check verdicts per model
version, cold starts, and every alarm's state. The per-version graphs are SEARCH expressions over the
handler's EMF metrics, so a canary shows the old and the new model side by side without a redeploy."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import InfraConfig

PERIOD = Duration.minutes(5)


def _search(namespace: str, metric: str, statistic: str, label: str, schema: str = "") -> cloudwatch.MathExpression:
    keys = f"{{{namespace}{',' + schema if schema else ''}}}"
    return cloudwatch.MathExpression(
        expression=f"SEARCH('{keys} MetricName=\"{metric}\"', '{statistic}', {int(PERIOD.to_seconds())})",
        label=label, period=PERIOD, using_metrics={},
    )


class Dashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        api: apigw.RestApi,
        alias: lambda_.Alias,
        labels: Sequence[str],
        alarms: Sequence[cloudwatch.IAlarm],
    ) -> None:
        super().__init__(scope, construct_id)
        ns = config.metrics_namespace
        per_version = "model_version,operating_point,service"
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{config.stack_name}-service")
        width = 8
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Requests (API) and invocations of the live alias", width=width,
                left=[api.metric_count(period=PERIOD, statistic="Sum", label="API requests"),
                      alias.metric_invocations(period=PERIOD, statistic="Sum", label="alias invocations")],
            ),
            cloudwatch.GraphWidget(
                title="Latency (ms): API p50 / p90 / p99, function p99", width=width,
                left=[api.metric_latency(period=PERIOD, statistic=s, label=f"API {s}") for s in ("p50", "p90", "p99")]
                + [alias.metric_duration(period=PERIOD, statistic="p99", label="function p99")],
            ),
            cloudwatch.GraphWidget(
                title="Errors and throttles", width=width,
                left=[api.metric_client_error(period=PERIOD, statistic="Sum", label="API 4XX"),
                      api.metric_server_error(period=PERIOD, statistic="Sum", label="API 5XX"),
                      alias.metric_errors(period=PERIOD, statistic="Sum", label="function errors"),
                      alias.metric_throttles(period=PERIOD, statistic="Sum", label="throttles")],
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Label mix per model version (share of predictions)", width=width,
                left=[_search(ns, f"Predicted{label.capitalize()}", "Average", label, per_version) for label in labels],
                left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
            ),
            cloudwatch.GraphWidget(
                title="Input check per model version: warn and refusal share, median score", width=width,
                left=[_search(ns, "InputCheckWarn", "Average", "warn", "model_version,service"),
                      _search(ns, "InputCheckRefused", "Average", "refused", "model_version,service")],
                right=[_search(ns, "InputCheckScore", "p50", "score p50", "model_version,service")],
                left_y_axis=cloudwatch.YAxisProps(min=0, max=1),
            ),
            cloudwatch.GraphWidget(
                title="Top probability (p50) and cold starts", width=width,
                left=[_search(ns, "TopProbability", "p50", "top probability p50", per_version)],
                right=[_search(ns, "ColdStart", "Sum", "cold starts")],
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(alarms), width=24),
        )
