"""The drift metrics' cost per request (issue 22's goal: <= 0.2 ms): classifier.drift_metrics.DriftMetrics.record
timed alone (its batched EMF write amortised over the batch, stdout to /dev/null as Lambda's log capture would
take it), and the real handler with the drift metrics on vs off on the same images, interleaved."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from pathlib import Path

from classifier.drift_metrics import DEFAULT_BATCH, DriftMetrics

from .serving import rest_event

GOAL_MS = 0.2


def _record_cost(labels: list[str], n: int) -> dict:
    drift = DriftMetrics(namespace="Bench", service="bench", labels=labels, model_version="bench", batch=DEFAULT_BATCH)
    per_call = []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for i in range(n):
            t0 = time.perf_counter_ns()
            drift.record(label=labels[i % len(labels)], operating_point="default", top_probability=0.5 + (i % 7) / 20,
                         verdict=("pass", "warn", "reject")[i % 3], score=0.3 + (i % 11) / 10)
            per_call.append((time.perf_counter_ns() - t0) / 1e6)
    per_call.sort()
    return {"calls": n, "batch": DEFAULT_BATCH, "mean_ms": round(statistics.fmean(per_call), 5),
            "p50_ms": round(per_call[n // 2], 5), "p99_ms": round(per_call[int(n * 0.99)], 5),
            "max_ms": round(per_call[-1], 4)}


def _handler_cost(model_dir: Path, images: list[tuple[str, bytes]], n: int) -> dict:
    from classifier.handler import Service
    from classifier.lambda_context import LocalContext
    from classifier.settings import Settings

    service = Service(Settings(model_dir=model_dir, log_level="WARNING"))
    service.warm()
    drift = service.drift
    on, off = [], []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for i in range(n):
            data = images[i % len(images)][1]
            for enabled, out in (((i % 2 == 0), on if i % 2 == 0 else off), ((i % 2 == 1), on if i % 2 == 1 else off)):
                service.drift = drift if enabled else None
                event = rest_event(data, content_type="image/png")
                t0 = time.perf_counter()
                service(event, LocalContext())
                out.append((time.perf_counter() - t0) * 1000)
    service.drift = drift
    return {"requests_each": n, "on_p50_ms": round(statistics.median(on), 3), "off_p50_ms": round(statistics.median(off), 3),
            "difference_p50_ms": round(statistics.median(on) - statistics.median(off), 3)}


def run(*, model_dir: Path, images: list[tuple[str, bytes]], requests: int = 300, calls: int = 20000) -> dict:
    from classifier.model_card import ModelCard

    labels = list(ModelCard.load(model_dir).labels)
    record = _record_cost(labels, calls)
    handler = _handler_cost(model_dir, images, requests)
    return {"goal_ms": GOAL_MS, "record": record, "handler": handler,
            "note": "record: per-request cost, the batched EMF write amortised; handler: p50 of the real handler "
                    "with and without, interleaved (noise on a shared machine is larger than the difference)"}
