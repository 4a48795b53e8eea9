"""The append-only audit trail: every decision the backbone takes, one DynamoDB item each."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from boto3.dynamodb.conditions import Key

from governance.sessions import dynamodb_table
from governance.settings import settings

Action = Literal[
    "replicate_model",
    "write_model_card",
    "start_pipeline",
    "baseline_account",
    "deregister_account",
    "remediate",
    "notify",
    "dead_letter",
]
Status = Literal["done", "skipped", "dry-run", "exempt", "notify-only", "failed"]


@dataclass(frozen=True)
class LedgerEntry:
    """One decision: which action, on what, because of which event, with what outcome."""

    event_id: str
    action: Action
    status: Status
    target: str
    flow: str
    account: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    actor: str = ""
    recorded_at: str = ""

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> LedgerEntry:
        return cls(
            event_id=item["event_id"],
            action=item["action"],
            status=item["status"],
            target=item["target"],
            flow=item["flow"],
            account=item.get("account", ""),
            detail=json.loads(item.get("detail", "{}")),
            actor=item.get("actor", ""),
            recorded_at=item["recorded_at"],
        )


def _table() -> Any:
    return dynamodb_table(settings().require("ledger_table"))


def record(entry: LedgerEntry) -> LedgerEntry:
    """Append `entry`; an existing item is never overwritten (the condition makes that impossible)."""
    recorded_at = entry.recorded_at or datetime.now(UTC).isoformat(timespec="milliseconds")
    stamped = LedgerEntry(**{**asdict(entry), "recorded_at": recorded_at})
    actor = stamped.actor or settings().stage
    item = {
        "subject": stamped.target,
        "entry": f"{recorded_at}#{stamped.action}#{uuid.uuid4().hex[:12]}",
        "event_id": stamped.event_id,
        "action": stamped.action,
        "status": stamped.status,
        "target": stamped.target,
        "flow": stamped.flow,
        "account": stamped.account or "-",
        "actor": actor,
        "detail": json.dumps(stamped.detail, sort_keys=True, default=str),
        "recorded_at": recorded_at,
    }
    _table().put_item(Item=item, ConditionExpression="attribute_not_exists(subject)")
    return stamped


def _query(**kwargs: Any) -> list[LedgerEntry]:
    table = _table()
    items: list[dict[str, Any]] = []
    while True:
        page = table.query(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted((LedgerEntry.from_item(item) for item in items), key=lambda e: e.recorded_at)


def entries_for_event(event_id: str) -> list[LedgerEntry]:
    """Every decision taken because of one event, oldest first."""
    return _query(IndexName="by-event", KeyConditionExpression=Key("event_id").eq(event_id))


def entries_for_subject(subject: str) -> list[LedgerEntry]:
    """Every decision about one resource, account or model version (its ARN or id), oldest first."""
    return _query(KeyConditionExpression=Key("subject").eq(subject))


def entries_for_account(account_id: str) -> list[LedgerEntry]:
    """Every decision about anything in one account, oldest first."""
    return _query(IndexName="by-account", KeyConditionExpression=Key("account").eq(account_id))
