"""Faults from the AWS APIs each flow calls, injected where moto answers botocore (govern.faults): throttling
and 5xx are retried and the effect lands once; access denied ends in a recorded, notified failure; and in
a mixed batch every event is accounted for in the emulated AWS (ledger, dead-letter queues, topics)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.core.botocore_stubber import BotocoreStubber

from govern.emulator import EventResult, Organization
from govern.faults import Fault, access_denied, inject_api_faults, server_error, throttling
from govern.flows import models as model_support
from tests.conftest import read_event

TEAM = "210987654321"
OTHER_TEAM = "222222222222"
NEW_ACCOUNT = "333333333333"
ANOTHER_NEW_ACCOUNT = "444444444444"
REGION = "us-east-1"
ALL_FOUR_ON = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
# More failures than botocore's legacy retry mode (5 attempts) and SQS redelivery (5 receives) absorb.
PERSISTENT = 99
# The compliance queue's maxReceiveCount (template parameter ComplianceMaxReceives, default 5).
COMPLIANCE_RECEIVES = 5


# --------------------------------------------------------------------------- events


def derived(name: str, replacements: dict[str, str]) -> dict[str, Any]:
    """A sample event from events/, about another account, model or pipeline: every occurrence of each
    key of `replacements` is replaced in its JSON text; it gets its own event id."""
    text = json.dumps(read_event(name))
    for old, new in replacements.items():
        text = text.replace(old, new)
    event: dict[str, Any] = json.loads(text)
    event["id"] = str(uuid.uuid4())
    return event


def replay_with_faults(
    org: Organization, events: list[dict[str, Any]], faults: list[Fault], *, sequential: bool = True
) -> list[EventResult]:
    """Seed what the events refer to first, so that only the backbone's own calls meet the faults."""
    for event in events:
        org.seed(event)
    with inject_api_faults(org, faults) as plan:
        results = org.replay(events, seed=False, sequential=sequential)
    assert plan.faults == faults
    return results


# --------------------------------------------------------------------------- reading emulated AWS back


def bucket_public_access_block(org: Organization, account: str, bucket: str) -> dict[str, Any] | None:
    try:
        found = org.session(account).client("s3").get_public_access_block(Bucket=bucket)
    except ClientError as error:
        assert error.response["Error"]["Code"] == "NoSuchPublicAccessBlockConfiguration", error
        return None
    return dict(found["PublicAccessBlockConfiguration"])


def bucket_policy_statements(org: Organization, account: str, bucket: str) -> list[dict[str, Any]]:
    policy = org.session(account).client("s3").get_bucket_policy(Bucket=bucket)["Policy"]
    return list(json.loads(policy)["Statement"])


def ebs_encryption_by_default(org: Organization, account: str) -> bool:
    return bool(org.session(account).client("ec2").get_ebs_encryption_by_default()["EbsEncryptionByDefault"])


def security_group_ingress(org: Organization, account: str, group_id: str) -> set[tuple[int, str]]:
    rules = (
        org.session(account)
        .client("ec2")
        .describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])[
            "SecurityGroupRules"
        ]
    )
    return {
        (rule["FromPort"], rule.get("CidrIpv4") or rule.get("CidrIpv6") or "")
        for rule in rules
        if not rule["IsEgress"]
    }


def central_versions_from(org: Organization, source_arn: str) -> list[str]:
    """Central registry versions whose lineage names `source_arn`, read from every central group."""
    sagemaker = org.session().client("sagemaker")
    found = []
    for group in sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"]:
        listed = sagemaker.list_model_packages(ModelPackageGroupName=group["ModelPackageGroupName"])
        for summary in listed["ModelPackageSummaryList"]:
            described = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            lineage = described.get("CustomerMetadataProperties") or {}
            if lineage.get("source-model-package-arn") == source_arn:
                found.append(described["ModelPackageArn"])
    return found


def model_cards(org: Organization) -> list[str]:
    summaries = org.session().client("sagemaker").list_model_cards()["ModelCardSummaries"]
    return sorted(summary["ModelCardName"] for summary in summaries)


def card_custom_details(org: Organization, name: str) -> dict[str, Any]:
    described = org.session().client("sagemaker").describe_model_card(ModelCardName=name)
    return dict(json.loads(described["Content"])["additional_information"]["custom_details"])


