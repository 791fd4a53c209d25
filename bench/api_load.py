"""Local API under load: a real server process on loopback, N client threads, latency and errors.

Also used by tests/robustness (the soak and concurrency tests), so the
benchmark and the tests drive the server the same way.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .stats import summarize

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only, always


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
    """One HTTP request on its own connection (as curl does); returns (status, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@contextlib.contextmanager
def local_api(model_dir: Path, *, log_dir: Path, python: str = sys.executable,
              startup_timeout: float = 90.0) -> Iterator[Server]:
    """Start ``python -m classifier.local_api`` on a free loopback port; stop it on exit."""
    port = free_port()
    log_path = Path(log_dir) / f"local_api_{port}.log"
    env = dict(os.environ, PYTHONPATH=str(REPO / "lambda_src"), PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            # --verbose: the handler logs and emits metrics per request as it does in Lambda (into the log file)
            [python, "-m", "classifier.local_api", "--model", str(model_dir), "--port", str(port), "--verbose"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    server = Server(proc, port, log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"local API exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                status, _ = request(port, "GET", "/health", timeout=2.0)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"local API did not answer /health within {startup_timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    wall_s: float
    durations: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    exceptions: list[str] = field(default_factory=list)
    unexpected: list[tuple[int, int]] = field(default_factory=list)  # (payload index, status) not as expected
    bodies: list[tuple[int, bytes]] = field(default_factory=list)  # (payload index, body), when kept

    @property
    def errors(self) -> int:
        """Responses whose status was not the expected one (200 unless told), or no response at all."""
        return len(self.unexpected) + len(self.exceptions)

    def summary(self) -> dict:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "wall_s": round(self.wall_s, 3),
            "requests_per_s": round(self.requests / self.wall_s, 1) if self.wall_s else None,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "exceptions": self.exceptions[:5],
            "unexpected": self.unexpected[:5],
            "latency": summarize(self.durations),
        }


def generate_load(port: int, payloads: list[tuple[bytes, str]], *, requests: int, concurrency: int,
                  expected: list[int] | None = None, keep_bodies: bool = False,
                  timeout: float = 60.0) -> LoadResult:
    """``requests`` POST /predict calls from ``concurrency`` threads, payloads used round-robin.

    ``expected[i]`` is the status payload ``i`` must get (default 200); any other counts as an error.
    """
    counter = iter(range(requests))
    lock = threading.Lock()
    result = LoadResult(concurrency, requests, 0.0)

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            k = i % len(payloads)
            body, ctype = payloads[k]
            t0 = time.perf_counter()
            try:
                status, data = request(port, "POST", "/predict", body, {"Content-Type": ctype}, timeout)
            except Exception as exc:  # a refused or reset connection is an error to count, not to raise
                with lock:
                    result.exceptions.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - t0
            with lock:
                result.durations.append(elapsed)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if status != (expected[k] if expected else 200):
                    result.unexpected.append((k, status))
                if keep_bodies:
                    result.bodies.append((k, data))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.wall_s = time.perf_counter() - t0
    return result


def run(*, model_dir: Path, images: list[tuple[str, bytes]], log_dir: Path,
        levels: dict[int, int]) -> dict:
    """Requests/s and latency at each concurrency level (``{concurrency: requests}``)."""
    import psutil

    payloads = [(data, "image/png") for _, data in images]
    out: dict = {"levels": [], "transport": "HTTP/1.1 over loopback, one connection per request"}
    with local_api(model_dir, log_dir=log_dir) as server:
        generate_load(server.port, payloads, requests=20, concurrency=2)  # warm-up
        rss0 = psutil.Process(server.pid).memory_info().rss
        for concurrency, n in levels.items():
            res = generate_load(server.port, payloads, requests=n, concurrency=concurrency)
            out["levels"].append(res.summary())
            print(f"  local API c={concurrency}: {res.requests / res.wall_s:.1f} req/s, "
                  f"p50 {out['levels'][-1]['latency'].get('p50_ms')} ms, errors {res.errors}", file=sys.stderr)
        rss1 = psutil.Process(server.pid).memory_info().rss
    out["server_rss_mb"] = {"after_warmup": round(rss0 / 2**20, 1), "end": round(rss1 / 2**20, 1)}
    return out


def parse_json(body: bytes) -> dict:
    return json.loads(body.decode("utf-8"))
