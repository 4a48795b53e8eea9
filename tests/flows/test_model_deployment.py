"""Flow B end to end: central-registry decisions through the template's rule, the real ModelDeployment
state machine and handler; the pipeline, the card and the notices are read back from the emulated AWS."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from govern.cli import main
from govern.emulator import Organization
from govern.faults import access_denied, inject_api_faults
from govern.flows import models as model_support
from tests.conftest import EVENTS_DIR

GROUP = "210987654321-churn-prediction"
PIPELINE = f"{GROUP}-deploy"
APPROVED = "model-approved-in-central-registry"
REJECTED = "model-rejected-in-central-registry"
MACHINE = "ModelDeploymentStateMachine"
LoadEvent = Callable[[str], dict[str, Any]]


def card_content(org: Organization, name: str) -> dict[str, Any]:
    described = org.session().client("sagemaker").describe_model_card(ModelCardName=name)
    return json.loads(described["Content"])  # type: ignore[no-any-return]


def card_versions(org: Organization, name: str) -> int:
    listed = org.session().client("sagemaker").list_model_card_versions(ModelCardName=name)
    return len(listed["ModelCardVersionSummaryList"])


def entered_states(org: Organization, execution_arn: str) -> list[str]:
    history = (
        org.session()
        .client("stepfunctions")
        .get_execution_history(executionArn=execution_arn, maxResults=1000)
    )
    return [
        e["stateEnteredEventDetails"]["name"] for e in history["events"] if e["type"].endswith("StateEntered")
    ]


def deployment_claim(org: Organization, version_arn: str) -> dict[str, Any] | None:
    """The state table's record of the pipeline start for this version, read from the emulated AWS."""
    table = org.session().resource("dynamodb").Table(org.physical_id("StateTable"))
    item = table.get_item(Key={"pk": f"model-deployment#{version_arn}", "sk": "pipeline"}).get("Item")
    return dict(item) if item else None


