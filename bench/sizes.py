"""Sizes: model files, the Lambda's Python dependencies (lambda_src/requirements.txt installed alone), the image."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAMBDA_REQUIREMENTS = REPO / "lambda_src" / "requirements.txt"
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
    """The Lambda image's Python (3.12) when this machine has it, else the running one."""
    return shutil.which("python3.12") or sys.executable


def lambda_deps(cache_dir: Path, python: str) -> dict:
    """Install exactly lambda_src/requirements.txt the way the Dockerfile does (``pip install --target``)
    into a temporary folder and measure it.

    Cached by the requirements file's hash and the Python version: the install downloads ~60 MB of wheels.
    """
    version = subprocess.run([python, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                             capture_output=True, text=True, check=True).stdout.strip()
    digest = hashlib.sha256(LAMBDA_REQUIREMENTS.read_bytes()).hexdigest()[:16]
    cache = Path(cache_dir) / f"lambda_deps_{digest}_py{version}.json"
    if cache.is_file():
        return json.loads(cache.read_text()) | {"cached": True}
    print(f"measuring the Lambda dependencies: pip install --target with Python {version} (~1 min) ...",
          file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "task_root"
        proc = subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(site),
             "-r", str(LAMBDA_REQUIREMENTS)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"pip install -r {LAMBDA_REQUIREMENTS} failed:\n{proc.stderr[-3000:]}")
        packages: dict[str, int] = {}
        pyc = sum(p.stat().st_size for p in site.rglob("*.pyc") if not _installer(p, site))
        tests = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not _installer(p, site)
                    and {"tests", "testing"} & set(p.relative_to(site).parts[1:-1]))
        gpu = sum(p.stat().st_size for p in site.glob("ai_edge_litert/*WebGpu*"))
        for entry in site.iterdir():
            if entry.name.split("-")[0] in _INSTALLER_DIRS or entry.name == "__pycache__":
                continue
            size = tree_bytes(entry) if entry.is_dir() else entry.stat().st_size
            key = entry.name.split("-")[0].lower().removesuffix(".libs")
            key = {"pil": "pillow"}.get(key, key)  # Pillow installs PIL/ and pillow.libs/
            packages[key] = packages.get(key, 0) + size
    top = sorted(packages.items(), key=lambda kv: -kv[1])
    result = {
        "total_mb": _mb(sum(packages.values())),
        "largest": [{"name": k, "mb": _mb(v)} for k, v in top[:6]],
        "pyc_mb": _mb(pyc),
        "tests_mb": _mb(tests),
        # LiteRT's WebGPU accelerator (no GPU on Lambda) and the packages' own test suites: the handler
        # was checked to still answer with both deleted from a --target install (not done by the image today).
        "removable_mb": _mb(gpu + tests),
        "requirements_sha256_16": digest,
        "python": version,
        "method": f"pip install --target (as lambda_src/Dockerfile does) of lambda_src/requirements.txt with "
        f"Python {version}; bytes on disk including the .pyc pip compiles",
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
            "public.ecr.aws/lambda/python:3.12, not measured: no Docker engine here) + measured deps "
            "+ measured lambda_src/model + measured lambda_src/classifier",
        },
    }
