"""`govern ledger` and `govern redrive` against AWS through boto3, here on moto: the ledger is read back,
dead-lettered events leave their queue and arrive where they failed, and a dry run moves nothing."""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from govern import cli, operations
from govern.emulator import PROJECT_ROOT
from govern.operations import (
    OperationError,
    execution_name,
    governance_account,
    ledger_listing,
    redrive,
    stack_output,
)
from govern.template import load_template
from governance.baseline import BASELINE_VERSION
from governance.errors import MalformedEvent
from governance.events import parse_event
from governance.events.config import ConfigComplianceChange
from governance.failures import dead_letter
from governance.ledger import LedgerEntry, record
from governance.remediation.engine import record_rejection
from governance.sessions import session_for
from governance.settings import settings
from tests.conftest import read_event

REGION = "us-east-1"
TEMPLATE = load_template(PROJECT_ROOT / "template.yaml")


@dataclass
class Backbone:
    """The parts of the deployed stack the operations touch, created as template.yaml creates them."""

    account: str
    ledger_table: str
    events_dlq: str
    config_queue: str
    config_queue_arn: str
    config_dlq: str
    promotion_arn: str
    baseline_arn: str

    def sqs(self) -> Any:
        return boto3.client("sqs", region_name=REGION)

    def sfn(self) -> Any:
        return boto3.client("stepfunctions", region_name=REGION)


def _properties(logical_id: str) -> dict[str, Any]:
    return TEMPLATE["Resources"][logical_id]["Properties"]  # type: ignore[no-any-return]


def _create_table(logical_id: str, name: str) -> None:
    """The table as template.yaml defines it: keys, indexes, billing."""
    properties = _properties(logical_id)
    keys = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=name, **{key: properties[key] for key in keys if key in properties}
    )


def _queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


@pytest.fixture
def backbone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Backbone]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_REGION", "GOVERNANCE_ACCOUNT_ID", "LEDGER_TABLE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        _create_table("LedgerTable", "ml-governance-dev-ledger")
        sqs = boto3.client("sqs", region_name=REGION)
        events_dlq, _ = _queue(sqs, "ml-governance-dev-events-dlq")
        config_dlq, config_dlq_arn = _queue(sqs, "ml-governance-dev-config-compliance-dlq")
        max_receives = _properties("ConfigComplianceQueue")["RedrivePolicy"]["maxReceiveCount"]
        assert max_receives == {"Ref": "ComplianceMaxReceives"}
        config_queue, config_queue_arn = _queue(
            sqs,
            "ml-governance-dev-config-compliance",
            RedrivePolicy=json.dumps(
                {
                    "deadLetterTargetArn": config_dlq_arn,
                    "maxReceiveCount": TEMPLATE["Parameters"]["ComplianceMaxReceives"]["Default"],
                }
            ),
        )
        sfn = boto3.client("stepfunctions", region_name=REGION)
        role = "arn:aws:iam::123456789012:role/ml-governance/workflow"
        definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
        promotion = sfn.create_state_machine(name="ModelPromotion", definition=definition, roleArn=role)
        baseline = sfn.create_state_machine(name="AccountBaseline", definition=definition, roleArn=role)
        account = boto3.client("sts", region_name=REGION).get_caller_identity()["Account"]
        yield Backbone(
            account=account,
            ledger_table="ml-governance-dev-ledger",
            events_dlq=events_dlq,
            config_queue=config_queue,
            config_queue_arn=config_queue_arn,
            config_dlq=config_dlq,
            promotion_arn=promotion["stateMachineArn"],
            baseline_arn=baseline["stateMachineArn"],
        )


def messages_in(backbone: Backbone, queue_url: str) -> list[dict[str, Any]]:
    """Every message of a queue, read and made visible again (the state, not consumed)."""
    sqs = backbone.sqs()
    seen: dict[str, dict[str, Any]] = {}
    while True:
        page = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30, MessageAttributeNames=["All"]
        ).get("Messages", [])
        fresh = [m for m in page if m["MessageId"] not in seen]
        if not fresh:
            break
        seen.update({m["MessageId"]: m for m in fresh})
    for message in seen.values():
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return list(seen.values())


def executions_of(backbone: Backbone, state_machine_arn: str) -> list[dict[str, Any]]:
    sfn = backbone.sfn()
    listed = sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]
    return [sfn.describe_execution(executionArn=e["executionArn"]) for e in listed]


def eventbridge_dead_letter(backbone: Backbone, event: dict[str, Any], target_arn: str, rule: str) -> None:
    """What EventBridge puts in a target's DLQ: the event as body, the failure as attributes."""
    backbone.sqs().send_message(
        QueueUrl=backbone.events_dlq,
        MessageBody=json.dumps(event),
        MessageAttributes={
            "RULE_ARN": {
                "DataType": "String",
                "StringValue": f"arn:aws:events:{REGION}:{backbone.account}:rule/{rule}",
            },
            "TARGET_ARN": {"DataType": "String", "StringValue": target_arn},
            "ERROR_CODE": {"DataType": "String", "StringValue": "SDK_CLIENT_ERROR"},
            "ERROR_MESSAGE": {"DataType": "String", "StringValue": "Unable to invoke target: throttled"},
        },
    )


def workflow_dead_letter(backbone: Backbone, event: Any, flow: str) -> None:
    """What RecordFailure puts in the events DLQ (governance.failures.dead_letter)."""
    os.environ["DEAD_LETTER_QUEUE_URL"] = backbone.events_dlq
    try:
        with governance_account():
            dead_letter(event, "detail.resourceId: Field required", flow=flow, source="workflow")
    finally:
        os.environ.pop("DEAD_LETTER_QUEUE_URL")