def pipeline_runs(org: Organization, event: dict[str, Any]) -> list[dict[str, Any]]:
    """Executions of the group's deployment pipeline that carry the event's exact version."""
    version_arn = event["detail"]["ModelPackageArn"]
    pipeline = model_support.default_pipeline_name(event["detail"]["ModelPackageGroupName"])
    return model_support.pipeline_executions_carrying(org, pipeline, version_arn)


def account_public_access_block(org: Organization, account: str) -> dict[str, Any] | None:
    s3control = org.session(account).client("s3control")
    try:
        return dict(s3control.get_public_access_block(AccountId=account)["PublicAccessBlockConfiguration"])
    except ClientError as error:
        assert error.response["Error"]["Code"] == "NoSuchPublicAccessBlockConfiguration", error
        return None


def inventory(org: Organization, account: str) -> dict[str, Any] | None:
    table = org.session().resource("dynamodb").Table(org.physical_id("AccountInventoryTable"))
    item = table.get_item(Key={"account_id": account}, ConsistentRead=True).get("Item")
    return dict(item) if item else None


def notices_about(org: Organization, event_id: str, audience: str | None = None) -> list[Any]:
    return [note for note in org.notifications(audience) if note.message.get("event_id") == event_id]


# --------------------------------------------------------------------------- the accounting


@dataclass(frozen=True)
class Accounting:
    """Where each event ended, read from the emulated AWS only: kept in a DLQ, failed with a failed ledger
    entry and a notification, or neither (done or ignored). An event with a failed entry but no notice,
    or a DLQ message that is no input event, is a loss; the test fails on it."""

    by_event: dict[str, str]
    dead_letter_messages: Counter[str]

    def count(self, place: str) -> int:
        return sum(1 for where in self.by_event.values() if where == place)

    def totals(self) -> dict[str, int]:
        return {place: self.count(place) for place in ("succeeded/ignored", "failed", "dead-lettered")}


def account_for(org: Organization, events: list[dict[str, Any]]) -> Accounting:
    kept = Counter(
        str(letter.event.get("id")) if isinstance(letter.event, dict) else "<not an event>"
        for letter in org.dead_letters()
    )
    by_event: dict[str, str] = {}
    for event in events:
        event_id = event["id"]
        failed = [entry for entry in org.ledger(event_id) if entry.status == "failed"]
        if kept[event_id]:
            by_event[event_id] = "dead-lettered"
        elif failed and notices_about(org, event_id):
            by_event[event_id] = "failed"
        elif failed:
            by_event[event_id] = "failed WITHOUT a notification"
        else:
            by_event[event_id] = "succeeded/ignored"
    return Accounting(by_event, kept)


def assert_conservation(
    org: Organization,
    events: list[dict[str, Any]],
    results: list[EventResult],
    expected: dict[str, str],
) -> Accounting:
    """events in == succeeded/ignored + failed (ledgered and notified) + dead-lettered (kept in a DLQ),
    counted from the emulated AWS, and each event where the test expects it."""
    assert len({event["id"] for event in events}) == len(events), "the batch needs distinct event ids"
    accounting = account_for(org, events)
    done = accounting.count("succeeded/ignored")
    failed = accounting.count("failed")
    kept = accounting.count("dead-lettered")
    assert done + failed + kept == len(events), accounting.by_event
    # Every DLQ message is one input event, kept once: nothing else is in the queues, nothing twice.
    assert set(accounting.dead_letter_messages) <= {event["id"] for event in events}
    assert sum(accounting.dead_letter_messages.values()) == kept
    # The runtime's report agrees with the state, event by event.
    assert len(results) == len(events)
    for event, result in zip(events, results, strict=True):
        place = accounting.by_event[event["id"]]
        reported = "succeeded/ignored" if result.outcome in ("succeeded", "ignored") else result.outcome
        assert reported == place, (event["id"], result.outcome, result.error, place)
        assert result.outcome == expected[event["id"]], (event["id"], result.outcome, result.error)
        if result.outcome in ("failed", "dead-lettered"):
            assert result.error and "\n" not in result.error
        if result.outcome == "succeeded":
            assert result.actions and all(action.verified for action in result.actions), result.actions
    return accounting


