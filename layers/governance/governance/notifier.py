"""The one notifier: an SNS message a human can scan, with attributes subscribers can filter on."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from governance.ledger import LedgerEntry, record
from governance.sessions import client
from governance.settings import settings

Audience = Literal["security", "platform", "ml-governance"]
Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"]

_SUBJECT_LIMIT = 100  # SNS rejects longer e-mail subjects
# SNS refuses a subject with a control character or a line break (Publish API reference). A subject can carry
# an error message, and so whatever an event put in it.
_NOT_IN_A_SUBJECT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def subject_line(subject: str) -> str:
    """`subject` as SNS takes it: on one line, without control characters (each run of them and of spaces
    becomes one space), at most _SUBJECT_LIMIT characters."""
    line = " ".join(_NOT_IN_A_SUBJECT.sub(" ", subject).split())
    return line if len(line) <= _SUBJECT_LIMIT else line[: _SUBJECT_LIMIT - 1] + "…"


def topic_arn(audience: Audience) -> str:
    current = settings()
    return {
        "security": current.require("security_topic_arn"),
        "platform": current.require("platform_topic_arn"),
        "ml-governance": current.require("ml_governance_topic_arn"),
    }[audience]


def notify(
    audience: Audience,
    subject: str,
    body: dict[str, Any],
    *,
    severity: Severity,
    account: str,
    kind: str,
    event_id: str,
    flow: str,
) -> str:
    """Publish to the audience's topic, record the notification in the ledger, return the message id."""
    arn = topic_arn(audience)
    message = {"subject": subject, "severity": severity, "account": account, "kind": kind, **body}
    message.setdefault("event_id", event_id)
    response = client("sns").publish(
        TopicArn=arn,
        Subject=subject_line(subject),
        Message=json.dumps(message, indent=2, sort_keys=True, default=str),
        MessageAttributes={
            "severity": {"DataType": "String", "StringValue": severity},
            "account": {"DataType": "String", "StringValue": account or "-"},
            "kind": {"DataType": "String", "StringValue": kind},
        },
    )
    record(
        LedgerEntry(
            event_id=event_id,
            action="notify",
            status="done",
            target=arn,
            flow=flow,
            account=account,
            detail={
                "subject": subject,
                "severity": severity,
                "kind": kind,
                "message_id": response["MessageId"],
            },
        )
    )
    return str(response["MessageId"])