def test_governance_account_keeps_the_operators_settings_to_itself(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `govern` command's Region and tables hold in its own context only: code running beside it in the
    process (the emulated functions, in tests and `govern`) keeps writing where its environment says."""
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("LEDGER_TABLE", backbone.ledger_table)
    monkeypatch.setenv("GOVERNANCE_ACCOUNT_ID", backbone.account)
    settings.cache_clear()
    before = dict(os.environ)
    errors: list[Exception] = []

    def function_beside_the_operator() -> None:
        try:
            record(LedgerEntry("e-beside", "remediate", "done", "arn:aws:s3:::b", flow="test", account="1"))  # type: ignore[arg-type]
        except Exception as error:  # handed to the test's thread, which asserts there was none
            errors.append(error)

    with governance_account(ledger_table="operators-ledger", region="eu-west-1"):
        assert (settings().region, settings().ledger_table) == ("eu-west-1", "operators-ledger")
        assert session_for(backbone.account).region_name == "eu-west-1"
        beside = threading.Thread(target=function_beside_the_operator)
        beside.start()
        beside.join()

    assert errors == []
    assert dict(os.environ) == before
    items = boto3.client("dynamodb", region_name=REGION).scan(TableName=backbone.ledger_table)["Items"]
    assert [item["event_id"]["S"] for item in items] == ["e-beside"]
    settings.cache_clear()


# ---------------------------------------------------------------- govern ledger


def _write_ledger(backbone: Backbone, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_TABLE", backbone.ledger_table)
    monkeypatch.setenv("GOVERNANCE_ACCOUNT_ID", backbone.account)
    settings.cache_clear()
    bucket = "arn:aws:s3:::team-churn-public-data"
    for event_id, action, status, target, account in (
        ("e-1", "remediate", "done", bucket, "210987654321"),
        ("e-1", "notify", "done", "arn:aws:sns:us-east-1:111111111111:security", "210987654321"),
        ("e-2", "remediate", "skipped", bucket, "210987654321"),
        ("e-3", "baseline_account", "done", "333333333333", "333333333333"),
    ):
        record(LedgerEntry(event_id, action, status, target, flow="test", account=account))  # type: ignore[arg-type]
    monkeypatch.delenv("LEDGER_TABLE")
    monkeypatch.delenv("GOVERNANCE_ACCOUNT_ID")
    settings.cache_clear()


def test_ledger_lists_the_decisions_about_a_resource_an_account_or_an_event(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_ledger(backbone, monkeypatch)
    table = backbone.ledger_table
    about_bucket = ledger_listing(subject="arn:aws:s3:::team-churn-public-data", table=table)
    assert [(e.event_id, e.status) for e in about_bucket] == [("e-1", "done"), ("e-2", "skipped")]
    assert [e.action for e in ledger_listing(account="210987654321", table=table)] == [
        "remediate",
        "notify",
        "remediate",
    ]
    assert [e.action for e in ledger_listing(event_id="e-1", table=table)] == ["remediate", "notify"]
    assert [e.target for e in ledger_listing(account="333333333333", table=table)] == ["333333333333"]
    assert ledger_listing(event_id="never-seen", table=table) == []


def test_ledger_listing_leaves_the_environment_as_it_was(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_ledger(backbone, monkeypatch)
    ledger_listing(event_id="e-1", table=backbone.ledger_table)
    assert "LEDGER_TABLE" not in os.environ and "GOVERNANCE_ACCOUNT_ID" not in os.environ


def test_ledger_needs_exactly_one_selector_and_a_table(backbone: Backbone) -> None:
    with pytest.raises(OperationError, match="exactly one"):
        ledger_listing(table=backbone.ledger_table)
    with pytest.raises(OperationError, match="exactly one"):
        ledger_listing(subject="x", account="y", table=backbone.ledger_table)
    with pytest.raises(OperationError, match="no ledger table"):
        ledger_listing(subject="x", table="")
    with pytest.raises(OperationError, match="does-not-exist"):
        ledger_listing(subject="x", table="does-not-exist")


def test_govern_ledger_prints_json(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_ledger(backbone, monkeypatch)
    status = cli.main(["ledger", "--event-id", "e-1", "--table", backbone.ledger_table, "--json"])
    document = json.loads(capsys.readouterr().out)
    assert status == 0
    assert [entry["action"] for entry in document["entries"]] == ["remediate", "notify"]
    assert document["entries"][0]["target"] == "arn:aws:s3:::team-churn-public-data"


class DeployedStack:
    """The backbone stack as CloudFormation describes it (the response shapes of DescribeStacks and
    ListStackResources). moto's CloudFormation needs extras this project does not install."""

    def __init__(
        self, outputs: dict[str, str], resources: dict[str, str], parameters: dict[str, str] | None = None
    ) -> None:
        self.outputs = outputs
        self.resources = resources
        self.parameters = parameters or {}

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        outputs = [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]
        parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()]
        stack = {"StackName": StackName, "StackStatus": "UPDATE_COMPLETE", "Outputs": outputs}
        return {"Stacks": [{**stack, "Parameters": parameters}]}

    def get_paginator(self, operation: str) -> Any:
        assert operation == "list_stack_resources"
        summaries = [
            {
                "LogicalResourceId": logical,
                "PhysicalResourceId": physical,
                "ResourceStatus": "CREATE_COMPLETE",
            }
            for logical, physical in self.resources.items()
        ]

        class Pages:
            def paginate(self, StackName: str) -> list[dict[str, Any]]:
                return [{"StackResourceSummaries": summaries}]

        return Pages()


