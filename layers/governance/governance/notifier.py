"""The one notifier: an SNS message a human can scan, with attributes subscribers can filter on."""

from __future__ import annotations

import json
from typing import Any, Literal

from governance.ledger import LedgerEntry, record
from governance.sessions import client
from governance.settings import settings

Audience = Literal["security", "platform", "ml-governance"]
Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO"]

_SUBJECT_LIMIT = 100  # SNS rejects longer e-mail subjects


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
    short_subject = subject if len(subject) <= _SUBJECT_LIMIT else subject[: _SUBJECT_LIMIT - 1] + "…"
    response = client("sns").publish(
        TopicArn=arn,
        Subject=short_subject,
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
