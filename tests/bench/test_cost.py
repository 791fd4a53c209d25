"""The cost table (bench/cost.py): its arithmetic by hand on made-up measurements, and its refusals."""

from __future__ import annotations

import pytest

from bench import cost


def _results(p50=10.0, p99=20.0, rss=300.0, growth=100.0):
    return {"inference": {"ours_binary": {"p50_ms": p50, "p99_ms": p99}}, "cold_start": {"peak_rss_mb_median": rss},
            "hostile": {"max_peak_growth_mb": growth}}


def test_the_arithmetic_is_the_documented_one():
    table = cost.table(_results(), stack_memory_mb=2048, timeout_s=10)
    rows = {r["memory_mb"]: r for r in table["rows"]}
    # 1024 MB: CPU share 1024/1769, so 10 ms here -> 10 x 1.5 x 1769/1024 = 25.9 ms, billed 26 ms.
    assert rows[1024]["p50_ms"] == pytest.approx(25.9, abs=0.05)
    assert rows[1024]["x86_per_million_usd"] == pytest.approx(1e6 * (1.0 * 0.026 * 0.0000166667 + 0.2e-6), abs=1e-3)
    # at and above one vCPU the time no longer falls; 2048 MB bills 15 ms at 2 GB
    assert rows[1769]["p50_ms"] == rows[2048]["p50_ms"] == rows[3008]["p50_ms"] == 15.0
    assert rows[2048]["x86_per_million_usd"] == pytest.approx(1e6 * (2.0 * 0.015 * 0.0000166667 + 0.2e-6), abs=1e-3)
    assert all(r["arm64_per_million_usd"] < r["x86_per_million_usd"] for r in rows.values())
    # memory needed (300 + 100) x 1.25 = 500 MB: 512 MB fits; every size under one vCPU costs about the same,
    # so the fastest of those (1769 MB) is recommended and 2048 MB is dearer for no speed
    assert table["inputs"]["memory_needed_mb"] == 500 and rows[512]["fits"]
    assert table["recommended_memory_mb"] == 1769
    assert table["stack_x86_per_million_usd"] > table["recommended_x86_per_million_usd"]


def test_memory_and_timeout_rule_sizes_out():
    table = cost.table(_results(rss=700.0, growth=300.0), stack_memory_mb=2048, timeout_s=10)
    assert [r["memory_mb"] for r in table["rows"] if not r["fits"]] == [512, 768, 1024]  # need 1250 MB
    slow = cost.table(_results(p50=2000.0, p99=4000.0), stack_memory_mb=2048, timeout_s=10)
    assert not {r["memory_mb"]: r for r in slow["rows"]}[512]["fits"]  # p99 4 s x 1.5 x 3.45 > 10 s


def test_without_its_measurements_there_is_no_table():
    table = cost.table({"inference": {}}, stack_memory_mb=2048, timeout_s=10)
    assert not table["available"] and "inference p50/p99" in table["reason"]
    assert "Not available" in "\n".join(cost.markdown(table))
    text = "\n".join(cost.markdown(cost.table(_results(), stack_memory_mb=2048, timeout_s=10)))
    assert "| **1769** |" in text and "API Gateway (REST) adds" in text


def test_the_goal_holds_only_when_its_inputs_were_measured_in_this_run():
    from bench import report

    results = _results()
    results["cost"] = cost.table(results, stack_memory_mb=2048, timeout_s=10)
    row = lambda res: next(r for r in report.goals(res) if r["goal"].startswith("cost per million"))  # noqa: E731
    assert row(results)["met"] is True and "1769 MB" in row(results)["measured"]
    results["meta"] = {"carried_over": ["inference (from 2026-11-29T00:00:00Z)"]}
    assert row(results)["met"] is False and "inputs carried over: inference" in row(results)["measured"]
    assert row({})["met"] is None
