"""`npx cdk synth|diff` run directly (not through make) print no jsii Node-version banner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SILENCE = ("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION")


def test_importing_infra_silences_the_node_banner_before_aws_cdk_starts_node(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in SILENCE}  # as in a shell without make's exports
    code = ("import os, infra, aws_cdk\n"
            f"aws_cdk.App(outdir={str(tmp_path)!r}).synth()\n"
            f"print(','.join(os.environ.get(k, '') for k in {SILENCE!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip() == "20,1"
    assert "end-of-life" not in out.stderr and "!!" not in out.stderr, out.stderr


def test_a_value_of_your_own_is_kept():
    env = {**os.environ, SILENCE[0]: "18,20"}
    code = f"import os, infra; print(os.environ[{SILENCE[0]!r}])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "18,20"
