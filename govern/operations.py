"""Operating the deployed backbone from a workstation: read the ledger back, redrive dead-lettered events."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from governance import baseline, ledger
from governance.ledger import LedgerEntry
from governance.sessions import client, forget_sessions
from governance.settings import Settings, settings

# Outputs of the backbone stack (template.yaml) the operations read when given --stack-name.
LEDGER_TABLE_OUTPUT = "LedgerTableName"
INVENTORY_TABLE_OUTPUT = "AccountInventoryTableName"
QUEUE_OUTPUTS = {
    "events": "EventsDeadLetterQueueUrl",
    "config-compliance": "ConfigComplianceDeadLetterQueueUrl",
}
# Where a workflow's dead-lettered event goes back to: the `flow` attribute RecordFailure puts on a
# message (governance.failures.dead_letter) -> the logical id of that flow's entry point in the stack.
FLOW_ENTRY_POINTS = {
    "model-promotion": "ModelPromotionStateMachine",
    "model-deployment": "ModelDeploymentStateMachine",
    "account-baseline": "AccountBaselineStateMachine",
    "config-remediation": "ConfigComplianceQueue",
}
# Step Functions execution names: at most 80 characters of letters, digits, - and _.
_EXECUTION_NAME_LIMIT = 80
_MAX_REDRIVES_OF_ONE_EVENT = 1000
_MAX_HOLD_SECONDS = 43_200  # the longest visibility timeout SQS accepts
_HOLD_MARGIN_SECONDS = 15  # a delivery and its delete must both fall inside the hold


class OperationError(RuntimeError):
    """The operation cannot run as asked (missing table, unknown stack output...); one line for a human."""


# ---------------------------------------------------------------- where the stack is


@contextlib.contextmanager
def governance_account(
    *,
    ledger_table: str | None = None,
    inventory_table: str | None = None,
    ou_environment_map: str | None = None,
    region: str | None = None,
) -> Iterator[str]:
    """Run the layer's code (ledger and inventory readers, sessions) from outside Lambda, with the caller's
    credentials as the governance account's. Yields the account id.

    The settings are pinned for this context only (settings.pinned), the process's environment is left as
    it is: the emulated functions run in the operator's process in tests and `govern`, and a workflow a
    redrive starts must not see the operator's Region or tables as its own."""
    resolved_region = region or os.environ.get("AWS_REGION") or boto3.Session().region_name
    if not resolved_region:
        # Not us-east-1 by default: a stack elsewhere would read as "does not exist".
        raise OperationError(
            "no AWS Region: pass --region with the backbone's Region, or set AWS_REGION or the "
            "profile's region"
        )
    environment = {**os.environ, "AWS_REGION": resolved_region}
    if ledger_table:
        environment["LEDGER_TABLE"] = ledger_table
    if inventory_table:
        environment["INVENTORY_TABLE"] = inventory_table
    if ou_environment_map is not None:
        environment["OU_ENVIRONMENT_MAP"] = ou_environment_map
    if not environment.get("GOVERNANCE_ACCOUNT_ID"):
        # The one call made before the layer's sessions know which account is "ours".
        identity = boto3.client("sts", region_name=resolved_region).get_caller_identity()
        environment["GOVERNANCE_ACCOUNT_ID"] = identity["Account"]
    # The caller's credentials may have changed since the last operation (another profile).
    forget_sessions()
    try:
        with settings.pinned(Settings.from_environment(environment)):
            yield settings().require("governance_account_id")
    finally:
        forget_sessions()


def _described_stack(stack_name: str) -> dict[str, Any]:
    """DescribeStacks of the deployed backbone stack (in the governance account)."""
    try:
        stacks = client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        raise OperationError(
            f"stack {stack_name}: {error.response['Error'].get('Message', error)}"
        ) from error
    return stacks[0]  # type: ignore[no-any-return]


def stack_outputs(stack_name: str) -> dict[str, str]:
    """The outputs of the deployed backbone stack, by output key."""
    return {
        output["OutputKey"]: output["OutputValue"]
        for output in _described_stack(stack_name).get("Outputs", [])
    }


