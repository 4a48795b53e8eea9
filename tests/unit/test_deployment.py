"""Model deployment logic on plain moto: the pipeline is resolved, started once with the exact version,
followed with bounded backoff, and its result (or a rejection) is written on the model card."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from govern.flows import models as model_support
from governance import deployment, model_card
from governance.ledger import entries_for_event
from governance.settings import settings
from tests.conftest import read_event
from tests.unit.test_promotion import GOVERNANCE, REGION, Backbone, provision_backbone

GROUP = "210987654321-churn-prediction"
PIPELINE = f"{GROUP}-deploy"
CARD = f"{GROUP}-v1"
GROUP_ARN = f"arn:aws:sagemaker:{REGION}:{GOVERNANCE}:model-package-group/{GROUP}"


@pytest.fixture
def backbone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Backbone]:
    yield from provision_backbone(monkeypatch)


@pytest.fixture
def approved(backbone: Backbone) -> dict[str, Any]:
    """The central approval sample, its version, card and pipeline seeded; returns the event."""
    event = read_event("model-approved-in-central-registry")
    model_support.seed(event, backbone)  # type: ignore[arg-type]
    return event


def executions_for(version_arn: str) -> list[dict[str, Any]]:
    return model_support.pipeline_executions_carrying(Backbone("", ""), PIPELINE, version_arn)  # type: ignore[arg-type]


def card_content(name: str = CARD) -> dict[str, Any]:
    return json.loads(boto3.client("sagemaker").describe_model_card(ModelCardName=name)["Content"])  # type: ignore[no-any-return]


def run_to_the_end(decision: dict[str, Any], owner: str, event_id: str) -> dict[str, Any]:
    started = deployment.start_pipeline(decision, owner=owner, event_id=event_id)
    pipeline = started
    while pipeline.get("state") in ("started", "running"):
        pipeline = deployment.check_pipeline(pipeline)
    return pipeline


def test_the_decision_is_read_from_the_registry(approved: dict[str, Any]) -> None:
    decision = deployment.load_decision(approved)

    assert decision["decision"] == "Approved"
    assert decision["version_arn"] == approved["detail"]["ModelPackageArn"]
    assert decision["model_card"] == CARD
    assert decision["source_account"] == "210987654321"
    assert decision["reason"] == "Reviewed by ML governance board, change MLG-2026-118."


def test_an_approval_revoked_since_the_event_is_not_deployed(approved: dict[str, Any]) -> None:
    arn = approved["detail"]["ModelPackageArn"]
    sagemaker = boto3.client("sagemaker")
    metadata = sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    sagemaker.update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus="Rejected", CustomerMetadataProperties=metadata
    )

    assert deployment.load_decision(approved)["decision"] == "Rejected"


def test_the_group_tag_names_the_pipeline_before_the_map(
    approved: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYMENT_PIPELINE_MAP", f"{GROUP}=from-the-map")
    settings.cache_clear()
    assert deployment.resolve_pipeline(GROUP) == PIPELINE

    boto3.client("sagemaker").delete_tags(ResourceArn=GROUP_ARN, TagKeys=["governance:deployment-pipeline"])
    assert deployment.resolve_pipeline(GROUP) == "from-the-map"
    assert deployment.resolve_pipeline("a-group-nobody-knows") == ""


def test_a_blank_pipeline_tag_is_no_pipeline_and_the_map_names_it(
    approved: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEPLOYMENT_PIPELINE_MAP", f"{GROUP}={PIPELINE}")
    settings.cache_clear()
    sagemaker = boto3.client("sagemaker")
    sagemaker.delete_tags(ResourceArn=GROUP_ARN, TagKeys=["governance:deployment-pipeline"])
    sagemaker.add_tags(ResourceArn=GROUP_ARN, Tags=[{"Key": "governance:deployment-pipeline", "Value": "  "}])
    tags = sagemaker.list_tags(ResourceArn=GROUP_ARN)["Tags"]
    assert [t["Value"] for t in tags if t["Key"] == "governance:deployment-pipeline"] == ["  "]
    decision = deployment.load_decision(approved)

    started = deployment.start_pipeline(decision, owner="execution-1", event_id="event-1")

    assert (started["state"], started["pipeline"]) == ("started", PIPELINE)
    assert len(executions_for(decision["version_arn"])) == 1


def test_the_pipeline_tag_counts_on_any_page_of_the_groups_tags(approved: dict[str, Any]) -> None:
    """ListTags answers 50 tags at a time; an organization's tag policies can put more on a group."""
    sagemaker = boto3.client("sagemaker")
    sagemaker.delete_tags(ResourceArn=GROUP_ARN, TagKeys=["governance:deployment-pipeline"])
    sagemaker.add_tags(
        ResourceArn=GROUP_ARN, Tags=[{"Key": f"cost-centre-{n:02}", "Value": "x"} for n in range(49)]
    )
    sagemaker.add_tags(
        ResourceArn=GROUP_ARN, Tags=[{"Key": "governance:deployment-pipeline", "Value": "late"}]
    )
    first_page = sagemaker.list_tags(ResourceArn=GROUP_ARN)["Tags"]
    assert len(first_page) == 50 and "governance:deployment-pipeline" not in {t["Key"] for t in first_page}

    assert deployment.resolve_pipeline(GROUP) == "late"


