"""The member accounts' forwarding dead-letter queues, watched from the governance account.

Every member account forwards its events to the governance bus from each Region it is governed in
(templates/member-account.yaml). When EventBridge cannot deliver one there after a day of retries (a bus
policy that refuses the account, a service control policy denying PutEvents), it keeps the event in the
Region's forwarding dead-letter queue. Nothing of the backbone ever sees that event, so nothing else would
say it is missing: the queue's own CloudWatch metrics live in the member account, and an alarm there could
only speak through the same broken path.

So the backbone reads each queue's depth itself, on a schedule, through GovernanceExecutionRole, for every
account of the inventory and every Region the account was baselined in. It reads attributes only: the
events stay where they are until a human has fixed the cause (docs/operations.md).

An event EventBridge could put neither on the bus nor in that queue (the queue's policy or key refused it)
is in no queue at all: only the rule's `AWS/Events InvocationsFailedToBeSentToDlq` metric counts it, in
the member account. The backbone reads that metric of both forwarding rules too, in the same pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from governance.baseline import governed_accounts
from governance.errors import one_line
from governance.sessions import RoleAssumptionError, client

# The queue's name in every member account and Region: templates/member-account.yaml names it so, and
# GovernanceExecutionRole may read the attributes of this queue only.
FORWARDING_DEAD_LETTER_QUEUE = "ml-governance-forwarding-dlq"

# The forwarding rules of templates/member-account.yaml, by their fixed names: on the default bus, the
# InvocationsFailedToBeSentToDlq metric of a rule has the dimension RuleName alone.
FORWARDING_RULES = ("ml-governance-forward-model-package-state", "ml-governance-forward-config-compliance")
# Twice the watch's schedule (15 minutes): a datapoint CloudWatch publishes late is still read. An event
# lost is so counted in one or two readings; the alarm is on any reading of at least one.
LOST_EVENTS_LOOKBACK = timedelta(minutes=30)

# Accounts read at once: an AssumeRole and two SQS calls per Region, mostly waiting on the network.
_READERS = 16


@dataclass(frozen=True)
class QueueReading:
    """One forwarding dead-letter queue: how many events it keeps, or why it could not be read."""

    account_id: str
    region: str
    messages: int | None = None
    # Events the forwarding rules lost (no bus, no queue) over LOST_EVENTS_LOOKBACK; None: not read.
    lost: int | None = None
    problem: str = ""

    @property
    def readable(self) -> bool:
        return self.messages is not None and self.lost is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account_id,
            "region": self.region,
            "messages": self.messages,
            **({"lost": self.lost} if self.lost != 0 else {}),
            **({"problem": self.problem} if self.problem else {}),
        }


def watched_queues(items: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """(account, Region) of every forwarding queue the governed accounts `items` have: one per Region each
    account was baselined in, which is where the member StackSet forwards from. An account that left the
    ML OUs lost its queues with its stack instance, and is not among the governed accounts."""
    return sorted(
        {(str(item["account_id"]), str(region)) for item in items for region in item.get("regions") or ()}
    )


def _problem(error: ClientError | BotoCoreError | RoleAssumptionError) -> str:
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "Error")
        if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            return (
                f"no queue {FORWARDING_DEAD_LETTER_QUEUE}: the member StackSet has no instance in this Region"
            )
        return f"{error.operation_name}: {code}"
    return one_line(error)


def read_queue(account_id: str, region: str) -> QueueReading:
    """The number of events the forwarding queue of `account_id` in `region` keeps (visible, in flight
    and delayed alike: none of them reached the governance bus)."""
    try:
        sqs = client("sqs", account_id, region)
        url = sqs.get_queue_url(QueueName=FORWARDING_DEAD_LETTER_QUEUE, QueueOwnerAWSAccountId=account_id)
        attributes = sqs.get_queue_attributes(
            QueueUrl=url["QueueUrl"],
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
    except (ClientError, BotoCoreError, RoleAssumptionError) as error:
        return QueueReading(account_id, region, problem=_problem(error))
    messages = sum(int(value) for value in attributes.values())
    try:
        lost = events_lost(account_id, region)
    except (ClientError, BotoCoreError, RoleAssumptionError) as error:
        # The queue was read; what was lost was not. A role from before the grant (docs/rollout.md) is
        # refused: not a reading of zero.
        problem = f"lost events not read: {_problem(error)}"
        if isinstance(error, ClientError) and "AccessDenied" in error.response.get("Error", {}).get(
            "Code", ""
        ):
            problem += (
                " (update the member StackSet: GovernanceExecutionRole needs cloudwatch:GetMetricStatistics)"
            )
        return QueueReading(account_id, region, messages=messages, problem=problem)
    return QueueReading(account_id, region, messages=messages, lost=lost)


def events_lost(account_id: str, region: str) -> int:
    """How many events the forwarding rules of `account_id` in `region` could put neither on the governance
    bus nor in the forwarding queue, over the last LOST_EVENTS_LOOKBACK. GetMetricStatistics, one call per
    rule: unlike GetMetricData, it has no resource-level permissions to leave out of the member role."""
    now = datetime.now(UTC)
    cloudwatch = client("cloudwatch", account_id, region)
    lost = 0.0
    for rule in FORWARDING_RULES:
        statistics = cloudwatch.get_metric_statistics(
            Namespace="AWS/Events",
            MetricName="InvocationsFailedToBeSentToDlq",
            Dimensions=[{"Name": "RuleName", "Value": rule}],
            StartTime=now - LOST_EVENTS_LOOKBACK,
            EndTime=now,
            Period=60,  # the metric's own resolution: the sum counts the lookback, not whole older periods
            Statistics=["Sum"],
        )
        lost += sum(point.get("Sum", 0.0) for point in statistics.get("Datapoints", []))
    return int(lost)


def watch() -> list[QueueReading]:
    """Read every forwarding queue of the governed accounts, in (account, Region) order: accounts side
    by side, the Regions of one account one after the other, so each account's role is assumed once."""
    by_account: dict[str, list[str]] = {}
    for account_id, region in watched_queues(governed_accounts()):
        by_account.setdefault(account_id, []).append(region)
    if not by_account:
        return []

    def read_account(account_id: str) -> list[QueueReading]:
        return [read_queue(account_id, region) for region in by_account[account_id]]

    with ThreadPoolExecutor(max_workers=min(_READERS, len(by_account))) as readers:
        return [reading for readings in readers.map(read_account, by_account) for reading in readings]
