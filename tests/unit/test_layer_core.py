"""The shared layer's core on plain moto: settings, sessions, ledger, notifier, event models, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError, ReadTimeoutError
from moto import mock_aws

from govern.emulator import PROJECT_ROOT, messages_checked_as_sqs_and_sns_do
from governance import sessions
from governance.errors import TransientAwsError, is_transient, transient_errors_retried_by_the_workflow
from governance.events import MalformedEvent, parse_event
from governance.events.config import ConfigComplianceChange
from governance.events.control_tower import ControlTowerLifecycle
from governance.events.sagemaker import ModelPackageStateChange
from governance.failures import explain, record_workflow_failure
from governance.ledger import LedgerEntry, entries_for_account, entries_for_event, entries_for_subject, record
from governance.naming import central_group_name, model_card_name
from governance.notifier import notify
from governance.settings import SettingMissing, settings
from tests.conftest import read_event

GOVERNANCE = "123456789012"  # moto's default account: the caller's own
MEMBER = "210987654321"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MOTO_ACCOUNT_ID", raising=False)
    # SQS and SNS refuse characters moto would take: what passes here passes on AWS.
    with mock_aws(), messages_checked_as_sqs_and_sns_do():
        ledger = boto3.client("dynamodb").create_table(
            TableName="ledger",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": "S"}
                for name in ("subject", "entry", "event_id", "account")
            ],
            KeySchema=[
                {"AttributeName": "subject", "KeyType": "HASH"},
                {"AttributeName": "entry", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": f"by-{key.replace('_id', '')}",
                    "KeySchema": [
                        {"AttributeName": key, "KeyType": "HASH"},
                        {"AttributeName": "entry", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for key in ("event_id", "account")
            ],
        )
        assert ledger["TableDescription"]["TableName"] == "ledger"
        topics = {
            name: boto3.client("sns").create_topic(Name=name)["TopicArn"] for name in ("sec", "plat", "ml")
        }
        dlq = boto3.client("sqs").create_queue(QueueName="events-dlq")["QueueUrl"]
        environment = {
            "GOVERNANCE_ACCOUNT_ID": GOVERNANCE,
            "LEDGER_TABLE": "ledger",
            "SECURITY_TOPIC_ARN": topics["sec"],
            "PLATFORM_TOPIC_ARN": topics["plat"],
            "ML_GOVERNANCE_TOPIC_ARN": topics["ml"],
            "DEAD_LETTER_QUEUE_URL": dlq,
            "STAGE": "test",
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        settings.cache_clear()
        sessions.forget_sessions()
        yield environment
        settings.cache_clear()
        sessions.forget_sessions()


def capture(topic_arn: str) -> str:
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    url = sqs.create_queue(QueueName=f"capture-{topic_arn.rsplit(':', 1)[-1]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return url


def received(url: str) -> list[dict[str, Any]]:
    messages = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


# ------------------------------------------------------------------ settings


def test_settings_are_read_when_first_used_not_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    settings.cache_clear()
    monkeypatch.setenv("DRY_RUN", "true")
    monkeypatch.setenv("MAX_ACTIONS_PER_ACCOUNT_PER_HOUR", "7")
    monkeypatch.delenv("LEDGER_TABLE", raising=False)
    current = settings()
    assert current.dry_run is True
    assert current.max_actions_per_account_per_hour == 7
    with pytest.raises(SettingMissing, match="environment variable LEDGER_TABLE is not set"):
        current.require("ledger_table")
    settings.cache_clear()


# ------------------------------------------------------------------ sessions


def test_a_member_session_acts_in_the_member_account_and_is_cached(aws: dict[str, str]) -> None:
    first = sessions.session_for(MEMBER)
    assert first.client("sts").get_caller_identity()["Account"] == MEMBER
    first.client("s3").create_bucket(Bucket="team-bucket")
    assert "team-bucket" not in [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    assert sessions.session_for(MEMBER) is first


def test_a_member_call_waits_seconds_not_minutes_for_an_unresponsive_endpoint(aws: dict[str, str]) -> None:
    """botocore waits 60 s to connect and 60 s a read by default, per attempt: one hung member endpoint
    would hold a remediation batch past its timeout. Calls into member accounts wait 5 s and 20 s."""
    member = sessions.session_for(MEMBER).client("ec2").meta.config
    assert (member.connect_timeout, member.read_timeout) == (5, 20)
    own = sessions.session_for(GOVERNANCE).client("dynamodb").meta.config
    assert (own.connect_timeout, own.read_timeout) == (60, 60)


def test_the_governance_account_uses_the_functions_own_credentials(aws: dict[str, str]) -> None:
    session = sessions.session_for(GOVERNANCE)
    assert session.client("sts").get_caller_identity()["Account"] == GOVERNANCE


def test_an_unassumable_role_fails_naming_the_role_and_the_account(aws: dict[str, str]) -> None:
    from botocore.exceptions import ClientError

    def deny(**_: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "AssumeRole")

    sessions.session_for(GOVERNANCE).client("sts").meta.events.register("before-call.sts.AssumeRole", deny)
    with pytest.raises(sessions.RoleAssumptionError) as error:
        sessions.session_for("222222222222")
    message = str(error.value)
    assert "arn:aws:iam::222222222222:role/GovernanceExecutionRole" in message
    assert "account 222222222222" in message and "AccessDenied" in message


# ------------------------------------------------------------------ ledger


def test_the_ledger_appends_and_reads_back_by_event_subject_and_account(aws: dict[str, str]) -> None:
    first = record(
        LedgerEntry("evt-1", "remediate", "done", "arn:aws:s3:::b", "config-remediation", MEMBER, {"a": 1})
    )
    record(LedgerEntry("evt-1", "notify", "done", "arn:aws:sns:topic", "config-remediation", MEMBER))
    record(LedgerEntry("evt-2", "remediate", "exempt", "arn:aws:s3:::b", "config-remediation", MEMBER))

    assert [e.action for e in entries_for_event("evt-1")] == ["remediate", "notify"]
    assert [e.status for e in entries_for_subject("arn:aws:s3:::b")] == ["done", "exempt"]
    assert len(entries_for_account(MEMBER)) == 3
    assert entries_for_event("evt-1")[0].detail == {"a": 1}
    assert first.recorded_at and first.actor == ""
    items = boto3.client("dynamodb").scan(TableName="ledger")["Items"]
    assert len(items) == 3 and all(item["actor"]["S"] == "test" for item in items)


def test_the_ledger_never_overwrites_an_entry(aws: dict[str, str]) -> None:
    from botocore.exceptions import ClientError

    table = boto3.resource("dynamodb").Table("ledger")
    record(LedgerEntry("evt-1", "remediate", "done", "subject-1", "flow"))
    [item] = table.scan()["Items"]
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        table.put_item(Item={**item, "status": "failed"}, ConditionExpression="attribute_not_exists(subject)")
    assert table.scan()["Items"][0]["status"] == "done"


# ------------------------------------------------------------------ notifier


def test_a_notification_carries_filterable_attributes_and_is_ledgered(aws: dict[str, str]) -> None:
    url = capture(aws["SECURITY_TOPIC_ARN"])
    message_id = notify(
        "security",
        "[HIGH] s3-bucket-public-read-prohibited: bucket b in 210987654321 remediated " + "x" * 80,
        {"resource": "b"},
        severity="HIGH",
        account=MEMBER,
        kind="remediation",
        event_id="evt-9",
        flow="config-remediation",
    )
    [envelope] = received(url)
    assert envelope["MessageId"] == message_id
    assert len(envelope["Subject"]) <= 100
    attributes = {name: value["Value"] for name, value in envelope["MessageAttributes"].items()}
    assert attributes == {"severity": "HIGH", "account": MEMBER, "kind": "remediation"}
    body = json.loads(envelope["Message"])
    assert body["resource"] == "b" and body["event_id"] == "evt-9"
    [entry] = entries_for_event("evt-9")
    assert (entry.action, entry.target, entry.detail["message_id"]) == (
        "notify",
        aws["SECURITY_TOPIC_ARN"],
        message_id,
    )


def test_the_emulation_refuses_what_sqs_and_sns_refuse(aws: dict[str, str]) -> None:
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    queue = aws["DEAD_LETTER_QUEUE_URL"]
    for refused in (
        {"MessageBody": "a\x00b"},
        {"MessageBody": "ok", "MessageAttributes": {"id": {"DataType": "String", "StringValue": "\ud800"}}},
    ):
        with pytest.raises(ClientError) as error:
            sqs.send_message(QueueUrl=queue, **refused)
        assert error.value.response["Error"]["Code"] == "InvalidMessageContents"
    for subject in ("tab\there", "two\nlines", "bell\x07", "x" * 101):
        with pytest.raises(ClientError) as error:
            sns.publish(TopicArn=aws["SECURITY_TOPIC_ARN"], Message="m", Subject=subject)
        assert error.value.response["Error"]["Code"] == "InvalidParameter"
    # What they take: tabs and line breaks in a body or an attribute, any printable Unicode in a subject.
    sqs.send_message(
        QueueUrl=queue,
        MessageBody="tab\tline\né 😀",
        MessageAttributes={"id": {"DataType": "String", "StringValue": "a\tb"}},
    )
    sns.publish(TopicArn=aws["SECURITY_TOPIC_ARN"], Message="m", Subject="café … " + "x" * 93)


def test_a_subject_with_control_characters_or_line_breaks_is_sent_on_one_clean_line(
    aws: dict[str, str],
) -> None:
    """A subject can carry an error message, and so whatever a malformed event put in it: SNS would refuse
    the notice, and the failure it was telling would go untold."""
    url = capture(aws["PLATFORM_TOPIC_ARN"])
    subject = "[FAILED] account-baseline: detail.\x00key\t: bad\u2028value\x07 " + "y" * 120

    notify(
        "platform",
        subject,
        {},
        severity="HIGH",
        account=MEMBER,
        kind="account-baseline-failed",
        event_id="evt-10",
        flow="account-baseline",
    )

    [envelope] = received(url)
    one_line = "[FAILED] account-baseline: detail. key : bad value " + "y" * 120
    assert envelope["Subject"] == one_line[:99] + "…"
    # The ledger keeps the subject as it was written.
    [entry] = entries_for_event("evt-10")
    assert entry.detail["subject"] == subject


# ------------------------------------------------------------------ event models


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("model-approved-in-team-account", ModelPackageStateChange),
        ("model-approved-in-central-registry", ModelPackageStateChange),
        ("config-s3-public-read", ConfigComplianceChange),
        ("config-ebs-encryption-default", ConfigComplianceChange),
        ("account-created", ControlTowerLifecycle),
        ("account-updated", ControlTowerLifecycle),
        ("account-creation-failed", ControlTowerLifecycle),
    ],
)
def test_every_real_shaped_sample_parses(name: str, model: type[Any]) -> None:
    parsed = parse_event(read_event(name), model)
    assert parsed.id == read_event(name)["id"]


def test_a_malformed_event_is_rejected_in_one_line_naming_the_fields() -> None:
    with pytest.raises(MalformedEvent) as error:
        parse_event(read_event("malformed-model-approval"), ModelPackageStateChange)
    message = str(error.value)
    assert "\n" not in message
    assert "detail.ModelPackageArn" in message and "detail.ModelPackageVersion" in message


def test_a_succeeded_account_event_without_account_id_is_malformed() -> None:
    event = read_event("account-created")
    del event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["account"]["accountId"]
    with pytest.raises(MalformedEvent, match="accountId"):
        parse_event(event, ControlTowerLifecycle)


def test_an_event_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="expected a JSON object, got list"):
        parse_event([], ConfigComplianceChange)


# ------------------------------------------------------------------ failures and naming


def test_explain_reads_a_lambda_error_cause() -> None:
    cause = json.dumps({"errorType": "RoleAssumptionError", "errorMessage": "cannot assume X\nmore"})
    assert explain({"Error": "RoleAssumptionError", "Cause": cause}) == (
        "RoleAssumptionError",
        "cannot assume X",
    )
    assert explain({"Error": "States.Timeout", "Cause": ""}) == ("States.Timeout", "States.Timeout")
    # The function's own error type wins over the name Step Functions gave the failure.
    cause = json.dumps({"errorType": "MalformedEvent", "errorMessage": "id: not a string"})
    assert explain({"Error": "States.TaskFailed", "Cause": cause}) == ("MalformedEvent", "id: not a string")


def test_a_malformed_workflow_input_is_kept_in_the_dead_letter_queue(aws: dict[str, str]) -> None:
    event = read_event("malformed-model-approval")
    error = {
        "Error": "MalformedEvent",
        "Cause": json.dumps({"errorType": "MalformedEvent", "errorMessage": "bad"}),
    }
    decided = record_workflow_failure(
        flow="model-promotion", action="replicate_model", audience="ml-governance", event=event, error=error
    )
    assert decided["dead_lettered"] is True
    messages = boto3.client("sqs").receive_message(
        QueueUrl=aws["DEAD_LETTER_QUEUE_URL"], MessageAttributeNames=["All"]
    )["Messages"]
    assert json.loads(messages[0]["Body"])["id"] == event["id"]
    assert messages[0]["MessageAttributes"]["error"]["StringValue"] == "bad"
    assert [e.action for e in entries_for_event(event["id"])] == ["dead_letter", "notify"]


@pytest.mark.parametrize("event", [["not", "an", "event"], {"source": "aws.sagemaker"}, {"id": ""}])
def test_a_workflow_input_without_an_id_is_kept_with_a_placeholder_id(
    aws: dict[str, str], event: Any
) -> None:
    """SQS refuses an empty message attribute: an input with no id (not an object, no `id`, an empty one)
    is still kept, its event_id attribute `-`, the input itself whole in the body."""
    error = {"Error": "MalformedEvent", "Cause": "no id"}

    record_workflow_failure(
        flow="model-promotion", action="replicate_model", audience="ml-governance", event=event, error=error
    )

    [message] = boto3.client("sqs").receive_message(
        QueueUrl=aws["DEAD_LETTER_QUEUE_URL"], MessageAttributeNames=["All"]
    )["Messages"]
    assert json.loads(message["Body"]) == event
    assert message["MessageAttributes"]["event_id"]["StringValue"] == "-"


def test_names_fit_sagemaker_limits() -> None:
    assert central_group_name("210987654321", "churn_prediction") == "210987654321-churn-prediction"
    long_group = central_group_name("210987654321", "x" * 80)
    assert len(long_group) <= 63
    card = model_card_name(long_group, 12)
    assert card.endswith("-v12") and len(card) <= 63


# --- transient AWS errors: what the workflows retry ------------------------------------------------


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code}\nsecond line"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "StartPipelineExecution",
    )


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_client_error("ThrottlingException", 400), True),
        (_client_error("SlowDown", 503), True),
        (_client_error("SomethingNew", 500), True),  # a 5xx whatever its code
        (_client_error("SomethingNew", 429), True),
        # S3 refuses a bucket change while another is in progress on the same bucket (HTTP 409).
        (_client_error("OperationAborted", 409), True),
        (_client_error("AccessDeniedException", 400), False),
        (_client_error("ValidationException", 400), False),
        (EndpointConnectionError(endpoint_url="https://codepipeline.us-east-1.amazonaws.com"), True),
        (ReadTimeoutError(endpoint_url="https://codepipeline.us-east-1.amazonaws.com"), True),
        (ParamValidationError(report="Missing required parameter"), False),
        (ValueError("a defect"), False),
        # A throttled AssumeRole into a member account: the workflow retries it; a refused one it does not.
        (sessions.RoleAssumptionError("role", "210987654321", "Throttling", transient=True), True),
        (sessions.RoleAssumptionError("role", "210987654321", "AccessDenied"), False),
    ],
)
def test_only_errors_a_later_call_can_fix_are_transient(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_a_workflow_step_raises_a_transient_error_by_the_name_its_retry_matches() -> None:
    throttled = _client_error("ThrottlingException", 400)

    @transient_errors_retried_by_the_workflow
    def step(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event["fail"]:
            raise event["fail"]
        return {"ok": True}

    assert step({"fail": None}, None) == {"ok": True}
    with pytest.raises(TransientAwsError) as raised:
        step({"fail": throttled}, None)
    assert type(raised.value).__name__ == "TransientAwsError"  # the ErrorEquals of statemachines/
    assert raised.value.__cause__ is throttled
    assert "ThrottlingException" in str(raised.value) and "\n" not in str(raised.value)
    denied = _client_error("AccessDeniedException", 400)
    with pytest.raises(ClientError):  # not transient: straight to the workflow's Catch
        step({"fail": denied}, None)


def test_every_lambda_task_retries_transient_errors_by_that_name() -> None:
    for path in sorted((PROJECT_ROOT / "statemachines").glob("*.asl.json")):
        states = json.loads(path.read_text())["States"]
        for name, state in states.items():
            if state["Type"] != "Task":
                continue
            retriers = [r for r in state.get("Retry", []) if r["ErrorEquals"] == [TransientAwsError.__name__]]
            assert len(retriers) == 1, f"{path.name}: {name} does not retry {TransientAwsError.__name__}"
            assert retriers[0]["MaxAttempts"] >= 3 and retriers[0]["BackoffRate"] >= 2, (path.name, name)


def _paths_read(state: dict[str, Any]) -> set[str]:
    """The `$.x` paths a state's Parameters read (`"name.$": "$.x"`)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith(".$") and isinstance(value, str) and value.startswith("$."):
                    found.add(value)
                walk(value)

    walk(state.get("Parameters"))
    return found


