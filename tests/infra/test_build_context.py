"""Synth fails fast, with a clear message, when the image cannot be built; infra stays off the Python packages."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.build_context import BuildContextError, check_build_context
from tests.infra.conftest import REPO, copy_lambda_src


@pytest.mark.parametrize("missing", ["model.tflite", "model.json"])
def test_a_missing_model_file_is_named(tmp_path, tiny_model_dir, missing):
    src = copy_lambda_src(tmp_path / "lambda_src", tiny_model_dir)
    (src / "model" / missing).unlink()
    with pytest.raises(BuildContextError) as err:
        check_build_context(src)
    assert f"model/{missing}" in str(err.value)
    assert "make train" in str(err.value)


def test_a_complete_context_reports_the_model(tmp_path, tiny_model_dir):
    src = copy_lambda_src(tmp_path / "lambda_src", tiny_model_dir)
    card = json.loads((src / "model" / "model.json").read_text())
    found = check_build_context(src)
    assert found.model_version == card["version"]
    assert found.disclaimer == card["disclaimer"]


def test_a_missing_dockerfile_or_directory_is_named(tmp_path, tiny_model_dir):
    with pytest.raises(BuildContextError, match="does not exist"):
        check_build_context(tmp_path / "nowhere")
    src = copy_lambda_src(tmp_path / "lambda_src", tiny_model_dir)
    (src / "Dockerfile").unlink()
    with pytest.raises(BuildContextError, match="Dockerfile"):
        check_build_context(src)


def _run_app(tmp_path: Path, context: dict) -> subprocess.CompletedProcess:
    # As the CDK CLI runs it: context in CDK_CONTEXT_JSON, output folder in CDK_OUTDIR.
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(tmp_path / "cdk.out"),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    return subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_app_exits_with_one_clear_line_when_the_model_is_missing(tmp_path):
    src = copy_lambda_src(tmp_path / "lambda_src", None)  # no model at all
    result = _run_app(tmp_path, {"lambdaSrc": str(src)})
    assert result.returncode == 1
    assert "error: the bundled model is incomplete" in result.stderr
    assert "model/model.tflite" in result.stderr and "model/model.json" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cdk.out" / "BusiClassifier.template.json").exists()


@pytest.mark.slow
def test_app_exits_with_one_clear_line_on_a_bad_setting(tmp_path):
    result = _run_app(tmp_path, {"memoryMb": "lots"})
    assert result.returncode == 1
    assert "error: cdk.json context 'memoryMb' must be an integer" in result.stderr
    assert "Traceback" not in result.stderr


def test_infra_imports_neither_python_package():
    # infra only needs the path of lambda_src/ and the presence of the model files.
    forbidden = {"classifier", "model_training", "tensorflow", "keras"}
    for path in [*sorted((REPO / "infra").glob("*.py")), REPO / "app.py"]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
