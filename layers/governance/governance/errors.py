"""Errors every flow raises, importable without pydantic: the event models (governance.events) are loaded
only by the steps that parse an event, so the other steps of a workflow start without them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

# AWS error codes that say "not now" rather than "no": the same call may well succeed a minute later.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServerException",
        "RequestTimeout",
        "RequestTimeoutException",
        # S3: "a conflicting conditional operation is currently in progress against this resource", as when
        # two deliveries change the same bucket's configuration at once (HTTP 409).
        "OperationAborted",
    }
)


class MalformedEvent(ValueError):
    """The event cannot be acted on; the message says which fields are wrong, in one line."""


class TransientAwsError(RuntimeError):
    """An AWS call kept failing in a way that retrying later can fix (throttling, a 5xx, a dropped
    connection), after botocore's own retries. The workflows' Retry matches this name; the message is the
    AWS error, in one line."""


def one_line(error: object) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def is_transient(error: BaseException) -> bool:
    """Throttling, a server-side error or a connection that failed: worth the same call again later."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return code in TRANSIENT_ERROR_CODES or status == 429 or status >= 500
    # The backbone's own errors that wrap an AWS call say so themselves (sessions.RoleAssumptionError: a
    # throttled AssumeRole is worth another try, a refused one is not).
    if getattr(error, "transient", None) is True:
        return True
    return isinstance(error, (BotocoreConnectionError, HTTPClientError))


Handler = TypeVar("Handler", bound=Callable[..., Any])


def transient_errors_retried_by_the_workflow(handler: Handler) -> Handler:
    """A workflow step's handler: a transient AWS error leaves it as TransientAwsError, which the state
    machine retries with backoff (seconds to a minute, past botocore's own retries) before its Catch."""

    @functools.wraps(handler)
    def step(event: Any, context: Any) -> Any:
        try:
            return handler(event, context)
        except Exception as error:
            if is_transient(error):
                raise TransientAwsError(one_line(error)) from error
            raise

    return step  # type: ignore[return-value]