# --------------------------------------------------------------------------- the flows


@dataclass(frozen=True)
class Flow:
    """One flow, its sample event, the API calls faults are injected into, and how its effect reads back."""

    name: str
    event: str
    throttled: Callable[[int], Fault]
    failing: Callable[[int], Fault]  # a 5xx
    denied: Callable[[], Fault]
    effect_landed_once: Callable[[Organization, dict[str, Any]], bool]
    nothing_changed: Callable[[Organization, dict[str, Any]], bool]
    audience: str
    failed_action: str


def _bucket_blocked(org: Organization, event: dict[str, Any]) -> bool:
    detail = event["detail"]
    return bucket_public_access_block(org, detail["awsAccountId"], detail["resourceId"]) == ALL_FOUR_ON


def _replicated_once(org: Organization, event: dict[str, Any]) -> bool:
    source_arn = event["detail"]["ModelPackageArn"]
    return len(central_versions_from(org, source_arn)) == 1 and model_cards(org) == [
        "210987654321-churn-prediction-v1"
    ]


def _deployed_once(org: Organization, event: dict[str, Any]) -> bool:
    runs = pipeline_runs(org, event)
    card = card_custom_details(org, "210987654321-churn-prediction-v1")
    return (
        len(runs) == 1
        and runs[0]["status"] == "Succeeded"
        and card.get("deployment_execution_id") == runs[0]["pipelineExecutionId"]
    )


def _baselined(org: Organization, event: dict[str, Any]) -> bool:
    record = inventory(org, NEW_ACCOUNT)
    return (
        account_public_access_block(org, NEW_ACCOUNT) == ALL_FOUR_ON
        and ebs_encryption_by_default(org, NEW_ACCOUNT)
        and record is not None
        and record.get("baseline_status") == "baselined"
    )


FLOWS = [
    Flow(
        name="config-remediation",
        event="config-s3-public-read",
        throttled=lambda times: throttling("s3", "PutPublicAccessBlock", times=times, account=TEAM),
        failing=lambda times: server_error("s3", "PutPublicAccessBlock", times=times, account=TEAM),
        denied=lambda: access_denied("s3", "PutPublicAccessBlock", times=PERSISTENT, account=TEAM),
        effect_landed_once=_bucket_blocked,
        nothing_changed=lambda org, event: (
            bucket_public_access_block(org, TEAM, event["detail"]["resourceId"]) is None
        ),
        audience="security",
        failed_action="remediate",
    ),
    Flow(
        name="model-promotion",
        event="model-approved-in-team-account",
        throttled=lambda times: throttling("sagemaker", "CreateModelPackage", times=times),
        # Reading the team's artifacts in the team account.
        failing=lambda times: server_error("s3", "GetObject", times=times, account=TEAM),
        denied=lambda: access_denied("sagemaker", "DescribeModelPackage", times=PERSISTENT, account=TEAM),
        effect_landed_once=_replicated_once,
        nothing_changed=lambda org, event: (
            central_versions_from(org, event["detail"]["ModelPackageArn"]) == []
        ),
        audience="ml-governance",
        failed_action="replicate_model",
    ),
    Flow(
        name="model-deployment",
        event="model-approved-in-central-registry",
        throttled=lambda times: throttling("codepipeline", "StartPipelineExecution", times=times),
        failing=lambda times: server_error("codepipeline", "GetPipelineExecution", times=times),
        denied=lambda: access_denied("codepipeline", "StartPipelineExecution", times=PERSISTENT),
        effect_landed_once=_deployed_once,
        nothing_changed=lambda org, event: pipeline_runs(org, event) == [],
        audience="ml-governance",
        failed_action="start_pipeline",
    ),
    Flow(
        name="account-baseline",
        event="account-created",
        throttled=lambda times: throttling(
            "ec2", "EnableEbsEncryptionByDefault", times=times, account=NEW_ACCOUNT
        ),
        failing=lambda times: server_error(
            "s3control", "PutPublicAccessBlock", times=times, account=NEW_ACCOUNT
        ),
        denied=lambda: access_denied(
            "s3control", "PutPublicAccessBlock", times=PERSISTENT, account=NEW_ACCOUNT
        ),
        effect_landed_once=_baselined,
        nothing_changed=lambda org, event: (
            account_public_access_block(org, NEW_ACCOUNT) is None and inventory(org, NEW_ACCOUNT) is None
        ),
        audience="platform",
        failed_action="baseline_account",
    ),
]
BY_NAME = {flow.name: flow for flow in FLOWS}
TRANSIENT = [
    pytest.param(flow, kind, id=f"{flow.name}-{kind}") for flow in FLOWS for kind in ("throttling", "5xx")
]


