"""Drift alarms: what the model sees and says, against the band model.json records from the model's own
out-of-site evaluation (model_training/drift_band.py writes it; `make promote` puts it in the card).

The handler emits the per-request values as EMF metrics (classifier/drift_metrics.py) with the dimensions
service + model_version (+ operating_point for the label rates). Each alarm is one metric-math expression,
1 when the window's value is outside its band AND the window holds at least driftMinSamples requests, else 0:
a window of three requests says nothing about drift, so it never alarms. The band moves with the model: a
new model.json gives new thresholds and, through the model_version dimension, alarms on the new model only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.alarms import notified_alarm
from infra.config import InfraConfig

#: The card's drift format this code reads (model_training/drift_band.py FORMAT).
FORMAT = "drift-band-v1"


def drift_entries(card: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The card's banded signals ([] when the model has no drift band, e.g. a model trained without
    leave-one-site-out); each {name, metric, statistic, band, per_operating_point, expected}."""
    drift = card.get("drift")
    if not isinstance(drift, Mapping):
        return []
    if drift.get("format") != FORMAT:
        raise ValueError(f"model.json drift format {drift.get('format')!r}: this stack reads {FORMAT!r}")
    entries = []
    for group in ("rates", "input_check"):
        for name, entry in (drift.get(group) or {}).items():
            lo, hi = (float(v) for v in entry["band"])
            entries.append({"name": name, "metric": entry["metric"], "statistic": entry.get("statistic", "Average"),
                            "band": (lo, hi), "expected": entry.get("expected"),
                            "per_operating_point": bool(entry.get("per_operating_point", False))})
    return entries


def _condition(lo: float, hi: float, upper_limit: float | None) -> str:
    parts = []
    if lo > 0:
        parts.append(f"v < {lo:.6g}")
    if upper_limit is None or hi < upper_limit:
        parts.append(f"v > {hi:.6g}")
    return " OR ".join(parts)


class DriftAlarms(Construct):
    """One alarm per banded signal of the card, each notifying the stack's topic."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        card: Mapping[str, Any],
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        entries = drift_entries(card)
        if not entries:
            return
        drift = card["drift"]
        period = Duration.minutes(config.drift_period_minutes)
        base = {"service": config.service_name, "model_version": str(card.get("version"))}
        for entry in entries:
            dimensions = {**base, "operating_point": str(drift.get("operating_point", "default"))} \
                if entry["per_operating_point"] else base
            lo, hi = entry["band"]
            # Rates cannot pass 1, so a band reaching 1 has no upper alarm; scores have no upper limit.
            condition = _condition(lo, hi, 1.0 if entry["statistic"] == "Average" else None)
            if not condition:
                continue
            value = cloudwatch.Metric(namespace=config.metrics_namespace, metric_name=entry["metric"],
                                      statistic=entry["statistic"], dimensions_map=dimensions, period=period)
            count = cloudwatch.Metric(namespace=config.metrics_namespace, metric_name=entry["metric"],
                                      statistic="SampleCount", dimensions_map=dimensions, period=period)
            expression = cloudwatch.MathExpression(
                expression=f"IF(n >= {config.drift_min_samples} AND ({condition}), 1, 0)",
                using_metrics={"v": value, "n": count},
                period=period,
                label=f"{entry['metric']} outside [{lo:.3g}, {hi:.3g}]",
            )
            name = f"Drift{entry['metric']}"
            self.alarms[entry["name"]] = notified_alarm(
                self,
                entry["metric"],
                alarm_name=f"{config.stack_name}-{name}",
                description=(
                    f"{entry['name']} of model {card.get('version')} ({entry['statistic']} over "
                    f"{config.drift_period_minutes} min, >= {config.drift_min_samples} requests) left its band "
                    f"[{lo:.4g}, {hi:.4g}] from the model's out-of-site evaluation (model.json drift; expected "
                    f"{entry['expected']}). The traffic may not be what the model was validated on."
                )[:1024],
                metric=expression,
                threshold=1,
                topic=topic,
            )
