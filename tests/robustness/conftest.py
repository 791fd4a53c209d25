"""Robustness fixtures: the real handler (as a Service) on the tiny model, and a case counter reported at the end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from classifier.handler import Service, create_service
from classifier.lambda_context import LocalContext
from classifier.settings import Settings

from .contract import CASES, check_lambda_response


def env_int(name: str, default: int) -> int:
    """A count from the environment (to run the full soak or a longer fuzz), else ``default``."""
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


@pytest.fixture(scope="session")
def service(tiny_model_dir: Path) -> Service:
    svc = create_service(Settings(model_dir=tiny_model_dir))
    svc.warm()
    assert svc.load_error is None, svc.load_error
    return svc


@pytest.fixture(scope="session")
def labels(service: Service) -> list[str]:
    return service.engine().labels


@pytest.fixture(scope="session")
def call(service: Service, labels: list[str]):
    """Send one event to the handler, check the response contract, count the case; returns (status, body)."""

    def _call(event: dict, *, what: str, kind: str) -> tuple[int, dict]:
        CASES[kind] += 1
        resp = service(event, LocalContext())  # an exception escaping here fails the test by itself
        return check_lambda_response(resp, labels, what=what)

    return _call


@pytest.fixture(scope="module")
def api_server(tiny_model_dir: Path, tmp_path_factory):
    """The local API as a real separate process (``python -m classifier.local_api``) on a loopback port.

    Serves the tiny model, or ``ROBUSTNESS_API_MODEL_DIR`` (e.g. lambda_src/model for a soak of the bundled model).
    """
    from bench.api_load import local_api

    model_dir = Path(os.environ.get("ROBUSTNESS_API_MODEL_DIR") or tiny_model_dir)
    with local_api(model_dir, log_dir=tmp_path_factory.mktemp("local_api")) as server:
        yield server


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if CASES:
        total = sum(CASES.values())
        parts = ", ".join(f"{kind} {n}" for kind, n in sorted(CASES.items()))
        terminalreporter.write_sep("-", f"robustness: {total} cases sent ({parts})")
