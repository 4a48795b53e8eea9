"""The runtime executes a real state machine file: Lambda tasks in process, Retry and Catch as in AWS."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from govern.emulator import PROJECT_ROOT, Organization

MACHINE = "AccountBaselineStateMachine"
FUNCTION = "BaselineAccountFunction"


def history(org: Organization, execution_arn: str) -> list[dict[str, Any]]:
    sfn = org.session().client("stepfunctions")
    return sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]


def throttles(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        event
        for event in events
        if event["type"] == "TaskFailed"
        and event["taskFailedEventDetails"]["error"] == "Lambda.TooManyRequestsException"
    ]


def test_a_throttled_lambda_task_is_retried_and_the_workflow_completes(
    org: Organization, load_event: Callable[[str], dict[str, Any]]
) -> None:
    org.fail_next_invocations(FUNCTION, "TooManyRequestsException", times=2)

    [result] = org.replay([load_event("account-created")])

    [execution] = org.executions(MACHINE)
    assert execution["status"] == "SUCCEEDED"
    assert len(throttles(history(org, execution["executionArn"]))) == 2
    assert result.outcome == "succeeded"
    # The retried workflow did its work: the account is in the inventory table.
    inventory = org.session().client("dynamodb").scan(TableName=org.physical_id("AccountInventoryTable"))
    assert [item["account_id"]["S"] for item in inventory["Items"]] == ["333333333333"]


def test_each_execution_counts_its_own_retries_though_the_parsed_definition_is_shared(
    load_event: Callable[[str], dict[str, Any]],
) -> None:
    """The runtime parses a definition once per process and every execution, in every emulated
    organization, runs that one parsed program. Retry attempts must stay each execution's own: the Task
    allows three attempts after a throttle, so two throttles in each of four runs pass only if no run
    inherits the attempts of the one before."""
    for _ in range(2):
        with Organization() as org:
            for account in ("333333333333", "444444444444"):
                event = load_event("account-created")
                event["id"] = f"retries-{account}"
                status = event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]
                status["account"]["accountId"] = account
                org.fail_next_invocations(FUNCTION, "TooManyRequestsException", times=2)

                [result] = org.replay([event])

                assert result.outcome == "succeeded", result.error
            executions = org.executions(MACHINE)
            assert [execution["status"] for execution in executions] == ["SUCCEEDED", "SUCCEEDED"]
            assert [len(throttles(history(org, e["executionArn"]))) for e in executions] == [2, 2]


def test_a_task_that_keeps_failing_is_caught_recorded_and_notified(
    org: Organization, load_event: Callable[[str], dict[str, Any]]
) -> None:
    org.fail_next_invocations(FUNCTION, "TooManyRequestsException", times=50)
    event = load_event("account-created")

    [result] = org.replay([event])

    [execution] = org.executions(MACHINE)
    assert execution["status"] == "FAILED"
    events = history(org, execution["executionArn"])
    assert len(throttles(events)) >= 2, "the Retry must have been tried before the Catch"
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]
    # The first task failed, before the account was known: the failure step for that case recorded it.
    assert "RecordDescribeFailure" in entered
    assert result.outcome == "failed"
    failed = [entry for entry in org.ledger(event["id"]) if entry.status == "failed"]
    assert failed and "TooManyRequestsException" in failed[0].detail["error_type"]
    assert any("FAILED" in note.subject for note in org.notifications("platform"))
    inventory = org.session().client("dynamodb").scan(TableName=org.physical_id("AccountInventoryTable"))
    assert inventory["Items"] == []


def race(work: Callable[[], None], threads: int) -> None:
    """Run `work` in `threads` threads at once, switching between them as often as the interpreter can,
    as a loaded machine does."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        running = [threading.Thread(target=work) for _ in range(threads)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join()
    finally:
        sys.setswitchinterval(interval)


def test_a_conditional_write_has_one_winner_however_many_threads_race_for_it(org: Organization) -> None:
    """DynamoDB's guarantee, which claims and once-markers rest on: of concurrent conditional puts of one
    item, exactly one succeeds. Without it, concurrent duplicate deliveries could both start a pipeline."""
    table = org.physical_id("StateTable")
    keys, writers = 150, 6
    winners: list[int] = []
    refused: list[int] = []
    record = threading.Lock()

    def write_every_key() -> None:
        dynamodb = org.session().client("dynamodb")
        for key in range(keys):
            try:
                dynamodb.put_item(
                    TableName=table,
                    Item={"pk": {"S": f"race#{key}"}, "sk": {"S": "once"}},
                    ConditionExpression="attribute_not_exists(pk)",
                )
            except ClientError as error:
                assert error.response["Error"]["Code"] == "ConditionalCheckFailedException"
                with record:
                    refused.append(key)
            else:
                with record:
                    winners.append(key)

    race(write_every_key, writers)

    assert sorted(winners) == list(range(keys)), [k for k in set(winners) if winners.count(k) > 1]
    assert len(refused) == keys * (writers - 1)


