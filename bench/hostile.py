"""`--only hostile`: issue 10's hostile-image corpus (bench/hostile_corpus.py) through the real
lambda_handler, one fresh child process per input, against the request budget: decode + inference
<= 2 s and peak RSS <= 400 MB above the idle process.

`--only overhead`: the local API's own cost, HTTP p50 minus in-process p50 on the same image
(goal <= 3 ms).

Each child loads the model, answers one ordinary request (so lazy imports and first-call costs are
paid), then resets its peak-RSS counter (Linux ``/proc/self/clear_refs``), reads its RSS (the idle
process), answers the hostile request and reports wall time and the peak above idle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .stats import summarize

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 2.0
BUDGET_MB = 400.0
OVERHEAD_GOAL_MS = 3.0
RESULT_PREFIX = "BENCH_HOSTILE_RESULT "


def run(*, model_dir: Path, warm_image: bytes, timeout_s: float = 120.0) -> dict:
    sys.path.insert(0, str(REPO))
    from . import hostile_corpus as hostile

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        warm_path = Path(tmp) / "warm.png"
        warm_path.write_bytes(warm_image)
        for case in hostile.CORPUS:
            data = case.build()
            path = Path(tmp) / "case.bin"
            path.write_bytes(data)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "lambda_src"), str(REPO)]),
                       POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="WARNING")
            row = {"name": case.name, "bytes": len(data), "expected_status": case.status,
                   "expected_code": case.code}
            try:
                proc = subprocess.run([sys.executable, "-m", "bench.hostile", str(model_dir), str(warm_path),
                                       case.name, str(path)], cwd=REPO, env=env, capture_output=True, text=True,
                                      timeout=timeout_s)
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)), None)
                if line is None:
                    row["error"] = f"child exited {proc.returncode}: {proc.stderr[-500:]}"
                else:
                    row.update(json.loads(line[len(RESULT_PREFIX):]))
            except subprocess.TimeoutExpired:
                row["error"] = f"no answer within {timeout_s:.0f} s"
            # A decodable frame may still be refused by the model's input check (synthetic checkerboards
            # and textures are not ultrasound): that answer also proves the decode stayed in budget.
            accepted = {(case.status, case.code)} | ({(422, "not_ultrasound")} if case.status == 200 else set())
            row["as_expected"] = (row.get("status"), row.get("code")) in accepted
            row["within_budget"] = (row.get("wall_s") is not None and row["wall_s"] <= BUDGET_S
                                    and row.get("peak_growth_mb") is not None
                                    and row["peak_growth_mb"] <= BUDGET_MB)
            rows.append(row)
            print(f"  hostile {case.name}: {row.get('status')} {row.get('code') or row.get('label') or ''} "
                  f"{row.get('wall_s')} s, +{row.get('peak_growth_mb')} MB"
                  + ("" if row["as_expected"] else " UNEXPECTED") + (f" {row['error']}" if "error" in row else ""),
                  file=sys.stderr)
    answered = [r for r in rows if "wall_s" in r]
    return {
        "budget": {"wall_s": BUDGET_S, "peak_rss_growth_mb": BUDGET_MB},
        "cases": rows,
        "n": len(rows),
        "max_wall_s": max((r["wall_s"] for r in answered), default=None),
        "max_peak_growth_mb": max((r["peak_growth_mb"] for r in answered), default=None),
        "server_errors": sum(1 for r in rows if (r.get("status") or 500) >= 500),
        "labels_for_refused": sum(1 for r in rows if r.get("expected_status") != 200 and r.get("status") == 200),
        "unexpected": [r["name"] for r in rows if not r["as_expected"]],
        "over_budget": [r["name"] for r in rows if not r["within_budget"]],
        "method": "one child process per input; wall time of the lambda_handler call; peak RSS (VmHWM, reset "
                  "after a warm-up request) minus the RSS just before the call",
    }


def run_overhead(*, model_dir: Path, images: list[tuple[str, bytes]], log_dir: Path, requests: int = 400) -> dict:
    """HTTP (one connection per request, as curl) vs in-process, the same images, interleaved blocks."""
    from .api_load import local_api, request
    from .serving import LambdaContext, load_handler, rest_event

    handler = load_handler(model_dir)
    payloads = [data for _, data in images[:10]]
    events = [rest_event(data, content_type="image/png") for data in payloads]
    for ev in events:
        handler(ev, LambdaContext())
    inproc, http, paired = [], [], []
    with local_api(model_dir, log_dir=log_dir) as server:
        for data in payloads:
            request(server.port, "POST", "/predict", data, {"Content-Type": "image/png"})
        for i in range(requests):  # alternate one in-process call and one HTTP request: the same load for both
            data = payloads[i % len(payloads)]
            t0 = time.perf_counter()
            handler(rest_event(data, content_type="image/png"), LambdaContext())
            t1 = time.perf_counter()
            status, _ = request(server.port, "POST", "/predict", data, {"Content-Type": "image/png"})
            t2 = time.perf_counter()
            assert status == 200, status
            inproc.append(t1 - t0)
            http.append(t2 - t1)
            paired.append((t2 - t1) - (t1 - t0))
    a, b = summarize(inproc), summarize(http)
    out = {"in_process": a, "http": b, "overhead_p50_ms": round(b["p50_ms"] - a["p50_ms"], 3),
           "paired_median_ms": round(float(np.median(paired)) * 1000, 3), "goal_ms": OVERHEAD_GOAL_MS,
           "method": "same images, one in-process call (building the proxy event included) then one HTTP request "
                     "(a new connection each, as curl) to `python -m classifier.local_api`, alternated; the goal is "
                     "judged on the difference of the p50s; paired_median_ms is the median of per-pair differences"}
    print(f"  local API overhead p50: {out['overhead_p50_ms']} ms (HTTP {b['p50_ms']} vs in-process {a['p50_ms']}; "
          f"paired median {out['paired_median_ms']} ms)",
          file=sys.stderr)
    return out


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _child(model_dir: str, warm_path: str, name: str, case_path: str) -> None:
    import gc

    sys.path.insert(0, str(REPO))
    from . import hostile_corpus as hostile

    from .serving import LambdaContext, load_handler, rest_event

    case = next(k for k in hostile.CORPUS if k.name == name)
    handler = load_handler(Path(model_dir))
    warm = handler(rest_event(Path(warm_path).read_bytes(), content_type="image/png"), LambdaContext())
    assert warm["statusCode"] == 200, warm
    event = hostile.event(case, Path(case_path).read_bytes())
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := VmRSS
    idle = _status_kb("VmRSS")
    t0 = time.perf_counter()
    resp = handler(event, LambdaContext())
    wall = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    body = json.loads(resp["body"])
    sys.stdout.write(RESULT_PREFIX + json.dumps({
        "status": resp["statusCode"], "code": (body.get("error") or {}).get("code"), "label": body.get("label"),
        "wall_s": round(wall, 3), "idle_rss_mb": round(idle / 1024, 1),
        "peak_growth_mb": round((peak - idle) / 1024, 1)}) + "\n")


if __name__ == "__main__":
    _child(*sys.argv[1:5])