def test_the_pipeline_starts_once_with_the_exact_version_as_a_variable(approved: dict[str, Any]) -> None:
    decision = deployment.load_decision(approved)

    first = deployment.start_pipeline(decision, owner="execution-1", event_id="event-1")
    second = deployment.start_pipeline(decision, owner="execution-2", event_id="event-1")

    assert first["state"] == "started" and second["state"] == "duplicate"
    [execution] = executions_for(decision["version_arn"])
    assert execution["pipelineExecutionId"] == first["execution_id"]
    assert {v["name"]: v["resolvedValue"] for v in execution["variables"]} == {
        "ModelPackageArn": decision["version_arn"]
    }
    [skipped] = entries_for_event("event-1")
    assert (skipped.action, skipped.status, skipped.target) == (
        "start_pipeline",
        "skipped",
        first["execution_id"],
    )
    assert deployment.deployment_record(decision["version_arn"])["execution_id"] == first["execution_id"]


def test_an_abandoned_start_is_taken_over_after_its_lease(approved: dict[str, Any]) -> None:
    decision = deployment.load_decision(approved)
    boto3.resource("dynamodb").Table("state").put_item(
        Item={
            "pk": f"model-deployment#{decision['version_arn']}",
            "sk": "pipeline",
            "status": "Starting",
            "owner": "died-before-starting",
            "claimed_at": 0,
        }
    )

    started = deployment.start_pipeline(decision, owner="execution-2", event_id="event-2")

    assert started["state"] == "started"
    assert len(executions_for(decision["version_arn"])) == 1


def test_the_same_decision_delivered_again_after_its_pipeline_failed_starts_nothing(
    approved: dict[str, Any],
) -> None:
    """Only a new decision on the version (approved again: another LastModifiedTime) deploys it again."""
    model_support.script_pipeline_executions(GOVERNANCE, REGION, PIPELINE, final_status="Failed")
    decision = deployment.load_decision(approved)
    ended = run_to_the_end(decision, owner="execution-1", event_id="event-1")
    deployment.record_deployment(decision, ended, event_id="event-1")
    assert deployment.deployment_record(decision["version_arn"])["status"] == "Failed"

    again = deployment.start_pipeline(decision, owner="execution-2", event_id="event-1")

    assert again["state"] == "duplicate"
    assert len(executions_for(decision["version_arn"])) == 1


