"""A stand-in for the Lambda context object, for the local API, the demo and tests."""

from __future__ import annotations

import dataclasses
import uuid


@dataclasses.dataclass(frozen=True)
class LocalContext:
    """The attributes Powertools reads from a real ``LambdaContext``."""

    aws_request_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    function_name: str = "busi-classifier-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 0
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:busi-classifier-local"
    log_group_name: str = "local"
    log_stream_name: str = "local"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000
