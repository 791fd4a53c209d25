"""The Lambda image's build context (lambda_src/): checked before anything is synthesized.

infra never imports the serving package; it only needs the files to exist, and reads
model.json as plain JSON for a label (name and version) on the stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

MODEL_FILES = ("model/model.tflite", "model/model.json")
# Used only if model.json lacks its disclaimer (the serving package's model card always writes one).
FALLBACK_DISCLAIMER = "Research use only. Not a medical device; not for diagnosis or clinical decisions."


class BuildContextError(RuntimeError):
    """The image cannot be built from this directory: a missing Dockerfile or bundled model."""


@dataclass(frozen=True, kw_only=True)
class BuildContext:
    directory: Path
    model_name: str
    model_version: str
    disclaimer: str
    # The whole card as plain JSON (the release reads its drift band and pre-traffic expectations from it).
    card: Mapping[str, Any] = field(default_factory=dict)


def check_build_context(directory: Path) -> BuildContext:
    """Fail fast, naming what is missing and how to get it, before CDK hashes the directory."""
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise BuildContextError(f"the Lambda build context {directory} does not exist (cdk.json context 'lambdaSrc')")
    if not (directory / "Dockerfile").is_file():
        raise BuildContextError(f"{directory / 'Dockerfile'} is missing: the Lambda image cannot be built")
    missing = [name for name in MODEL_FILES if not (directory / name).is_file()]
    if missing:
        raise BuildContextError(
            f"the bundled model is incomplete in {directory}: missing {', '.join(missing)}. "
            "Restore the committed one with `git checkout -- lambda_src/model`, or ship a training run: "
            "`make train`, then `make promote RUN=runs/<time>-<version>`."
        )
    try:
        card = json.loads((directory / "model/model.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BuildContextError(f"{directory / 'model/model.json'} is not readable JSON: {exc}") from exc
    if not isinstance(card, dict):
        raise BuildContextError(f"{directory / 'model/model.json'} must hold a JSON object")
    return BuildContext(
        directory=directory,
        model_name=str(card.get("name", "unknown")),
        model_version=str(card.get("version", "unknown")),
        disclaimer=str(card.get("disclaimer") or FALLBACK_DISCLAIMER),
        card=card,
    )
