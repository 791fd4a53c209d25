"""Sizes: model files, the Lambda's Python dependencies (lambda_src/requirements.txt installed alone and
pruned by lambda_src/prune_site.py, as the Dockerfile does), the image."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAMBDA_REQUIREMENTS = REPO / "lambda_src" / "requirements.txt"
PRUNE_SCRIPT = REPO / "lambda_src" / "prune_site.py"
#: Not measured here (no Docker engine, no registry access): the approximate
#: uncompressed size of public.ecr.aws/lambda/python:3.12 (Amazon Linux 2023,
#: Python, the runtime interface client, boto3). Override with --base-image-mb.
BASE_IMAGE_MB_ASSUMED = 560.0
_INSTALLER_DIRS = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "wheel")


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())


def _mb(n: int | float) -> float:
    return round(n / 1e6, 1)


def model_files(model_dir: Path, extra_dirs: list[Path]) -> list[dict]:
    """Every .tflite in the bundled model folder and the training outputs, with its dtype from model.json."""
    rows, seen = [], set()
    for folder in [model_dir, *extra_dirs]:
        for path in sorted(Path(folder).rglob("*.tflite")) if Path(folder).is_dir() else []:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            card = path.with_name("model.json")
            dtype = ""
            if card.is_file() and path.name == "model.tflite":
                dtype = json.loads(card.read_text()).get("input_dtype", "")
            rows.append({"path": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
                         "mb": _mb(path.stat().st_size), "input_dtype": dtype})
    return rows


def _installer(path: Path, site: Path) -> bool:
    return path.relative_to(site).parts[0].split("-")[0] in _INSTALLER_DIRS


def default_deps_python() -> str:
    """The Lambda image's Python (3.12) when this machine has a working one, else the running one."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which("python3.12"), *sorted(map(str, pyenv.glob("versions/3.12*/bin/python3.12")))]
    for exe in filter(None, candidates):
        # A pyenv shim is on PATH even when no 3.12 is selected, and then fails: try it.
        if subprocess.run([exe, "-c", "pass"], capture_output=True, timeout=30).returncode == 0:
            return exe
    return sys.executable


def _python_version(python: str) -> str:
    return subprocess.run([python, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _measure(site: Path) -> dict:
    """Bytes per top-level package (pip's own tools left out), compiled .pyc and test code, in one tree."""
    packages: dict[str, int] = {}
    for entry in site.iterdir():
        if entry.name.split("-")[0] in _INSTALLER_DIRS or entry.name == "__pycache__":
            continue
        size = tree_bytes(entry) if entry.is_dir() else entry.stat().st_size
        key = entry.name.split("-")[0].lower().removesuffix(".libs")
        key = {"pil": "pillow"}.get(key, key)  # Pillow installs PIL/ and pillow.libs/
        packages[key] = packages.get(key, 0) + size
    files = [p for p in site.rglob("*") if p.is_file() and not p.is_symlink() and not _installer(p, site)]
    top = sorted(packages.items(), key=lambda kv: -kv[1])
    return {
        "total_bytes": sum(packages.values()),
        "largest": [{"name": k, "mb": _mb(v)} for k, v in top[:6]],
        "pyc_mb": _mb(sum(p.stat().st_size for p in files if p.suffix == ".pyc")),
        "tests_mb": _mb(sum(p.stat().st_size for p in files
                            if {"tests", "testing"} & set(p.relative_to(site).parts[1:-1]))),
    }


def install_lambda_deps(site: Path, python: str) -> dict:
    """Build the Lambda's dependency tree as lambda_src/Dockerfile does: ``pip install --target`` of
    lambda_src/requirements.txt, then lambda_src/prune_site.py on it (same command line).

    Returns the measurements before and after pruning and what each prune rule removed.
    Raises RuntimeError when either step fails (prune_site.py's message included).
    """
    site = Path(site)
    proc = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(site),
         "-r", str(LAMBDA_REQUIREMENTS)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install -r {LAMBDA_REQUIREMENTS} failed:\n{proc.stderr[-3000:]}")
    installed = _measure(site)
    report = site.parent / f"{site.name}.prune.json"
    proc = subprocess.run([python, str(PRUNE_SCRIPT), str(site), "--report", str(report)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{PRUNE_SCRIPT.name} failed on the fresh install:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    pruned = json.loads(report.read_text())
    report.unlink()
    return {"installed": installed, "shipped": _measure(site), "rules": pruned["rules"]}


def lambda_deps(cache_dir: Path, python: str) -> dict:
    """Measure the Lambda's Python dependencies as the image gets them: installed, then pruned.

    Cached by the hashes of the requirements and of the prune script, and the Python version:
    the install downloads ~60 MB of wheels.
    """
    version = _python_version(python)
    digest = hashlib.sha256(LAMBDA_REQUIREMENTS.read_bytes()).hexdigest()[:16]
    prune_digest = hashlib.sha256(PRUNE_SCRIPT.read_bytes()).hexdigest()[:16]
    cache = Path(cache_dir) / f"lambda_deps_{digest}_prune_{prune_digest}_py{version}.json"
    if cache.is_file():
        return json.loads(cache.read_text()) | {"cached": True}
    print(f"measuring the Lambda dependencies: pip install --target with {python} (Python {version}), "
          f"then {PRUNE_SCRIPT.name} (~1 min) ...", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        built = install_lambda_deps(Path(tmp) / "task_root", python)
    installed, shipped = built["installed"], built["shipped"]
    result = {
        # What ships: the tree after prune_site.py, which the Dockerfile runs in the install's layer.
        "total_mb": _mb(shipped["total_bytes"]),
        "installed_mb": _mb(installed["total_bytes"]),
        "pruned_mb": _mb(installed["total_bytes"] - shipped["total_bytes"]),
        "pruned": [{"pattern": r["pattern"], "mb": _mb(r["bytes"]), "reason": r["reason"]} for r in built["rules"]],
        "largest": shipped["largest"],
        "pyc_mb": shipped["pyc_mb"],
        "tests_mb": shipped["tests_mb"],
        "installed_tests_mb": installed["tests_mb"],
        "requirements_sha256_16": digest,
        "prune_sha256_16": prune_digest,
        "python": version,
        "method": f"pip install --target of lambda_src/requirements.txt with Python {version}, then "
        "lambda_src/prune_site.py on it, both as lambda_src/Dockerfile runs them; bytes on disk including "
        "the .pyc pip compiles",
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result, indent=2))
    return result | {"cached": False}


def run(*, model_dir: Path, extra_model_dirs: list[Path], cache_dir: Path, base_image_mb: float,
        deps_python: str | None = None) -> dict:
    deps = lambda_deps(cache_dir, deps_python or default_deps_python())
    model_mb = _mb(tree_bytes(model_dir)) if Path(model_dir).is_dir() else 0.0
    code_mb = _mb(tree_bytes(REPO / "lambda_src" / "classifier"))
    return {
        "model_files": model_files(model_dir, extra_model_dirs),
        "lambda_deps": deps,
        "image_estimate": {
            "base_mb": base_image_mb,
            "deps_mb": deps["total_mb"],
            "model_dir_mb": model_mb,
            "code_mb": code_mb,
            "total_mb": round(base_image_mb + deps["total_mb"] + model_mb + code_mb, 1),
            "method": f"estimate = base image (ASSUMED {base_image_mb:g} MB uncompressed for "
            "public.ecr.aws/lambda/python:3.12, not measured: no Docker engine here) + measured deps as "
            "shipped (pruned) + measured lambda_src/model + measured lambda_src/classifier",
        },
    }
