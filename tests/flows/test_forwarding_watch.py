"""Events a member account could not forward: WatchForwardingFunction reads every forwarding dead-letter
queue of the registered accounts, through GovernanceExecutionRole, and reports what they keep as the
metrics ForwardingDeadLettersAlarm and ForwardingQueuesUnreadableAlarm watch (tests/template)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from govern import cli, operations
from govern.emulator import Organization
from govern.faults import access_denied, inject_api_faults, throttling
from govern.template import TemplateError
from governance import metric_names
from governance.forwarding import FORWARDING_DEAD_LETTER_QUEUE
from governance.sessions import forget_sessions
from tests.conftest import AwsProfile
from tests.flows.test_metrics import METRICS_ON, emitted

LoadEvent = Callable[[str], dict[str, Any]]

TEAM_A, TEAM_B = "333333333333", "444444444444"
REGIONS = ("us-east-1", "eu-west-1")


@pytest.fixture
def org(load_event: LoadEvent) -> Iterator[Organization]:
    """Two team accounts created by Control Tower and baselined in both Regions, as the backbone does:
    the inventory is what the watcher reads."""
    with Organization(env_overrides={**METRICS_ON, "BASELINE_REGIONS": ",".join(REGIONS)}) as organization:
        created_a = load_event("account-created.json")
        created_b = json.loads(json.dumps(created_a).replace(TEAM_A, TEAM_B))
        created_b["id"] = "5f1d7c2e-0b43-4c55-9d0e-6a7f4b1c2d3e"
        created_b["detail"]["eventID"] = "c0ffee00-1111-4222-8333-944455556666"
        created_b["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["account"]["accountName"] = (
            "ml-team-fraud-dev"
        )
        results = organization.replay([created_a, created_b])
        assert [result.outcome for result in results] == ["succeeded", "succeeded"]
        yield organization


def queue_url(org: Organization, account: str, region: str) -> str:
    """The forwarding queue the member StackSet deployed there (the emulation's ensure_member does)."""
    sqs = org.session(account, region).client("sqs")
    return str(sqs.get_queue_url(QueueName=FORWARDING_DEAD_LETTER_QUEUE)["QueueUrl"])


def keep_events(org: Organization, account: str, region: str, count: int) -> str:
    """What EventBridge does when it cannot deliver to the governance bus: the event goes to the queue."""
    url = queue_url(org, account, region)
    sqs = org.session(account, region).client("sqs")
    for number in range(count):
        sqs.send_message(
            QueueUrl=url, MessageBody=json.dumps({"id": f"kept-{number}", "source": "aws.config"})
        )
    return url


def depth(org: Organization, account: str, region: str, url: str) -> dict[str, int]:
    attributes = (
        org.session(account, region)
        .client("sqs")
        .get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
    )
    return {name: int(value) for name, value in attributes.items()}


def run_watcher(org: Organization) -> dict[str, Any]:
    """One tick of the function's schedule, through the Lambda API as EventBridge delivers it."""
    return dict(org.run_scheduled("WatchForwardingFunction"))


def test_events_kept_in_a_member_region_are_counted_and_left_where_they_are(
    org: Organization, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    kept = keep_events(org, TEAM_B, "eu-west-1", 3)
    # A fresh execution environment: no member session cached from the baselines.
    forget_sessions()
    org.assume_role_attempts.clear()
    capsys.readouterr()

    summary = run_watcher(org)

    out = capsys.readouterr().out
    totals = emitted(out)
    assert totals[metric_names.FORWARDING_DEAD_LETTERS] == 3
    assert totals[metric_names.FORWARDING_QUEUES_WATCHED] == 4
    assert totals[metric_names.FORWARDING_QUEUES_UNREADABLE] == 0
    assert summary["keeping"] == [{"account": TEAM_B, "region": "eu-west-1", "messages": 3}]
    # The log names where the events are, for whoever answers the alarm.
    [line] = [record for record in caplog.records if record.getMessage().endswith("keeps events")]
    assert (line.account, line.region, line.messages) == (TEAM_B, "eu-west-1", 3)  # type: ignore[attr-defined]
    # Read, not received: the events are all still there and none is in flight.
    assert depth(org, TEAM_B, "eu-west-1", kept) == {
        "ApproximateNumberOfMessages": 3,
        "ApproximateNumberOfMessagesNotVisible": 0,
    }
    # Through the member role, once per account.
    assert org.assume_role_attempts == {TEAM_A: 1, TEAM_B: 1}


def test_events_someone_is_looking_at_or_that_are_delayed_still_count(
    org: Organization, capsys: pytest.CaptureFixture[str]
) -> None:
    """A human reading the queue in the console, or a redrive holding its messages, makes them invisible
    for a while: they have still not reached the bus, and the alarm must not go back to OK meanwhile."""
    kept = keep_events(org, TEAM_B, "eu-west-1", 3)
    sqs = org.session(TEAM_B, "eu-west-1").client("sqs")
    [held] = sqs.receive_message(QueueUrl=kept, MaxNumberOfMessages=1, VisibilityTimeout=600)["Messages"]
    sqs.send_message(
        QueueUrl=kept, MessageBody=json.dumps({"id": "late", "source": "aws.config"}), DelaySeconds=900
    )
    assert held["Body"]
    capsys.readouterr()

    summary = run_watcher(org)

    assert emitted(capsys.readouterr().out)[metric_names.FORWARDING_DEAD_LETTERS] == 4
    assert summary["keeping"] == [{"account": TEAM_B, "region": "eu-west-1", "messages": 4}]
    # Read, not received: the held one is still held, the rest still waiting.
    assert depth(org, TEAM_B, "eu-west-1", kept) == {
        "ApproximateNumberOfMessages": 2,
        "ApproximateNumberOfMessagesNotVisible": 1,
    }


def test_nothing_kept_reads_zero_so_the_alarm_goes_back_to_ok(
    org: Organization, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    summary = run_watcher(org)

    totals = emitted(capsys.readouterr().out)
    # 0 is emitted, not left out: the alarm sees a reading below its threshold.
    assert metric_names.FORWARDING_DEAD_LETTERS in totals
    assert totals[metric_names.FORWARDING_DEAD_LETTERS] == 0
    assert totals[metric_names.FORWARDING_QUEUES_WATCHED] == 4
    assert summary["keeping"] == summary["unreadable"] == []


def test_a_region_without_the_queue_or_an_account_without_the_role_is_unreadable_and_the_rest_is_read(
    org: Organization, capsys: pytest.CaptureFixture[str]
) -> None:
    # Team A has no StackSet instance in eu-west-1 (any more); team B lost GovernanceExecutionRole.
    sqs = org.session(TEAM_A, "eu-west-1").client("sqs")
    sqs.delete_queue(QueueUrl=queue_url(org, TEAM_A, "eu-west-1"))
    keep_events(org, TEAM_A, "us-east-1", 1)
    org.remove_execution_role(TEAM_B)
    forget_sessions()
    capsys.readouterr()

    summary = run_watcher(org)

    totals = emitted(capsys.readouterr().out)
    assert totals[metric_names.FORWARDING_DEAD_LETTERS] == 1
    assert totals[metric_names.FORWARDING_QUEUES_UNREADABLE] == 3
    problems = {(item["account"], item["region"]): item["problem"] for item in summary["unreadable"]}
    assert set(problems) == {(TEAM_A, "eu-west-1"), (TEAM_B, "us-east-1"), (TEAM_B, "eu-west-1")}
    assert "no queue ml-governance-forwarding-dlq" in problems[TEAM_A, "eu-west-1"]
    assert problems[TEAM_B, "us-east-1"].startswith(
        f"cannot assume arn:aws:iam::{TEAM_B}:role/GovernanceExecutionRole in account {TEAM_B}: AccessDenied"
    )
    # One line each, that a human reads without a stack trace.
    assert all("\n" not in problem for problem in problems.values())


def test_a_throttled_or_refused_read_is_reported_not_raised(
    org: Organization, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    # Throttled in team A past botocore's own retries; team B's role refuses the first Region read.
    with inject_api_faults(
        org,
        [
            throttling("sqs", "GetQueueAttributes", times=100, account=TEAM_A),
            access_denied("sqs", "GetQueueUrl", account=TEAM_B),
        ],
    ):
        summary = run_watcher(org)

    totals = emitted(capsys.readouterr().out)
    problems = {(item["account"], item["region"]): item["problem"] for item in summary["unreadable"]}
    assert problems == {
        (TEAM_A, "eu-west-1"): "GetQueueAttributes: ThrottlingException",
        (TEAM_A, "us-east-1"): "GetQueueAttributes: ThrottlingException",
        (TEAM_B, "eu-west-1"): "GetQueueUrl: AccessDeniedException",
    }
    assert totals[metric_names.FORWARDING_QUEUES_UNREADABLE] == 3
    assert totals[metric_names.FORWARDING_QUEUES_WATCHED] == 4


def lose_events(
    org: Organization, account: str, region: str, rule: str, count: int, minutes_ago: int = 2
) -> None:
    """What EventBridge reports when it can put an event neither on the target nor in the dead-letter
    queue: the rule's InvocationsFailedToBeSentToDlq, in the account and Region of the rule."""
    org.session(account, region).client("cloudwatch").put_metric_data(
        Namespace="AWS/Events",
        MetricData=[
            {
                "MetricName": "InvocationsFailedToBeSentToDlq",
                "Dimensions": [{"Name": "RuleName", "Value": rule}],
                "Timestamp": datetime.now(UTC) - timedelta(minutes=minutes_ago),
                "Value": count,
                "Unit": "Count",
            }
        ],
    )


def test_events_a_member_forwarding_rule_lost_are_counted_and_located(
    org: Organization, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Lost: neither on the governance bus nor in the forwarding queue, so no queue shows them."""
    lose_events(org, TEAM_B, "eu-west-1", "ml-governance-forward-config-compliance", 2)
    # A datapoint of 20 minutes ago, which the last reading (15 minutes ago) may have missed: still counted.
    lose_events(org, TEAM_B, "eu-west-1", "ml-governance-forward-model-package-state", 1, minutes_ago=20)
    # Not ours, and ours but long before the last readings: neither counts.
    lose_events(org, TEAM_B, "eu-west-1", "a-team-rule", 5)
    lose_events(org, TEAM_A, "us-east-1", "ml-governance-forward-config-compliance", 7, minutes_ago=90)
    capsys.readouterr()

    summary = run_watcher(org)

    totals = emitted(capsys.readouterr().out)
    assert totals[metric_names.FORWARDING_EVENTS_LOST] == 3
    assert totals[metric_names.FORWARDING_DEAD_LETTERS] == 0
    assert totals[metric_names.FORWARDING_QUEUES_UNREADABLE] == 0
    assert summary["losing"] == [{"account": TEAM_B, "region": "eu-west-1", "messages": 0, "lost": 3}]
    assert summary["keeping"] == []
    [line] = [record for record in caplog.records if "lost events" in record.getMessage()]
    assert (line.account, line.region, line.lost) == (TEAM_B, "eu-west-1", 3)  # type: ignore[attr-defined]


REFUSED = (
    "lost events not read: GetMetricStatistics: AccessDeniedException (update the member StackSet: "
    "GovernanceExecutionRole needs cloudwatch:GetMetricStatistics)"
)


def test_lost_events_that_cannot_be_read_make_the_queue_unreadable_not_clean(
    org: Organization, capsys: pytest.CaptureFixture[str]
) -> None:
    """A member role from before this grant: its queue depth is read, its lost events are not, and the
    unreadable alarm says so rather than a reading of zero."""
    keep_events(org, TEAM_A, "us-east-1", 1)
    capsys.readouterr()

    with inject_api_faults(
        org, [access_denied("cloudwatch", "GetMetricStatistics", times=4, account=TEAM_A)]
    ):
        summary = run_watcher(org)

    totals = emitted(capsys.readouterr().out)
    assert totals[metric_names.FORWARDING_DEAD_LETTERS] == 1
    assert totals[metric_names.FORWARDING_QUEUES_UNREADABLE] == 2
    assert {
        (r["account"], r["region"], r["messages"], r["lost"], r["problem"]) for r in summary["unreadable"]
    } == {
        (TEAM_A, "us-east-1", 1, None, REFUSED),
        (TEAM_A, "eu-west-1", 0, None, REFUSED),
    }


def test_no_registered_account_reads_nothing_and_says_so() -> None:
    with Organization(env_overrides=METRICS_ON) as organization:
        summary = run_watcher(organization)
    assert summary == {
        "queues": 0,
        "dead_letters": 0,
        "events_lost": 0,
        "keeping": [],
        "losing": [],
        "unreadable": [],
    }


def test_only_a_function_with_a_schedule_can_be_ticked(org: Organization) -> None:
    with pytest.raises(
        TemplateError, match="RemediateConfigFunction is not a function with a Schedule event"
    ):
        org.run_scheduled("RemediateConfigFunction")


# ---------------------------------------------------------------- handing the kept events to the backbone


def forwarded_and_kept(org: Organization, url: str, event: dict[str, Any], member_rule: str) -> None:
    """What EventBridge keeps when the forwarding rule gives up on the governance bus: the event, and
    attributes naming the rule, the bus it could not reach and why."""
    account, region = event["account"], url.split(".")[1]
    bus = org.arn("GovernanceEventBus")
    attributes = {
        "RULE_ARN": f"arn:aws:events:{region}:{account}:rule/{member_rule}",
        "TARGET_ARN": bus,
        "ERROR_CODE": "NO_PERMISSIONS",
        "ERROR_MESSAGE": "Not authorized to put events on the target bus",
    }
    org.session(account, region).client("sqs").send_message(
        QueueUrl=url,
        MessageBody=json.dumps(event),
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        },
    )


def as_team_b(load_event: LoadEvent, name: str) -> dict[str, Any]:
    """A sample event of the team account 210987654321, happening in TEAM_B instead."""
    return dict(json.loads(json.dumps(load_event(name)).replace("210987654321", TEAM_B)))


def test_govern_redrive_hands_a_member_queues_events_to_the_backbone_and_leaves_what_it_would_ignore(
    org: Organization, load_event: LoadEvent
) -> None:
    url = queue_url(org, TEAM_B, "us-east-1")
    finding = as_team_b(load_event, "config-s3-public-read")
    approval = as_team_b(load_event, "model-approved-in-team-account")
    pending = as_team_b(load_event, "model-pending-in-team-account")
    for event in (finding, approval, pending):
        org.seed(event)  # the bucket and the model versions the events are about
    forwarded_and_kept(org, url, finding, "ml-governance-forward-config-compliance")
    forwarded_and_kept(org, url, approval, "ml-governance-forward-model-package-state")
    forwarded_and_kept(org, url, pending, "ml-governance-forward-model-package-state")
    member = org.session(TEAM_B)
    config_queue = org.arn("ConfigComplianceQueue")
    promotion = org.arn("ModelPromotionStateMachine")

    listed = {r.event_id: r for r in operations.redrive(url, dry_run=True, queue_session=member)}

    assert {(r.status, r.destination) for r in listed.values()} == {
        ("would-move", config_queue),
        ("would-move", promotion),
        ("left", ""),
    }
    assert listed[pending["id"]].note.startswith("no rule of the bus ml-governance matches the event now")
    assert (
        listed[finding["id"]].why_dead_lettered
        == "NO_PERMISSIONS: Not authorized to put events on the target bus"
    )
    assert depth(org, TEAM_B, "us-east-1", url)["ApproximateNumberOfMessages"] == 3

    moved = {r.event_id: r for r in operations.redrive(url, dry_run=False, queue_session=member)}

    assert [moved[e["id"]].status for e in (finding, approval, pending)] == ["moved", "moved", "left"]
    # What the backbone would not act on stays where it was; the rest left the member's queue.
    assert depth(org, TEAM_B, "us-east-1", url) == {
        "ApproximateNumberOfMessages": 1,
        "ApproximateNumberOfMessagesNotVisible": 0,
    }
    assert run_watcher(org)["dead_letters"] == 1
    # The approval went to the promotion workflow, which registered the version centrally, once.
    assert org.wait_for_execution(moved[approval["id"]].execution_arn) == "SUCCEEDED"
    group = f"{TEAM_B}-churn-prediction"
    versions = org.session().client("sagemaker").list_model_packages(ModelPackageGroupName=group)
    assert len(versions["ModelPackageSummaryList"]) == 1
    # The finding went to the remediation queue: drained, the bucket is blocked.
    org.replay([], sequential=False)
    blocked = member.client("s3").get_public_access_block(Bucket=finding["detail"]["resourceId"])[
        "PublicAccessBlockConfiguration"
    ]
    assert all(blocked.values()) and len(blocked) == 4


def test_govern_redrive_delivers_in_the_governance_region_whatever_region_the_profile_names(
    org: Organization, load_event: LoadEvent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The member queue is in eu-west-1 and so is the operator's profile: the events still go to the
    workflow and the queue in the governance bus's Region (us-east-1), which the dry run promised."""
    url = queue_url(org, TEAM_B, "eu-west-1")
    approval = as_team_b(load_event, "model-approved-in-team-account")
    finding = as_team_b(load_event, "config-s3-public-read")
    for event in (approval, finding):
        org.seed(event)
    forwarded_and_kept(org, url, approval, "ml-governance-forward-model-package-state")
    forwarded_and_kept(org, url, finding, "ml-governance-forward-config-compliance")
    member = org.session(TEAM_B, "eu-west-1")
    # The operator's Region. The workflow the redrive starts runs while it is still set, in this process (as
    # every emulated function does): its settings stay the deployment's, not the operator's.
    with monkeypatch.context() as operator:
        operator.setenv("AWS_REGION", "eu-west-1")
        operator.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        moved = {r.event_id: r for r in operations.redrive(url, dry_run=False, queue_session=member)}
        assert org.wait_for_execution(moved[approval["id"]].execution_arn) == "SUCCEEDED"

    assert {(r.status, r.note) for r in moved.values()} == {("moved", "")}
    assert depth(org, TEAM_B, "eu-west-1", url)["ApproximateNumberOfMessages"] == 0
    group = f"{TEAM_B}-churn-prediction"
    versions = org.session().client("sagemaker").list_model_packages(ModelPackageGroupName=group)
    assert len(versions["ModelPackageSummaryList"]) == 1
    # The finding went to the remediation queue: drained, the bucket is blocked.
    org.replay([], sequential=False)
    blocked = org.session(TEAM_B).client("s3").get_public_access_block(Bucket=finding["detail"]["resourceId"])
    assert list(blocked["PublicAccessBlockConfiguration"].values()) == [True] * 4


def test_govern_redrive_reads_the_member_queue_with_the_profile_it_is_given(
    org: Organization, load_event: LoadEvent, aws_profile: AwsProfile, capsys: pytest.CaptureFixture[str]
) -> None:
    url = queue_url(org, TEAM_B, "us-east-1")
    finding = as_team_b(load_event, "config-s3-public-read")
    org.seed(finding)
    forwarded_and_kept(org, url, finding, "ml-governance-forward-config-compliance")
    aws_profile(org, TEAM_B, "team-b")

    status = cli.main(["redrive", "--queue-url", url, "--queue-profile", "team-b", "--json"])

    document = json.loads(capsys.readouterr().out)
    assert status == 0
    assert document["summary"] == {"messages": 1, "moved": 1, "would_move": 0, "left": 0}
    [message] = document["messages"]
    assert (message["event_id"], message["destination"]) == (finding["id"], org.arn("ConfigComplianceQueue"))
    assert depth(org, TEAM_B, "us-east-1", url)["ApproximateNumberOfMessages"] == 0

    # A profile that does not exist: one line that names it, and nothing is read.
    forwarded_and_kept(org, url, finding, "ml-governance-forward-config-compliance")
    status = cli.main(["redrive", "--queue-url", url, "--queue-profile", "nobody"])
    err = capsys.readouterr().err
    assert status == cli.EXIT_FAILED
    assert err.count("\n") == 1 and "nobody" in err
    assert depth(org, TEAM_B, "us-east-1", url)["ApproximateNumberOfMessages"] == 1


def a_finding_kept_in_team_b(org: Organization, load_event: LoadEvent) -> tuple[str, dict[str, Any]]:
    """TEAM_B's Config finding (its bucket seeded), kept in its us-east-1 forwarding queue: (queue, event)."""
    url = queue_url(org, TEAM_B, "us-east-1")
    finding = as_team_b(load_event, "config-s3-public-read")
    org.seed(finding)
    forwarded_and_kept(org, url, finding, "ml-governance-forward-config-compliance")
    return url, finding


def test_a_kept_event_the_bus_would_not_hand_to_exactly_one_target_as_it_is_stays_for_a_human(
    org: Organization, load_event: LoadEvent
) -> None:
    url, _ = a_finding_kept_in_team_b(org, load_event)
    events, bus = org.session().client("events"), org.physical_id("GovernanceEventBus")
    # Someone added a second rule for Config events on the bus: which target is meant is not for a tool
    # to guess.
    events.put_rule(Name="audit-copy", EventBusName=bus, EventPattern=json.dumps({"source": ["aws.config"]}))
    copy = {"Id": "copy", "Arn": org.arn("EventsDeadLetterQueue")}
    events.put_targets(Rule="audit-copy", EventBusName=bus, Targets=[copy])

    [two] = operations.redrive(url, dry_run=False, queue_session=org.session(TEAM_B))

    assert (two.status, two.destination) == ("left", "")
    assert two.note.startswith("2 targets of the bus ml-governance match the event")

    # The one matching target reshapes the event: sending it as it is would not be what the bus does.
    events.remove_targets(Rule="ConfigNonComplianceRule", EventBusName=bus, Ids=["ConfigComplianceQueue"])
    events.put_targets(Rule="audit-copy", EventBusName=bus, Targets=[{**copy, "InputPath": "$.detail"}])

    [reshaped] = operations.redrive(url, dry_run=False, queue_session=org.session(TEAM_B))

    assert reshaped.status == "left"
    assert reshaped.note == "the target of rule audit-copy transforms the event; redrive it by hand"
    assert depth(org, TEAM_B, "us-east-1", url)["ApproximateNumberOfMessages"] == 1


def test_a_kept_event_does_not_go_around_a_rule_someone_disabled(
    org: Organization, load_event: LoadEvent
) -> None:
    """An operator paused remediation by disabling its rule on the bus: the bus would hand the event to
    nothing, so the redrive hands it to nothing either, and a disabled second rule does not count."""
    url, finding = a_finding_kept_in_team_b(org, load_event)
    events, bus = org.session().client("events"), org.physical_id("GovernanceEventBus")
    events.disable_rule(Name="ConfigNonComplianceRule", EventBusName=bus)

    [paused] = operations.redrive(url, dry_run=False, queue_session=org.session(TEAM_B))

    assert (paused.status, paused.destination) == ("left", "")
    assert paused.note.startswith("no rule of the bus ml-governance matches the event now")
    assert depth(org, TEAM_B, "us-east-1", url)["ApproximateNumberOfMessages"] == 1

    # Enabled again, beside a disabled rule that also matches: the one enabled target gets it.
    events.enable_rule(Name="ConfigNonComplianceRule", EventBusName=bus)
    events.put_rule(
        Name="audit-copy",
        EventBusName=bus,
        EventPattern=json.dumps({"source": ["aws.config"]}),
        State="DISABLED",
    )
    events.put_targets(
        Rule="audit-copy", EventBusName=bus, Targets=[{"Id": "copy", "Arn": org.arn("EventsDeadLetterQueue")}]
    )

    [moved] = operations.redrive(url, dry_run=False, queue_session=org.session(TEAM_B))

    assert (moved.status, moved.destination) == ("moved", org.arn("ConfigComplianceQueue"))
    assert depth(org, TEAM_B, "us-east-1", url)["ApproximateNumberOfMessages"] == 0
    org.replay([], sequential=False)
    blocked = (
        org.session(TEAM_B)
        .client("s3")
        .get_public_access_block(Bucket=finding["detail"]["resourceId"])["PublicAccessBlockConfiguration"]
    )
    assert all(blocked.values()) and len(blocked) == 4
    assert org.dead_letters() == []