def stack_parameter(stack_name: str, key: str) -> str:
    """A parameter value of the deployed backbone stack."""
    for parameter in _described_stack(stack_name).get("Parameters", []):
        if parameter["ParameterKey"] == key:
            return str(parameter.get("ResolvedValue", parameter.get("ParameterValue", "")))
    raise OperationError(f"stack {stack_name} has no parameter {key} (is it the backbone stack?)")


def stack_output(stack_name: str, key: str) -> str:
    outputs = stack_outputs(stack_name)
    if key not in outputs:
        raise OperationError(f"stack {stack_name} has no output {key} (is it the backbone stack?)")
    return outputs[key]


def flow_entry_points(stack_name: str) -> dict[str, str]:
    """flow -> state machine ARN or queue URL of the deployed stack (physical ids of FLOW_ENTRY_POINTS)."""
    physical: dict[str, str] = {}
    paginator = client("cloudformation").get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack_name):
        for resource in page["StackResourceSummaries"]:
            physical[resource["LogicalResourceId"]] = resource.get("PhysicalResourceId", "")
    return {flow: physical[lid] for flow, lid in FLOW_ENTRY_POINTS.items() if physical.get(lid)}


# ---------------------------------------------------------------- govern ledger


def ledger_listing(
    subject: str | None = None,
    account: str | None = None,
    event_id: str | None = None,
    *,
    table: str,
    region: str | None = None,
) -> list[LedgerEntry]:
    """The decisions about one resource or model version (its ARN or id), one account, or one event,
    oldest first, read from the ledger table of the deployed backbone."""
    chosen = [
        name for name, value in (("subject", subject), ("account", account), ("event_id", event_id)) if value
    ]
    if len(chosen) != 1:
        raise OperationError("give exactly one of subject, account or event id")
    if not table:
        raise OperationError("no ledger table: pass --table or --stack-name")
    with governance_account(ledger_table=table, region=region):
        try:
            if subject:
                return ledger.entries_for_subject(subject)
            if account:
                return ledger.entries_for_account(account)
            return ledger.entries_for_event(str(event_id))
        except ClientError as error:
            raise OperationError(
                f"ledger table {table}: {error.response['Error'].get('Message', error)}"
            ) from error


# ---------------------------------------------------------------- govern redrive

RedriveStatus = Literal["moved", "would-move", "left"]


@dataclass
class RedrivenMessage:
    """One dead-lettered message: where it came from, where it goes back to, what happened."""

    message_id: str
    event_id: str
    why_dead_lettered: str
    destination: str  # state machine ARN, queue URL, or "" when unknown
    status: RedriveStatus
    note: str = ""
    execution_arn: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _string_attributes(message: dict[str, Any]) -> dict[str, str]:
    return {
        name: str(value.get("StringValue", ""))
        for name, value in (message.get("MessageAttributes") or {}).items()
        if "StringValue" in value
    }


def _sendable_attributes(message: dict[str, Any]) -> dict[str, Any]:
    """Message attributes as SendMessage accepts them (ReceiveMessage adds reserved list fields)."""
    sendable: dict[str, Any] = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        kept = {key: value[key] for key in ("DataType", "StringValue", "BinaryValue") if key in value}
        if "DataType" in kept:
            sendable[name] = kept
    return sendable


def _why(attributes: dict[str, str]) -> str:
    """The reason the message was dead-lettered, as EventBridge or RecordFailure wrote it."""
    if attributes.get("ERROR_CODE") or attributes.get("ERROR_MESSAGE"):
        return f"{attributes.get('ERROR_CODE', 'ERROR')}: {attributes.get('ERROR_MESSAGE', '')}".strip()
    return attributes.get("error", "")