def test_a_new_decision_does_not_take_over_a_pipeline_execution_still_running(
    approved: dict[str, Any],
) -> None:
    """The workflow that followed the execution died; the execution itself still runs. Approved again
    meanwhile, the version is not started a second time beside it."""
    model_support.script_pipeline_executions(
        GOVERNANCE, REGION, PIPELINE, final_status="Succeeded", running_checks=1_000
    )
    decision = deployment.load_decision(approved)
    first = deployment.start_pipeline(decision, owner="execution-1", event_id="event-1")

    again = deployment.start_pipeline(
        {**decision, "approval": "Approved@2026-11-29T11:00:00Z"}, owner="execution-2", event_id="event-2"
    )

    assert again["state"] == "duplicate"
    [execution] = executions_for(decision["version_arn"])
    assert execution["pipelineExecutionId"] == first["execution_id"]
    assert deployment.deployment_record(decision["version_arn"])["status"] == "InProgress"


@pytest.mark.parametrize(
    ("ended", "new_decision"),
    [("Failed", False), ("Succeeded", True), ("its pipeline deleted", True)],
    ids=["the-same-decision-after-a-failed-run", "a-new-decision-after-a-deployed-run", "an-unreadable-run"],
)
def test_a_run_the_workflow_lost_track_of_is_taken_over_only_by_a_new_decision_after_a_failed_end(
    approved: dict[str, Any], ended: str, new_decision: bool
) -> None:
    """The workflow following a run died and left the record InProgress. A later delivery takes the record
    over only when it is a new decision and CodePipeline says that run ended without deploying: the same
    decision again, a run that deployed (no rejection since), or a run that cannot be read stay duplicates."""
    final_status = "Failed" if ended == "Failed" else "Succeeded"
    model_support.script_pipeline_executions(
        GOVERNANCE, REGION, PIPELINE, final_status=final_status, running_checks=0
    )
    decision = deployment.load_decision(approved)
    first = deployment.start_pipeline(decision, owner="execution-1", event_id="event-1")
    if ended == "its pipeline deleted":
        boto3.client("codepipeline").delete_pipeline(name=PIPELINE)
    again = {**decision, "approval": "Approved@2026-11-29T11:00:00Z"} if new_decision else decision

    second = deployment.start_pipeline(again, owner="execution-2", event_id="event-2")

    assert second["state"] == "duplicate"
    record = deployment.deployment_record(decision["version_arn"])
    assert (record["status"], record["execution_id"], record["owner"]) == (
        "InProgress",
        first["execution_id"],
        "execution-1",
    )
    if ended != "its pipeline deleted":
        assert len(executions_for(decision["version_arn"])) == 1


def test_each_start_carries_the_token_codepipeline_drops_a_second_start_of_one_decision_with(
    approved: dict[str, Any],
) -> None:
    """CodePipeline starts nothing for a clientRequestToken it has seen (moto does not model that, so the
    tokens are read off the requests): the execution's own retry of a start whose answer was lost sends the
    same token, and a new decision on the version, after its run failed, a new one."""
    model_support.script_pipeline_executions(
        GOVERNANCE, REGION, PIPELINE, final_status="Failed", running_checks=0
    )
    tokens: list[str] = []
    codepipeline = deployment._governance("codepipeline")
    codepipeline.meta.events.register(
        "provide-client-params.codepipeline.StartPipelineExecution",
        lambda params, **_: tokens.append(params["clientRequestToken"]),
    )
    decision = deployment.load_decision(approved)

    deployment.start_pipeline(decision, owner="execution-1", event_id="event-1")
    deployment.state_table().update_item(  # the answer was lost: the record is still the claim
        Key=deployment._deployment_key(decision["version_arn"]),
        UpdateExpression="SET #status = :starting REMOVE execution_id",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":starting": "Starting"},
    )
    deployment.start_pipeline(decision, owner="execution-1", event_id="event-1")
    reapproved = {**decision, "approval": "Approved@2026-11-29T11:00:00Z"}
    assert (
        deployment.start_pipeline(reapproved, owner="execution-2", event_id="event-2")["state"] == "started"
    )

    assert len(tokens) == 3 and tokens[0] == tokens[1] != tokens[2]
    assert deployment.deployment_record(decision["version_arn"])["owner"] == "execution-2"


