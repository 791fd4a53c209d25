"""cdk-nag acknowledgements: one helper so every suppressed finding carries its reason."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

#: cdk-nag 3 reports findings as "<pack>::<pack>-<rule>[<finding>]".
PACK = "AwsSolutions"
#: The HIPAA Security pack, added to the validations with compliance=hipaa.
HIPAA = "HIPAA.Security"


def acknowledge(construct: IConstruct, rule: str, reason: str, *, pack: str = PACK) -> None:
    """Acknowledge one finding (e.g. "IAM5[Resource::*]") of ``pack`` on a construct and everything under it."""
    if len(reason.strip()) < 40:
        raise ValueError(f"an acknowledgement of {rule} needs a real reason, not {reason!r}")
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{pack}::{pack}-{rule}", reason=reason))