def deployed_stack(
    monkeypatch: pytest.MonkeyPatch,
    outputs: dict[str, str],
    resources: dict[str, str],
    parameters: dict[str, str] | None = None,
) -> None:
    real_client = operations.client
    stack = DeployedStack(outputs, resources, parameters)

    def client(service: str, *args: Any, **kwargs: Any) -> Any:
        return stack if service == "cloudformation" else real_client(service, *args, **kwargs)

    monkeypatch.setattr(operations, "client", client)


def test_govern_ledger_finds_the_table_in_the_stack_outputs(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_ledger(backbone, monkeypatch)
    deployed_stack(monkeypatch, {"LedgerTableName": backbone.ledger_table}, {})
    with governance_account():
        assert stack_output("ml-governance-dev", "LedgerTableName") == backbone.ledger_table
        with pytest.raises(OperationError, match="no output EventsDeadLetterQueueUrl"):
            stack_output("ml-governance-dev", "EventsDeadLetterQueueUrl")
    assert cli.main(["ledger", "--account", "333333333333", "--stack-name", "ml-governance-dev"]) == 0
    assert "baseline_account" in capsys.readouterr().out


def test_govern_redrive_finds_queue_and_flows_in_the_stack(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    event = read_event("malformed-model-approval")
    workflow_dead_letter(backbone, event, "model-promotion")
    deployed_stack(
        monkeypatch,
        {"EventsDeadLetterQueueUrl": backbone.events_dlq, "LedgerTableName": backbone.ledger_table},
        {"ModelPromotionStateMachine": backbone.promotion_arn, "LedgerTable": backbone.ledger_table},
    )

    assert cli.main(["redrive", "--stack-name", "ml-governance-dev"]) == 0

    assert f"moved      event {event['id']} -> {backbone.promotion_arn}" in capsys.readouterr().out
    assert messages_in(backbone, backbone.events_dlq) == []
    [execution] = executions_of(backbone, backbone.promotion_arn)
    assert json.loads(execution["input"]) == event


def test_govern_ledger_usage_errors(backbone: Backbone, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ledger", "--event-id", "e-1"]) == cli.EXIT_USAGE
    assert "--table or --stack-name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["ledger", "--event-id", "e-1", "--account", "1", "--table", "t"])


def test_govern_without_a_region_says_so_rather_than_look_in_us_east_1(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_ledger(backbone, monkeypatch)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "config").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))

    status = cli.main(["ledger", "--event-id", "e-1", "--table", backbone.ledger_table])

    assert status == cli.EXIT_FAILED
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("govern ledger: no AWS Region: pass --region")
    assert "AWS_REGION" not in os.environ  # the environment is left as it was
    # With the Region given, the same command reads the ledger.
    args = ["ledger", "--event-id", "e-1", "--table", backbone.ledger_table, "--region", REGION, "--json"]
    assert cli.main(args) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(entry["action"] for entry in listed["entries"]) == ["notify", "remediate"]


# ---------------------------------------------------------------- govern redrive


def test_redrive_starts_the_state_machine_eventbridge_could_not_reach(backbone: Backbone) -> None:
    event = read_event("model-approved-in-team-account")
    eventbridge_dead_letter(backbone, event, backbone.promotion_arn, "TeamApproval")

    [moved] = redrive(backbone.events_dlq, dry_run=False)

    assert moved.status == "moved" and moved.destination == backbone.promotion_arn
    assert moved.why_dead_lettered == "SDK_CLIENT_ERROR: Unable to invoke target: throttled"
    assert messages_in(backbone, backbone.events_dlq) == []
    [execution] = executions_of(backbone, backbone.promotion_arn)
    assert execution["name"] == f"redrive-{event['id']}-1"
    assert json.loads(execution["input"]) == event
    assert moved.execution_arn == execution["executionArn"]
    assert executions_of(backbone, backbone.baseline_arn) == []


def test_a_second_redrive_of_the_same_event_is_a_new_numbered_execution(backbone: Backbone) -> None:
    event = read_event("account-created")
    eventbridge_dead_letter(backbone, event, backbone.baseline_arn, "AccountLifecycle")
    redrive(backbone.events_dlq, dry_run=False)
    [first] = executions_of(backbone, backbone.baseline_arn)
    backbone.sfn().stop_execution(executionArn=first["executionArn"])  # it failed again, say
    eventbridge_dead_letter(backbone, event, backbone.baseline_arn, "AccountLifecycle")

    redrive(backbone.events_dlq, dry_run=False)

    names = sorted(e["name"] for e in executions_of(backbone, backbone.baseline_arn))
    assert names == [f"redrive-{event['id']}-1", f"redrive-{event['id']}-2"]
    assert messages_in(backbone, backbone.events_dlq) == []


def test_redrive_sends_a_queue_target_event_back_to_its_queue(backbone: Backbone) -> None:
    event = read_event("config-s3-public-read")
    eventbridge_dead_letter(backbone, event, backbone.config_queue_arn, "ConfigNonComplianceRule")

    [moved] = redrive(backbone.events_dlq, dry_run=False)

    assert moved.status == "moved"
    assert messages_in(backbone, backbone.events_dlq) == []
    [arrived] = messages_in(backbone, backbone.config_queue)
    assert json.loads(arrived["Body"]) == event


def test_redrive_sends_a_workflow_dead_letter_to_its_flow(backbone: Backbone) -> None:
    event = read_event("malformed-model-approval")
    workflow_dead_letter(backbone, event, "model-promotion")
    unknown_flow = read_event("account-updated")
    workflow_dead_letter(backbone, unknown_flow, "some-future-flow")

    results = redrive(
        backbone.events_dlq, dry_run=False, entry_points={"model-promotion": backbone.promotion_arn}
    )

    by_event = {result.event_id: result for result in results}
    assert by_event[event["id"]].status == "moved"
    assert by_event[event["id"]].why_dead_lettered == "detail.resourceId: Field required"
    assert by_event[unknown_flow["id"]].status == "left"
    assert "some-future-flow" in by_event[unknown_flow["id"]].note
    [execution] = executions_of(backbone, backbone.promotion_arn)
    assert json.loads(execution["input"]) == event
    [kept] = messages_in(backbone, backbone.events_dlq)
    assert json.loads(kept["Body"]) == unknown_flow


def test_a_message_from_nowhere_stays_in_the_queue(backbone: Backbone) -> None:
    backbone.sqs().send_message(QueueUrl=backbone.events_dlq, MessageBody="not even JSON")

    [left] = redrive(backbone.events_dlq, dry_run=False)

    assert left.status == "left" and left.destination == ""
    assert [m["Body"] for m in messages_in(backbone, backbone.events_dlq)] == ["not even JSON"]


def test_a_destination_that_refuses_leaves_the_message(backbone: Backbone) -> None:
    event = read_event("account-created")
    gone = backbone.baseline_arn.replace("AccountBaseline", "Deleted")
    eventbridge_dead_letter(backbone, event, gone, "AccountLifecycle")

    [left] = redrive(backbone.events_dlq, dry_run=False)

    assert left.status == "left" and left.note.startswith("could not deliver")
    assert len(messages_in(backbone, backbone.events_dlq)) == 1


def test_dry_run_lists_everything_and_moves_nothing(backbone: Backbone) -> None:
    for number in range(13):  # more than one ReceiveMessage page
        event = {**read_event("account-created"), "id": f"dry-run-{number}"}
        eventbridge_dead_letter(backbone, event, backbone.baseline_arn, "AccountLifecycle")

    listed = redrive(backbone.events_dlq, dry_run=True)

    assert sorted(r.event_id for r in listed) == sorted(f"dry-run-{n}" for n in range(13))
    assert {r.status for r in listed} == {"would-move"}
    assert {r.destination for r in listed} == {backbone.baseline_arn}
    assert len(messages_in(backbone, backbone.events_dlq)) == 13
    assert executions_of(backbone, backbone.baseline_arn) == []


def test_config_compliance_dead_letters_go_back_to_their_source_queue(backbone: Backbone) -> None:
    event = read_event("config-s3-public-read")
    sqs = backbone.sqs()
    sqs.send_message(
        QueueUrl=backbone.config_queue,
        MessageBody=json.dumps(event),
        MessageAttributes={"origin": {"DataType": "String", "StringValue": "eventbridge"}},
    )
    # The function fails it maxReceiveCount times: SQS moves it to the queue's DLQ at the next receive.
    for _ in range(int(TEMPLATE["Parameters"]["ComplianceMaxReceives"]["Default"]) + 1):
        for message in sqs.receive_message(QueueUrl=backbone.config_queue, VisibilityTimeout=0).get(
            "Messages", []
        ):
            assert message["Body"]
    assert len(messages_in(backbone, backbone.config_dlq)) == 1

    assert [r.status for r in redrive(backbone.config_dlq, dry_run=True)] == ["would-move"]
    assert len(messages_in(backbone, backbone.config_dlq)) == 1

    [moved] = redrive(backbone.config_dlq, dry_run=False)

    assert moved.destination == backbone.config_queue and moved.event_id == event["id"]
    assert messages_in(backbone, backbone.config_dlq) == []
    [back] = messages_in(backbone, backbone.config_queue)
    assert json.loads(back["Body"]) == event
    assert back["MessageAttributes"]["origin"]["StringValue"] == "eventbridge"


def test_an_event_kept_for_a_bus_of_another_account_stays_and_says_whose_credentials_it_needs(
    backbone: Backbone,
) -> None:
    """The rules of a bus in another account are not the caller's to read: the event is not matched against
    the caller's own bus of the same name, it stays, and the note says which account to run as."""
    bus = f"arn:aws:events:{REGION}:999999999999:event-bus/ml-governance"
    eventbridge_dead_letter(backbone, read_event("account-created"), bus, "ml-governance-forward-account")

    [left] = redrive(backbone.events_dlq, dry_run=False)

    assert (left.status, left.destination) == ("left", "")
    assert left.note == f"the bus {bus} is in account 999999999999: run with that account's credentials"
    assert executions_of(backbone, backbone.baseline_arn) == []
    assert len(messages_in(backbone, backbone.events_dlq)) == 1


def test_a_body_that_is_json_but_not_an_event_stays_and_the_others_move(backbone: Backbone) -> None:
    """A workflow's input must be an event (a JSON object): an array stays in the queue, named, and does not
    stop the redrive of the messages after it."""
    workflow_dead_letter(backbone, ["not", "an", "event"], "model-promotion")
    approval = read_event("model-approved-in-team-account")
    workflow_dead_letter(backbone, approval, "model-promotion")

    results = redrive(
        backbone.events_dlq, dry_run=False, entry_points={"model-promotion": backbone.promotion_arn}
    )

    assert sorted((r.status, r.note) for r in results) == [
        ("left", "could not deliver: the message body is not a JSON event"),
        ("moved", ""),
    ]
    [execution] = executions_of(backbone, backbone.promotion_arn)
    assert json.loads(execution["input"])["id"] == approval["id"]
    assert [m["Body"] for m in messages_in(backbone, backbone.events_dlq)] == ['["not", "an", "event"]']


def test_a_delivered_message_the_queue_would_not_delete_is_reported_moved_and_comes_back(
    backbone: Backbone,
) -> None:
    """DeleteMessage refused after the delivery: the report says it moved and why it is still in the queue
    (held, back after its hold), rather than the redrive failing with the event already delivered."""
    created = read_event("account-created")
    eventbridge_dead_letter(backbone, created, backbone.baseline_arn, "AccountLifecycle")
    operator = boto3.Session(region_name=REGION)

    def refuse(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "not sqs:DeleteMessage"}}, "DeleteMessage"
        )

    operator.events.register("before-call.sqs.DeleteMessage", refuse)

    [moved] = redrive(backbone.events_dlq, dry_run=False, queue_session=operator, region=REGION)

    assert moved.status == "moved"
    assert moved.note.startswith(
        "delivered, but not deleted from the queue (AccessDenied: not sqs:DeleteMessage)"
    )
    [execution] = executions_of(backbone, backbone.baseline_arn)
    assert json.loads(execution["input"])["id"] == created["id"]
    depth = backbone.sqs().get_queue_attributes(QueueUrl=backbone.events_dlq, AttributeNames=["All"])
    assert depth["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_a_dead_letter_queue_shared_by_several_queues_is_refused_and_nothing_moves(
    backbone: Backbone,
) -> None:
    """Which source queue a message came from is not in the message: redriving it to the first one could
    hand a team's event to another team's consumer."""
    sqs = backbone.sqs()
    config_dlq_arn = sqs.get_queue_attributes(QueueUrl=backbone.config_dlq, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    other_queue, _ = _queue(
        sqs,
        "team-audit-copy",
        RedrivePolicy=json.dumps({"deadLetterTargetArn": config_dlq_arn, "maxReceiveCount": "3"}),
    )
    event = read_event("config-s3-public-read")
    sqs.send_message(QueueUrl=backbone.config_dlq, MessageBody=json.dumps(event))

    with pytest.raises(OperationError) as refused:
        redrive(backbone.config_dlq, dry_run=False)

    said, _, named = str(refused.value).partition(": ")
    assert said == f"{backbone.config_dlq} is the dead-letter queue of several queues"
    assert sorted(named.split(", ")) == sorted([backbone.config_queue, other_queue])  # in SQS's order
    assert [json.loads(m["Body"]) for m in messages_in(backbone, backbone.config_dlq)] == [event]
    assert messages_in(backbone, backbone.config_queue) == []
    assert messages_in(backbone, other_queue) == []


def test_govern_redrive_json_and_exit_status(backbone: Backbone, capsys: pytest.CaptureFixture[str]) -> None:
    eventbridge_dead_letter(
        backbone, read_event("account-created"), backbone.baseline_arn, "AccountLifecycle"
    )
    backbone.sqs().send_message(QueueUrl=backbone.events_dlq, MessageBody="{}")

    status = cli.main(["redrive", "--queue-url", backbone.events_dlq, "--dry-run", "--json"])
    document = json.loads(capsys.readouterr().out)

    assert status == 0  # a dry run fails nothing
    assert document["summary"] == {"messages": 2, "moved": 0, "would_move": 1, "left": 1}
    assert len(messages_in(backbone, backbone.events_dlq)) == 2

    status = cli.main(["redrive", "--queue-url", backbone.events_dlq])
    out = capsys.readouterr().out
    assert status == 1  # one message could not be redriven
    assert "moved" in out and "left" in out
    assert len(messages_in(backbone, backbone.events_dlq)) == 1


def test_one_message_whose_destination_cannot_be_found_does_not_stop_the_others(
    backbone: Backbone, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lookup that fails for one message (its bus is gone) leaves that one, says why, and the run goes
    on: the report still shows what moved."""
    eventbridge_dead_letter(
        backbone, read_event("account-created"), backbone.baseline_arn, "AccountLifecycle"
    )
    gone = f"arn:aws:events:{REGION}:{backbone.account}:event-bus/deleted-bus"
    eventbridge_dead_letter(backbone, read_event("model-approved-in-team-account"), gone, "Forward")

    status = cli.main(["redrive", "--queue-url", backbone.events_dlq, "--json"])
    document = json.loads(capsys.readouterr().out)

    assert status == 1
    assert document["summary"] == {"messages": 2, "moved": 1, "would_move": 0, "left": 1}
    [left] = [m for m in document["messages"] if m["status"] == "left"]
    assert left["note"].startswith("could not find where it goes: ResourceNotFoundException")
    [moved] = [m for m in document["messages"] if m["status"] == "moved"]
    assert moved["destination"] == backbone.baseline_arn
    assert len(executions_of(backbone, backbone.baseline_arn)) == 1
    # The one left is back in the queue once its hold ends, not lost.
    assert [json.loads(m["Body"])["id"] for m in messages_in(backbone, backbone.events_dlq)] == [
        read_event("model-approved-in-team-account")["id"]
    ]


def test_a_network_error_delivering_one_message_leaves_it_and_still_reports_what_moved(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """botocore raises a connection error (not a ClientError) once its own retries are spent: the message
    stays in the queue, the others move, and --json still prints the whole report."""
    created = read_event("account-created")
    updated = read_event("account-updated")
    for event in (created, updated):
        eventbridge_dead_letter(backbone, event, backbone.baseline_arn, "AccountLifecycle")
    started = operations._start_execution

    def unreachable_for_the_update(arn: str, event: dict[str, Any], prefix: str = "redrive-") -> str:
        if event["id"] == updated["id"]:
            raise EndpointConnectionError(endpoint_url=f"https://states.{REGION}.amazonaws.com/")
        return started(arn, event, prefix)

    monkeypatch.setattr(operations, "_start_execution", unreachable_for_the_update)

    status = cli.main(["redrive", "--queue-url", backbone.events_dlq, "--json"])
    document = json.loads(capsys.readouterr().out)

    assert status == 1
    assert document["summary"] == {"messages": 2, "moved": 1, "would_move": 0, "left": 1}
    [left] = [m for m in document["messages"] if m["status"] == "left"]
    assert left["event_id"] == updated["id"]
    assert left["note"].startswith("could not deliver: Could not connect to the endpoint URL")
    [execution] = executions_of(backbone, backbone.baseline_arn)
    assert json.loads(execution["input"])["id"] == created["id"]
    # The undelivered one is visible again at once, not held for the rest of its 120 s.
    assert [json.loads(m["Body"])["id"] for m in messages_in(backbone, backbone.events_dlq)] == [
        updated["id"]
    ]


def test_redrive_reads_the_queue_in_the_region_its_url_names(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --region, an operator whose profile is set to another Region still reaches the queue."""
    eventbridge_dead_letter(
        backbone, read_event("account-created"), backbone.baseline_arn, "AccountLifecycle"
    )
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")

    [moved] = redrive(backbone.events_dlq, dry_run=False)

    assert (moved.status, moved.destination) == ("moved", backbone.baseline_arn)
    assert messages_in(backbone, backbone.events_dlq) == []


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/111111111111/q", "eu-west-1"),
        ("https://eu-west-1.queue.amazonaws.com/111111111111/q", "eu-west-1"),
        ("https://sqs-fips.us-gov-west-1.amazonaws.com/111111111111/q", "us-gov-west-1"),
        ("https://sqs.cn-north-1.amazonaws.com.cn/111111111111/q", "cn-north-1"),
        (
            "https://vpce-0a1b2c3d-4e5f6a7b.sqs.ap-southeast-2.vpce.amazonaws.com/111111111111/q",
            "ap-southeast-2",
        ),
        ("https://queue.amazonaws.com/111111111111/q", "us-east-1"),  # the legacy host of us-east-1
        ("http://localhost:4566/000000000000/q", ""),  # an endpoint that names none
    ],
)
def test_the_region_of_every_form_of_queue_url(url: str, region: str) -> None:
    assert operations._region_of_queue(url) == region


