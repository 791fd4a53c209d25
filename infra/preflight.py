"""`python -m infra.preflight`: checks what `cdk deploy`/`destroy` need before they start, and says what is missing.

Run by `make deploy` (Docker with buildx + AWS credentials) and `make destroy` (credentials only).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence


def docker_problem(which=shutil.which, run=subprocess.run) -> str | None:
    """Why the Lambda image cannot be built here, or None."""
    if which("docker") is None:
        return (
            "Docker is not installed (no `docker` on PATH). `cdk deploy` builds the Lambda image from lambda_src/ "
            "with Docker: install Docker Engine or Docker Desktop (with buildx), start it, and retry."
        )
    if _fails(run, ["docker", "info"]):
        return "Docker is installed but its engine is not reachable (`docker info` failed): start Docker and retry."
    if _fails(run, ["docker", "buildx", "version"]):
        return "Docker buildx is missing (`docker buildx version` failed): install the buildx plugin and retry."
    return None


def credentials_problem(
    env: Mapping[str, str] | None = None, home: Path | None = None, which=shutil.which, run=subprocess.run
) -> str | None:
    """Why no AWS credentials will be found, or None. Uses `aws sts get-caller-identity` when the aws CLI exists."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if which("aws") is not None:
        result = run(["aws", "sts", "get-caller-identity"], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            return (
                "AWS credentials are missing or invalid (`aws sts get-caller-identity` failed"
                + (f": {detail[-1]}" if detail else "")
                + "). Run `aws configure` or `aws sso login`, or set AWS_PROFILE, then retry."
            )
        return None
    # Without the aws CLI, look where the CDK CLI's SDK looks.
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_PROFILE") or env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return None
    if (home / ".aws" / "credentials").is_file() or (home / ".aws" / "config").is_file():
        return None
    return (
        "No AWS credentials found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or install the "
        "aws CLI and run `aws configure`."
    )


def _fails(run, command: Sequence[str]) -> bool:
    try:
        return run(list(command), capture_output=True, text=True, timeout=60).returncode != 0
    except (OSError, subprocess.TimeoutExpired):
        return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.preflight",
        description="Check that Docker (with buildx) and AWS credentials are available before cdk deploy/destroy.",
    )
    parser.add_argument("--no-docker", action="store_true", help="skip the Docker check (cdk destroy builds nothing)")
    args = parser.parse_args(argv)
    problems = [p for p in (None if args.no_docker else docker_problem(), credentials_problem()) if p]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