def states_that_may_miss_the_error(states: dict[str, Any], path: str = "$.error") -> list[str]:
    """States that read `path` (the RecordFailure steps) but can be reached without it set: `path` is set
    by a Catch, or a state's own result, whose ResultPath is `path`, and carried along Next, Choice and
    Default transitions. A Task
    whose Parameters name a path the input lacks fails with States.Runtime, which no Catch catches: the
    failure would be neither ledgered nor notified."""
    edges: list[tuple[str, str, bool]] = []  # (from, to, sets the path)
    for name, state in states.items():
        for catcher in state.get("Catch", []):
            edges.append((name, catcher["Next"], catcher.get("ResultPath") == path))
        # A state that completes with its result at `path` (a Pass or Task with that ResultPath) sets it.
        sets_it = state.get("ResultPath") == path
        edges += [(name, state["Next"], sets_it)] if state.get("Next") else []
        targets = [state.get("Default")] + [choice.get("Next") for choice in state.get("Choices", [])]
        edges += [(name, target, False) for target in targets if target]
    start = next(iter(states))  # the caller passes StartAt first
    has_it = {name: True for name in states}
    has_it[start] = False
    changed = True
    while changed:  # a greatest fixed point: set on entry only if set on every way in
        changed = False
        for name in states:
            incoming = [has_it[source] or sets for source, target, sets in edges if target == name]
            value = name != start and all(incoming)
            if has_it[name] and not value:
                has_it[name] = False
                changed = True
    return [name for name, state in states.items() if path in _paths_read(state) and not has_it[name]]


