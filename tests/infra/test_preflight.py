"""`make deploy` says clearly when Docker or AWS credentials are missing (infra.preflight)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

from infra.preflight import credentials_problem, docker_problem
from tests.infra.conftest import REPO


def _run(codes: dict[str, int]):
    """A fake subprocess.run: exit code per command (joined), stderr says which failed."""

    def run(command, **_):
        key = " ".join(command)
        return SimpleNamespace(returncode=codes.get(key, 0), stdout="", stderr=f"{key} failed" if codes.get(key) else "")

    return run


def test_docker_missing_not_running_or_without_buildx():
    assert "Docker is not installed" in docker_problem(which=lambda _: None, run=_run({}))
    assert "not reachable" in docker_problem(which=lambda _: "/usr/bin/docker", run=_run({"docker info": 1}))
    assert "buildx" in docker_problem(which=lambda _: "/usr/bin/docker", run=_run({"docker buildx version": 1}))
    assert docker_problem(which=lambda _: "/usr/bin/docker", run=_run({})) is None


def test_credentials_through_the_aws_cli(tmp_path):
    aws = lambda name: "/usr/bin/aws" if name == "aws" else None  # noqa: E731
    problem = credentials_problem(env={}, home=tmp_path, which=aws, run=_run({"aws sts get-caller-identity": 255}))
    assert "AWS credentials are missing or invalid" in problem and "aws configure" in problem
    assert credentials_problem(env={}, home=tmp_path, which=aws, run=_run({})) is None


def test_credentials_without_the_aws_cli(tmp_path):
    none = lambda _: None  # noqa: E731
    assert "No AWS credentials found" in credentials_problem(env={}, home=tmp_path, which=none)
    assert credentials_problem(env={"AWS_PROFILE": "research"}, home=tmp_path, which=none) is None
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\n")
    assert credentials_problem(env={}, home=tmp_path, which=none) is None


def test_preflight_command_fails_with_both_messages_on_a_bare_machine(tmp_path):
    # This machine class has neither Docker nor AWS credentials: exactly what a user without them sees.
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "infra.preflight"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "error: Docker is not installed" in result.stderr
    assert "error: No AWS credentials found" in result.stderr
    no_docker = subprocess.run(
        [sys.executable, "-m", "infra.preflight", "--no-docker"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert no_docker.returncode == 1 and "Docker" not in no_docker.stderr