@pytest.mark.parametrize(("flow", "kind"), TRANSIENT)
def test_a_transient_fault_is_retried_with_backoff_and_the_effect_lands_once(
    org: Organization, flow: Flow, kind: str
) -> None:
    event = read_event(flow.event)
    org.seed(event)
    assert flow.nothing_changed(org, event)
    fault = flow.throttled(3) if kind == "throttling" else flow.failing(3)

    with inject_api_faults(org, [fault]) as plan:
        [result] = org.replay([event], seed=False)

    assert fault.hits == 3, "every injected error was met by the backbone"
    # botocore backed off before each retry (the response was a real throttling or 5xx to it).
    assert len(plan.backoffs) >= 3 and all(seconds >= 0 for seconds in plan.backoffs)
    assert result.outcome == "succeeded", result.error
    assert flow.effect_landed_once(org, event)
    assert [entry for entry in org.ledger(event["id"]) if entry.status == "failed"] == []
    assert org.dead_letters() == []


@pytest.mark.parametrize("flow", [pytest.param(flow, id=flow.name) for flow in FLOWS])
def test_access_denied_is_not_retried_and_ends_failed_ledgered_and_notified(
    org: Organization, flow: Flow
) -> None:
    event = read_event(flow.event)
    org.seed(event)
    fault = flow.denied()

    with inject_api_faults(org, [fault]):
        [result] = org.replay([event], seed=False)

    # Retrying cannot fix a permission: botocore did not, and neither did the workflow or the queue.
    assert fault.hits == 1
    assert result.outcome == "failed"
    assert result.error and fault.error in result.error and "\n" not in result.error
    failed = [entry for entry in org.ledger(event["id"]) if entry.status == "failed"]
    assert [entry.action for entry in failed] == [flow.failed_action]
    assert fault.error in failed[0].detail["error"]
    [notice] = [
        note
        for note in notices_about(org, event["id"], flow.audience)
        if note.attributes["severity"] == "HIGH"
    ]
    assert fault.error in json.dumps(notice.message)
    assert flow.nothing_changed(org, event)
    assert org.dead_letters() == []


def test_config_throttling_that_outlasts_botocore_is_redelivered_by_the_queue(org: Organization) -> None:
    flow = BY_NAME["config-remediation"]
    event = read_event(flow.event)
    org.seed(event)
    # Five failures use up botocore's five attempts in the first delivery; the second delivery succeeds.
    fault = flow.throttled(5)

    with inject_api_faults(org, [fault]):
        [result] = org.replay([event], seed=False)

    assert fault.hits == 5
    assert result.outcome == "succeeded", result.error
    assert _bucket_blocked(org, event)
    remediations = [entry for entry in org.ledger(event["id"]) if entry.action == "remediate"]
    assert [entry.status for entry in remediations] == ["done"], "one decision, however many deliveries"
    assert len(notices_about(org, event["id"], "security")) == 1
    assert org.dead_letters() == []


def test_config_throttling_that_never_ends_keeps_the_event_in_the_queues_dlq(org: Organization) -> None:
    flow = BY_NAME["config-remediation"]
    event = read_event(flow.event)
    org.seed(event)
    fault = flow.throttled(PERSISTENT)

    with inject_api_faults(org, [fault]):
        [result] = org.replay([event], seed=False)

    # Five receives (maxReceiveCount) of five botocore attempts each, then SQS moved the record aside.
    assert fault.hits == COMPLIANCE_RECEIVES * 5
    assert result.outcome == "dead-lettered" and result.error
    [kept] = org.dead_letters()
    assert kept.queue.endswith("config-compliance-dlq") and kept.event == event
    assert flow.nothing_changed(org, event)
    # The last delivery told the ledger, under the bucket, and the security team that the violation stands.
    [entry] = [entry for entry in org.ledger(event["id"]) if entry.action != "notify"]
    assert (entry.action, entry.status) == ("dead_letter", "failed")
    assert entry.target.endswith(f":{event['detail']['resourceId']}")
    assert entry.detail["deliveries"] == COMPLIANCE_RECEIVES
    assert entry.detail["error_type"] == "TransientRemediationError"
    assert "SlowDown" in entry.detail["error"] or "Throttl" in entry.detail["error"], entry.detail["error"]
    [notice] = notices_about(org, event["id"], "security")
    assert notice.subject.endswith("NOT remediated, dead-lettered")
    assert notice.message["outcome"] == "failed" and "govern redrive" in notice.message["reason"]