def test_a_pipeline_execution_that_is_stopping_is_still_followed(approved: dict[str, Any]) -> None:
    """Stopping is on its way to Stopped, not an end: its result is not on the card yet."""
    model_support.script_pipeline_executions(
        GOVERNANCE, REGION, PIPELINE, final_status="Stopping", running_checks=0
    )
    decision = deployment.load_decision(approved)
    started = deployment.start_pipeline(decision, owner="execution-1", event_id="event-1")

    checked = deployment.check_pipeline(started)

    assert (checked["state"], checked["status"], checked["attempt"]) == ("running", "Stopping", 1)


def test_without_a_pipeline_nothing_starts_and_the_owner_is_told(
    approved: dict[str, Any], backbone: Backbone
) -> None:
    boto3.client("sagemaker").delete_tags(ResourceArn=GROUP_ARN, TagKeys=["governance:deployment-pipeline"])
    decision = deployment.load_decision(approved)

    started = deployment.start_pipeline(decision, owner="execution-1", event_id="event-1")

    assert started["state"] == "unconfigured"
    assert executions_for(decision["version_arn"]) == []
    [notice] = backbone.notifications()
    assert notice["severity"] == "HIGH" and "governance:deployment-pipeline" in notice["what_to_do"]
    assert [(e.action, e.status) for e in entries_for_event("event-1")] == [
        ("notify", "done"),
        ("start_pipeline", "notify-only"),
    ]


def test_a_running_pipeline_is_checked_with_bounded_exponential_backoff(
    backbone: Backbone, approved: dict[str, Any]
) -> None:
    model_support.script_pipeline_executions(
        GOVERNANCE, REGION, PIPELINE, final_status="Succeeded", running_checks=4
    )
    decision = deployment.load_decision(approved)
    pipeline = deployment.start_pipeline(decision, owner="x", event_id="e")
    assert pipeline["wait_seconds"] == 10

    waits = []
    while pipeline["state"] in ("started", "running"):
        pipeline = deployment.check_pipeline(pipeline)
        waits.append(pipeline.get("wait_seconds"))

    assert waits == [20, 40, 80, 160, None]
    assert (pipeline["state"], pipeline["status"], pipeline["attempt"]) == ("ended", "Succeeded", 5)
    assert deployment.check_backoff_seconds(12) == deployment.MAX_CHECK_WAIT_SECONDS


def test_following_stops_with_a_clear_error_after_the_last_allowed_check(approved: dict[str, Any]) -> None:
    model_support.script_pipeline_executions(
        GOVERNANCE, REGION, PIPELINE, final_status="Succeeded", running_checks=2_000
    )
    decision = deployment.load_decision(approved)
    pipeline = deployment.start_pipeline(decision, owner="x", event_id="e")
    waited = pipeline["wait_seconds"]

    with pytest.raises(deployment.PipelineFollowTimeout) as raised:
        for _ in range(deployment.MAX_PIPELINE_CHECKS):
            pipeline = deployment.check_pipeline(pipeline)
            waited += pipeline["wait_seconds"]

    assert "still InProgress after 1152 checks (8 days): follow it in CodePipeline" in str(raised.value)
    # Followed past the 7 days a CodePipeline manual approval waits by default before it fails the execution.
    assert waited > 7 * 24 * 3600
    # Each check is a Wait, a Task and a Choice state (about 9 history events): within Step Functions'
    # 25,000 history events per execution.
    assert deployment.MAX_PIPELINE_CHECKS * 9 < 25_000


def test_a_successful_deployment_is_written_on_the_card_ledgered_and_notified(
    approved: dict[str, Any], backbone: Backbone
) -> None:
    decision = deployment.load_decision(approved)
    pipeline = run_to_the_end(decision, "x", "event-1")

    recorded = deployment.record_deployment(decision, pipeline, event_id="event-1")

    assert recorded["deployed"] is True
    custom = card_content()["additional_information"]["custom_details"]
    assert custom["deployment_status"] == "Succeeded"
    assert custom["deployment_execution_id"] == pipeline["execution_id"]
    assert custom["decision_status"] == "Approved"
    assert card_content()["model_package_details"]["model_approval_status"] == "Approved"
    [entry] = [e for e in entries_for_event("event-1") if e.action == "start_pipeline"]
    assert (entry.status, entry.target) == ("done", pipeline["execution_id"])
    assert entry.detail["model_package_arn"] == decision["version_arn"]
    assert entry.detail["final_status"] == "Succeeded"
    [notice] = backbone.notifications()
    assert notice["severity"] == "INFO" and notice["final_status"] == "Succeeded"


