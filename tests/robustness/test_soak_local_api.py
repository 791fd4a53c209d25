"""Load/soak of the local API over real HTTP on loopback: zero errors, resident memory growth under 10%.

Sends ``ROBUSTNESS_SOAK_REQUESTS`` requests (default 20,000, ~30 s) at concurrency 16;
set it lower on a slow machine. ``ROBUSTNESS_API_MODEL_DIR=lambda_src/model`` soaks the
bundled model instead of the tiny one, with the example ultrasound images as the good payloads
(its input check refuses synthetic frames). Some payloads are bad inputs, so the error paths are soaked too; each must get its exact status.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest

from bench.api_load import generate_load, request

from . import corpus as c
from .contract import CASES, check_body
from .conftest import env_int

REQUESTS = env_int("ROBUSTNESS_SOAK_REQUESTS", 20_000)
CONCURRENCY = 16


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _payloads() -> tuple[list[tuple[bytes, str]], list[int]]:
    if os.environ.get("ROBUSTNESS_API_MODEL_DIR"):
        # a real model has an input check that refuses synthetic frames (422): send the example ultrasound
        good = [(path.read_bytes(), "image/png") for path in sorted(EXAMPLES.glob("*.png"))]
    else:
        good = [(c.png(96 + i, 80 + i, seed=i), "image/png") for i in range(6)]
        good += [(c.jpeg(120, 90, seed=i), "image/jpeg") for i in range(2)]
    bad = [(b"not an image", "image/png"), (c.png(1, 1), "image/png")]  # 400, 422
    return good + bad, [200] * len(good) + [400, 422]


@pytest.mark.slow
def test_soak(api_server):
    status, health = request(api_server.port, "GET", "/health")
    assert status == 200, health
    labels = json.loads(health)["model"]["labels"]  # whichever model the server was given
    payloads, expected = _payloads()
    proc = psutil.Process(api_server.pid)
    warm = generate_load(api_server.port, payloads, requests=max(500, REQUESTS // 10), concurrency=CONCURRENCY,
                         expected=expected)
    assert warm.errors == 0, warm.summary()
    rss_before = proc.memory_info().rss

    res = generate_load(api_server.port, payloads, requests=REQUESTS, concurrency=CONCURRENCY,
                        expected=expected, keep_bodies=True)
    rss_after = proc.memory_info().rss
    CASES["soak request"] += warm.requests + res.requests
    growth = rss_after / rss_before - 1
    summary = res.summary() | {"rss_before_mb": round(rss_before / 2**20, 1),
                               "rss_after_mb": round(rss_after / 2**20, 1), "rss_growth": round(growth, 4)}
    print(f"soak: {summary}")

    assert res.errors == 0, summary
    assert sum(res.statuses.values()) == REQUESTS, summary
    for k, body in res.bodies[:: max(1, len(res.bodies) // 200)]:  # every body is well-formed, sampled
        check_body(expected[k], body, labels, what=f"soak payload {k}")
    assert growth < 0.10, f"server RSS grew {growth:.1%} over {REQUESTS} requests: {summary}"
    assert proc.is_running() and api_server.proc.poll() is None, "the server died during the soak"
