"""Shared fixtures: a real tiny LiteRT model, and the ../shared data when it is there."""

from __future__ import annotations

from pathlib import Path

import pytest

import model_training  # noqa: F401  (first: TensorFlow quiet, as in the CLIs; BUSI_VERBOSE=1 keeps its logs)
from tests.model_factory import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BUSI = SHARED / "data" / "busi"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def busi_dir() -> Path:
    if not BUSI.is_dir():
        pytest.skip(f"needs the BUSI images at {BUSI} (../shared is absent on this clone)")
    return BUSI