def test_concurrent_versions_of_one_model_package_group_get_numbers_of_their_own(org: Organization) -> None:
    """SageMaker numbers a group's versions one after the other, however many are registered at once
    (two approvals of one model replicated together, say). moto counts the group's packages and adds one,
    so two threads could both take the same number, and the second package replaced the first."""
    sagemaker = org.session().client("sagemaker")
    group, writers, each = "race-model", 6, 10
    sagemaker.create_model_package_group(ModelPackageGroupName=group)
    created: list[str] = []
    record = threading.Lock()

    def register() -> None:
        client = org.session().client("sagemaker")
        for _ in range(each):
            arn = client.create_model_package(
                ModelPackageGroupName=group,
                InferenceSpecification={
                    "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/model:1"}],
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
            )["ModelPackageArn"]
            with record:
                created.append(arn)

    race(register, writers)

    listed = sagemaker.list_model_packages(ModelPackageGroupName=group, MaxResults=100)[
        "ModelPackageSummaryList"
    ]
    assert len(set(created)) == writers * each, "two registrations were given one version"
    assert sorted(p["ModelPackageVersion"] for p in listed) == list(range(1, writers * each + 1))


# ---------------------------------------------------------------- rules as the template says


def template_changed(tmp_path: Path, old: str, new: str) -> Path:
    """template.yaml with `old` replaced by `new`, beside links to everything it refers to."""
    for name in ("functions", "layers", "statemachines", "templates", "events"):
        (tmp_path / name).symlink_to(PROJECT_ROOT / name)
    text = (PROJECT_ROOT / "template.yaml").read_text()
    assert text.count(old) == 1, old
    (tmp_path / "template.yaml").write_text(text.replace(old, new))
    return tmp_path / "template.yaml"


RULE_TARGET = """          Arn: !GetAtt ConfigComplianceQueue.Arn
          RetryPolicy: { MaximumRetryAttempts: 185, MaximumEventAgeInSeconds: 86400 }
"""


def test_a_disabled_rule_routes_nothing(tmp_path: Path, load_event: Callable[[str], dict[str, Any]]) -> None:
    disabled = template_changed(
        tmp_path,
        "      EventBusName: !Ref GovernanceEventBus\n      EventPattern:\n        source: [aws.config]\n",
        "      State: DISABLED\n      EventBusName: !Ref GovernanceEventBus\n      EventPattern:\n"
        "        source: [aws.config]\n",
    )
    event = load_event("config-s3-public-read")
    with Organization(template_path=disabled) as org:
        [result] = org.replay([event])
        assert (result.outcome, result.rules) == ("ignored", [])
        state = org.session(event["account"]).client("s3").get_bucket_policy_status
        bucket = event["detail"]["resourceId"]
        assert org.ledger(event["id"]) == []
        rule = (
            org.session()
            .client("events")
            .describe_rule(Name="ConfigNonComplianceRule", EventBusName=org.physical_id("GovernanceEventBus"))
        )
        assert rule["State"] == "DISABLED"
        assert state(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True


def test_a_target_gets_what_its_input_transformer_makes_of_the_event(
    tmp_path: Path, load_event: Callable[[str], dict[str, Any]]
) -> None:
    """Here the compliance queue gets the event wrapped: the function cannot read it as a Config
    evaluation, and the message it keeps is the wrapped one, which shows the transformer was applied."""
    shaped = template_changed(
        tmp_path,
        RULE_TARGET,
        RULE_TARGET
        + "          InputTransformer:\n"
        + "            InputPathsMap: { resource: $.detail.resourceId }\n"
        + '            InputTemplate: \'{"wrapped": <aws.events.event.json>, "about": "<resource>"}\'\n',
    )
    event = load_event("config-s3-public-read")
    with Organization(template_path=shaped) as org:
        [result] = org.replay([event], seed=False)
        assert result.rules == ["ConfigNonComplianceRule"]
        [kept] = org.dead_letters()
        assert kept.event == {"wrapped": event, "about": event["detail"]["resourceId"]}
        assert kept.queue == "ml-governance-dev-config-compliance-dlq"
