"""`--only batch`: local batch scoring (classifier.batch) with 1 process and with one per CPU on the shared BUSI
folder, and the cloud batch's wall time and cost for 100,000 images by the arithmetic in docs/batch.md.

The cloud figures are arithmetic, not a measurement (there is no AWS account here): list prices (us-east-1,
x86, as published by AWS in 2026) and the per-image time measured here with one process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

#: List prices, us-east-1 (USD).
LAMBDA_GB_S = 0.0000166667  # x86, per GB-second (first pricing tier)
LAMBDA_REQUEST = 0.20 / 1_000_000
SFN_TRANSITION = 0.025 / 1000  # Standard workflows
S3_GET = 0.0004 / 1000
S3_LIST_PUT = 0.005 / 1000
#: Assumptions of the estimate (each stated in docs/batch.md).
LAMBDA_SLOWDOWN = 1.5  # a 2048 MB Lambda (~1.16 vCPU) against one core of this machine: assume 1.5x slower
S3_GET_S = 0.040  # per object, overlapped 8 at a time in the handler
TRANSITIONS_PER_CHILD = 3  # the Task state, its result, and a retry's worth of margin
COLD_START_S = 6.0  # image pull + init of a fresh container (once per concurrent container)
CHILD_OVERHEAD_S = 1.0  # Step Functions starting and closing one child execution
LIST_PAGE = 1000  # keys per ListObjectsV2 page


def cloud_estimate(*, images: int = 100_000, per_image_s: float, items_per_batch: int = 50,
                   concurrency: int = 40, memory_mb: int = 2048, read_threads: int = 8,
                   count_uploads: bool = True) -> dict:
    """Wall time and cost of one batch run at the stack's defaults, from the per-image time measured locally."""
    batches = -(-images // items_per_batch)
    lambda_per_image = per_image_s * LAMBDA_SLOWDOWN
    batch_s = items_per_batch * lambda_per_image + (items_per_batch / read_threads) * S3_GET_S
    waves = -(-batches // concurrency)
    wall_s = COLD_START_S + waves * (batch_s + CHILD_OVERHEAD_S) + (images / LIST_PAGE) * 0.05
    gb_s = batches * batch_s * memory_mb / 1024 + concurrency * COLD_START_S * memory_mb / 1024
    cost = {
        "lambda_compute": gb_s * LAMBDA_GB_S,
        "lambda_requests": batches * LAMBDA_REQUEST,
        "step_functions": (batches * TRANSITIONS_PER_CHILD + 5) * SFN_TRANSITION,
        "s3_get": images * S3_GET,
        "s3_list_and_results": (images / LIST_PAGE + 20) * S3_LIST_PUT,
    }
    if count_uploads:
        cost["s3_uploads"] = images * S3_LIST_PUT
    return {
        "images": images, "batches": batches, "items_per_batch": items_per_batch, "concurrency": concurrency,
        "memory_mb": memory_mb, "per_image_s_local": round(per_image_s, 5), "batch_s": round(batch_s, 2),
        "wall_min": round(wall_s / 60, 2), "cost_usd": {k: round(v, 4) for k, v in cost.items()},
        "total_usd": round(sum(cost.values()), 3),
        "total_without_uploads_usd": round(sum(v for k, v in cost.items() if k != "s3_uploads"), 3),
    }


def run(*, model_dir: Path, data: Path, processes: int | None = None, repeats: int = 3) -> dict:
    """``repeats`` runs per process count, alternating; the best run of each is reported (other jobs on a shared
    machine only ever slow a run down), every run is kept in ``all_images_per_s``."""
    from classifier import batch

    if not data.is_dir():
        return {"skipped": f"{data} is absent"}
    n_cpu = processes or batch.default_processes()
    out: dict = {"data": str(data), "cpus": n_cpu, "repeats": repeats, "runs": {}}
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        for rep in range(repeats):
            for n in sorted({1, n_cpu}):
                t0 = time.perf_counter()
                summary = batch.run(data, tmp / f"p{n}-{rep}.csv", model_dir=model_dir, processes=n, progress=False)
                this = {"images": summary["scored_now"], "errors": sum(summary["errors"].values()),
                        "images_per_s": summary["images_per_s"],
                        "images_per_s_after_first": summary["images_per_s_after_first"],
                        "wall_s": round(time.perf_counter() - t0, 2), "load_avg_1m": round(os.getloadavg()[0], 2)}
                best = out["runs"].get(str(n))
                if best is None or (this["images_per_s"] or 0) > (best["images_per_s"] or 0):
                    out["runs"][str(n)] = {**this, "all_images_per_s": (best or {}).get("all_images_per_s", [])}
                out["runs"][str(n)]["all_images_per_s"].append(this["images_per_s"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    one = out["runs"]["1"]["images_per_s"]
    best = out["runs"][str(n_cpu)]["images_per_s"]
    out["speedup"] = round(best / one, 2) if one else None
    out["images_per_s"] = best
    out["load_avg_1m"] = os.getloadavg()[0]
    out["cloud_100k"] = cloud_estimate(per_image_s=1.0 / out["runs"]["1"]["images_per_s_after_first"])
    return out
