"""What every workflow does when a step fails: keep the event, record the failure, tell a human."""

from __future__ import annotations

import json
from typing import Any

from governance.ledger import Action, LedgerEntry, record
from governance.notifier import Audience, notify
from governance.sessions import client
from governance.settings import settings

# Errors that mean the input itself is unusable: the event is kept in the dead-letter queue.
MALFORMED_ERRORS = frozenset({"MalformedEvent"})


def explain(error: dict[str, Any]) -> tuple[str, str]:
    """(error type, one-line message) from a Step Functions Catch result `{"Error", "Cause"}`."""
    error_type = str(error.get("Error") or "Unknown")
    cause = error.get("Cause") or ""
    message = str(cause)
    try:
        parsed = json.loads(cause) if isinstance(cause, str) and cause.startswith("{") else None
    except json.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        error_type = str(parsed.get("errorType") or error_type)
        message = str(parsed.get("errorMessage") or message)
    first_line = message.strip().splitlines()[0] if message.strip() else error_type
    return error_type, first_line


def _bounded_text(value: Any, limit: int) -> str:
    """`value` as printable text of at most `limit` characters ("" for none): what a ledger key or a message
    attribute can hold. A malformed event's id may be a number, a list or 100 KB of NULs; the event itself
    is kept whole in the message body."""
    if value is None:
        return ""
    return "".join(ch if ch.isprintable() else "?" for ch in str(value)[:limit])


def _attribute_text(value: Any, limit: int) -> str:
    """A message attribute value SQS accepts: never empty."""
    return _bounded_text(value, limit) or "-"


def dead_letter(event: Any, reason: str, *, flow: str, source: str) -> None:
    """Keep an event that cannot be processed in the events DLQ, with the reason, for redrive."""
    event_id = event.get("id") if isinstance(event, dict) else None
    client("sqs").send_message(
        QueueUrl=settings().require("dead_letter_queue_url"),
        MessageBody=json.dumps(event, default=str),
        MessageAttributes={
            "error": {"DataType": "String", "StringValue": _attribute_text(reason, 1024)},
            "flow": {"DataType": "String", "StringValue": flow},
            "source": {"DataType": "String", "StringValue": source},
            "event_id": {"DataType": "String", "StringValue": _attribute_text(event_id, 256)},
        },
    )


def _acted_on(account: Any) -> tuple[str, str]:
    """(id, name) of the account a workflow was acting on, from the `account` object of its state (the
    account baseline's describe step: `account_id`, `account_name`); ("", "") when it does not know one."""
    if not isinstance(account, dict):
        return "", ""
    return _bounded_text(account.get("account_id"), 64), _bounded_text(account.get("account_name"), 256)


def record_workflow_failure(
    *,
    flow: str,
    action: Action,
    audience: Audience,
    event: Any,
    error: dict[str, Any],
    acted_on: Any = None,
) -> dict[str, Any]:
    """Ledger, notify and, for a malformed event, dead-letter; returns what was decided.

    `acted_on` is the account the workflow had found in the event and was acting on, when it had got that
    far: the failure is ledgered and notified against it. Without it, against the event's own `account`,
    which for a Control Tower or Organizations event is the management account, not the one that failed."""
    error_type, message = explain(error)
    # Both become ledger keys (DynamoDB: at most 2048 bytes) and message attributes; the catch-all must
    # not fail on the very event it is catching, whatever that event's id or account holds.
    event_id = _bounded_text(event.get("id"), 256) if isinstance(event, dict) else ""
    member_id, member_name = _acted_on(acted_on)
    account = member_id or (_bounded_text(event.get("account"), 64) if isinstance(event, dict) else "")
    named = {"account_id": member_id, "account_name": member_name} if member_id else {}
    malformed = error_type in MALFORMED_ERRORS
    if malformed:
        dead_letter(event, message, flow=flow, source="workflow")
    record(
        LedgerEntry(
            event_id=event_id or "-",
            action="dead_letter" if malformed else action,
            status="failed",
            # The account, like the entries of the same action that succeeded (`baseline_account`, ...).
            target=member_id or event_id or account or flow,
            flow=flow,
            account=account,
            detail={"error_type": error_type, "error": message, **named},
        )
    )
    about = f" for account {member_name} ({member_id})" if member_name else f" for account {member_id}"
    notify(
        audience,
        f"[FAILED] {flow}{about if member_id else ''}: {message}"[:200],
        {
            "flow": flow,
            **named,
            "error_type": error_type,
            "error": message,
            "kept_in_dead_letter_queue": malformed,
        },
        severity="HIGH",
        account=account,
        kind=f"{flow}-failed",
        event_id=event_id or "-",
        flow=flow,
    )
    return {"flow": flow, "error_type": error_type, "error": message, "dead_lettered": malformed}
