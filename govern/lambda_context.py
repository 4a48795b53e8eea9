"""A Lambda context object with what Powertools reads from it, for handlers run in process."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class LambdaContext:
    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = 0.0

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"govern/{self.aws_request_id}"

    @classmethod
    def for_function(cls, name: str, arn: str, memory: int, timeout: int) -> LambdaContext:
        context = cls(
            function_name=name, invoked_function_arn=arn, memory_limit_in_mb=memory, timeout_seconds=timeout
        )
        context._deadline = time.monotonic() + timeout
        return context

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
