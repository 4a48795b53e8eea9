"""Claims in the state table: one workflow execution at a time registers a model version or starts its
pipeline. A claim is a conditional put, so concurrent duplicates cannot both win; it has a lease, so a
claim left by a crashed execution does not block the work for ever; and an execution whose work failed
releases it, so the next attempt does not wait for the lease."""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from governance.sessions import session_for
from governance.settings import settings


def state_table() -> Any:
    """The backbone's state table (DynamoDB resource), in the governance account."""
    return (
        session_for(settings().require("governance_account_id"))
        .resource("dynamodb")
        .Table(settings().require("state_table"))
    )


def take_claim(
    key: dict[str, str], *, status: str, owner: str, lease_seconds: int, attributes: dict[str, Any]
) -> bool:
    """Put the item `key` in `status` for `owner`. Refused (False) while another owner's claim is younger
    than `lease_seconds`, or once the item has moved past `status` (the work is done). The owner's own
    retry, after a failure that followed the claim, takes it again: the work itself must then be safe to
    repeat (client request tokens, reads before writes)."""
    now = int(time.time())
    try:
        state_table().put_item(
            Item={**key, **attributes, "status": status, "owner": owner, "claimed_at": now},
            ConditionExpression=(
                "attribute_not_exists(pk) OR (#status = :claimed AND (#owner = :me OR claimed_at < :stale))"
            ),
            ExpressionAttributeNames={"#status": "status", "#owner": "owner"},
            ExpressionAttributeValues={":claimed": status, ":me": owner, ":stale": now - lease_seconds},
        )
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


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
