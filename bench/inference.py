"""In-process end-to-end latency: our handler vs the original path, same images, same process, one thread."""

from __future__ import annotations

import contextlib
import json
import os
import time
from itertools import cycle, islice
from pathlib import Path

from tqdm import tqdm

from . import baseline
from .serving import LambdaContext, json_event, load_handler, rest_event
from .stats import summarize


def _time_requests(call, events: list[dict], n: int, warmup: int, desc: str) -> tuple[list[float], int]:
    """Run ``n`` requests (after ``warmup``), cycling through ``events``; returns durations and non-200 count."""
    for event in islice(cycle(events), warmup):
        call(event)
    durations, failures = [], 0
    for event in tqdm(list(islice(cycle(events), n)), desc=desc, unit="req", leave=False):
        t0 = time.perf_counter()
        resp = call(event)
        durations.append(time.perf_counter() - t0)
        if resp.get("statusCode") != 200:
            failures += 1
    return durations, failures


def _breakdown(model_dir: Path, images: list[tuple[str, bytes]], n: int) -> dict:
    """Where our request time goes: decode, resize, LiteRT invoke (p50 of each, same images)."""
    import numpy as np

    from classifier.engine import Engine
    from classifier.preprocessing import decode_rgb, resize_for_model

    engine = Engine(model_dir, num_threads=1)
    size = engine.card.input_size
    t_dec, t_res, t_inv = [], [], []
    for _, data in islice(cycle(images), n):
        t0 = time.perf_counter()
        img = decode_rgb(data)
        t1 = time.perf_counter()
        arr = resize_for_model(img, size)
        t2 = time.perf_counter()
        engine.predict_array(arr)
        t3 = time.perf_counter()
        t_dec.append(t1 - t0), t_res.append(t2 - t1), t_inv.append(t3 - t2)
    return {name: round(float(np.median(v)) * 1000, 3)
            for name, v in (("decode_rgb", t_dec), ("resize", t_res), ("invoke", t_inv))}


def run(
    *, model_dir: Path, images: list[tuple[str, bytes]], cache_dir: Path, n_ours: int, n_baseline: int
) -> dict:
    # The handler logs a JSON line and EMF metrics to stdout per request, as in Lambda: that cost stays
    # in the measurement, but the lines go to /dev/null instead of the terminal.
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        return _run(model_dir=model_dir, images=images, cache_dir=cache_dir, n_ours=n_ours, n_baseline=n_baseline)


def _run(
    *, model_dir: Path, images: list[tuple[str, bytes]], cache_dir: Path, n_ours: int, n_baseline: int
) -> dict:
    handler = load_handler(model_dir)
    ctx = LambdaContext()

    def ours(event):
        resp = handler(event, ctx)
        json.loads(resp["body"])  # the client's side of "JSON": the body must parse
        return resp

    binary_events = [rest_event(data, content_type="image/png") for _, data in images]
    json_events = [json_event(data) for _, data in images]

    results: dict = {"threads": 1}
    # Our main contract: raw image/png, base64-encoded by API Gateway.
    d, fails = _time_requests(ours, binary_events, n_ours, warmup=10, desc="ours (image/png)")
    results["ours_binary"] = summarize(d) | {"non_200": fails}
    # The old contract, {"image": base64}, exactly what the baseline receives.
    d, fails = _time_requests(ours, json_events, n_ours, warmup=5, desc="ours (json)")
    results["ours_json"] = summarize(d) | {"non_200": fails}

    results["breakdown_p50_ms"] = _breakdown(model_dir, images, n=min(n_ours, 200))

    model_path = baseline.ensure_model(cache_dir)
    def original(event):
        resp = baseline.original_handler(event, model_path)
        json.loads(resp["body"])  # same client-side parse as ours
        return resp

    d, fails = _time_requests(original, json_events, n_baseline, warmup=2, desc="baseline")
    results["baseline"] = summarize(d) | {"non_200": fails, "model_mb": round(model_path.stat().st_size / 1e6, 1)}
    results["baseline_breakdown_p50_ms"] = baseline.breakdown(
        model_path, [data for _, data in islice(cycle(images), max(5, n_baseline // 2))])
    ours_model = results["breakdown_p50_ms"]["invoke"]
    base_model = sum(results["baseline_breakdown_p50_ms"][k] for k in ("new_interpreter", "invoke"))
    # The model part alone (what the serving change is about; both paths pay for decoding the image).
    results["speedup_model_only_p50"] = round(base_model / ours_model, 1) if ours_model else None
    results["speedup_p50"] = round(results["baseline"]["p50_ms"] / results["ours_json"]["p50_ms"], 1)
    results["speedup_mean"] = round(results["baseline"]["mean_ms"] / results["ours_json"]["mean_ms"], 1)
    return results