def _why_from_ledger(event_id: str) -> str:
    """Why a flow gave the event up, as it wrote it in the ledger (a `dead_letter` decision, the newest):
    a queue's own DLQ (the compliance queue's) keeps the message but not the reason. "" when the ledger is
    not known, cannot be read, or says nothing."""
    if not event_id or not settings().ledger_table:
        return ""
    try:
        entries = ledger.entries_for_event(event_id)
    except (ClientError, BotoCoreError):
        return ""
    for entry in reversed(entries):
        if entry.action == "dead_letter":
            return _one_line(entry.detail.get("error") or entry.detail.get("reason") or "")
    return ""


# A Region in a queue URL's host: sqs.eu-west-1.amazonaws.com, eu-west-1.queue.amazonaws.com (legacy),
# sqs-fips.us-gov-west-1.amazonaws.com, sqs.cn-north-1.amazonaws.com.cn, vpce-...sqs.eu-west-1.vpce...
_REGION_IN_HOST = re.compile(r"(?:^|[.-])([a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-[0-9]+)(?=\.)")


def _region_of_queue(queue_url: str) -> str:
    """`eu-west-1` from `https://sqs.eu-west-1.amazonaws.com/...` (and the other forms of a queue URL's
    host); "" when the URL does not say."""
    host = re.sub(r"^https?://", "", queue_url).split("/", 1)[0]
    if host == "queue.amazonaws.com":  # the legacy host of us-east-1, which names no Region
        return "us-east-1"
    found = _REGION_IN_HOST.search(host)
    return found.group(1) if found else ""


def _region_of_arn(arn: str) -> str | None:
    """The Region an ARN names (`arn:aws:states:eu-west-1:...`): where its service must be called, whatever
    Region the caller's profile names. None when it names none."""
    parts = arn.split(":", 4)
    return (parts[3] or None) if len(parts) > 4 else None


def _queue_url_of(arn: str) -> str:
    _, _, _, region, account, name = arn.split(":", 5)
    sqs = client("sqs", region=region or None)
    return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


def _hold_for(sqs: Any, queue_url: str) -> int:
    """How long to hold the queue's messages while a redrive handles them one by one: two minutes, and 5 s
    more a message (a forwarding DLQ's message takes several lookups), within SQS's 12-hour limit."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    count = int(attributes.get("Attributes", {}).get("ApproximateNumberOfMessages") or 0)
    return min(_MAX_HOLD_SECONDS, 120 + 5 * count)


def _read_all(sqs: Any, queue_url: str, hold_seconds: int) -> list[dict[str, Any]]:
    """Every message of the queue, each held invisible for `hold_seconds` while the redrive handles it.
    A standard queue can hand out a copy of a message already read: a page of only those is not the end."""
    seen: dict[str, dict[str, Any]] = {}
    pages_without_news = 0
    while pages_without_news < 3:
        page = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=hold_seconds,
            # Long polling asks every SQS server, so an empty answer means an empty queue.
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not page:
            break
        fresh = [message for message in page if message["MessageId"] not in seen]
        pages_without_news = 0 if fresh else pages_without_news + 1
        for message in page:
            if message["MessageId"] in seen:
                # A copy: only the newest receipt handle deletes the message for sure (DeleteMessage).
                seen[message["MessageId"]]["ReceiptHandle"] = message["ReceiptHandle"]
            else:
                seen[message["MessageId"]] = message
    return list(seen.values())


def _release(sqs: Any, queue_url: str, message: dict[str, Any]) -> None:
    """Make a message visible again at once (dry run, or a redrive that did not happen)."""
    with contextlib.suppress(ClientError, BotoCoreError):
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )


def execution_name(event_id: str, redrive_number: int, prefix: str = "redrive-") -> str:
    """`redrive-<event id>-<n>`: the n-th redrive of an event, a valid and recognisable execution name."""
    suffix = f"-{redrive_number}"
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "-", event_id) or "event"
    return (prefix + cleaned)[: _EXECUTION_NAME_LIMIT - len(suffix)] + suffix


def _start_execution(state_machine_arn: str, event: dict[str, Any], prefix: str = "redrive-") -> str:
    """Start the state machine with the event as input, named after the event and a count (after `prefix`):
    a name already used (an earlier redrive) moves on to the next number. Called in the state machine's own
    Region, which the caller's profile need not name."""
    sfn = client("stepfunctions", region=_region_of_arn(state_machine_arn))
    for number in range(1, _MAX_REDRIVES_OF_ONE_EVENT + 1):
        try:
            response = sfn.start_execution(
                stateMachineArn=state_machine_arn,
                name=execution_name(str(event.get("id", "")), number, prefix),
                input=json.dumps(event),
            )
        except ClientError as error:
            if error.response["Error"].get("Code") == "ExecutionAlreadyExists":
                continue
            raise
        return str(response["executionArn"])
    raise OperationError(f"event {event.get('id')} was already redriven {_MAX_REDRIVES_OF_ONE_EVENT} times")


