"""`make bench` machinery on the tiny model: sections run end to end, goals are judged, the README table is replaced.

The full benchmark (94 MB baseline, a fresh venv from PyPI) is not run here;
each piece it is made of is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import baseline, report
from bench.serving import json_event
from tests.model_factory import build_tiny_model, png_bytes

REPO = Path(__file__).resolve().parents[2]


def _results(p50: float, ratio: float, cold: float, rps: float, errors: int, deps: float) -> dict:
    return {
        "inference": {"ours_binary": {"p50_ms": p50}, "ours_json": {"p50_ms": p50}, "baseline": {"p50_ms": p50 * ratio},
                      "speedup_p50": ratio},
        "cold_start": {"median_s": cold, "process_wall_median_s": cold + 0.05},
        "local_api": {"levels": [{"concurrency": 4, "requests": 100, "requests_per_s": rps, "errors": errors}]},
        "training": {"available": True, "total_wall_s": 600.0, "peak_memory_mb": 4000},
        "sizes": {"lambda_deps": {"total_mb": deps}},
    }


def test_goals_met_and_missed_are_reported_as_such():
    met = {r["goal"]: r["met"] for r in report.goals(_results(8.0, 25.0, 0.3, 150.0, 0, 120.0))}
    measured = {g: m for g, m in met.items() if m is not None}
    assert len(measured) == 6 and all(measured.values()), met  # hostile and overhead: not in these results
    missed = report.goals(_results(12.0, 9.0, 0.7, 80.0, 0, 166.0))
    # drift and cost: not run
    assert [r["met"] for r in missed] == [False, False, False, False, True, None, None, False, None, None]
    assert report.goals_table(_results(12.0, 9.0, 0.7, 150.0, 3, 166.0)).count("**NO**") == 5  # 3 errors: a miss


def test_hostile_and_overhead_goals():
    hostile = {"n": 2, "budget": {"wall_s": 2.0, "peak_rss_growth_mb": 400.0}, "max_wall_s": 0.5,
               "max_peak_growth_mb": 300.0, "server_errors": 0, "labels_for_refused": 0, "unexpected": [],
               "over_budget": []}
    overhead = {"overhead_p50_ms": 1.5, "goal_ms": 3.0, "http": {"p50_ms": 14.5}, "in_process": {"p50_ms": 13.0}}
    rows = {r["goal"].split(" ")[0]: r["met"] for r in report.goals({"hostile": hostile, "api_overhead": overhead})}
    assert rows["hostile-image"] is True and rows["local"] is True
    rows = report.goals({"hostile": {**hostile, "over_budget": ["x"]}, "api_overhead": {**overhead, "overhead_p50_ms": 4}})
    assert [r["met"] for r in rows if r["goal"].startswith(("hostile", "local API's"))] == [False, False]
    assert "Hostile images" in report.markdown({"hostile": {**hostile, "cases": [
        {"name": "x", "bytes": 10, "expected_status": 400, "expected_code": "corrupt_image", "status": 400,
         "code": "corrupt_image", "wall_s": 0.01, "peak_growth_mb": 1.0, "as_expected": True}]}})


def test_drift_metrics_goal_reads_the_mean_and_the_p99():
    drift = {"goal_ms": 0.2, "record": {"mean_ms": 0.02, "p99_ms": 0.08, "calls": 100},
             "handler": {"on_p50_ms": 10.1, "off_p50_ms": 10.0}}
    row = lambda res: next(r for r in report.goals(res) if r["goal"].startswith("drift metrics"))  # noqa: E731
    assert row({"drift_metrics": drift})["met"] is True
    assert row({"drift_metrics": {**drift, "record": {**drift["record"], "p99_ms": 0.3}}})["met"] is False
    assert row({})["met"] is None


def test_unmeasured_goals_say_so():
    rows = report.goals({})
    assert {r["met"] for r in rows} == {None}
    assert "not measured" in report.goals_table({})


def test_readme_table_is_replaced_between_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\nbefore\n{report.TABLE_START}\nold table\n{report.TABLE_END}\nafter\n")
    assert report.update_readme(readme, _results(8.0, 25.0, 0.3, 150.0, 0, 120.0))
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# Title\nbefore\n") and text.endswith("after\n")
    assert "| goal | target | measured | met? |" in text
    (tmp_path / "plain.md").write_text("no markers\n")
    assert not report.update_readme(tmp_path / "plain.md", {})
    # make bench updates docs/benchmarks.md: the results.md link is relative to the file updated
    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "benchmarks.md"
    doc.write_text(f"{report.TABLE_START}\n{report.TABLE_END}\n")
    assert report.update_readme(doc, {}, tmp_path / "bench" / "results.md")
    assert "[bench/results.md](../bench/results.md)" in doc.read_text()


def test_original_path_baseline_answers_like_the_old_service(tmp_path):
    """The baseline request function runs the old pipeline (here on a 224-input stand-in for ResNet50)."""
    model = build_tiny_model(tmp_path / "m224", input_size=224)
    resp = baseline.original_handler(json_event(png_bytes(300, 250)), model / "model.tflite")
    body = json.loads(resp["body"])
    assert resp["statusCode"] == 200 and set(body) == set(baseline.LABELS)
    assert all(v.endswith("%") for v in body.values())  # percentages as strings, as the old API did
    assert abs(sum(float(v[:-1]) for v in body.values()) - 100) < 0.1


@pytest.mark.slow
def test_bench_runs_its_sections_on_the_tiny_model(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--model", str(tiny_model_dir), "--data", str(tmp_path / "no-data"),
         "--out", str(out), "--cache", str(tmp_path / "cache"), "--only", "cold", "api", "training", "--quick"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert "generated" in results["meta"]["images"]  # no BUSI folder: generated images
    assert results["cold_start"]["first_status"] == [200] and 0 < results["cold_start"]["median_s"] < 30
    levels = results["local_api"]["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 4, 16]
    assert all(lv["errors"] == 0 and lv["requests_per_s"] > 0 for lv in levels), levels
    assert results["training"]["available"] is False  # the tiny model's card records no training run
    md = (out / "results.md").read_text()
    assert "| goal | target | measured | met? |" in md and "Local API" in md