def test_a_throttled_assume_role_is_redelivered_not_a_final_failure(org: Organization) -> None:
    event = read_event("config-s3-public-read")
    org.seed(event)
    # Five throttles use up botocore's five attempts of AssumeRole in the first delivery only.
    fault = throttling("sts", "AssumeRole", times=5)

    with inject_api_faults(org, [fault]):
        [result] = org.replay([event], seed=False)

    assert fault.hits == 5
    assert result.outcome == "succeeded", result.error
    assert _bucket_blocked(org, event)
    assert [(e.action, e.status) for e in org.ledger(event["id"]) if e.action != "notify"] == [
        ("remediate", "done")
    ]
    [notice] = notices_about(org, event["id"], "security")
    assert notice.message["outcome"] == "done"
    assert org.dead_letters() == []


def test_assume_role_throttled_through_every_delivery_is_dead_lettered_for_a_redrive(
    org: Organization,
) -> None:
    event = read_event("config-s3-public-read")
    org.seed(event)
    fault = throttling("sts", "AssumeRole", times=PERSISTENT)

    with inject_api_faults(org, [fault]):
        [result] = org.replay([event], seed=False)

    assert fault.hits == COMPLIANCE_RECEIVES * 5
    assert result.outcome == "dead-lettered"
    [entry] = [entry for entry in org.ledger(event["id"]) if entry.action != "notify"]
    assert (entry.action, entry.detail["error_type"]) == ("dead_letter", "TransientRemediationError")
    assert "Throttling" in entry.detail["error"]
    # A throttled STS says nothing about the member StackSet: no hint pointing there.
    assert "StackSet" not in entry.detail["error"]
    assert BY_NAME["config-remediation"].nothing_changed(org, event)


def exempted_by_tags(org: Organization, event: dict[str, Any]) -> None:
    """The bucket's owner exempted it, with a reason, until 2099."""
    org.session(TEAM).client("s3", region_name=REGION).put_bucket_tagging(
        Bucket=event["detail"]["resourceId"],
        Tagging={
            "TagSet": [
                {"Key": "governance:exempt-until", "Value": "2099-12-31"},
                {"Key": "governance:exempt-reason", "Value": "Public dataset, SEC-42"},
            ]
        },
    )


@pytest.mark.parametrize("kind", ["throttling", "5xx"])
def test_an_exemption_whose_tags_could_not_be_read_at_first_is_honoured_on_redelivery(
    org: Organization, kind: str
) -> None:
    event = read_event("config-s3-public-read")
    org.seed(event)
    exempted_by_tags(org, event)
    fault = (throttling if kind == "throttling" else server_error)(
        "s3", "GetBucketTagging", times=5, account=TEAM
    )

    with inject_api_faults(org, [fault]):
        [result] = org.replay([event], seed=False)

    assert fault.hits == 5, "the first delivery's read failed through botocore's attempts"
    assert result.outcome == "succeeded", result.error
    assert [a.status for a in result.actions if a.type == "remediate"] == ["exempt"]
    assert BY_NAME["config-remediation"].nothing_changed(org, event)
    [notice] = notices_about(org, event["id"], "security")
    assert notice.message["outcome"] == "exempt"