def _bus_destination(bus_arn: str, body: str) -> tuple[str, str]:
    """(destination, note) for an event a forwarding rule could not put on the governance bus: the target
    of the bus rule that matches it now, as the bus would have routed it (TestEventPattern)."""
    _, _, _, region, account, resource = bus_arn.split(":", 5)
    bus = resource.removeprefix("event-bus/")
    if account != settings().require("governance_account_id"):
        return "", f"the bus {bus_arn} is in account {account}: run with that account's credentials"
    events = client("events", region=region)
    targets: list[str] = []
    for page in events.get_paginator("list_rules").paginate(EventBusName=bus):
        for rule in page["Rules"]:
            # A rule an AWS service manages is not the backbone's: the bus archive's own rule
            # (`Events-Archive-<name>`) matches every event and reshapes it for the archive.
            if rule.get("ManagedBy") or rule.get("State") != "ENABLED" or not rule.get("EventPattern"):
                continue
            if not events.test_event_pattern(EventPattern=rule["EventPattern"], Event=body)["Result"]:
                continue
            listed = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus)["Targets"]
            for target in listed:
                if {"Input", "InputPath", "InputTransformer"} & set(target):
                    return "", f"the target of rule {rule['Name']} transforms the event; redrive it by hand"
                targets.append(str(target["Arn"]))
    if not targets:
        return "", f"no rule of the bus {bus} matches the event now, so the backbone would not act on it"
    if len(targets) > 1:
        matched = ", ".join(targets)
        return "", f"{len(targets)} targets of the bus {bus} match the event ({matched}); redrive it by hand"
    return targets[0], ""


def _destination(attributes: dict[str, str], entry_points: dict[str, str], body: str) -> tuple[str, str]:
    """(destination, note): the rule target EventBridge could not deliver to (for a forwarding rule, the
    governance bus: then the target of the bus rule the event matches), or the flow's entry point."""
    target = attributes.get("TARGET_ARN", "")
    if ":event-bus/" in target:
        return _bus_destination(target, body)
    if target:
        return target, ""
    flow = attributes.get("flow", "")
    if flow and flow in entry_points:
        return entry_points[flow], ""
    if flow:
        return "", f"flow {flow!r} has no known entry point (pass --stack-name of the backbone stack)"
    return "", "no TARGET_ARN or flow attribute: where it came from is unknown; left in the queue"


def _deliver(destination: str, body: str) -> str:
    """Send one event back; returns the execution ARN for a state machine, "" for a queue."""
    if ":states:" in destination:
        event = json.loads(body)
        if not isinstance(event, dict):
            raise OperationError("the message body is not a JSON event")
        return _start_execution(destination, event)
    if destination.startswith("arn:"):
        queue_url, region = _queue_url_of(destination), _region_of_arn(destination)
    else:
        queue_url, region = destination, _region_of_queue(destination) or None
    client("sqs", region=region).send_message(QueueUrl=queue_url, MessageBody=body)
    return ""


