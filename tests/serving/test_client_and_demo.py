"""The client CLI and the demo, run as a user runs them (subprocesses, real HTTP)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from classifier.client import ClientFailure, encode_request, route_url
from classifier.handler import create_service
from classifier.local_api import start_server, stop_server
from classifier.settings import Settings
from tests.serving.events import image_bytes

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BUNDLED = REPO / "lambda_src" / "model"


def run_module(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "lambda_src"), env.get("PYTHONPATH", "")])
    env.pop("CLASSIFIER_ENDPOINT", None)
    env.pop("CLASSIFIER_API_KEY", None)
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO)


@pytest.fixture(scope="module")
def api(tiny_model_dir):
    service = create_service(Settings(model_dir=tiny_model_dir, log_level="WARNING", metrics_enabled=False))
    seen_keys: list[str | None] = []

    def recording(event, context):
        seen_keys.append({k.lower(): v for k, v in (event.get("headers") or {}).items()}.get("x-api-key"))
        return service(event, context)

    srv = start_server(recording, port=0, max_body_bytes=4_500_000)
    srv.seen_keys = seen_keys
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("client_images")
    out = {}
    for name, fmt in (("a.png", "PNG"), ("b.jpg", "JPEG"), ("c.bmp", "BMP")):
        out[name] = folder / name
        out[name].write_bytes(image_bytes(80, 64, fmt=fmt, seed=len(out)))
    (folder / "notes.txt").write_text("not an image")
    out["notes.txt"] = folder / "notes.txt"
    return out


@pytest.fixture(scope="module")
def file_server(images):
    """A plain static HTTP server, to classify URLs (downloaded by the client, never by the API)."""
    folder = images["a.png"].parent
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_route_url_accepts_stage_urls_and_full_routes():
    assert route_url("https://abc.execute-api.eu-west-1.amazonaws.com/prod", "predict") == \
        "https://abc.execute-api.eu-west-1.amazonaws.com/prod/predict"
    assert route_url("https://h/prod/predict", "health") == "https://h/prod/health"
    assert route_url("http://127.0.0.1:8080/", "predict") == "http://127.0.0.1:8080/predict"
    with pytest.raises(ClientFailure):
        route_url("ftp://h", "predict")


def test_encode_request_sends_png_and_jpeg_raw_and_others_as_json():
    assert encode_request(image_bytes())[1] == "image/png"
    assert encode_request(image_bytes(fmt="JPEG"))[1] == "image/jpeg"
    body, ctype = encode_request(image_bytes(fmt="BMP"))
    assert ctype == "application/json" and set(json.loads(body)) == {"image"}


def test_predict_table_for_files_and_urls(api, images, file_server):
    out = run_module("classifier.client", "predict", str(images["a.png"]), str(images["b.jpg"]),
                     str(images["c.bmp"]), f"{file_server}/a.png", "--endpoint", api.url)
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert rows[0].split() == ["input", "label", "normal", "benign", "malignant"]
    body = [r for r in rows[2:] if r.strip()][:4]
    assert len(body) == 4 and all(r.split()[1] in ("normal", "benign", "malignant") for r in body)
    assert body[0].split()[1:] == body[3].split()[1:]  # the file and its URL: same image, same answer
    assert "Research use only" in out.stdout


def test_predict_json_output_and_api_key(api, images):
    out = run_module("classifier.client", "predict", str(images["a.png"]), "--endpoint", api.url, "--json",
                     "--api-key", "secret-key-1")
    assert out.returncode == 0, out.stderr
    (result,) = json.loads(out.stdout)
    assert result["ok"] is True and result["input"] == str(images["a.png"])
    assert sum(result["probabilities"].values()) == pytest.approx(1.0)
    assert api.seen_keys[-1] == "secret-key-1"


def test_failures_are_reported_per_input_and_exit_1(api, images, file_server):
    out = run_module("classifier.client", "predict", str(images["notes.txt"]), "missing.png",
                     f"{file_server}/absent.png", str(images["a.png"]), "--endpoint", api.url, "--json")
    assert out.returncode == 1
    results = json.loads(out.stdout)
    assert [r["ok"] for r in results] == [False, False, False, True]
    assert results[0]["error"]["status"] == 400 and results[0]["error"]["code"] == "not_an_image"
    assert "no such file" in results[1]["error"]["message"]
    assert "HTTP 404" in results[2]["error"]["message"]
    assert "3 of 4 input(s) failed" in out.stderr


def test_unreachable_endpoint_and_bad_endpoint(images):
    out = run_module("classifier.client", "predict", str(images["a.png"]), "--endpoint", "http://127.0.0.1:9")
    assert out.returncode == 1 and "cannot reach http://127.0.0.1:9/predict" in out.stdout
    bad = run_module("classifier.client", "predict", str(images["a.png"]), "--endpoint", "localhost:8080")
    assert bad.returncode == 2 and "is not an http(s) URL" in bad.stderr


def test_health_and_help(api):
    out = run_module("classifier.client", "health", "--endpoint", api.url)
    assert out.returncode == 0 and json.loads(out.stdout)["status"] == "ok"
    helped = run_module("classifier.client", "predict", "--help")
    assert helped.returncode == 0 and "IMG_OR_URL" in helped.stdout and "--api-key" in helped.stdout


# -- the demo -----------------------------------------------------------------------------------------

def test_demo_classifies_the_examples_over_http(tiny_model_dir):
    out = run_module("classifier.demo", "--model", str(tiny_model_dir), "--examples", str(EXAMPLES))
    assert out.returncode == 0, out.stderr
    for name in ("normal", "benign", "malignant"):
        row = next(line for line in out.stdout.splitlines() if f"{name}.png" in line)
        assert row.split()[1] == name  # the known label column
        assert row.split()[2] in ("normal", "benign", "malignant")
    assert "3/3 answered" in out.stdout
    assert "HTTP 400 not_an_image" in out.stdout
    assert re.search(r"The page to try the model in a browser: http://127\.0\.0\.1:\d+/ ", out.stdout)
    assert out.stdout.rstrip().endswith("not for diagnosis or clinical decisions.")
    assert out.stderr == "", out.stderr  # no LiteRT XNNPACK INFO line, no request log: only the table


def test_demo_without_a_model_says_how_to_get_one(tmp_path):
    out = run_module("classifier.demo", "--model", str(tmp_path), "--examples", str(EXAMPLES))
    assert out.returncode == 2 and "make train" in out.stderr


def test_demo_on_the_bundled_model():
    if not (BUNDLED / "model.tflite").is_file():
        pytest.skip("lambda_src/model has no bundled model (git checkout -- lambda_src/model restores it)")
    out = run_module("classifier.demo", "--model", str(BUNDLED), "--examples", str(EXAMPLES))
    assert out.returncode == 0, out.stderr
    assert "3/3 answered" in out.stdout
