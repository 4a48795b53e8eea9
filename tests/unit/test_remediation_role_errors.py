"""What remediation learns from a GovernanceExecutionRole it could not assume: STS's error code, and
whether another delivery may succeed (throttling, a 5xx, a dropped connection) or not (AccessDenied)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from governance import sessions
from governance.settings import settings

GOVERNANCE = "111111111111"
MEMBER = "222222222222"
ROLE = f"arn:aws:iam::{MEMBER}:role/GovernanceExecutionRole"


@pytest.fixture(autouse=True)
def fresh_sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("GOVERNANCE_ACCOUNT_ID", GOVERNANCE)
    settings.cache_clear()
    sessions.forget_sessions()
    yield
    sessions.forget_sessions()
    settings.cache_clear()


def sts_answering(error: Exception) -> None:
    """AssumeRole, from the function's own STS client, fails with `error` before any request is sent."""

    def answer(**_: Any) -> Any:
        raise error

    sts = sessions.session_for(GOVERNANCE).client("sts")
    sts.meta.events.register("before-call.sts.AssumeRole", answer)


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "AssumeRole",
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (client_error("Throttling", 400), "Throttling"),
        (client_error("InternalFailure", 500), "InternalFailure"),
        (EndpointConnectionError(endpoint_url="https://sts.us-east-1.amazonaws.com"), ""),
    ],
)
def test_a_throttled_or_failing_sts_is_transient_and_keeps_its_code(error: Exception, code: str) -> None:
    sts_answering(error)

    with pytest.raises(sessions.RoleAssumptionError) as raised:
        sessions.session_for(MEMBER)

    assert (raised.value.code, raised.value.transient) == (code, True)
    assert raised.value.account_id == MEMBER and raised.value.role_arn == ROLE
    # Nothing about the role is known: the hint about the member StackSet would mislead.
    assert "StackSet" not in str(raised.value)


def test_a_refused_assume_role_is_final_and_points_at_the_member_stackset() -> None:
    sts_answering(client_error("AccessDenied", 403))

    with pytest.raises(sessions.RoleAssumptionError) as raised:
        sessions.session_for(MEMBER)

    assert (raised.value.code, raised.value.transient) == ("AccessDenied", False)
    assert str(raised.value) == (
        f"cannot assume {ROLE} in account {MEMBER}: AccessDenied "
        "(is the member-account StackSet deployed there?)"
    )


def test_callers_that_raise_it_themselves_get_a_final_error() -> None:
    error = sessions.RoleAssumptionError(ROLE, MEMBER, "AccessDenied")

    assert (error.code, error.transient) == ("", False)
    assert "StackSet" in str(error)
