"""The local API over real HTTP: real curl, raw sockets with hostile input, the `python -m` entry point."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from classifier.handler import create_service
from classifier.lambda_context import LocalContext
from classifier.local_api import start_server, stop_server
from classifier.settings import Settings
from tests.serving.events import image_bytes, multipart_body, predict_raw

REPO = Path(__file__).resolve().parents[2]
LIMIT = 300_000  # a small body limit keeps the 413 tests fast

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs the curl command")


@pytest.fixture(scope="module")
def service(tiny_model_dir):
    return create_service(Settings(model_dir=tiny_model_dir, log_level="WARNING", metrics_enabled=False,
                                   max_body_bytes=LIMIT))


@pytest.fixture(scope="module")
def server(service):
    srv = start_server(service, port=0, max_body_bytes=LIMIT)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def png_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "us.png"
    path.write_bytes(image_bytes(96, 72, seed=21))
    return path


def curl(*args: str, timeout: float = 30) -> tuple[int, dict, str]:
    """Run curl; returns (HTTP status, parsed JSON body or {}, raw body)."""
    proc = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args],
                          capture_output=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    raw, _, code = proc.stdout.decode("utf-8", errors="replace").rpartition("\n")
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {}
    return int(code), body, raw


def direct(service, data: bytes, content_type: str = "image/png") -> dict:
    return json.loads(service(predict_raw(data, content_type), LocalContext())["body"])


def test_curl_raw_png_matches_the_handler(server, service, png_file):
    status, body, _ = curl("-X", "POST", f"{server.url}/predict", "-H", "Content-Type: image/png",
                           "--data-binary", f"@{png_file}")
    assert status == 200
    assert body == direct(service, png_file.read_bytes())


def test_curl_multipart_form(server, service, png_file):
    status, body, _ = curl("-X", "POST", f"{server.url}/predict", "-F", f"image=@{png_file}", "-F", "note=hi")
    assert status == 200
    assert body["probabilities"] == direct(service, png_file.read_bytes())["probabilities"]


def test_curl_json_base64(server, service, png_file, tmp_path):
    doc = tmp_path / "req.json"
    doc.write_text(json.dumps({"image": base64.b64encode(png_file.read_bytes()).decode()}))
    status, body, _ = curl(f"{server.url}/predict", "-H", "Content-Type: application/json", "-d", f"@{doc}")
    assert status == 200
    assert body["probabilities"] == direct(service, png_file.read_bytes())["probabilities"]


def test_curl_raw_jpeg_and_chunked_upload(server, service, tmp_path):
    jpg = tmp_path / "us.jpg"
    jpg.write_bytes(image_bytes(90, 90, fmt="JPEG"))
    status, body, _ = curl("-X", "POST", f"{server.url}/predict", "-H", "Content-Type: image/jpeg",
                           "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{jpg}")
    assert status == 200
    assert body == direct(service, jpg.read_bytes(), "image/jpeg")


@pytest.mark.parametrize("args, status, code", [
    (["-X", "GET", "/predict"], 405, "method_not_allowed"),
    (["-X", "POST", "/health"], 405, "method_not_allowed"),
    (["-X", "GET", "/nowhere"], 404, "not_found"),
    (["-X", "POST", "/predict", "-H", "Content-Type: text/plain", "--data-binary", "hello"], 415,
     "unsupported_media_type"),
    (["-X", "POST", "/predict", "--data-binary", "a=b"], 415, "unsupported_media_type"),  # curl's form default
    (["-X", "POST", "/predict", "-H", "Content-Type: image/png", "--data-binary", "not a png"], 400, "not_an_image"),
    (["-X", "POST", "/predict", "-H", "Content-Type: application/json", "-d", '{"image": "**"}'], 400,
     "invalid_base64"),
    (["-X", "POST", "/predict", "-H", "Content-Type: image/png"], 400, "malformed_body"),
])
def test_curl_errors(server, args, status, code):
    url_args = [f"{server.url}{a}" if a.startswith("/") else a for a in args]
    got, body, _ = curl(*url_args)
    assert (got, body["error"]["code"]) == (status, code)


def test_curl_health(server):
    status, body, _ = curl(f"{server.url}/health")
    assert status == 200 and body["status"] == "ok" and body["model"]["labels"] == ["normal", "benign", "malignant"]


@pytest.mark.parametrize("expect", [[], ["-H", "Expect:"]], ids=["expect-100", "no-expect"])
def test_curl_oversized_body_is_413_and_server_survives(server, tmp_path, expect):
    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(LIMIT + 1))
    status, body, _ = curl("-X", "POST", f"{server.url}/predict", "-H", "Content-Type: image/png", *expect,
                           "--data-binary", f"@{big}")
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert curl(f"{server.url}/health")[0] == 200


def test_events_match_what_api_gateway_sends(tiny_model_dir):
    """Binary media types arrive base64-encoded, others as text; headers, query and request id are there."""
    seen: list[dict] = []

    def recorder(event, context):
        seen.append(event)
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}

    srv = start_server(recorder, port=0, max_body_bytes=LIMIT)
    try:
        png = image_bytes()
        form, form_type = multipart_body([("image", "a.png", png)])
        cases = [("image/png", png, True), ("image/jpeg", b"\xff\xd8\xff raw", True),
                 (form_type, form, True), ("application/json", b'{"image": "x"}', False)]
        for ctype, data, binary in cases:
            proc = subprocess.run(["curl", "-sS", "-X", "POST", f"{srv.url}/predict?a=1&a=2&b=3",
                                   "-H", f"Content-Type: {ctype}", "-H", "X-Api-Key: k", "--data-binary", "@-"],
                                  input=data, capture_output=True, timeout=10, check=True)
            assert proc.stdout == b"{}"
            event = seen[-1]
            assert event["isBase64Encoded"] is binary
            decoded = base64.b64decode(event["body"]) if binary else event["body"].encode()
            assert decoded == data
            assert event["httpMethod"] == "POST" and event["path"] == "/predict"
            assert event["headers"]["X-Api-Key"] == "k"
            assert event["queryStringParameters"] == {"a": "2", "b": "3"}
            assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["3"]}
            assert event["requestContext"]["requestId"] and event["requestContext"]["stage"] == "local"
        curl(f"{srv.url}/health")
        assert seen[-1]["body"] is None and seen[-1]["isBase64Encoded"] is False
    finally:
        stop_server(srv)


def _raw_exchange(server, payload: bytes, *, read: bool = True) -> bytes:
    host, port = server.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        if not read:
            return b""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize("payload, expect", [
    (b"\x00\xff garbage \r\n\r\n", b'{"error": {"code": "bad_request"'),  # read as HTTP/0.9: no status line
    (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n", b"HTTP/1.1 431 "),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: -5\r\n\r\n", b"HTTP/1.1 400 "),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: lots\r\n\r\n", b"HTTP/1.1 400 "),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 99999999999\r\n\r\n", b"HTTP/1.1 413 "),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"HTTP/1.1 400 "),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\nshort", b""),
    (b"BREW /predict HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 405 "),  # any method: 405 on a known path
    (b"TRACE /health HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 405 "),
    (b"TRACE /nope HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 404 "),
    # strict framing: digits-only Content-Length, hex-only chunk sizes, only the chunked coding
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1_0\r\n\r\n0123456789", b"HTTP/1.1 400 "),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: +10\r\n\r\n0123456789", b"HTTP/1.1 400 "),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n0123456789", b"HTTP/1.1 400 "),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n", b"HTTP/1.1 400 "),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", b"HTTP/1.1 400 "),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", b"HTTP/1.1 400 "),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n", b"HTTP/1.1 400 "),
    (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n", b"HTTP/1.1 400 "),
    (b"GET /health HTTP/1.1\r\n" + b"H: v\r\n" * 200 + b"\r\n", b"HTTP/1.1 431 "),
])
def test_hostile_bytes_never_kill_the_server(server, payload, expect):
    answer = _raw_exchange(server, payload)
    if expect:
        assert expect in answer[:400], answer[:400]
    else:
        assert answer == b""  # the client lied about its length and hung up: nobody to answer
    assert curl(f"{server.url}/health")[0] == 200


def test_head_is_405_without_a_body(server):
    proc = subprocess.run(["curl", "-sS", "-I", f"{server.url}/health"], capture_output=True, timeout=10, check=True)
    assert proc.stdout.startswith(b"HTTP/1.1 405")


def test_keep_alive_connection_serves_several_requests(server, png_file):
    status_line = re.compile(rb"HTTP/1.1 (\d{3})")
    proc = subprocess.run(["curl", "-sS", "-i", f"{server.url}/health", f"{server.url}/health",
                           "-X", "GET"], capture_output=True, timeout=10, check=True)
    assert status_line.findall(proc.stdout) == [b"200", b"200"]


def test_concurrent_http_requests(server, service):
    import concurrent.futures
    import urllib.request

    images = [image_bytes(70 + i, 60, seed=i) for i in range(6)]
    expected = [direct(service, d) for d in images]

    def post(i):
        req = urllib.request.Request(f"{server.url}/predict", data=images[i], method="POST",
                                     headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        got = list(pool.map(post, list(range(6)) * 3))
    assert got == expected * 3


def _python_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "lambda_src"), env.get("PYTHONPATH", "")])
    env["POWERTOOLS_METRICS_DISABLED"] = "true"
    return env


class _Entry:
    """`python -m classifier.local_api ARGS` on a free port: its URL from the start-up line, its output
    (stdout, stderr) once stopped."""

    def __init__(self, model_dir: Path, *args: str):
        env = {**_python_env(), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "classifier.local_api", "--model", str(model_dir),
                                      "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, text=True)
        self.url, self.head = None, []
        deadline = time.monotonic() + 60
        while self.url is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            self.head.append(line)
            match = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
            self.url = match.group(1) if match else None
        if self.url is None:
            self.stop()
            raise AssertionError("the server did not report its address: " + "".join(self.head))

    def stop(self) -> tuple[str, str]:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        # read() through the text wrappers (communicate() would skip what readline() buffered), then close them
        with self.proc.stdout as out, self.proc.stderr as err:
            return out.read(), "".join(self.head) + err.read()


def _requests(url: str, png_file: Path) -> None:
    assert curl(f"{url}/health")[0] == 200
    assert curl("-X", "POST", f"{url}/predict?note=secret", "-H", "Content-Type: image/png",
                "--data-binary", f"@{png_file}")[0] == 200
    assert curl("-X", "POST", f"{url}/predict", "-H", "Content-Type: image/png", "--data-binary", "not a png")[0] == 400


#: The line per request: method, path (no query), status, milliseconds.
REQUEST_LINE = re.compile(r"(GET|POST) (/\S*) (\d{3}) \d+\.\d ms")


def test_module_entry_point_prints_one_line_per_request(tiny_model_dir, png_file):
    entry = _Entry(tiny_model_dir)
    try:
        _requests(entry.url, png_file)
    finally:
        out, err = entry.stop()
    lines = [line for line in err.splitlines() if REQUEST_LINE.fullmatch(line)]
    assert [REQUEST_LINE.fullmatch(line).group(1, 2, 3) for line in lines] == [
        ("GET", "/health", "200"), ("POST", "/predict", "200"), ("POST", "/predict", "400")]
    assert "secret" not in err and "127.0.0.1 " not in err.replace(entry.url, "")  # no query, no client address
    assert out == ""  # the handler's JSON logs and metrics need --verbose
    after_start = err.split("the page to try it:", 1)[1].splitlines()[1:]
    assert after_start and all(REQUEST_LINE.fullmatch(line) for line in after_start), err


def test_module_entry_point_verbose_adds_the_json_logs(tiny_model_dir, png_file):
    entry = _Entry(tiny_model_dir, "--verbose")
    try:
        _requests(entry.url, png_file)
    finally:
        out, err = entry.stop()
    assert len([line for line in err.splitlines() if REQUEST_LINE.fullmatch(line)]) == 3
    records = [json.loads(line) for line in out.splitlines() if line.startswith('{"level"')]
    assert [r["message"] for r in records if r["message"] == "request"] == ["request"] * 3
    assert any(r["message"] == "model loaded" for r in records)
    assert [(r["method"], r["path"], r["status"]) for r in records if r["message"] == "request"] == [
        ("GET", "/health", 200), ("POST", "/predict", 200), ("POST", "/predict", 400)]


def test_module_entry_point_quiet_prints_nothing_per_request(tiny_model_dir, png_file):
    entry = _Entry(tiny_model_dir, "--quiet")
    try:
        _requests(entry.url, png_file)
    finally:
        out, err = entry.stop()
    assert out == "" and not REQUEST_LINE.search(err), err
    assert err.split("the page to try it:", 1)[1].count("\n") == 1  # the start-up lines, then nothing
    assert "XNNPACK" not in err  # LiteRT's INFO line while the interpreter is built is dropped (not with --verbose)


def test_missing_model_is_refused(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "classifier.local_api", "--model", str(tmp_path / "none"),
                              "--port", "0"], capture_output=True, text=True, timeout=60, env=_python_env())
    assert missing.returncode == 2
    assert "cannot serve" in missing.stderr and "model.json" in missing.stderr


def test_the_line_per_request_covers_the_server_s_own_refusals(tiny_model_dir, capsys):
    """In-process: a bad request line and an oversized body get their line too, with the reason;
    a control character from the client is escaped."""
    srv = start_server(lambda event, context: {"statusCode": 204, "body": ""}, port=0, max_body_bytes=LIMIT,
                       quiet=False)
    try:
        _raw_exchange(srv, b"GET / HTTP/9.9\r\n\r\n")
        _raw_exchange(srv, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
        _raw_exchange(srv, b"DELETE /x\x1b[31m?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    finally:
        stop_server(srv)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    assert re.fullmatch(r"- - 505 \d+\.\d ms \(Invalid HTTP version \(9\.9\)\)", lines[0]), lines[0]
    assert re.fullmatch(r"POST /predict 413 \d+\.\d ms \(the request body is over the 300,000-byte limit\)", lines[1])
    assert re.fullmatch(r"DELETE /x\\x1b\[31m 204 \d+\.\d ms", lines[2]), lines[2]  # no terminal escapes


def test_help(tiny_model_dir):
    out = subprocess.run([sys.executable, "-m", "classifier.local_api", "--help"], capture_output=True,
                         text=True, timeout=60, env=_python_env())
    assert out.returncode == 0 and "--model" in out.stdout and "--threads" in out.stdout
    text = " ".join(out.stdout.split())
    assert "--quiet" in text and "--verbose" in text and "POST /predict 200 14.2 ms" in text


def test_every_json_body_ends_with_a_newline(server, png_file):
    """So `curl` output ends cleanly: the handler's bodies and the server's own refusals alike."""
    raws = [curl(f"{server.url}/health")[2], curl(f"{server.url}/nowhere")[2],
            curl("-X", "POST", f"{server.url}/predict", "-H", "Content-Type: image/png",
                 "--data-binary", f"@{png_file}")[2]]
    for request in (b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
                    b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1_0\r\n\r\n0123456789"):
        head, _, body = _raw_exchange(server, request).partition(b"\r\n\r\n")
        assert f"Content-Length: {len(body)}".encode() in head
        raws.append(body.decode())
    for raw in raws:
        assert raw.endswith("\n") and "\n" not in raw[:-1], raw
        json.loads(raw)