def test_tags_that_cannot_be_read_leave_the_resource_alone_and_say_so(org: Organization) -> None:
    event = read_event("config-s3-public-read")
    org.seed(event)
    exempted_by_tags(org, event)
    fault = access_denied("s3", "GetBucketTagging", times=PERSISTENT, account=TEAM)

    with inject_api_faults(org, [fault]):
        [result] = org.replay([event], seed=False)

    assert fault.hits == 1, "a refusal is not retried"
    assert result.outcome == "succeeded"
    assert BY_NAME["config-remediation"].nothing_changed(org, event)
    [entry] = [entry for entry in org.ledger(event["id"]) if entry.action == "remediate"]
    assert entry.status == "notify-only"
    assert entry.detail["reason"].startswith("exemption state unknown: could not read tags (")
    assert "AccessDenied" in entry.detail["reason"]
    [notice] = notices_about(org, event["id"], "security")
    assert notice.subject.endswith("not remediated (exemption unknown)")
    assert notice.attributes["kind"] == "non-compliance"
    assert org.dead_letters() == []


WORKFLOWS = [pytest.param(flow, id=flow.name) for flow in FLOWS if flow.name != "config-remediation"]
WORKFLOW_TRANSIENT_RETRIES = 4  # the TransientAwsError retrier of every Lambda task (statemachines/)


@pytest.mark.parametrize("flow", WORKFLOWS)
def test_workflow_throttling_that_outlasts_botocore_is_retried_by_the_state_machine(
    org: Organization, flow: Flow
) -> None:
    event = read_event(flow.event)
    org.seed(event)
    # Seven failures: botocore's five attempts fail the step once, the state machine's Retry runs it again.
    fault = flow.throttled(7)

    with inject_api_faults(org, [fault]):
        [result] = org.replay([event], seed=False)

    assert fault.hits == 7
    assert result.outcome == "succeeded", result.error
    assert flow.effect_landed_once(org, event)
    assert [entry for entry in org.ledger(event["id"]) if entry.status == "failed"] == []
    assert org.dead_letters() == []


def test_a_workflow_whose_retries_run_out_ends_in_its_catch_notified(org: Organization) -> None:
    flow = BY_NAME["model-deployment"]
    event = read_event(flow.event)
    org.seed(event)
    fault = flow.throttled(PERSISTENT)

    with inject_api_faults(org, [fault]):
        [result] = org.replay([event], seed=False)

    # botocore's five attempts, in the first run of the step and in each of the workflow's four retries.
    assert fault.hits == 5 * (1 + WORKFLOW_TRANSIENT_RETRIES)
    assert result.outcome == "failed" and result.error and "ThrottlingException" in result.error
    [execution] = org.executions("ModelDeploymentStateMachine")
    assert execution["status"] == "FAILED"
    assert [e.action for e in org.ledger(event["id"]) if e.status == "failed"] == ["start_pipeline"]
    assert notices_about(org, event["id"], "ml-governance")
    assert flow.nothing_changed(org, event)


# --------------------------------------------------------------------------- mixed batches


def test_config_remediation_batch_with_faults_loses_no_event(org: Organization) -> None:
    blocked_read = read_event("config-s3-public-read")
    blocked_write = read_event("config-s3-public-write-control-tower")
    tls = read_event("config-s3-tls-required")
    ebs = read_event("config-ebs-encryption-default")
    ssh = read_event("config-security-group-ssh")
    unknown = read_event("config-unknown-rule")
    compliant = read_event("config-compliant")
    malformed = read_event("malformed-config-evaluation")
    events = [blocked_read, blocked_write, tls, ebs, ssh, unknown, compliant, malformed]
    faults = [
        throttling("s3", "PutPublicAccessBlock", times=2, request_contains="team-churn-public-data"),
        server_error("s3", "PutPublicAccessBlock", times=3, request_contains="team-churn-uploads"),
        access_denied("s3", "PutBucketPolicy", times=PERSISTENT, request_contains="team-churn-features"),
        throttling("ec2", "EnableEbsEncryptionByDefault", times=PERSISTENT, account=TEAM),
    ]

    results = replay_with_faults(org, events, faults, sequential=False)

    accounting = assert_conservation(
        org,
        events,
        results,
        {
            blocked_read["id"]: "succeeded",
            blocked_write["id"]: "succeeded",
            tls["id"]: "failed",
            ebs["id"]: "dead-lettered",
            ssh["id"]: "succeeded",
            unknown["id"]: "succeeded",
            compliant["id"]: "ignored",
            malformed["id"]: "dead-lettered",
        },
    )
    assert accounting.totals() == {"succeeded/ignored": 5, "failed": 1, "dead-lettered": 2}
    assert [fault.hits for fault in faults] == [2, 3, 1, COMPLIANCE_RECEIVES * 5]
    assert bucket_public_access_block(org, TEAM, "team-churn-public-data") == ALL_FOUR_ON
    assert bucket_public_access_block(org, TEAM, "team-churn-uploads") == ALL_FOUR_ON
    assert not any(
        statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for statement in bucket_policy_statements(org, TEAM, "team-churn-features")
    ), "the denied policy change did not happen"
    assert ebs_encryption_by_default(org, TEAM) is False
    assert (22, "0.0.0.0/0") not in security_group_ingress(org, TEAM, "sg-0123456789abcdef0")