def test_an_archived_card_is_left_as_it_is_and_the_result_ledgered_and_notified(
    approved: dict[str, Any], backbone: Backbone
) -> None:
    # Whoever archived the card meant no more updates (SageMaker's word); the promotion leaves it too.
    sagemaker = boto3.client("sagemaker")
    sagemaker.update_model_card(ModelCardName=CARD, ModelCardStatus="Archived")
    archived = sagemaker.describe_model_card(ModelCardName=CARD)
    decision = deployment.load_decision(approved)
    pipeline = run_to_the_end(decision, "x", "event-1")

    deployment.record_deployment(decision, pipeline, event_id="event-1")
    deployment.record_rejection({**decision, "decision": "Rejected", "reason": "retired"}, event_id="event-2")

    now = sagemaker.describe_model_card(ModelCardName=CARD)
    assert (now["ModelCardVersion"], now["ModelCardStatus"]) == (archived["ModelCardVersion"], "Archived")
    assert now["Content"] == archived["Content"]
    [deployed] = [e for e in entries_for_event("event-1") if e.action == "start_pipeline"]
    [rejected] = [e for e in entries_for_event("event-2") if e.action == "write_model_card"]
    for entry in (deployed, rejected):
        assert entry.detail["note"] == model_card.ARCHIVED_NOTE
    assert (deployed.status, deployed.detail["final_status"]) == ("done", "Succeeded")
    assert [n["kind"] for n in backbone.notifications()] == [
        "model-deployed",
        "model-rejected-after-deployment",
    ]


def test_a_failed_pipeline_is_written_on_the_card_and_notified_loudly(
    approved: dict[str, Any], backbone: Backbone
) -> None:
    model_support.script_pipeline_executions(
        GOVERNANCE, REGION, PIPELINE, final_status="Failed", summary="Deploy/Endpoint: CREATE_FAILED"
    )
    decision = deployment.load_decision(approved)
    pipeline = run_to_the_end(decision, "x", "event-1")

    deployment.record_deployment(decision, pipeline, event_id="event-1")

    custom = card_content()["additional_information"]["custom_details"]
    assert custom["deployment_status"] == "Failed"
    assert custom["deployment_summary"] == "Deploy/Endpoint: CREATE_FAILED"
    [entry] = [e for e in entries_for_event("event-1") if e.action == "start_pipeline"]
    assert (entry.status, entry.detail["final_status"]) == ("failed", "Failed")
    [notice] = backbone.notifications()
    assert notice["severity"] == "HIGH" and notice["kind"] == "model-deployment-failed"
    assert notice["subject"].startswith("[DEPLOYMENT FAILED]")


def test_a_retried_recording_step_does_not_ledger_or_notify_twice(
    approved: dict[str, Any], backbone: Backbone
) -> None:
    decision = deployment.load_decision(approved)
    pipeline = run_to_the_end(decision, "x", "event-1")

    deployment.record_deployment(decision, pipeline, event_id="event-1")
    deployment.record_deployment(decision, pipeline, event_id="event-1")

    assert [e.action for e in entries_for_event("event-1")] == ["start_pipeline", "notify"]
    assert len(backbone.notifications()) == 1