def redrive(
    queue_url: str,
    dry_run: bool,
    *,
    entry_points: dict[str, str] | None = None,
    region: str | None = None,
    hold_seconds: int | None = None,
    queue_session: boto3.Session | None = None,
    ledger_table: str | None = None,
) -> list[RedrivenMessage]:
    """Move every message of a dead-letter queue back to where it failed, or, with dry_run, say where
    each would go and move nothing.

    A queue that is some SQS queue's dead-letter queue (ConfigComplianceDeadLetterQueue) goes back to that
    source queue as it is. Otherwise (EventsDeadLetterQueue) each message goes to its own destination:
    the rule target EventBridge names in TARGET_ARN, or the entry point of the `flow` RecordFailure
    names. An `aws.*` event cannot be put on a bus again (PutEvents refuses the reserved sources), so a
    state machine gets StartExecution with the event as input and a queue gets SendMessage.

    A forwarding dead-letter queue of a member or the management account is read (and emptied) through
    `queue_session`, credentials of that account; each event goes to the target of the governance bus
    rule it matches, delivered with the caller's (governance account) credentials.

    Why each message was dead-lettered comes from its attributes (EventBridge's ERROR_CODE and
    ERROR_MESSAGE, RecordFailure's `error`), else from the ledger (`ledger_table`), where the compliance
    queue's function records why it gave an evaluation up.
    """
    # A governance dead-letter queue is in the backbone's Region, which its URL names: without --region,
    # the profile's Region would look for the queue somewhere else ("the specified queue does not exist").
    with governance_account(
        ledger_table=ledger_table,
        region=region or (None if queue_session else _region_of_queue(queue_url) or None),
    ):
        sqs = (
            queue_session.client("sqs", region_name=_region_of_queue(queue_url) or settings().region)
            if queue_session is not None
            else client("sqs")
        )
        sources = sqs.list_dead_letter_source_queues(QueueUrl=queue_url).get("queueUrls", [])
        if len(sources) > 1:
            raise OperationError(
                f"{queue_url} is the dead-letter queue of several queues: {', '.join(sources)}"
            )
        results: list[RedrivenMessage] = []
        # Held invisible while handled (also in a dry run, so paging does not see a message twice), for
        # long enough to handle them all (_hold_for). A message whose hold ran out before its turn may
        # have been read by someone else: it is left, not delivered on a receipt that no longer holds it.
        hold = hold_seconds if hold_seconds is not None else _hold_for(sqs, queue_url)
        held_until = time.monotonic() + hold - _HOLD_MARGIN_SECONDS
        messages = _read_all(sqs, queue_url, hold)
        handled = 0
        try:
            for message in messages:
                results.append(
                    _redrive_one(sqs, queue_url, message, sources, entry_points, dry_run, hold, held_until)
                )
                handled += 1
        finally:
            # Interrupted (Ctrl-C, an unexpected error): what was not handled is visible again at once,
            # not held for the rest of a hold that can last hours. The one being handled may have been
            # delivered already; a second redrive of it has the effect of one.
            for message in messages[handled:]:
                _release(sqs, queue_url, message)
        return results


def _redrive_one(
    sqs: Any,
    queue_url: str,
    message: dict[str, Any],
    sources: list[str],
    entry_points: dict[str, str] | None,
    dry_run: bool,
    hold: int,
    held_until: float,
) -> RedrivenMessage:
    """Find where one held message goes and, unless dry_run, deliver it there and delete it."""
    attributes = _string_attributes(message)
    body = message["Body"]
    try:
        event_id = str(json.loads(body).get("id", ""))
    except (json.JSONDecodeError, AttributeError):
        event_id = ""
    try:
        destination, note = (
            (sources[0], "") if sources else _destination(attributes, entry_points or {}, body)
        )
    except (ClientError, BotoCoreError) as error:
        # One message's lookup (ListRules, TestEventPattern...) failing must not stop the others
        # nor hide what already moved: this one stays in the queue, said why.
        destination, note = "", f"could not find where it goes: {_one_line(error)}"
    event_id = event_id or attributes.get("event_id", "")
    result = RedrivenMessage(
        message_id=message["MessageId"],
        event_id=event_id,
        why_dead_lettered=_why(attributes) or _why_from_ledger(event_id),
        destination=destination,
        status="left" if not destination else ("would-move" if dry_run else "moved"),
        note=note,
        attributes=attributes,
    )
    if dry_run or not destination:
        _release(sqs, queue_url, message)
        return result
    if time.monotonic() > held_until:
        result.status = "left"
        result.note = f"its {hold} s hold ran out before its turn: run the redrive again"
        return result
    try:
        if sources:
            # SQS keeps a dead-letter queue in its source queue's account and Region: the same client.
            sqs.send_message(
                QueueUrl=destination,
                MessageBody=body,
                MessageAttributes=_sendable_attributes(message),
            )
        else:
            result.execution_arn = _deliver(destination, body)
    except (ClientError, BotoCoreError, OperationError, json.JSONDecodeError) as error:
        # A network error after botocore's retries too: this message stays, the others go on, and
        # the report still says what already moved.
        result.status = "left"
        result.note = f"could not deliver: {_one_line(error)}"
        _release(sqs, queue_url, message)
        return result
    # Deleted only once the destination has it: a crash in between redrives it twice, and every
    # flow is idempotent on what identifies the change, so twice has the effect of once.
    try:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    except (ClientError, BotoCoreError) as error:
        result.note = (
            f"delivered, but not deleted from the queue ({_one_line(error)}): it comes back after "
            "its hold, and a second redrive of it has the effect of one"
        )
    return result


