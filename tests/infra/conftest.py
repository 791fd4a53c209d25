"""Synthesized stacks for the infra tests: each config variant is synthesized once per session (jsii is slow).

The stacks are built from a temporary copy of lambda_src/ holding a real tiny model, so the
tests never depend on (or write to) the bundled model.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CDK_JSON = REPO / "cdk.json"
STACK_NAME = "BusiClassifier"

# jsii (the CDK's node bridge) prints a banner on old Node versions; it is noise in test output.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

#: A second variant: every optional setting flipped from its default.
VARIANT = {
    "apiKey": False,
    "architecture": "arm64",
    "corsOrigins": ["https://research.example.org"],
    "alarmEmail": "alerts@example.org",
    "reservedConcurrency": "null",  # opted out of the default cap (as `-c reservedConcurrency=null`)
    "waf": True,  # the web ACL without the rest of the HIPAA profile (no KMS key: WAF logs unencrypted by a CMK)
    "wafRateLimit": 1200,
    "timeoutSeconds": 28,
    "removalPolicy": "retain",
    "memoryMb": 3584,
    "logRetentionDays": 90,
    "deployment": "all-at-once",  # no canary (dev stacks)
    "preTrafficCheck": False,
    "provisioned": 2,
}


#: The HIPAA Security profile (cdk-nag's HIPAA pack runs too), otherwise the defaults.
HIPAA = {"compliance": "hipaa"}


@dataclass(frozen=True)
class Synthesized:
    outdir: Path
    template: dict[str, Any]
    assets: dict[str, Any]
    report: dict[str, Any] | None

    @property
    def template_path(self) -> Path:
        return self.outdir / f"{STACK_NAME}.template.json"

    def resources(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == cfn_type}

    def only(self, cfn_type: str) -> dict[str, Any]:
        found = self.resources(cfn_type)
        assert len(found) == 1, f"expected one {cfn_type}, found {sorted(found)}"
        return next(iter(found.values()))


def cdk_json_context() -> dict[str, Any]:
    return json.loads(CDK_JSON.read_text())["context"]


def copy_lambda_src(dest: Path, model_dir: Path | None) -> Path:
    """lambda_src/ without its bundled model, plus (when given) the tiny model's files."""
    shutil.copytree(REPO / "lambda_src", dest, ignore=shutil.ignore_patterns("__pycache__", "model"))
    (dest / "model").mkdir()
    if model_dir is not None:
        for name in ("model.tflite", "model.json"):
            shutil.copy2(model_dir / name, dest / "model" / name)
    if not (dest / "Dockerfile").is_file():
        # Only while the real Dockerfile is not committed yet; never written into the repository.
        (dest / "Dockerfile").write_text(
            'FROM public.ecr.aws/lambda/python:3.12\nCOPY . ${LAMBDA_TASK_ROOT}\nCMD ["classifier.handler.lambda_handler"]\n'
        )
    return dest


def synthesize(outdir: Path, overrides: dict[str, Any]) -> Synthesized:
    """The app exactly as `cdk synth` builds it (cdk.json context + overrides), cdk-nag included."""
    from infra.application import build_app

    app = build_app(context={**cdk_json_context(), **overrides}, outdir=str(outdir))
    app.synth()  # raises on any unacknowledged cdk-nag finding
    report_path = outdir / "validation-report.json"
    return Synthesized(
        outdir=outdir,
        template=json.loads((outdir / f"{STACK_NAME}.template.json").read_text()),
        assets=json.loads((outdir / f"{STACK_NAME}.assets.json").read_text()),
        report=json.loads(report_path.read_text()) if report_path.is_file() else None,
    )


@pytest.fixture(scope="session")
def lambda_src_copy(tmp_path_factory, tiny_model_dir) -> Path:
    """lambda_src/ with the tiny model, made release-ready as `make promote` would (drift band, pre-traffic)."""
    from tests.release_factory import make_release_ready

    src = copy_lambda_src(tmp_path_factory.mktemp("build") / "lambda_src", tiny_model_dir)
    make_release_ready(src / "model", tmp_path_factory.mktemp("report"))
    return src


@pytest.fixture(scope="session")
def default_stack(tmp_path_factory, lambda_src_copy) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk_default"), {"lambdaSrc": str(lambda_src_copy)})


@pytest.fixture(scope="session")
def variant_stack(tmp_path_factory, lambda_src_copy) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk_variant"), {"lambdaSrc": str(lambda_src_copy), **VARIANT})


@pytest.fixture(scope="session")
def hipaa_stack(tmp_path_factory, lambda_src_copy) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk_hipaa"), {"lambdaSrc": str(lambda_src_copy), **HIPAA})
