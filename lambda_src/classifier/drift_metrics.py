"""Drift signals: what the model sees and says, as CloudWatch EMF metrics, aggregated before they are written
(EMF: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).

Per /predict request that reached the model: the label (one 0/1 metric per label, Predicted<Label>, so a
window's Average is that label's share), the top probability, and the input check's score and verdict
(InputCheckWarn / InputCheckRefused as 0/1, refusals included). The stack's drift alarms
(infra/drift_alarms.py) compare these with the band in model.json; the dashboard splits them by model version.

Dimensions: service + model_version, and operating_point for the label metrics (a label's share depends on
the rule that made it). Privacy: the values are buffered and written as one EMF line per ``batch`` requests
(default 10), each metric's values sorted, with no request id, correlation id or per-request time, so a line
says "k of these 10 requests were labelled malignant", not which request was. It cannot hide what a batch
whose requests all agree says (all 10 malignant); per-request results beside their request ids stay opt-in
(CLASSIFIER_LOG_PREDICTIONS). The price: up to ``batch - 1`` values per execution environment are lost when
Lambda recycles it, which a rate over a window of many requests can afford.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field

#: The metric names the stack's alarms and dashboard use (model_training/drift_band.py names them too).
LABEL_METRIC = "Predicted{}"
TOP_PROBABILITY = "TopProbability"
SCORE, WARN, REFUSED = "InputCheckScore", "InputCheckWarn", "InputCheckRefused"
DEFAULT_BATCH = 10


def label_metric(label: str) -> str:
    return LABEL_METRIC.format(label.capitalize())


@dataclass
class _Buffer:
    count: int = 0
    labels: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # operating point -> metric -> values
    checks: dict[str, list[float]] = field(default_factory=dict)


class DriftMetrics:
    """Buffers per-request drift values and writes them as EMF (stdout) once ``batch`` requests are held."""

    def __init__(self, *, namespace: str, service: str, labels: list[str], model_version: str,
                 batch: int = DEFAULT_BATCH):
        if batch < 1:
            raise ValueError(f"batch must be >= 1, not {batch}")
        self.namespace, self.service, self.model_version, self.batch = namespace, service, model_version, batch
        self._names = {label: label_metric(label) for label in labels}
        self._buffer = _Buffer()
        self._lock = threading.Lock()

    def record(self, *, label: str | None, operating_point: str, top_probability: float | None,
               verdict: str | None, score: float | None) -> None:
        """One request: its label under ``operating_point`` (None when refused) and its input check (None
        when the model has none)."""
        if label is None and verdict is None:
            return
        with self._lock:
            buf = self._buffer
            if label is not None:
                metrics = buf.labels.setdefault(operating_point, {})
                for known, name in self._names.items():
                    metrics.setdefault(name, []).append(1.0 if known == label else 0.0)
                if top_probability is not None:
                    metrics.setdefault(TOP_PROBABILITY, []).append(float(top_probability))
            if verdict is not None:
                buf.checks.setdefault(WARN, []).append(1.0 if verdict == "warn" else 0.0)
                buf.checks.setdefault(REFUSED, []).append(1.0 if verdict == "reject" else 0.0)
                if score is not None:
                    buf.checks.setdefault(SCORE, []).append(float(score))
            buf.count += 1
            if buf.count >= self.batch:
                self._buffer = _Buffer()
                self._write(buf)

    def flush(self) -> None:
        """Write whatever is buffered now (tests, benchmarks, a local server stopping)."""
        with self._lock:
            buf, self._buffer = self._buffer, _Buffer()
        if buf.count:
            self._write(buf)

    def _write(self, buf: _Buffer) -> None:
        blobs = [({"operating_point": op}, metrics) for op, metrics in buf.labels.items()]
        if buf.checks:
            blobs.append(({}, buf.checks))
        timestamp = int(time.time() * 1000)
        for dimensions, metrics in blobs:
            sys.stdout.write(json.dumps(self._document(timestamp, dimensions, metrics), separators=(",", ":")) + "\n")

    def _document(self, timestamp: int, dimensions: dict[str, str], metrics: dict[str, list[float]]) -> dict:
        """One EMF document, exactly as Powertools' EphemeralMetrics writes it for the same values (a test
        compares the two). Written here because Powertools validates every value on its way in (~30 us each
        on a loaded 2-core machine, 70 values per batch), which alone would exceed the 0.2 ms budget."""
        dims = {"model_version": self.model_version, **dimensions, "service": self.service}
        doc: dict = {"_aws": {"Timestamp": timestamp, "CloudWatchMetrics": [{
            "Namespace": self.namespace, "Dimensions": [list(dims)],
            "Metrics": [{"Name": name, "Unit": "None" if name in (SCORE, TOP_PROBABILITY) else "Count"}
                        for name in metrics]}]}}
        doc.update(dims)
        for name, values in metrics.items():
            doc[name] = sorted(values)  # sorted: the order of requests is not in the line
        return doc