def _one_line(error: object) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".strip()
    return " ".join(str(error).split()) or type(error).__name__


# ---------------------------------------------------------------- govern rebaseline, govern enroll


@dataclass
class BaselineStart:
    """One account the AccountBaseline workflow is started for (or would be, in a dry run)."""

    account_id: str
    account_name: str
    ou_name: str
    from_version: str  # "" for an account the inventory does not hold as governed
    to_version: str
    status: Literal["started", "would-start", "failed"]
    event_id: str = ""
    execution_arn: str = ""
    note: str = ""
    # "baseline", or why a governed account is deregistered: "moved", "closed", "removed" (govern enroll).
    change: str = "baseline"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _govern_event(
    source: str, detail_type: str, account: str, region: str, operation: str, detail: dict[str, Any]
) -> dict[str, Any]:
    """An AWS event as the workflow receives it, for a change govern starts: a fresh id, the current time
    (so the inventory takes it as the newest lifecycle change), a fresh CloudTrail id in `detail`."""
    now = baseline.utc_timestamp(datetime.now(UTC))
    return {
        "version": "0",
        "id": f"govern-{operation}-{uuid.uuid4()}",
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": now,
        "region": region,
        "resources": [],
        "detail": {
            "eventTime": now,
            "eventID": str(uuid.uuid4()),
            **detail,
            # Not AWS's: who started it, for whoever reads the execution's input.
            "startedBy": f"govern {operation}",
        },
    }


def update_account_event(account: dict[str, Any], caller: str, region: str, operation: str) -> dict[str, Any]:
    """A successful UpdateManagedAccount for `account` (account_id, account_name, ou_name, ou_id) as
    Account Factory's "Update account" emits it: the workflow applies the current baseline, or, for an OU
    outside the map, deregisters the account as moved."""
    status = {
        "organizationalUnit": {
            "organizationalUnitName": str(account.get("ou_name", "")),
            "organizationalUnitId": str(account.get("ou_id", "")),
        },
        "account": {
            "accountName": str(account.get("account_name", "")),
            "accountId": str(account["account_id"]),
        },
        "state": "SUCCEEDED",
        "message": f"Started by govern {operation}: baseline {baseline.BASELINE_VERSION}.",
    }
    detail = {
        "eventSource": "controltower.amazonaws.com",
        "eventName": "UpdateManagedAccount",
        "eventType": "AwsServiceEvent",
        "serviceEventDetails": {"updateManagedAccountStatus": status},
    }
    return _govern_event(
        "aws.controltower", "AWS Service Event via CloudTrail", caller, region, operation, detail
    )