def test_model_promotion_batch_with_faults_loses_no_event(org: Organization) -> None:
    approved = read_event("model-approved-in-team-account")
    denied = derived("model-approved-in-team-account", {TEAM: OTHER_TEAM})
    exhausted = derived("model-approved-in-team-account", {"churn-prediction": "churn-retrain"})
    missing_metadata = read_event("model-approved-missing-metadata")
    rejected = read_event("model-rejected-in-team-account")
    pending = read_event("model-pending-in-team-account")
    malformed = read_event("malformed-model-approval")
    events = [approved, denied, exhausted, missing_metadata, rejected, pending, malformed]
    faults = [
        throttling("sagemaker", "CreateModelPackage", times=2, request_contains="churn-prediction"),
        access_denied("sagemaker", "DescribeModelPackage", times=PERSISTENT, account=OTHER_TEAM),
        # Copying the team's artifacts is throttled for longer than botocore and the workflow retry: a caught
        # failure.
        throttling("s3", "GetObject", times=PERSISTENT, account=TEAM, request_contains="churn-retrain"),
    ]

    results = replay_with_faults(org, events, faults, sequential=False)

    accounting = assert_conservation(
        org,
        events,
        results,
        {
            approved["id"]: "succeeded",
            denied["id"]: "failed",
            exhausted["id"]: "failed",
            missing_metadata["id"]: "succeeded",
            rejected["id"]: "ignored",
            pending["id"]: "ignored",
            malformed["id"]: "dead-lettered",
        },
    )
    assert accounting.totals() == {"succeeded/ignored": 4, "failed": 2, "dead-lettered": 1}
    assert faults[0].hits == 2 and faults[1].hits == 1
    assert faults[2].hits == 5 * (1 + WORKFLOW_TRANSIENT_RETRIES)
    assert len(central_versions_from(org, approved["detail"]["ModelPackageArn"])) == 1
    assert central_versions_from(org, denied["detail"]["ModelPackageArn"]) == []
    assert central_versions_from(org, exhausted["detail"]["ModelPackageArn"]) == []
    assert central_versions_from(org, missing_metadata["detail"]["ModelPackageArn"]) == []
    [kept] = org.dead_letters()
    assert kept.event == malformed and kept.error and "ModelPackageArn" in kept.error


def test_model_deployment_batch_with_faults_loses_no_event(org: Organization) -> None:
    approved = read_event("model-approved-in-central-registry")
    rejected = read_event("model-rejected-in-central-registry")
    denied = derived("model-approved-in-central-registry", {"churn-prediction": "fraud-scoring"})
    exhausted = derived("model-approved-in-central-registry", {"churn-prediction": "churn-retrain"})
    malformed = derived("model-approved-in-central-registry", {'"ModelPackageVersion": 1,': ""})
    del malformed["detail"]["ModelPackageArn"]
    malformed["resources"] = []
    events = [approved, rejected, denied, exhausted, malformed]
    faults = [
        throttling(
            "codepipeline", "StartPipelineExecution", times=2, request_contains="churn-prediction-deploy"
        ),
        server_error("sagemaker", "UpdateModelCard", times=2, request_contains="churn-prediction-v2"),
        access_denied(
            "codepipeline", "StartPipelineExecution", times=PERSISTENT, request_contains="fraud-scoring"
        ),
        throttling(
            "codepipeline", "GetPipelineExecution", times=PERSISTENT, request_contains="churn-retrain"
        ),
    ]

    results = replay_with_faults(org, events, faults, sequential=False)

    accounting = assert_conservation(
        org,
        events,
        results,
        {
            approved["id"]: "succeeded",
            rejected["id"]: "succeeded",
            denied["id"]: "failed",
            exhausted["id"]: "failed",
            malformed["id"]: "dead-lettered",
        },
    )
    assert accounting.totals() == {"succeeded/ignored": 2, "failed": 2, "dead-lettered": 1}
    assert [fault.hits for fault in faults] == [2, 2, 1, 5 * (1 + WORKFLOW_TRANSIENT_RETRIES)]
    assert len(pipeline_runs(org, approved)) == 1
    assert pipeline_runs(org, denied) == []
    # The rejection reached its card despite the 5xx.
    assert card_custom_details(org, "210987654321-churn-prediction-v2").get("decision_status") == "Rejected"


