"""Builds the CDK app: typed config from context, the build-context check, the stack, cdk-nag's AwsSolutions pack
(and its HIPAA Security pack with compliance=hipaa)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks

from infra.build_context import check_build_context
from infra.config import InfraConfig
from infra.stack import ClassifierStack

#: The repository root: relative lambdaSrc paths are resolved against it, not the working directory.
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def build_app(*, context: Mapping[str, Any] | None = None, outdir: str | None = None) -> cdk.App:
    """The app as `cdk synth` sees it. Raises ConfigError or BuildContextError before any construct is made.

    ``context`` adds to (and overrides) what the CDK CLI passes; tests give cdk.json's context here.
    """
    app = cdk.App(context=dict(context) if context else None, outdir=outdir)
    config = InfraConfig.from_context(app.node.try_get_context)
    src = Path(config.lambda_src)
    build_context = check_build_context(src if src.is_absolute() else PROJECT_ROOT / src)
    ClassifierStack(app, config.stack_name, config=config, build_context=build_context)
    # Findings fail the synth; acknowledged ones are listed, with their reasons, in stack.py's constructs.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    if config.hipaa:
        # The HIPAA Security pack (docs/security.md lists each finding it keeps, and why).
        cdk.Validations.of(app).add_plugins(HIPAASecurityChecks(app))
    return app