def organizations_call_event(
    event_name: str, account_id: str, management_account: str, region: str, operation: str
) -> dict[str, Any]:
    """A successful CloseAccount or RemoveAccountFromOrganization of `account_id` as CloudTrail records it
    in the management account: the workflow deregisters the account as it does when the call's own record
    arrives (for a record that was lost, or a call made before the backbone was deployed)."""
    detail = {
        "eventSource": "organizations.amazonaws.com",
        "eventName": event_name,
        "eventType": "AwsApiCall",
        "requestParameters": {"accountId": account_id},
    }
    return _govern_event(
        "aws.organizations", "AWS API Call via CloudTrail", management_account, region, operation, detail
    )


DEPARTURE_CALLS = {"closed": "CloseAccount", "removed": "RemoveAccountFromOrganization"}


def _start_baselines(
    state_machine_arn: str,
    dry_run: bool,
    accounts: list[dict[str, Any]],
    operation: str,
    caller: str,
    management_account: str = "",
) -> list[BaselineStart]:
    """Start the workflow for each account (a dry run lists them): one execution, one event, each. An
    account with a `change` of moved, closed or removed is deregistered rather than baselined."""
    results: list[BaselineStart] = []
    for account in accounts:
        change = str(account.get("change", "baseline"))
        result = BaselineStart(
            account_id=str(account["account_id"]),
            account_name=str(account.get("account_name", "")),
            ou_name=str(account.get("ou_name", "")),
            from_version=str(account.get("baseline_version", "")),
            to_version=baseline.BASELINE_VERSION if change == "baseline" else "",
            status="would-start" if dry_run else "started",
            change=change,
            note=str(account.get("note", "")),
        )
        results.append(result)
        if dry_run:
            continue
        if change in DEPARTURE_CALLS:
            event = organizations_call_event(
                DEPARTURE_CALLS[change], result.account_id, management_account, settings().region, operation
            )
        else:  # a baseline, or a move out of the ML OUs: Account Factory's update into the OU it is in now
            event = update_account_event(account, caller, settings().region, operation)
        result.event_id = event["id"]
        try:
            # The event id already says what started it: govern-rebaseline-<uuid>-1.
            result.execution_arn = _start_execution(state_machine_arn, event, prefix="")
        except (ClientError, BotoCoreError, OperationError) as error:
            result.status = "failed"
            result.note = f"could not start: {_one_line(error)}"
    return results


def rebaseline(
    state_machine_arn: str,
    dry_run: bool,
    *,
    inventory_table: str,
    region: str | None = None,
    baseline_regions: str | None = None,
) -> list[BaselineStart]:
    """Start the AccountBaseline workflow for every governed account of the inventory on an older baseline
    version than this release's, or, given the deployed BaselineRegions, baselined in other Regions
    (baseline.accounts_on_older_baseline); with dry_run, list them and start nothing. The workflow applies,
    verifies, registers and announces as for a Control Tower update."""
    try:
        regions = baseline.region_list(baseline_regions) if baseline_regions is not None else None
    except baseline.BaselineConfigurationError as error:
        raise OperationError(str(error)) from None
    with governance_account(inventory_table=inventory_table, region=region) as caller:
        # An empty BaselineRegions means the functions' own Region, the stack's (baseline_regions()).
        accounts = baseline.accounts_on_older_baseline(
            regions=[settings().region] if regions == [] else regions
        )
        return _start_baselines(state_machine_arn, dry_run, accounts, "rebaseline", caller)


def accounts_in_ml_ous(organizations: Any, mapping: dict[str, str]) -> list[dict[str, str]]:
    """Every active account directly in an OU the OU map holds (by id or name), anywhere in the organization's
    tree: account_id, account_name, ou_name, ou_id (what a Control Tower lifecycle event says)."""
    found: list[dict[str, str]] = []
    parents = [
        root["Id"] for page in organizations.get_paginator("list_roots").paginate() for root in page["Roots"]
    ]
    while parents:
        parent = parents.pop()
        units = organizations.get_paginator("list_organizational_units_for_parent").paginate(ParentId=parent)
        for unit in (unit for page in units for unit in page["OrganizationalUnits"]):
            parents.append(unit["Id"])
            if not baseline.environment_of_ou(unit["Id"], unit["Name"], mapping):
                continue
            accounts = organizations.get_paginator("list_accounts_for_parent").paginate(ParentId=unit["Id"])
            for account in (account for page in accounts for account in page["Accounts"]):
                # `State` replaces `Status` in newer responses; a suspended or closing account is left out.
                if account.get("State", account.get("Status")) == "ACTIVE":
                    found.append(
                        {
                            "account_id": account["Id"],
                            "account_name": account.get("Name", ""),
                            "ou_name": unit["Name"],
                            "ou_id": unit["Id"],
                        }
                    )
    return sorted(found, key=lambda account: account["account_id"])


