"""cdk-nag acknowledgements: one helper so every suppressed AwsSolutions finding carries its reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

#: cdk-nag 3 reports findings as "<pack>::<rule>[<finding>]".
PACK = "AwsSolutions"


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one AwsSolutions finding (e.g. "IAM5[Resource::*]") on a construct and everything under it."""
    if len(reason.strip()) < 40:
        raise ValueError(f"an acknowledgement of {rule} needs a real reason, not {reason!r}")
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{PACK}::{PACK}-{rule}", reason=reason))
