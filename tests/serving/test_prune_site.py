"""lambda_src/prune_site.py on small fake trees (the real install is pruned and served in test_clean_venv.py),
and the Dockerfile running it in the install's layer."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.test_image_build import CONTEXT, dockerignore_excludes, instructions

SCRIPT = CONTEXT / "prune_site.py"
_spec = importlib.util.spec_from_file_location("prune_site", SCRIPT)
prune_site = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("prune_site", prune_site)  # dataclasses look their module up there
_spec.loader.exec_module(prune_site)
Rule, PruneError = prune_site.Rule, prune_site.PruneError

RULES = (
    Rule(pattern="pkg/gpu.so", reason="not loaded"),
    Rule(pattern="pkg/**/tests", reason="test suites"),
    Rule(pattern="pkg/tool", reason="a build tool that holds a tests/ too"),
    Rule(pattern="bin", reason="scripts", strict=False),
)
REQUIRED = ("pkg/core.so", "pkg/testing/__init__.py")


def _tree(root: Path) -> Path:
    files = {"pkg/gpu.so": 1000, "pkg/core.so": 300, "pkg/tests/test_a.py": 40, "pkg/sub/tests/data/x.bin": 60,
             "pkg/sub/tests/tests/y.py": 7, "pkg/tool/main.py": 20, "pkg/tool/tests/t.py": 5,
             "pkg/testing/__init__.py": 3}
    for rel, size in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * size)
    return root


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_prune_deletes_the_matches_counts_each_byte_once_and_keeps_the_rest(tmp_path):
    root = _tree(tmp_path / "site")
    lines = []
    result = prune_site.prune(root, rules=RULES, required=REQUIRED, log=lines.append)
    assert _files(root) == {"pkg/core.so", "pkg/testing/__init__.py"}
    assert (result["before_bytes"], result["after_bytes"], result["saved_bytes"]) == (1435, 303, 1132)
    by_rule = {r["pattern"]: (r["paths"], r["bytes"]) for r in result["rules"]}
    # Nested tests/ inside tests/ is one path; pkg/tool/tests is the tests rule's, not counted again for pkg/tool.
    assert by_rule == {"pkg/gpu.so": (1, 1000), "pkg/**/tests": (3, 112), "pkg/tool": (1, 20), "bin": (0, 0)}
    assert any("pkg/gpu.so" in ln and "not loaded" in ln for ln in lines)
    assert lines[-1].startswith("saved ")


def test_dry_run_reports_the_same_savings_and_deletes_nothing(tmp_path):
    root = _tree(tmp_path / "site")
    before = _files(root)
    result = prune_site.prune(root, rules=RULES, required=REQUIRED, dry_run=True, log=lambda _: None)
    assert _files(root) == before
    assert (result["saved_bytes"], result["after_bytes"]) == (1132, 303)


def test_a_strict_rule_that_matches_nothing_fails_before_anything_is_deleted(tmp_path):
    root = _tree(tmp_path / "site")
    (root / "pkg" / "gpu.so").unlink()  # as if an upgrade had moved the accelerator
    before = _files(root)
    with pytest.raises(PruneError, match=r"strict rules match nothing.*Re-check.*pkg/gpu\.so"):
        prune_site.prune(root, rules=RULES, required=REQUIRED, log=lambda _: None)
    assert _files(root) == before
    # The same tree passes once the only miss is a non-strict rule.
    prune_site.prune(root, rules=RULES[1:], required=REQUIRED, log=lambda _: None)


def test_a_rule_that_would_delete_a_required_file_fails_before_anything_is_deleted(tmp_path):
    root = _tree(tmp_path / "site")
    before = _files(root)
    too_broad = (*RULES, Rule(pattern="pkg/test*", reason="meant tests/, also hits testing/"))
    with pytest.raises(PruneError, match=r"required files would be missing.*pkg/testing/__init__\.py"):
        prune_site.prune(root, rules=too_broad, required=REQUIRED, log=lambda _: None)
    assert _files(root) == before


@pytest.mark.parametrize("pattern", ["../outside", "/etc"])
def test_rules_cannot_reach_outside_the_target(tmp_path, pattern):
    root = _tree(tmp_path / "site")
    with pytest.raises(PruneError, match="inside the target"):
        prune_site.prune(root, rules=(Rule(pattern=pattern, reason="bad"),), required=(), log=lambda _: None)


def test_cli_exit_codes_and_messages(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)

    assert cli("--help").returncode == 0
    missing = cli(str(tmp_path / "nope"))
    assert missing.returncode == 1 and "is not a folder" in missing.stderr
    # A tree without the real packages: every strict rule misses, nothing is deleted, exit 1.
    root = _tree(tmp_path / "site")
    proc = cli(str(root))
    assert proc.returncode == 1 and "libLiteRtWebGpuAccelerator.so" in proc.stderr, proc.stderr
    assert (root / "pkg" / "gpu.so").is_file()
    assert cli().returncode == 2


def test_every_real_rule_says_why_and_spares_the_required_files():
    assert prune_site.RULES and all(r.reason.strip() and r.pattern.strip() for r in prune_site.RULES)
    assert len({r.pattern for r in prune_site.RULES}) == len(prune_site.RULES)
    for rule in prune_site.RULES:
        for required in prune_site.REQUIRED:
            assert not required.startswith(rule.pattern.rstrip("*") + "/"), (rule.pattern, required)


def test_dockerfile_prunes_in_the_same_layer_as_the_install():
    runs = [args for word, args in instructions() if word == "RUN" and "pip install" in args]
    assert len(runs) == 1
    (run,) = runs
    install = run.index("pip install")
    assert run.index('prune_site.py "${LAMBDA_TASK_ROOT}"') > install and '--target "${LAMBDA_TASK_ROOT}"' in run
    assert "&&" in run and ";" not in run  # a failed prune fails the build
    copies = [args.split() for word, args in instructions() if word == "COPY"]
    assert any("prune_site.py" in c[:-1] for c in copies)
    assert not dockerignore_excludes("prune_site.py")


def test_a_rule_for_files_only_some_architectures_ship_is_strict_only_there(tmp_path):
    root = _tree(tmp_path / "site")
    rules = (*RULES, Rule(pattern="pkg/npu_tool", reason="x86_64 wheel only", shipped_on=("x86_64",)))
    before = _files(root)
    with pytest.raises(PruneError, match=r"\(x86_64\).*pkg/npu_tool"):
        prune_site.prune(root, rules=rules, required=REQUIRED, machine="x86_64", log=lambda _: None)
    assert _files(root) == before
    result = prune_site.prune(root, rules=rules, required=REQUIRED, machine="aarch64", log=lambda _: None)
    assert result["saved_bytes"] == 1132
