"""bench/sizes.py's dependency measurement without PyPI: cache key, installed vs shipped, how results.md shows it.

The real install + prune (pip, lambda_src/prune_site.py) runs in tests/serving/test_clean_venv.py
through the same sizes.install_lambda_deps.
"""

from __future__ import annotations

import sys

from bench import report, sizes


def _fake_build(calls: list):
    def build(site, python):
        calls.append((site, python))
        return {"installed": {"total_bytes": 162_500_000, "largest": [{"name": "numpy", "mb": 68.3}],
                              "pyc_mb": 18.6, "tests_mb": 14.5},
                "shipped": {"total_bytes": 112_800_000, "largest": [{"name": "numpy", "mb": 52.4}],
                            "pyc_mb": 10.3, "tests_mb": 0.3},
                "rules": [{"pattern": "ai_edge_litert/libLiteRtWebGpuAccelerator.so", "paths": 1,
                           "bytes": 18_900_000, "reason": "no GPU"}]}
    return build


def test_deps_are_remeasured_when_the_requirements_or_the_prune_script_change(tmp_path, monkeypatch):
    requirements, script = tmp_path / "requirements.txt", tmp_path / "prune_site.py"
    requirements.write_text("numpy==2.4.6\n")
    script.write_text("RULES = ()\n")
    calls: list = []
    monkeypatch.setattr(sizes, "LAMBDA_REQUIREMENTS", requirements)
    monkeypatch.setattr(sizes, "PRUNE_SCRIPT", script)
    monkeypatch.setattr(sizes, "install_lambda_deps", _fake_build(calls))
    cache = tmp_path / "cache"

    first = sizes.lambda_deps(cache, sys.executable)
    assert not first["cached"] and len(calls) == 1
    assert (first["total_mb"], first["installed_mb"], first["pruned_mb"]) == (112.8, 162.5, 49.7)
    assert first["largest"] == [{"name": "numpy", "mb": 52.4}]  # of the tree that ships
    assert first["pruned"] == [{"pattern": "ai_edge_litert/libLiteRtWebGpuAccelerator.so", "mb": 18.9,
                                "reason": "no GPU"}]
    assert sizes.lambda_deps(cache, sys.executable)["cached"] and len(calls) == 1

    script.write_text("RULES = ('one more',)\n")
    assert not sizes.lambda_deps(cache, sys.executable)["cached"] and len(calls) == 2
    requirements.write_text("numpy==2.4.7\n")
    assert not sizes.lambda_deps(cache, sys.executable)["cached"] and len(calls) == 3


def test_the_goal_is_judged_on_the_shipped_size_and_both_sizes_are_shown(tmp_path, monkeypatch):
    monkeypatch.setattr(sizes, "install_lambda_deps", _fake_build([]))
    deps = sizes.lambda_deps(tmp_path / "cache", sys.executable)
    results = {"sizes": {"lambda_deps": deps, "model_files": [],
                         "image_estimate": {"base_mb": 560.0, "deps_mb": deps["total_mb"], "model_dir_mb": 30.5,
                                            "code_mb": 0.1, "total_mb": 703.4, "method": "estimate"}}}
    (row,) = [r for r in report.goals(results) if "dependencies" in r["goal"]]
    assert row["met"] is True and row["measured"].startswith("112.8 MB as shipped (162.5 MB installed")
    text = report.markdown(results)
    assert "| Lambda dependencies as installed (`pip install --target`, Python" in text and "| 162.5 |" in text
    assert "| -49.7 |" in text and "| **Lambda dependencies as shipped** | **112.8** |" in text
    assert "`ai_edge_litert/libLiteRtWebGpuAccelerator.so` 18.9" in text

    # A shipped size over 150 MB is a miss, whatever the installed size was.
    over = {"sizes": {"lambda_deps": deps | {"total_mb": 150.1}}}
    assert [r["met"] for r in report.goals(over) if "dependencies" in r["goal"]] == [False]