def whereabouts(organizations: Any, account_id: str) -> dict[str, str]:
    """Where a governed account found in no ML OU is now: `change` moved (with the OU it is in, or the
    root), closed (suspended, or closing), or removed (the organization does not know it)."""
    try:
        described = organizations.describe_account(AccountId=account_id)["Account"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "AccountNotFoundException":
            raise
        return {"change": "removed", "ou_name": "", "note": "no longer in the organization"}
    state = str(described.get("State", described.get("Status", "")))
    if state != "ACTIVE":
        return {"change": "closed", "ou_name": "", "note": f"account state {state}"}
    [parent] = organizations.list_parents(ChildId=account_id)["Parents"]
    if parent["Type"] == "ROOT":
        return {"change": "moved", "ou_name": "Root", "ou_id": parent["Id"], "note": "moved to the root"}
    unit = organizations.describe_organizational_unit(OrganizationalUnitId=parent["Id"])["OrganizationalUnit"]
    return {
        "change": "moved",
        "ou_name": unit["Name"],
        "ou_id": unit["Id"],
        "note": f"moved to {unit['Name']}",
    }


def enroll(
    state_machine_arn: str,
    dry_run: bool,
    *,
    inventory_table: str,
    ou_environment_map: str,
    organizations_session: boto3.Session,
    region: str | None = None,
) -> list[BaselineStart]:
    """Bring the inventory in line with the organization. Start the AccountBaseline workflow for every
    active account of the ML OUs (OU_ENVIRONMENT_MAP) that the inventory does not hold as governed:
    accounts enrolled in Control Tower before the backbone was deployed, or moved into an ML OU outside
    Account Factory. And for every account the inventory governs that is in no ML OU any more, to
    deregister it: moved out outside Account Factory (the Organizations console's move, which Control
    Tower does not announce), closed or removed while the backbone missed the call's record.
    `organizations_session` reads the organization (the management account, or an Organizations delegated
    administrator)."""
    with governance_account(
        inventory_table=inventory_table, ou_environment_map=ou_environment_map, region=region
    ) as caller:
        mapping = baseline.ou_environment_map()
        if not mapping:
            raise OperationError("the OU map is empty: no OU holds ML accounts")
        organizations = organizations_session.client("organizations", region_name=settings().region)
        in_ml_ous = accounts_in_ml_ous(organizations, mapping)
        governed = {str(item["account_id"]): item for item in baseline.governed_accounts()}
        accounts = []
        for account in in_ml_ous:
            item = governed.get(account["account_id"]) or baseline.inventory_item(account["account_id"]) or {}
            if item.get("baseline_status") == "baselined":
                continue  # governed already; `govern rebaseline` brings it to a newer baseline
            accounts.append({**account, "baseline_version": item.get("baseline_version", "")})
        found = {account["account_id"] for account in in_ml_ous}
        for account_id, item in sorted(governed.items()):
            if account_id in found:
                continue
            accounts.append(
                {
                    "account_id": account_id,
                    "account_name": str(item.get("account_name", "")),
                    "baseline_version": str(item.get("baseline_version", "")),
                    **whereabouts(organizations, account_id),
                }
            )
        management = ""
        if any(account.get("change") in DEPARTURE_CALLS for account in accounts):
            management = organizations.describe_organization()["Organization"]["MasterAccountId"]
        return _start_baselines(state_machine_arn, dry_run, accounts, "enroll", caller, management)
