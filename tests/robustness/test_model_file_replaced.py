"""A model file rewritten in place under a running local API (a `cp`, a training run) must not kill it.

LiteRT memory-maps a model given by path; truncating that file makes the next
invoke die with SIGBUS. The engine loads the model from bytes instead. The
tiny test model does not touch its mapping at invoke, so the bundled model
(committed in lambda_src/model) is served here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.api_load import local_api, request

from . import corpus as c
from .contract import CASES

BUNDLED = Path(__file__).resolve().parents[2] / "lambda_src" / "model"


@pytest.mark.skipif(not (BUNDLED / "model.tflite").is_file(), reason="no bundled model in lambda_src/model")
def test_server_survives_its_model_file_being_truncated(tmp_path):
    served = tmp_path / "model"
    shutil.copytree(BUNDLED, served)
    with local_api(served, log_dir=tmp_path) as server:
        status, before = request(server.port, "POST", "/predict", c.png(), {"Content-Type": "image/png"})
        assert status == 200, before
        (served / "model.tflite").write_bytes(b"")  # what `cp new.tflite` does first
        status, after = request(server.port, "POST", "/predict", c.png(), {"Content-Type": "image/png"})
        CASES["model file truncated"] += 2
        assert server.proc.poll() is None, f"the server died (exit {server.proc.poll()}):\n{server.log_tail()}"
        assert status == 200 and after == before
