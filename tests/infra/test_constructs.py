"""Single constructs, built without a full synth: the image tag (the asset hash) and log retention."""

from __future__ import annotations

import aws_cdk as cdk

from infra.build_context import check_build_context
from infra.config import InfraConfig
from infra.image_repository import ImageRepository
from tests.infra.conftest import copy_lambda_src


def _tag(src, architecture: str = "x86_64") -> str:
    # Constructing is enough: the asset hash is computed from the directory when the asset is created.
    stack = cdk.Stack(cdk.App(), "Probe")
    config = InfraConfig(architecture=architecture)
    images = ImageRepository(stack, "Image", config=config, build_context=check_build_context(src))
    return images.image_tag


def test_tag_follows_the_bundled_model_and_ignores_what_docker_ignores(tmp_path, tiny_model_dir):
    src = copy_lambda_src(tmp_path / "lambda_src", tiny_model_dir)
    first = _tag(src)
    assert _tag(src) == first  # deterministic: an unchanged tree redeploys nothing
    # An arm64 image is a different image: it must not reuse the x86_64 tag (the repository's tags are immutable).
    assert _tag(src, "arm64") != first

    # A stray file that .dockerignore keeps out of the image must not force a redeploy.
    (src / "model" / "training-notes.txt").write_text("not part of the image")
    assert _tag(src) == first

    model = src / "model" / "model.tflite"
    model.write_bytes(model.read_bytes() + b"\0")  # a retrained model
    assert _tag(src) != first


def test_every_allowed_retention_reaches_the_template():
    from aws_cdk.assertions import Template

    from infra.config import LOG_RETENTION_DAYS
    from infra.function import log_group

    stack = cdk.Stack(cdk.App(), "Probe")
    for days in LOG_RETENTION_DAYS:
        log_group(stack, f"Logs{days}", config=InfraConfig(log_retention_days=days))
    found = sorted(g["Properties"]["RetentionInDays"] for g in Template.from_stack(stack).find_resources("AWS::Logs::LogGroup").values())
    assert found == sorted(LOG_RETENTION_DAYS)
