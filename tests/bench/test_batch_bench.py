"""The batch bench section: local runs on a generated labelled folder, the cloud arithmetic, its goal rows."""

from __future__ import annotations

import pytest

from bench import batch as batch_bench
from bench import report
from tests.batch.conftest import make_folder


def test_cloud_arithmetic_at_the_defaults():
    est = batch_bench.cloud_estimate(per_image_s=0.015)
    assert est["batches"] == 2000 and est["concurrency"] == 40
    # 2000 batches of 50 x (15 ms x 1.5 + 40 ms / 8) = 1.375 s each, 50 waves of 40 (+1 s per child), + cold start
    assert est["batch_s"] == pytest.approx(1.375, abs=0.01)
    assert est["wall_min"] == pytest.approx((6 + 50 * 2.375 + 5) / 60, abs=0.02)
    assert est["cost_usd"]["step_functions"] == pytest.approx((2000 * 3 + 5) * 0.025 / 1000, rel=1e-3)
    assert est["cost_usd"]["s3_get"] == pytest.approx(0.04)
    assert est["total_usd"] <= 2 and est["wall_min"] <= 15
    slower = batch_bench.cloud_estimate(per_image_s=0.030)
    assert slower["cost_usd"]["lambda_compute"] > 1.5 * est["cost_usd"]["lambda_compute"]
    assert batch_bench.cloud_estimate(per_image_s=0.015, count_uploads=False)["total_usd"] == est[
        "total_without_uploads_usd"]


def test_run_and_goal_rows(tmp_path, tiny_model_dir):
    make_folder(tmp_path / "data", n_per_class=2)
    result = batch_bench.run(model_dir=tiny_model_dir, data=tmp_path / "data", processes=2, repeats=2)
    assert set(result["runs"]) == {"1", "2"} and result["runs"]["2"]["images"] == 8
    assert len(result["runs"]["2"]["all_images_per_s"]) == 2
    assert result["runs"]["2"]["images_per_s"] == max(result["runs"]["2"]["all_images_per_s"])
    assert result["runs"]["1"]["errors"] == 2 and result["speedup"] > 0
    rows = {r["goal"]: r for r in report.goals({"batch": result})}
    assert any(g.startswith("local batch images/s") for g in rows)
    cloud = next(r for g, r in rows.items() if g.startswith("cloud batch"))
    assert cloud["met"] is True
    assert batch_bench.run(model_dir=tiny_model_dir, data=tmp_path / "absent") == {"skipped": f"{tmp_path / 'absent'} is absent"}
