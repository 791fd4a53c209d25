"""Cold start: a NEW process doing import + model load + first prediction, median of several."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from ._cold_child import RESULT_PREFIX

REPO = Path(__file__).resolve().parents[1]


def run(*, model_dir: Path, image: bytes, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        image_path = Path(tmp) / "cold.png"
        image_path.write_bytes(image)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "lambda_src")]))
        inside, wall, statuses, rss = [], [], [], []
        for _ in tqdm(range(repeats), desc="cold start", unit="proc", leave=False):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "bench._cold_child", str(model_dir), str(image_path)],
                capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
            )
            wall.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise RuntimeError(f"cold-start child failed:\n{proc.stderr[-3000:]}")
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)), None)
            if line is None:
                raise RuntimeError(f"cold-start child printed no result:\n{proc.stdout[-2000:]}")
            out = json.loads(line[len(RESULT_PREFIX):])
            inside.append(out["total_s"])
            statuses.append(out["status"])
            rss.append(out["peak_rss_mb"])
    return {
        "repeats": repeats,
        "median_s": round(statistics.median(inside), 3),
        "min_s": round(min(inside), 3),
        "max_s": round(max(inside), 3),
        "process_wall_median_s": round(statistics.median(wall), 3),
        "first_status": sorted(set(statuses)),
        "peak_rss_mb_median": round(statistics.median(rss), 1),  # the process after its first prediction
        "python": sys.executable,
        "note": "median_s: from the first line of our code (stdlib only imported) to the first response; "
        "process_wall adds the Python interpreter's own start-up. Model file read from a warm page cache. "
        "peak_rss_mb_median: the child's peak RSS after its first prediction (the cost table's memory floor).",
    }