def test_account_baseline_batch_with_faults_loses_no_event(org: Organization) -> None:
    created = read_event("account-created")
    creation_failed = read_event("account-creation-failed")
    denied = derived("account-created", {NEW_ACCOUNT: OTHER_TEAM})
    flaky = derived("account-created", {NEW_ACCOUNT: ANOTHER_NEW_ACCOUNT})
    malformed = derived("account-created", {})
    del malformed["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["account"]["accountId"]
    events = [created, creation_failed, denied, flaky, malformed]
    faults = [
        throttling("ec2", "EnableEbsEncryptionByDefault", times=2, account=NEW_ACCOUNT),
        access_denied("s3control", "PutPublicAccessBlock", times=PERSISTENT, account=OTHER_TEAM),
        server_error("s3control", "PutPublicAccessBlock", times=3, account=ANOTHER_NEW_ACCOUNT),
    ]

    results = replay_with_faults(org, events, faults, sequential=False)

    accounting = assert_conservation(
        org,
        events,
        results,
        {
            created["id"]: "succeeded",
            creation_failed["id"]: "succeeded",
            denied["id"]: "failed",
            flaky["id"]: "succeeded",
            malformed["id"]: "dead-lettered",
        },
    )
    assert accounting.totals() == {"succeeded/ignored": 3, "failed": 1, "dead-lettered": 1}
    assert [fault.hits for fault in faults] == [2, 1, 3]
    for account in (NEW_ACCOUNT, ANOTHER_NEW_ACCOUNT):
        assert account_public_access_block(org, account) == ALL_FOUR_ON
        assert ebs_encryption_by_default(org, account)
        assert (inventory(org, account) or {}).get("baseline_status") == "baselined"
    assert account_public_access_block(org, OTHER_TEAM) is None
    assert (inventory(org, OTHER_TEAM) or {}).get("baseline_status") != "baselined"


# --------------------------------------------------------------------------- the injector itself


def test_faults_are_answered_in_the_services_protocol_and_removed_after_the_block(org: Organization) -> None:
    org.ensure_member(TEAM)
    s3 = org.session(TEAM).client("s3")
    s3.create_bucket(Bucket="fault-probe")
    moto_stubber = BotocoreStubber.__dict__["__call__"]

    with inject_api_faults(org, [access_denied("s3", "PutBucketTagging", times=1, account=TEAM)]) as plan:
        with pytest.raises(ClientError) as denied:
            s3.put_bucket_tagging(Bucket="fault-probe", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
        # A matching call in another account is not affected.
        org.session(OTHER_TEAM).client("s3").list_buckets()

    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert plan[0].hit_accounts == [TEAM]
    assert BotocoreStubber.__dict__["__call__"] is moto_stubber
    # The denied call never reached moto: no tags; after the block the same call goes through.
    with pytest.raises(ClientError):
        s3.get_bucket_tagging(Bucket="fault-probe")
    s3.put_bucket_tagging(Bucket="fault-probe", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert s3.get_bucket_tagging(Bucket="fault-probe")["TagSet"] == [{"Key": "k", "Value": "v"}]


def test_a_fault_on_an_operation_the_service_does_not_have_is_refused(org: Organization) -> None:
    with (
        pytest.raises(ValueError, match="PutPublicAccesBlock"),
        inject_api_faults(org, [throttling("s3", "PutPublicAccesBlock")]),
    ):
        pass