def test_the_hold_grows_with_the_backlog(backbone: Backbone) -> None:
    sqs = backbone.sqs()
    assert operations._hold_for(sqs, backbone.events_dlq) == 120
    for number in range(30):
        sqs.send_message(QueueUrl=backbone.events_dlq, MessageBody=json.dumps({"id": f"e-{number}"}))
    assert operations._hold_for(sqs, backbone.events_dlq) == 120 + 5 * 30


def test_a_message_whose_hold_ran_out_before_its_turn_is_left_not_delivered(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After its hold, another reader may hold the message, and a delete with this run's receipt may do
    nothing: delivering it would report `moved` for a message still in the queue."""
    event = read_event("account-created")
    eventbridge_dead_letter(backbone, event, backbone.baseline_arn, "AccountLifecycle")
    clock = itertools.chain([0.0], itertools.repeat(1_000.0))  # the hold starts, then the run is long past it
    monkeypatch.setattr(operations.time, "monotonic", lambda: next(clock))

    [late] = redrive(backbone.events_dlq, dry_run=False)

    assert (late.status, late.destination) == ("left", backbone.baseline_arn)
    assert late.note.startswith("its 125 s hold ran out before its turn")
    assert executions_of(backbone, backbone.baseline_arn) == []
    attributes = backbone.sqs().get_queue_attributes(
        QueueUrl=backbone.events_dlq,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert sum(int(count) for count in attributes.values()) == 1


def test_a_page_of_copies_already_read_is_not_the_end_of_the_queue() -> None:
    """A standard queue delivers at least once: a page may hold only a copy of a message already read,
    and the copy's receipt handle is the one that deletes it for sure."""

    class Queue:
        def __init__(self) -> None:
            self.pages = [
                [{"MessageId": "1", "ReceiptHandle": "r1"}, {"MessageId": "2", "ReceiptHandle": "r2"}],
                [{"MessageId": "1", "ReceiptHandle": "r1-copy"}],
                [{"MessageId": "3", "ReceiptHandle": "r3"}],
                [],
            ]

        def receive_message(self, **_: Any) -> dict[str, Any]:
            return {"Messages": self.pages.pop(0)}

    read = operations._read_all(Queue(), "url", 120)
    assert [(m["MessageId"], m["ReceiptHandle"]) for m in read] == [
        ("1", "r1-copy"),
        ("2", "r2"),
        ("3", "r3"),
    ]


def test_an_interrupted_redrive_makes_what_it_did_not_handle_visible_at_once(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hold can last hours on a large queue: Ctrl-C must not leave the rest invisible that long."""
    events = [read_event(name) for name in ("account-created", "account-updated", "account-closed")]
    for event in events:
        eventbridge_dead_letter(backbone, event, backbone.baseline_arn, "AccountLifecycle")
    started = operations._start_execution
    calls = []

    def interrupted_at_the_second(arn: str, event: dict[str, Any], prefix: str = "redrive-") -> str:
        calls.append(event["id"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return started(arn, event, prefix)

    monkeypatch.setattr(operations, "_start_execution", interrupted_at_the_second)

    with pytest.raises(KeyboardInterrupt):
        redrive(backbone.events_dlq, dry_run=False)

    # The first moved; the one interrupted and the one not reached are back in the queue, visible now.
    [moved] = executions_of(backbone, backbone.baseline_arn)
    assert json.loads(moved["input"])["id"] == calls[0]
    left = {json.loads(m["Body"])["id"] for m in messages_in(backbone, backbone.events_dlq)}
    assert left == {event["id"] for event in events} - {calls[0]}


def test_execution_names_are_valid() -> None:
    assert execution_name("a1b2-c3", 2) == "redrive-a1b2-c3-2"
    long_name = execution_name("x" * 200, 12)
    assert len(long_name) == 80 and long_name.endswith("-12")
    assert execution_name("a:b/c d", 1) == "redrive-a-b-c-d-1"


# ---------------------------------------------------------------- govern rebaseline (the flow: see flows)


def test_govern_rebaseline_finds_the_inventory_and_the_workflow_in_the_stack(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _create_table("AccountInventoryTable", "ml-governance-dev-accounts")
    boto3.resource("dynamodb", region_name=REGION).Table("ml-governance-dev-accounts").put_item(
        Item={
            "account_id": "333333333333",
            "account_name": "ml-team-churn-dev",
            "ou_name": "ML-Dev",
            "ou_id": "ou-abcd-11111111",
            "baseline_status": "baselined",
            "baseline_version": "2025.1.0",
        }
    )
    deployed_stack(
        monkeypatch,
        {"AccountInventoryTableName": "ml-governance-dev-accounts"},
        {"AccountBaselineStateMachine": backbone.baseline_arn},
        {"BaselineRegions": "us-east-1,eu-west-1"},
    )

    assert cli.main(["rebaseline", "--stack-name", "ml-governance-dev"]) == 0

    out = capsys.readouterr().out
    assert "started     333333333333 ml-team-churn-dev (ML-Dev): 2025.1.0 -> " in out
    assert "    baseline 2025.1.0 is older than " in out
    [execution] = executions_of(backbone, backbone.baseline_arn)
    event = json.loads(execution["input"])
    assert execution["name"] == f"{event['id']}-1" and event["id"].startswith("govern-rebaseline-")
    status = event["detail"]["serviceEventDetails"]["updateManagedAccountStatus"]
    assert (status["account"]["accountId"], status["organizationalUnit"]["organizationalUnitName"]) == (
        "333333333333",
        "ML-Dev",
    )
    assert cli.main(["rebaseline", "--table", "ml-governance-dev-accounts"]) == cli.EXIT_USAGE
    assert "pass --stack-name, or --table and --state-machine-arn" in capsys.readouterr().err

    # The stack's BaselineRegions counts too: an account on this release, baselined in one Region of two.
    boto3.resource("dynamodb", region_name=REGION).Table("ml-governance-dev-accounts").put_item(
        Item={
            "account_id": "444444444444",
            "account_name": "ml-team-fraud-dev",
            "baseline_status": "baselined",
            "baseline_version": BASELINE_VERSION,
            "regions": ["us-east-1"],
        }
    )
    assert cli.main(["rebaseline", "--stack-name", "ml-governance-dev", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would-start 444444444444 ml-team-fraud-dev: {BASELINE_VERSION} -> {BASELINE_VERSION}" in out
    assert "    baselined in us-east-1; BaselineRegions is eu-west-1, us-east-1" in out
    # Deployed with an empty BaselineRegions, the functions baseline their own Region: nothing to do.
    assert cli.main(["rebaseline", "--stack-name", "ml-governance-dev", "--baseline-regions", ""]) == 0
    assert "444444444444" not in capsys.readouterr().out


def test_a_network_error_starting_one_baseline_fails_that_account_and_starts_the_others(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`govern rebaseline` and `govern enroll` report every account: one that could not be started is
    `failed` with the reason, not the end of the run with the started ones unreported."""
    accounts = [
        {"account_id": account, "account_name": f"ml-team-{account}", "ou_name": "ML-Dev", "ou_id": "ou-a-1"}
        for account in ("333333333333", "444444444444")
    ]
    started = operations._start_execution

    def unreachable_for_the_first(arn: str, event: dict[str, Any], prefix: str = "redrive-") -> str:
        status = event["detail"]["serviceEventDetails"]["updateManagedAccountStatus"]
        if status["account"]["accountId"] == "333333333333":
            raise EndpointConnectionError(endpoint_url=f"https://states.{REGION}.amazonaws.com/")
        return started(arn, event, prefix)

    monkeypatch.setattr(operations, "_start_execution", unreachable_for_the_first)

    with governance_account(region=REGION) as caller:
        failed, ok = operations._start_baselines(backbone.baseline_arn, False, accounts, "rebaseline", caller)

    assert (failed.status, ok.status) == ("failed", "started")
    assert failed.note.startswith("could not start: Could not connect to the endpoint URL")
    [execution] = executions_of(backbone, backbone.baseline_arn)
    assert execution["executionArn"] == ok.execution_arn


def test_whereabouts_of_a_governed_account_outside_the_ml_ous() -> None:
    """Where `govern enroll` finds an account it governs but no ML OU holds: in another OU, at the root,
    closed, or gone from the organization."""
    with mock_aws():
        organizations = boto3.client("organizations", region_name=REGION)
        organizations.create_organization(FeatureSet="ALL")
        root = organizations.list_roots()["Roots"][0]["Id"]
        sandbox = organizations.create_organizational_unit(ParentId=root, Name="Sandbox")[
            "OrganizationalUnit"
        ]

        def account(name: str) -> str:
            created = organizations.create_account(Email=f"{name}@example.com", AccountName=name)
            return str(created["CreateAccountStatus"]["AccountId"])

        moved, rooted, closed, gone = (account(name) for name in ("moved", "rooted", "closed", "gone"))
        organizations.move_account(AccountId=moved, SourceParentId=root, DestinationParentId=sandbox["Id"])
        organizations.close_account(AccountId=closed)
        organizations.remove_account_from_organization(AccountId=gone)

        assert operations.whereabouts(organizations, moved) == {
            "change": "moved",
            "ou_name": "Sandbox",
            "ou_id": sandbox["Id"],
            "note": "moved to Sandbox",
        }
        assert operations.whereabouts(organizations, rooted)["ou_name"] == "Root"
        assert operations.whereabouts(organizations, closed) == {
            "change": "closed",
            "ou_name": "",
            "note": "account state SUSPENDED",
        }
        assert operations.whereabouts(organizations, gone)["change"] == "removed"


def test_the_departure_events_of_govern_enroll_are_what_the_workflow_parses() -> None:
    """The CloseAccount and RemoveAccountFromOrganization govern enroll starts the workflow with pass the
    workflow's own validation, naming the account."""
    from governance.baseline import describe_lifecycle_event

    for change, call in operations.DEPARTURE_CALLS.items():
        event = operations.organizations_call_event(call, "210987654321", "999999999999", REGION, "enroll")
        facts = describe_lifecycle_event(event)
        assert (facts.account_id, facts.state, facts.event_id) == (
            "210987654321",
            change.upper(),
            event["id"],
        )


def test_a_dry_run_of_the_compliance_dlq_says_why_the_function_gave_each_evaluation_up(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQS moves a message to its queue's DLQ without a reason; the function wrote it in the ledger."""
    event = read_event("malformed-config-evaluation")
    with governance_account(ledger_table=backbone.ledger_table, region=REGION):
        with pytest.raises(MalformedEvent) as malformed:
            parse_event(event, ConfigComplianceChange)
        record_rejection(event, malformed.value, receive_count=1)  # as the function does, first delivery
    backbone.sqs().send_message(QueueUrl=backbone.config_dlq, MessageBody=json.dumps(event))

    status = cli.main(
        ["redrive", "--queue-url", backbone.config_dlq, "--table", backbone.ledger_table, "--dry-run"]
    )
    out = capsys.readouterr().out

    assert status == 0
    assert f"would-move event {event['id']} -> {backbone.config_queue}" in out
    assert f"    dead-lettered because: {malformed.value}" in out
    assert len(messages_in(backbone, backbone.config_dlq)) == 1
    assert messages_in(backbone, backbone.config_queue) == []
    # Without a ledger to read, the reason is not invented.
    [listed] = redrive(backbone.config_dlq, dry_run=True)
    assert listed.why_dead_lettered == ""


def test_an_evaluation_dead_lettered_again_shows_why_it_was_given_up_the_last_time(
    backbone: Backbone,
) -> None:
    """Redriven once and given up again for another cause: the redrive says the newest cause, the one to
    fix now, not the one already fixed."""
    event = read_event("config-s3-public-read")
    with governance_account(ledger_table=backbone.ledger_table, region=REGION):
        for recorded_at, error in (
            ("2026-11-20T10:00:00.000+00:00", "AccessDenied: the role was missing"),
            ("2026-11-21T10:00:00.000+00:00", "ThrottlingException: Rate exceeded"),
        ):
            record(
                LedgerEntry(
                    event_id=event["id"],
                    action="dead_letter",
                    status="failed",
                    target=event["detail"]["resourceId"],
                    flow="config-remediation",
                    detail={"error": error},
                    recorded_at=recorded_at,
                )
            )
    backbone.sqs().send_message(QueueUrl=backbone.config_dlq, MessageBody=json.dumps(event))

    [listed] = redrive(backbone.config_dlq, dry_run=True, ledger_table=backbone.ledger_table)

    assert listed.why_dead_lettered == "ThrottlingException: Rate exceeded"
    assert len(messages_in(backbone, backbone.config_dlq)) == 1


def test_govern_enroll_finds_the_ml_ous_by_id_and_leaves_their_namesakes(backbone: Backbone) -> None:
    organizations = boto3.client("organizations", region_name=REGION)
    organizations.create_organization(FeatureSet="ALL")
    [root] = organizations.list_roots()["Roots"]

    def unit(name: str, parent: str) -> str:
        return str(
            organizations.create_organizational_unit(ParentId=parent, Name=name)["OrganizationalUnit"]["Id"]
        )

    def account_in(name: str, ou: str) -> str:
        status = organizations.create_account(Email=f"{name}@example.com", AccountName=name)
        account_id = str(status["CreateAccountStatus"]["AccountId"])
        organizations.move_account(AccountId=account_id, SourceParentId=root["Id"], DestinationParentId=ou)
        return account_id

    ml, workloads = unit("ML", root["Id"]), unit("Workloads", root["Id"])
    ml_dev, other_dev = unit("Dev", ml), unit("Dev", workloads)
    governed = account_in("ml-team-churn-dev", ml_dev)
    account_in("web-shop-dev", other_dev)

    by_id = operations.accounts_in_ml_ous(organizations, {ml_dev.lower(): "dev"})
    by_name = operations.accounts_in_ml_ous(organizations, {"dev": "dev"})

    assert [(a["account_id"], a["ou_id"]) for a in by_id] == [(governed, ml_dev)]
    assert len(by_name) == 2  # a name matches every OU that carries it