def test_a_rejection_is_written_on_the_card_with_its_reason(backbone: Backbone) -> None:
    event = read_event("model-rejected-in-central-registry")
    model_support.seed(event, backbone)  # type: ignore[arg-type]
    decision = deployment.load_decision(event)
    assert decision["decision"] == "Rejected"

    deployment.record_rejection(decision, event_id=event["id"])
    deployment.record_rejection(decision, event_id=event["id"])  # delivered twice

    content = card_content(f"{GROUP}-v2")
    assert content["model_package_details"]["model_approval_status"] == "Rejected"
    assert content["model_package_details"]["approval_description"].startswith("Fairness report missing")
    assert content["additional_information"]["custom_details"]["decision_status"] == "Rejected"
    [notice] = backbone.notifications()
    assert notice["severity"] == "MEDIUM" and notice["was_deployed"] is False
    assert notice["reason"].startswith("Fairness report missing")
    statuses = [(e.action, e.status) for e in entries_for_event(event["id"])]
    assert statuses == [("write_model_card", "done"), ("notify", "done"), ("write_model_card", "skipped")]


def test_rejecting_a_deployed_version_is_notified_as_critical(
    approved: dict[str, Any], backbone: Backbone
) -> None:
    decision = deployment.load_decision(approved)
    deployment.record_deployment(decision, run_to_the_end(decision, "x", "event-1"), event_id="event-1")
    rejection = {**decision, "decision": "Rejected", "reason": "data leak found in the training set"}

    deployment.record_rejection(rejection, event_id="event-2")

    notice = backbone.notifications()[-1]
    assert notice["severity"] == "CRITICAL" and notice["was_deployed"] is True
    assert "roll it back" in notice["subject"]
    assert card_content()["model_package_details"]["model_approval_status"] == "Rejected"


def test_a_version_rejected_while_its_pipeline_ran_keeps_the_rejection_and_is_notified_as_critical(
    approved: dict[str, Any], backbone: Backbone
) -> None:
    model_support.script_pipeline_executions(
        GOVERNANCE, REGION, PIPELINE, final_status="Succeeded", running_checks=2
    )
    decision = deployment.load_decision(approved)
    pipeline = deployment.check_pipeline(deployment.start_pipeline(decision, owner="x", event_id="event-1"))
    assert pipeline["state"] == "running"
    # The central approver rejects the version while the pipeline runs; the rejection's workflow records it.
    arn = decision["version_arn"]
    sagemaker = boto3.client("sagemaker")
    metadata = sagemaker.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    sagemaker.update_model_package(
        ModelPackageArn=arn,
        ModelApprovalStatus="Rejected",
        ApprovalDescription="opted-out customers in the training data",
        CustomerMetadataProperties=metadata,
    )
    rejection = {
        **approved,
        "id": "event-2",
        "detail": {**approved["detail"], "ModelApprovalStatus": "Rejected"},
    }
    deployment.record_rejection(deployment.load_decision(rejection), event_id="event-2")
    while pipeline["state"] == "running":
        pipeline = deployment.check_pipeline(pipeline)

    recorded = deployment.record_deployment(decision, pipeline, event_id="event-1")

    content = card_content()
    assert content["model_package_details"]["model_approval_status"] == "Rejected"
    assert (
        content["model_package_details"]["approval_description"] == "opted-out customers in the training data"
    )
    custom = content["additional_information"]["custom_details"]
    assert custom["decision_status"] == "Rejected"
    assert custom["decision_reason"] == "opted-out customers in the training data"
    assert (custom["deployment_status"], custom["deployment_execution_id"]) == (
        "Succeeded",
        pipeline["execution_id"],
    )
    notices = backbone.notifications()
    assert [n["subject"].split("]")[0] + "]" for n in notices] == [
        "[REJECTED DURING DEPLOYMENT]",
        "[REJECTED AFTER DEPLOYMENT]",
    ]
    assert notices[-1]["severity"] == "CRITICAL" and notices[-1]["kind"] == "model-rejected-after-deployment"
    assert (
        "roll it back" in notices[-1]["subject"] and notices[-1]["execution_id"] == pipeline["execution_id"]
    )
    [entry] = [e for e in entries_for_event("event-1") if e.action == "start_pipeline"]
    assert (entry.status, entry.detail["approval_status_at_end"]) == ("done", "Rejected")
    assert "to be rolled back" in entry.detail["warning"]
    assert (recorded["deployed"], recorded["approval_status"]) == (True, "Rejected")
