#!/usr/bin/env python3
"""The CDK app (`npx cdk synth|diff|deploy|destroy`): settings come from cdk.json's context and `-c key=value`."""

import sys

from infra.application import build_app
from infra.build_context import BuildContextError
from infra.config import ConfigError


def main() -> None:
    try:
        app = build_app()
    except (ConfigError, BuildContextError) as exc:
        # A clear line instead of a jsii traceback: these are the user's to fix.
        sys.exit(f"error: {exc}")
    app.synth()


if __name__ == "__main__":
    main()
