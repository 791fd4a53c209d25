"""The image needs nothing but lambda_src/requirements.txt: a fresh venv from exactly that file runs the handler,
and so does the task root the Dockerfile builds (pip install --target, then lambda_src/prune_site.py).

Also checks that the pinned requirements resolve to wheels for the image's
Python (3.12) on both Lambda architectures, as `pip install` in the Dockerfile will.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from bench import sizes
from classifier.engine import Engine

REPO = Path(__file__).resolve().parents[2]
CONTEXT = REPO / "lambda_src"
BUNDLED_MODEL = CONTEXT / "model"

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent('''
    import base64, importlib.util, json, sys
    for heavy in ("tensorflow", "keras", "model_training"):
        assert importlib.util.find_spec(heavy) is None, heavy + " is importable in the clean venv"
    from classifier.handler import lambda_handler, default_service
    from classifier.lambda_context import LocalContext
    assert default_service()._engine is not None, "the model was not loaded at import (init phase)"
    png = open(sys.argv[1], "rb").read()
    b64 = base64.b64encode(png).decode()
    dcm = base64.b64encode(open(sys.argv[1] + ".dcm", "rb").read()).decode()  # the same pixels as DICOM
    events = {
        "raw": {"httpMethod": "POST", "path": "/predict", "resource": "/predict",
                "headers": {"content-type": "image/png"}, "body": b64, "isBase64Encoded": True,
                "requestContext": {"requestId": "clean-venv-1"}},
        "json": {"httpMethod": "POST", "path": "/predict", "resource": "/predict",
                 "headers": {"Content-Type": "application/json"}, "body": json.dumps({"image": b64}),
                 "isBase64Encoded": False, "requestContext": {"requestId": "clean-venv-2"}},
        "dicom": {"httpMethod": "POST", "path": "/predict", "resource": "/predict",
                  "headers": {"Content-Type": "application/dicom"}, "body": dcm, "isBase64Encoded": True,
                  "requestContext": {"requestId": "clean-venv-5"}},
        "health": {"httpMethod": "GET", "path": "/health", "resource": "/health", "headers": {},
                   "body": None, "isBase64Encoded": False, "requestContext": {"requestId": "clean-venv-3"}},
        "bad": {"httpMethod": "POST", "path": "/predict", "resource": "/predict",
                "headers": {"Content-Type": "image/png"}, "body": base64.b64encode(b"nope").decode(),
                "isBase64Encoded": True, "requestContext": {"requestId": "clean-venv-4"}},
    }
    out = {}
    for name, event in events.items():
        r = lambda_handler(event, LocalContext())
        out[name] = {"status": r["statusCode"], "body": json.loads(r["body"])}
    out["files"] = {m: sys.modules[m].__file__ for m in ("numpy", "PIL", "ai_edge_litert", "aws_lambda_powertools",
                                                          "pydicom")}
    print("RESULT " + json.dumps(out))
''')


def _dockerfile_env(task_root: Path) -> dict[str, str]:
    text = re.sub(r"\\\n", " ", (CONTEXT / "Dockerfile").read_text())
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for key, value in re.findall(r"([A-Z_]+)=(\S+)", line):
                env[key] = value.replace("${LAMBDA_TASK_ROOT}", str(task_root))
    return env


def _task_root(tmp_path: Path, model_dir: Path, task: Path | None = None) -> tuple[Path, Path]:
    """$LAMBDA_TASK_ROOT as the Dockerfile lays it out (classifier/ and model/ side by side), and a PNG."""
    task = task or tmp_path / "task"
    from tests.serving.test_image_build import dockerignore_excludes

    # classifier/ as the image gets it: what lambda_src/.dockerignore leaves in (no local tools)
    shutil.copytree(CONTEXT / "classifier", task / "classifier",
                    ignore=lambda folder, names: [n for n in names if n in ("__pycache__",) or n.endswith(".pyc") or
                                                  dockerignore_excludes(str((Path(folder) / n).relative_to(CONTEXT)))])
    # Of model/, the image gets only these two (lambda_src/.dockerignore).
    shutil.copytree(model_dir, task / "model",
                    ignore=lambda _dir, names: [n for n in names if n not in ("model.tflite", "model.json")])
    png = tmp_path / "us.png"
    shutil.copy(REPO / "examples" / "benign.png", png)
    from PIL import Image

    from bench.dicom_factory import dicom  # the same RGB pixels as a native DICOM file, beside the PNG

    Path(str(png) + ".dcm").write_bytes(dicom(np.asarray(Image.open(png).convert("RGB"))))
    return task, png


def _handler_env(tmp_path: Path, task: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LAMBDA_TASK_ROOT": str(task),
            "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001", "PYTHONNOUSERSITE": "1", "PYTHONPATH": str(task),
            "POWERTOOLS_METRICS_DISABLED": "true", **_dockerfile_env(task)}


def _serve_events(python: list[str], task: Path, env: dict[str, str], png: Path) -> dict:
    """Run SCRIPT (the four API Gateway events) with `python`; check the answers; return them."""
    run = subprocess.run([*python, "-c", SCRIPT, str(png)], capture_output=True, text=True, timeout=120,
                         cwd=str(task), env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (line,) = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
    out = json.loads(line[len("RESULT "):])
    for name in ("raw", "json"):
        assert out[name]["status"] == 200
        probs = out[name]["body"]["probabilities"]
        assert set(probs) == {"normal", "benign", "malignant"} and sum(probs.values()) == pytest.approx(1.0)
    assert out["raw"]["body"] == out["json"]["body"]
    assert out["dicom"]["status"] == 200, out["dicom"]
    assert out["dicom"]["body"]["probabilities"] == pytest.approx(out["raw"]["body"]["probabilities"], abs=1e-9)
    assert out["health"]["status"] == 200 and out["health"]["body"]["status"] == "ok"
    assert (out["bad"]["status"], out["bad"]["body"]["error"]["code"]) == (400, "not_an_image")
    return out


def test_handler_runs_in_a_venv_built_from_the_image_requirements(tmp_path, tiny_model_dir):
    start = time.monotonic()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    pip = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                          "-r", str(CONTEXT / "requirements.txt")], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    install_s = time.monotonic() - start

    task, png = _task_root(tmp_path, tiny_model_dir)
    env = _handler_env(tmp_path, task)
    _serve_events([str(py)], task, env, png)

    # `make demo` runs in exactly such a venv (from the source tree: the image leaves the local tools out): the
    # demo, local API and client need nothing more either.
    demo_env = {k: v for k, v in env.items() if k != "AWS_LAMBDA_RUNTIME_API"} | {"PYTHONPATH": str(CONTEXT)}
    demo = subprocess.run([str(py), "-m", "classifier.demo", "--model", str(task / "model"),
                           "--examples", str(REPO / "examples")], capture_output=True, text=True, timeout=120,
                          cwd=str(REPO), env=demo_env)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "3/3 answered" in demo.stdout
    print(f"clean venv: install {install_s:.0f} s, total {time.monotonic() - start:.0f} s")


def test_handler_serves_from_the_pruned_task_root_the_image_ships(tmp_path, request):
    """The Dockerfile's two steps (pip install --target, prune_site.py) via the code `make bench` measures
    with, then the handler on that task root alone, with the bundled model: same answer as the full install."""
    start = time.monotonic()
    task = tmp_path / "task"
    built = sizes.install_lambda_deps(task, sys.executable)  # the same two commands the Dockerfile runs
    saved = built["installed"]["total_bytes"] - built["shipped"]["total_bytes"]
    assert saved >= sum(r["bytes"] for r in built["rules"]) * 0.99 and saved > 30e6, built["rules"]
    assert not (task / "ai_edge_litert" / "libLiteRtWebGpuAccelerator.so").exists()
    install_s = time.monotonic() - start

    # The model that ships (its ops, not just the tiny model's); the tiny one only where it is absent.
    model_dir = (BUNDLED_MODEL if (BUNDLED_MODEL / "model.tflite").is_file()
                 else request.getfixturevalue("tiny_model_dir"))
    _, png = _task_root(tmp_path, model_dir, task=task)
    # -S: no site-packages (this venv's full numpy/LiteRT stay out); only the task root, as on Lambda.
    out = _serve_events([sys.executable, "-S"], task, _handler_env(tmp_path, task), png)
    for module, path in out["files"].items():
        assert Path(path).is_relative_to(task), f"{module} came from {path}, not the pruned task root"

    # Pruning changed no number: the full install in this venv gives the same probabilities.
    expected = Engine(model_dir).predict_bytes(png.read_bytes())
    assert out["raw"]["body"]["probabilities"] == pytest.approx(expected, abs=1e-6)
    print(f"pruned task root: {built['installed']['total_bytes'] / 1e6:.1f} -> "
          f"{built['shipped']['total_bytes'] / 1e6:.1f} MB; install + prune {install_s:.0f} s, "
          f"total {time.monotonic() - start:.0f} s")


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_image_wheels_install_and_prune_on_both_lambda_architectures(tmp_path, arch):
    """pip's own resolver, for Python 3.12 on manylinux (glibc 2.34 in the image), binary wheels only, as the
    image gets them; then prune_site.py for that architecture (its rules must hold there too: the aarch64
    LiteRT wheel ships no NPU tools). Nothing here runs the aarch64 code: this machine is x86_64."""
    platforms = [f"--platform=manylinux_2_{minor}_{arch}" for minor in range(17, 35)] + [f"--platform=manylinux2014_{arch}"]
    report, site = tmp_path / "report.json", tmp_path / "task"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--ignore-installed",
                           "--disable-pip-version-check", "--only-binary=:all:", "--python-version=3.12",
                           *platforms, "--target", str(site), "--report", str(report),
                           "-r", str(CONTEXT / "requirements.txt")], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and ("Could not fetch" in proc.stderr or "NewConnectionError" in proc.stderr):
        pytest.skip(f"no package index reachable: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheels = [item["download_info"]["url"].rsplit("/", 1)[-1] for item in json.loads(report.read_text())["install"]]
    litert = [w for w in wheels if w.startswith("ai_edge_litert-")]
    assert litert and "cp312" in litert[0] and arch in litert[0]

    pruned = tmp_path / "pruned.json"
    prune = subprocess.run([sys.executable, str(sizes.PRUNE_SCRIPT), str(site), "--machine", arch,
                            "--report", str(pruned)], capture_output=True, text=True, timeout=120)
    assert prune.returncode == 0, prune.stdout[-2000:] + prune.stderr[-2000:]
    result = json.loads(pruned.read_text())
    assert result["saved_bytes"] > 30e6 and not (site / "ai_edge_litert" / "libLiteRtWebGpuAccelerator.so").exists()
    print(f"{arch}: {result['before_bytes'] / 1e6:.1f} -> {result['after_bytes'] / 1e6:.1f} MB")