def test_every_way_into_a_failure_record_carries_the_error() -> None:
    checked = 0
    for path in sorted((PROJECT_ROOT / "statemachines").glob("*.asl.json")):
        definition = json.loads(path.read_text())
        states = {definition["StartAt"]: definition["States"][definition["StartAt"]], **definition["States"]}
        assert states_that_may_miss_the_error(states) == [], path.name
        checked += sum("$.error" in _paths_read(state) for state in states.values())
    assert checked >= 8  # the RecordFailure steps of the three workflows


def test_a_failure_record_reached_without_the_error_is_caught() -> None:
    states = {
        "Claim": {
            "Type": "Task",
            "Next": "Outcome",
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Record"}],
        },
        "Outcome": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.s", "StringEquals": "ok", "Next": "Done"}],
            "Default": "Record",
        },
        "Record": {"Type": "Task", "Parameters": {"Payload": {"error.$": "$.error"}}, "Next": "Failed"},
        "Done": {"Type": "Succeed"},
        "Failed": {"Type": "Fail"},
    }
    assert states_that_may_miss_the_error(states) == ["Record"]


# --- start-up: the collector paused while a handler imports, then the start-up heap frozen ---------

INIT_PHASE_PROBE = """
import gc
from governance.startup import init_phase

assert gc.get_freeze_count() == 0
with init_phase():
    assert not gc.isenabled()
    modules = [{"module": n, "objects": list(range(50))} for n in range(1_000)]
first = gc.get_freeze_count()
assert gc.isenabled() and first > 1_000, first
# A second load in the same process (the offline runtime's, per emulated organization) freezes nothing new.
with init_phase():
    more = [{"again": n} for n in range(1_000)]
assert gc.isenabled() and gc.get_freeze_count() == first, (first, gc.get_freeze_count())
try:
    with init_phase():
        raise ImportError("a missing module")
except ImportError:
    pass
assert gc.isenabled(), "a failed import left the collector disabled"
gc.disable()
with init_phase():
    pass
assert not gc.isenabled(), "the collector was enabled although it had been disabled before"
print("ok")
"""


def test_init_phase_freezes_the_first_start_up_heap_once_and_always_restores_the_collector() -> None:
    # A fresh interpreter: this test process has imported handlers already, so its heap is frozen.
    layer = PROJECT_ROOT / "layers" / "governance"
    completed = subprocess.run(
        [sys.executable, "-c", INIT_PHASE_PROBE],
        env={**os.environ, "PYTHONPATH": str(layer)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "ok"
