"""Claims in the state table: one workflow execution at a time registers a model version or starts its
pipeline. A claim is a conditional put, so concurrent duplicates cannot both win; it has a lease, so a
claim left by a crashed execution does not block the work for ever; and an execution whose work failed
releases it, so the next attempt does not wait for the lease."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

from governance.sessions import dynamodb_table
from governance.settings import settings


def state_table() -> Any:
    """The backbone's state table (DynamoDB resource), in the governance account."""
    return dynamodb_table(settings().require("state_table"))


def put_if(
    item: dict[str, Any],
    condition: str,
    names: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
) -> bool:
    """Put `item` in the state table if `condition` holds on the item it replaces; False when it does not."""
    expression: dict[str, Any] = {"ConditionExpression": condition}
    if names:
        expression["ExpressionAttributeNames"] = names
    if values:
        expression["ExpressionAttributeValues"] = values
    try:
        state_table().put_item(Item=item, **expression)
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def claim_item(key: dict[str, str], attributes: dict[str, Any], *, status: str, owner: str) -> dict[str, Any]:
    """The item of a claim on `key`, taken now by `owner` in `status`."""
    return {**key, **attributes, "status": status, "owner": owner, "claimed_at": int(time.time())}


def take_claim(
    key: dict[str, str], *, status: str, owner: str, lease_seconds: int, attributes: dict[str, Any]
) -> bool:
    """Put the item `key` in `status` for `owner`. Refused (False) while another owner's claim is younger
    than `lease_seconds`, or once the item has moved past `status` (the work is done). The owner's own
    retry, after a failure that followed the claim, takes it again: the work itself must then be safe to
    repeat (client request tokens, reads before writes)."""
    item = claim_item(key, attributes, status=status, owner=owner)
    return put_if(
        item,
        "attribute_not_exists(pk) OR (#status = :claimed AND (#owner = :me OR claimed_at < :stale))",
        {"#status": "status", "#owner": "owner"},
        {":claimed": status, ":me": owner, ":stale": item["claimed_at"] - lease_seconds},
    )


def release_claim(key: dict[str, str], *, status: str, owner: str) -> bool:
    """Delete the item `key` if it is still `owner`'s claim in `status`; False when it is not (another
    execution took it over, or the work moved it past `status`)."""
    try:
        state_table().delete_item(
            Key=key,
            ConditionExpression="#status = :claimed AND #owner = :me",
            ExpressionAttributeNames={"#status": "status", "#owner": "owner"},
            ExpressionAttributeValues={":claimed": status, ":me": owner},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


# --- once: a notice sent once per change, whatever retries and redeliveries reach it ------------------

ONCE_RETENTION_SECONDS = 90 * 24 * 3600


def once(marker: str) -> bool:
    """True the first time `marker` is seen (a conditional put in the state table), False ever after:
    what keeps a duplicate delivery or a retried step from notifying twice. Markers expire after 90 days."""
    now = int(time.time())
    return put_if(
        {"pk": marker, "sk": "once", "first_seen": now, "expires_at": now + ONCE_RETENTION_SECONDS},
        "attribute_not_exists(pk)",
    )


@contextmanager
def forgotten_on_failure(marker: str) -> Iterator[None]:
    """Undo `once(marker)` when the work it guarded fails, so the retry after the fix does it."""
    try:
        yield
    except Exception:
        state_table().delete_item(Key={"pk": marker, "sk": "once"})
        raise