def test_a_central_approval_starts_exactly_one_execution_carrying_the_version(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event(APPROVED)
    version_arn = event["detail"]["ModelPackageArn"]

    [result] = org.replay([event])

    assert result.outcome == "succeeded", result.error
    assert result.rules == ["ModelDeploymentStateMachineCentralDecision"]
    [execution] = model_support.pipeline_executions_carrying(org, PIPELINE, version_arn)
    assert execution["status"] == "Succeeded"
    listed = org.session().client("codepipeline").list_pipeline_executions(pipelineName=PIPELINE)
    assert len(listed["pipelineExecutionSummaries"]) == 1
    custom = card_content(org, f"{GROUP}-v1")["additional_information"]["custom_details"]
    assert custom["deployment_execution_id"] == execution["pipelineExecutionId"]
    assert custom["deployment_status"] == "Succeeded"
    assert custom["deployment_pipeline"] == PIPELINE
    assert model_support.card_schema_errors(card_content(org, f"{GROUP}-v1")) == []
    [notice] = org.notifications("ml-governance")
    assert notice.attributes["kind"] == "model-deployed"
    assert notice.message["model_package_arn"] == version_arn
    assert [(a.type, a.status, a.target, a.verified) for a in result.actions] == [
        ("start_pipeline", "done", execution["pipelineExecutionId"], True),
        ("notify", "done", notice.topic_arn, True),
    ]
    [start] = result.actions[:1]
    assert start.detail["model_package_arn"] == version_arn and start.detail["final_status"] == "Succeeded"


def test_a_duplicate_approval_starts_one_execution_not_two(org: Organization, load_event: LoadEvent) -> None:
    event = load_event(APPROVED)

    results = org.replay([event, event, event], sequential=False)

    assert [r.outcome for r in results] == ["succeeded"] * 3
    executions = model_support.pipeline_executions_carrying(org, PIPELINE, event["detail"]["ModelPackageArn"])
    assert len(executions) == 1
    statuses = sorted(e.status for e in org.ledger(event["id"]) if e.action == "start_pipeline")
    assert statuses == ["done", "skipped", "skipped"]
    assert len(org.notifications("ml-governance")) == 1


def test_a_failed_pipeline_is_followed_to_its_end_notified_and_written_on_the_card(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event(APPROVED)
    model_support.script_pipeline(
        org, PIPELINE, final_status="Failed", summary="Deploy/Endpoint: CREATE_FAILED", running_checks=2
    )

    [result] = org.replay([event])

    assert result.outcome == "failed", "the deployment failed, and govern replay says so"
    assert result.error == f"deployment pipeline {PIPELINE} ended Failed: Deploy/Endpoint: CREATE_FAILED"
    [execution] = org.executions(MACHINE)
    assert execution["status"] == "SUCCEEDED", "the workflow did its job: followed, recorded, notified"
    states = entered_states(org, execution["executionArn"])
    assert states.count("CheckPipeline") == 3 and states.count("WaitForPipeline") == 3
    custom = card_content(org, f"{GROUP}-v1")["additional_information"]["custom_details"]
    assert custom["deployment_status"] == "Failed"
    assert custom["deployment_summary"] == "Deploy/Endpoint: CREATE_FAILED"
    [notice] = org.notifications("ml-governance")
    assert notice.subject.startswith("[DEPLOYMENT FAILED]")
    assert notice.attributes["severity"] == "HIGH" and notice.attributes["kind"] == "model-deployment-failed"
    [start] = [a for a in result.actions if a.type == "start_pipeline"]
    assert (start.status, start.detail["final_status"], start.verified) == ("failed", "Failed", True)


def test_a_rejection_updates_the_card_and_carries_the_reason_back(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event(REJECTED)
    org.seed(event)
    versions_before = card_versions(org, f"{GROUP}-v2")

    [result] = org.replay([event], seed=False)

    assert result.outcome == "succeeded"
    assert card_versions(org, f"{GROUP}-v2") == versions_before + 1
    content = card_content(org, f"{GROUP}-v2")
    assert content["model_package_details"]["model_approval_status"] == "Rejected"
    assert (
        content["additional_information"]["custom_details"]["decision_reason"]
        == event["detail"]["ApprovalDescription"]
    )
    assert model_support.card_schema_errors(content) == []
    [notice] = org.notifications("ml-governance")
    assert notice.message["reason"] == event["detail"]["ApprovalDescription"]
    assert notice.attributes["severity"] == "MEDIUM" and notice.message["was_deployed"] is False
    assert (
        org.session()
        .client("codepipeline")
        .list_pipeline_executions(pipelineName=PIPELINE)["pipelineExecutionSummaries"]
        == []
    )
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("write_model_card", "done", True),
        ("notify", "done", True),
    ]


def test_rejecting_a_version_already_deployed_is_said_loudly(
    org: Organization, load_event: LoadEvent
) -> None:
    approval = load_event(APPROVED)
    rejection = json.loads(json.dumps(approval))
    rejection["id"] = "0c4f6a2e-3f7b-5d1a-9e8c-2b7d4f6a8c01"
    rejection["detail"]["ModelApprovalStatus"] = "Rejected"
    rejection["detail"]["ApprovalDescription"] = "Training data included customers who opted out."

    results = org.replay([approval, rejection])

    assert [r.outcome for r in results] == ["succeeded", "succeeded"]
    notice = org.notifications("ml-governance")[-1]
    assert notice.attributes["severity"] == "CRITICAL"
    assert notice.attributes["kind"] == "model-rejected-after-deployment"
    assert "roll it back" in notice.subject
    content = card_content(org, f"{GROUP}-v1")
    assert content["model_package_details"]["model_approval_status"] == "Rejected"
    assert content["additional_information"]["custom_details"]["deployment_status"] == "Succeeded"


def test_a_step_that_fails_is_caught_recorded_and_notified(org: Organization, load_event: LoadEvent) -> None:
    event = load_event(APPROVED)
    model_support.seed(event, org)
    org.session().client("codepipeline").delete_pipeline(name=PIPELINE)  # the group's tag names a ghost

    [result] = org.replay([event], seed=False)

    assert result.outcome == "failed"
    [execution] = org.executions(MACHINE)
    assert execution["status"] == "FAILED"
    assert "RecordFailure" in entered_states(org, execution["executionArn"])
    [failure] = [e for e in org.ledger(event["id"]) if e.status == "failed"]
    assert failure.action == "start_pipeline" and "PipelineNotFound" in failure.detail["error_type"]
    [notice] = org.notifications("ml-governance")
    assert notice.subject.startswith("[FAILED] model-deployment")


def test_after_a_failed_start_the_fixed_pipeline_starts_on_the_next_approval_not_a_duplicate(
    org: Organization, load_event: LoadEvent
) -> None:
    # A start that failed for good gives its claim up: the next approval, once the pipeline exists, must
    # start it, not be told "already started" until the claim's 15-minute lease runs out.
    event = load_event(APPROVED)
    version_arn = event["detail"]["ModelPackageArn"]
    model_support.seed(event, org)
    org.session().client("codepipeline").delete_pipeline(name=PIPELINE)
    [failed] = org.replay([event], seed=False)
    assert failed.outcome == "failed"
    assert deployment_claim(org, version_arn) is None, "the failed start kept its claim"

    model_support.ensure_pipeline(org, PIPELINE)
    again = {**event, "id": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"}
    [result] = org.replay([again], seed=False)

    assert result.outcome == "succeeded", result.error
    [execution] = model_support.pipeline_executions_carrying(org, PIPELINE, version_arn)
    assert execution["status"] == "Succeeded"
    assert [e.status for e in org.ledger(again["id"]) if e.action == "start_pipeline"] == ["done"]
    claim = deployment_claim(org, version_arn)
    assert claim is not None and claim["execution_id"] == execution["pipelineExecutionId"]


def test_approval_in_a_team_account_then_centrally_deploys_the_exact_replicated_version(
    org: Organization, load_event: LoadEvent
) -> None:
    team_approval, central_approval = load_event("model-approved-in-team-account"), load_event(APPROVED)

    results = org.replay([team_approval, central_approval])

    assert [r.outcome for r in results] == ["succeeded", "succeeded"]
    [replicated] = [a for a in results[0].actions if a.type == "replicate_model"]
    assert replicated.target == central_approval["detail"]["ModelPackageArn"]
    [execution] = model_support.pipeline_executions_carrying(org, PIPELINE, replicated.target)
    content = card_content(org, f"{GROUP}-v1")
    custom = content["additional_information"]["custom_details"]
    assert custom["source_model_package_arn"] == team_approval["detail"]["ModelPackageArn"]
    assert custom["deployment_execution_id"] == execution["pipelineExecutionId"]
    assert content["model_package_details"]["model_approval_status"] == "Approved"


def test_govern_replay_json_reports_every_model_action_as_the_contract_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(
        [
            "replay",
            "--json",
            str(EVENTS_DIR / "model-approved-in-team-account.json"),
            str(EVENTS_DIR / "model-approved-in-central-registry.json"),
        ]
    )

    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert report["summary"] == {"events": 2, "succeeded": 2, "failed": 0, "ignored": 0, "dead_lettered": 0}
    actions = [action for event in report["events"] for action in event["actions"]]
    assert {action["type"] for action in actions} == {
        "replicate_model",
        "write_model_card",
        "start_pipeline",
        "notify",
    }
    for action in actions:
        assert set(action) == {"type", "status", "target", "verified", "detail"}
        assert action["status"] == "done" and action["verified"] is True
    [start] = [action for action in actions if action["type"] == "start_pipeline"]
    assert start["detail"]["model_package_arn"].endswith(f"model-package/{GROUP}/1")


def test_a_team_approval_delivered_again_after_deployment_keeps_the_reviewed_card(
    org: Organization, load_event: LoadEvent
) -> None:
    team_approval, central_approval = load_event("model-approved-in-team-account"), load_event(APPROVED)
    card = f"{GROUP}-v1"
    sagemaker = org.session().client("sagemaker")
    [promoted] = org.replay([team_approval])
    assert promoted.outcome == "succeeded"
    # The model risk reviewer approves the card; then the version is approved centrally and deployed.
    sagemaker.update_model_card(ModelCardName=card, ModelCardStatus="Approved")
    [deployed] = org.replay([central_approval])
    assert deployed.outcome == "succeeded"
    reviewed = sagemaker.describe_model_card(ModelCardName=card)
    # SageMaker sends the team's state change again (a new event id for the same approval).
    again = {**team_approval, "id": "f9a5c773-02df-52dd-b27c-d2208da81099"}

    [redelivered] = org.replay([again], seed=False)

    assert redelivered.outcome == "succeeded", redelivered.error
    described = sagemaker.describe_model_card(ModelCardName=card)
    assert described["ModelCardStatus"] == "Approved"
    assert described["ModelCardVersion"] == reviewed["ModelCardVersion"]
    assert described["Content"] == reviewed["Content"]
    assert json.loads(described["Content"])["model_package_details"]["model_approval_status"] == "Approved"
    assert [(a.type, a.status, a.verified) for a in redelivered.actions] == [
        ("replicate_model", "skipped", True),
        ("write_model_card", "skipped", True),
    ]


def test_a_central_approval_replayed_before_the_team_approval_makes_that_one_a_verified_duplicate(
    org: Organization, load_event: LoadEvent
) -> None:
    """An archive replayed out of order: the seed of the central approval stands for a replication done
    before. The team approval that follows is a duplicate of it: nothing copied again, nothing announced
    again, and every action reads back from the emulated AWS (the copies match the team's objects)."""
    team_approval, central_approval = load_event("model-approved-in-team-account"), load_event(APPROVED)
    source_arn = team_approval["detail"]["ModelPackageArn"]
    central_arn = central_approval["detail"]["ModelPackageArn"]

    deployed, duplicate = org.replay([central_approval, team_approval])

    assert deployed.outcome == "succeeded", deployed.error
    assert duplicate.outcome == "succeeded", duplicate.error
    assert [(a.type, a.status, a.target, a.verified) for a in duplicate.actions] == [
        ("replicate_model", "skipped", central_arn, True),
        (
            "write_model_card",
            "skipped",
            f"arn:aws:sagemaker:us-east-1:111111111111:model-card/{GROUP}-v1",
            True,
        ),
    ]
    assert [n.message["kind"] for n in org.notifications("ml-governance")] == ["model-deployed"]
    sagemaker = org.session().client("sagemaker")
    listed = sagemaker.list_model_packages(ModelPackageGroupName=GROUP, MaxResults=100)[
        "ModelPackageSummaryList"
    ]
    assert [item["ModelPackageArn"] for item in listed] == [central_arn]
    # The replica index names the team's real objects, and each central copy holds their exact bytes.
    table = org.session().resource("dynamodb").Table(org.physical_id("StateTable"))
    index = table.get_item(Key={"pk": f"model-replica#{source_arn}", "sk": "central-version"})["Item"]
    team_uri = team_approval["detail"]["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    central_uri = central_approval["detail"]["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert {(a["source"], a["copy"]) for a in index["artifacts"]} >= {(team_uri, central_uri)}

    def body(account: str | None, uri: str) -> bytes:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        s3 = org.session(account).client("s3")
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]

    for artifact in index["artifacts"]:
        assert body("210987654321", artifact["source"]) == body(None, artifact["copy"])


def decided_again(event: dict[str, Any], status: str, event_id: str, reason: str = "") -> dict[str, Any]:
    """The same version, a new decision in the central registry (a new event, a new LastModifiedTime)."""
    again = json.loads(json.dumps(event))
    again["id"] = event_id
    again["detail"]["ModelApprovalStatus"] = status
    if reason:
        again["detail"]["ApprovalDescription"] = reason
    return again


def test_a_version_approved_again_after_a_failed_deployment_is_deployed_again(
    org: Organization, load_event: LoadEvent
) -> None:
    """A failed pipeline must not make its version undeployable: once the cause is fixed, the reviewer
    approves again (PendingManualApproval, then Approved) and the pipeline starts again."""
    approval = load_event(APPROVED)
    version_arn = approval["detail"]["ModelPackageArn"]
    model_support.script_pipeline(
        org, PIPELINE, final_status="Failed", summary="Deploy/Endpoint: CREATE_FAILED"
    )
    [failed] = org.replay([approval])
    assert failed.outcome == "failed"
    model_support.script_pipeline(org, PIPELINE, final_status="Succeeded", summary="")
    pending = decided_again(approval, "PendingManualApproval", "6a0e4c1d-2b3f-5a6e-8c9d-0f1a2b3c4d5e")
    again = decided_again(approval, "Approved", "7b1f5d2e-3c4a-5b7f-9d0e-1a2b3c4d5e6f")

    _, deployed = org.replay([pending, again])

    assert deployed.outcome == "succeeded", deployed.error
    executions = model_support.pipeline_executions_carrying(org, PIPELINE, version_arn)
    assert len(executions) == 2
    custom = card_content(org, f"{GROUP}-v1")["additional_information"]["custom_details"]
    assert custom["deployment_status"] == "Succeeded"
    assert custom["deployment_execution_id"] in {e["pipelineExecutionId"] for e in executions}
    assert deployment_claim(org, version_arn)["status"] == "Succeeded"  # type: ignore[index]
    # The first approval delivered once more changes nothing: it is not a new decision.
    [late] = org.replay([{**approval, "id": "8c2a6e3f-4d5b-5c8a-0e1f-2b3c4d5e6f70"}], seed=False)
    assert [a.status for a in late.actions if a.type == "start_pipeline"] == ["skipped"]
    assert len(model_support.pipeline_executions_carrying(org, PIPELINE, version_arn)) == 2


def test_rejected_after_deployment_then_approved_again_deploys_again_and_the_card_says_approved(
    org: Organization, load_event: LoadEvent
) -> None:
    approval = load_event(APPROVED)
    version_arn = approval["detail"]["ModelPackageArn"]
    rejection = decided_again(
        approval, "Rejected", "9d3b7f4a-5e6c-5d9b-1f2a-3c4d5e6f7081", "opt-outs in data"
    )
    again = decided_again(approval, "Approved", "ae4c8a5b-6f7d-5eac-2a3b-4d5e6f708192")

    results = org.replay([approval, rejection, again])

    assert [r.outcome for r in results] == ["succeeded"] * 3
    assert len(model_support.pipeline_executions_carrying(org, PIPELINE, version_arn)) == 2
    content = card_content(org, f"{GROUP}-v1")
    assert content["model_package_details"]["model_approval_status"] == "Approved"
    assert content["additional_information"]["custom_details"]["deployment_status"] == "Succeeded"


def test_one_rejection_told_once_however_many_events_sagemaker_sends_for_it(
    org: Organization, load_event: LoadEvent
) -> None:
    """SageMaker may send several events for one state change, each with its own id."""
    event = load_event(REJECTED)
    org.seed(event)
    second = {**event, "id": "bf5d9b6c-7a8e-5fbd-3b4c-5e6f708192a3"}

    results = org.replay([event, second], seed=False)

    assert [r.outcome for r in results] == ["succeeded", "succeeded"]
    assert [n.attributes["kind"] for n in org.notifications("ml-governance")] == ["model-rejected"]


def test_a_deployed_version_edited_while_approved_is_not_deployed_a_second_time(
    org: Organization, load_event: LoadEvent
) -> None:
    """A new LastModifiedTime alone is not a new approval: only a version that was not deployed, or was
    rejected since, is deployed again."""
    approval = load_event(APPROVED)
    version_arn = approval["detail"]["ModelPackageArn"]
    [deployed] = org.replay([approval])
    assert deployed.outcome == "succeeded"
    sagemaker = org.session().client("sagemaker")
    described = sagemaker.describe_model_package(ModelPackageName=version_arn)
    sagemaker.update_model_package(  # moto clears what an update leaves out: hand it back
        ModelPackageArn=version_arn,
        ModelApprovalStatus="Approved",
        ApprovalDescription="typo fixed",
        CustomerMetadataProperties=described["CustomerMetadataProperties"],
    )
    edited = {**approval, "id": "e280ce9f-adb1-5ce0-6e7f-8192a3b4c5d6"}

    [result] = org.replay([edited], seed=False)

    assert [a.status for a in result.actions if a.type == "start_pipeline"] == ["skipped"]
    assert len(model_support.pipeline_executions_carrying(org, PIPELINE, version_arn)) == 1


def test_approved_again_after_the_workflow_lost_track_of_an_ended_run_deploys_again(
    org: Organization, load_event: LoadEvent
) -> None:
    """The workflow following a run can fail (its reads refused) and leave the record InProgress; once
    CodePipeline says that run ended, a new approval deploys again rather than being called a duplicate."""
    approval = load_event(APPROVED)
    version_arn = approval["detail"]["ModelPackageArn"]
    model_support.script_pipeline(org, PIPELINE, final_status="Failed", running_checks=0)
    with inject_api_faults(org, [access_denied("codepipeline", "GetPipelineExecution", times=100)]):
        [lost] = org.replay([approval])
    assert lost.outcome == "failed"
    first = deployment_claim(org, version_arn)
    assert first is not None and first["status"] == "InProgress"
    pending = decided_again(approval, "PendingManualApproval", "f4a2e01b-cfd0-5e02-8091-a3b4c5d6e7f8")
    again = decided_again(approval, "Approved", "05b3f12c-d0e1-5f13-91a2-b4c5d6e7f809")

    _, redeployed = org.replay([pending, again])

    [start] = [a for a in redeployed.actions if a.type == "start_pipeline"]
    assert (start.status, start.detail["final_status"]) == ("failed", "Failed")  # it ran, and was followed
    executions = model_support.pipeline_executions_carrying(org, PIPELINE, version_arn)
    assert len(executions) == 2
    second = deployment_claim(org, version_arn)
    assert second is not None and second["status"] == "Failed"
    assert second["execution_id"] != first["execution_id"]
