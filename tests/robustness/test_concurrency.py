"""Concurrent requests get exactly what sequential ones get: the interpreter is never shared unguarded."""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench.api_load import generate_load, request
from classifier.engine import Engine
from classifier.preprocessing import preprocess

from . import corpus as c
from .contract import CASES

N_IMAGES = 48


def _images() -> list[bytes]:
    return [(c.png if i % 2 else c.jpeg)(64 + i, 48 + 2 * i, seed=i) for i in range(N_IMAGES)]


def test_engine_threads_match_sequential(tiny_model_dir):
    """Eight threads hammering one Engine (bypassing the handler's own serialisation) vs one thread."""
    engine = Engine(tiny_model_dir)
    arrays = [preprocess(data, engine.card.input_size) for data in _images()]
    sequential = [engine.predict_array(a) for a in arrays]
    assert len({tuple(p) for p in sequential}) > N_IMAGES // 2, "inputs too alike to detect mixing"

    results: dict[tuple[int, int], np.ndarray] = {}
    start = threading.Barrier(8)

    def worker(t: int) -> None:
        order = list(range(N_IMAGES))
        random.Random(t).shuffle(order)
        start.wait()
        for _ in range(3):
            for i in order:
                results[(t, i)] = engine.predict_array(arrays[i])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    CASES["concurrent engine call"] += 8 * 3 * N_IMAGES
    for (t, i), probs in results.items():
        assert np.array_equal(probs, sequential[i]), f"thread {t}, image {i}: {probs} != {sequential[i]}"


def test_local_api_concurrent_matches_sequential(api_server):
    """16 concurrent HTTP clients vs one at a time: byte-identical prediction bodies per image."""
    images = _images()
    sequential = {}
    for i, data in enumerate(images):
        ctype = "image/jpeg" if i % 2 == 0 else "image/png"
        status, body = request(api_server.port, "POST", "/predict", data, {"Content-Type": ctype})
        assert status == 200, body
        sequential[i] = json.loads(body)
    payloads = [(data, "image/jpeg" if i % 2 == 0 else "image/png") for i, data in enumerate(images)]
    res = generate_load(api_server.port, payloads, requests=4 * N_IMAGES, concurrency=16, keep_bodies=True)
    CASES["concurrent HTTP request"] += N_IMAGES + res.requests
    assert res.errors == 0, res.summary()
    assert len(res.bodies) == 4 * N_IMAGES
    for k, body in res.bodies:
        assert json.loads(body) == sequential[k], f"image {k}: concurrent answer differs from the sequential one"
