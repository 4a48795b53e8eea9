"""Flow B: a central decision on a model version - deploy exactly that version, or record the rejection."""

from __future__ import annotations

import uuid
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from governance import model_card
from governance.claims import claim_item, put_if, release_claim, state_table, take_claim
from governance.ledger import LedgerEntry, record
from governance.notifier import Severity, notify
from governance.promotion import (
    LINEAGE_SOURCE_ACCOUNT,
    LINEAGE_SOURCE_ARN,
    TAG_DEPLOYMENT_PIPELINE,
    deployment_pipeline_map,
    describe_central_version,
    once,
    parse_model_package_arn,
    registry_state_of,
    share_with_deployment_accounts,
)
from governance.sessions import session_for
from governance.settings import settings
from governance.tagging import sagemaker_tags

FLOW = "model-deployment"

# The CodePipeline V2 variable that carries the exact version to deploy.
PIPELINE_VARIABLE = "ModelPackageArn"

RUNNING = frozenset({"InProgress", "Stopping"})
SUCCEEDED = "Succeeded"
# Where a pipeline execution ends (CodePipeline's PipelineExecutionStatus besides RUNNING).
ENDED = frozenset({"Cancelled", "Stopped", "Succeeded", "Superseded", "Failed"})
# How long the workflow follows a running pipeline: a CodePipeline manual approval waits 7 days (by
# default) before it fails the execution (CodePipeline user guide), so a deployment waiting on a person
# still ends within 8 days. With the backoff capped at ten minutes that is 1,152 checks; each is one round
# of Wait, Task and Choice states, about 9 history events, well within Step Functions' 25,000 per execution.
FOLLOW_SECONDS = 8 * 24 * 3600
MAX_CHECK_WAIT_SECONDS = 600
MAX_PIPELINE_CHECKS = FOLLOW_SECONDS // MAX_CHECK_WAIT_SECONDS
# A start claimed but never recorded (its execution died) may be taken over after this long.
START_LEASE_SECONDS = 15 * 60


class NoPipelineExecution(RuntimeError):
    """The deployment record names no pipeline execution to follow."""


class PipelineFollowTimeout(RuntimeError):
    """The pipeline was still running after the last allowed check."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _governance(service: str) -> Any:
    return session_for(settings().require("governance_account_id")).client(service)


def _deployment_key(version_arn: str) -> dict[str, str]:
    return {"pk": f"model-deployment#{version_arn}", "sk": "pipeline"}


def deployment_record(version_arn: str) -> dict[str, Any]:
    """What the backbone started for this exact version (empty when nothing was started)."""
    item = state_table().get_item(Key=_deployment_key(version_arn), ConsistentRead=True).get("Item")
    return dict(item or {})


def check_backoff_seconds(attempt: int) -> int:
    """Bounded exponential backoff from POLL_BASE_SECONDS (10 s deployed; 1 s offline, scaled down again)."""
    return int(min(settings().poll_base_seconds * (2 ** min(attempt, 10)), MAX_CHECK_WAIT_SECONDS))


# ------------------------------------------------------------------------------------ the decision


def load_decision(event: dict[str, Any]) -> dict[str, Any]:
    """Parse the central registry's event and read the version's current decision from the registry."""
    # Only this step parses an event: the models (pydantic) load here, not when a pipeline check starts.
    from governance.events import parse_event
    from governance.events.sagemaker import ModelPackageStateChange

    change = parse_event(event, ModelPackageStateChange)
    arn = change.detail.ModelPackageArn
    parse_model_package_arn(arn)
    description = describe_central_version(arn)
    group = str(description.get("ModelPackageGroupName") or change.detail.ModelPackageGroupName)
    metadata = dict(description.get("CustomerMetadataProperties") or {})
    last_modified_by = (
        description.get("LastModifiedBy") or (event.get("detail") or {}).get("LastModifiedBy") or {}
    )
    decided_by = (last_modified_by.get("IamIdentity") or {}).get("Arn") or last_modified_by.get(
        "UserProfileName"
    )
    return {
        # The registry, not the event, decides: an approval revoked since the event is not deployed.
        "decision": str(description.get("ModelApprovalStatus", "")),
        "event_decision": change.detail.ModelApprovalStatus,
        "version_arn": str(description.get("ModelPackageArn") or arn),
        "group": group,
        "version": int(description.get("ModelPackageVersion") or change.detail.ModelPackageVersion),
        "model_card": model_card.card_name_of(description),
        "reason": str(description.get("ApprovalDescription") or ""),
        "decided_by": str(decided_by or ""),
        "decided_at": str(event.get("time") or _now()),
        # What tells one decision on the version from the next (approved, rejected, approved again).
        "approval": registry_state_of(description),
        "source_model_package_arn": metadata.get(LINEAGE_SOURCE_ARN, ""),
        "source_account": metadata.get(LINEAGE_SOURCE_ACCOUNT, ""),
        "owner": metadata.get("owner", ""),
    }


def resolve_pipeline(group: str) -> str:
    """The group's deployment pipeline: its `governance:deployment-pipeline` tag, else
    DEPLOYMENT_PIPELINE_MAP."""
    sagemaker = _governance("sagemaker")
    try:
        group_arn = sagemaker.describe_model_package_group(ModelPackageGroupName=group)[
            "ModelPackageGroupArn"
        ]
        tags = sagemaker_tags(sagemaker, group_arn)
    except ClientError as error:
        if "does not exist" not in str(error):
            raise
        tags = []
    for tag in tags:
        if tag.get("Key") == TAG_DEPLOYMENT_PIPELINE and str(tag.get("Value", "")).strip():
            return str(tag["Value"]).strip()
    return deployment_pipeline_map().get(group, "")


# ------------------------------------------------------------------------------------ approved: deploy


def _claim_start(version_arn: str, pipeline: str, owner: str, approval: str) -> bool:
    # The execution's own retry of this step (its start failed after the claim) takes the claim again; the
    # client request token keeps CodePipeline from starting twice if the first start went through.
    attributes = {"version_arn": version_arn, "pipeline": pipeline, "approval": approval}
    key = _deployment_key(version_arn)
    if take_claim(
        key, status="Starting", owner=owner, lease_seconds=START_LEASE_SECONDS, attributes=attributes
    ):
        return True
    # A new decision on a version whose last execution ended without deploying it (failed, stopped,
    # superseded, cancelled), or deployed it and was rejected since: approved again, it is deployed again.
    # The same decision delivered again (the same LastModifiedTime) is a duplicate and stays one, and a
    # deployed version edited while Approved (its description, say) is not deployed a second time.
    return put_if(
        claim_item(key, attributes, status="Starting", owner=owner),
        "(#status IN (:cancelled, :stopped, :superseded, :failed) "
        "OR (#status = :succeeded AND attribute_exists(rejected_since))) "
        "AND (attribute_not_exists(approval) OR approval <> :approval)",
        {"#status": "status"},
        {":approval": approval, **{f":{status.lower()}": status for status in ENDED}},
    ) or _take_over_a_run_whose_follower_ended(version_arn, approval, attributes, owner)


def _take_over_a_run_whose_follower_ended(
    version_arn: str, approval: str, attributes: dict[str, Any], owner: str
) -> bool:
    """A record still InProgress whose workflow stopped following it (it failed, or gave up after
    FOLLOW_SECONDS): CodePipeline says whether that execution ended. Ended, the new decision takes the
    record over on the same terms as above; still running, it stays a duplicate."""
    existing = deployment_record(version_arn)
    execution_id = str(existing.get("execution_id") or "")
    if existing.get("status") != "InProgress" or not execution_id or existing.get("approval") == approval:
        return False
    try:
        ended = str(
            _governance("codepipeline")
            .get_pipeline_execution(
                pipelineName=str(existing.get("pipeline", "")), pipelineExecutionId=execution_id
            )["pipelineExecution"]
            .get("status", "")
        )
    except ClientError:
        return False  # the execution cannot be read (its pipeline deleted, say): a human decides
    if ended not in ENDED or (ended == SUCCEEDED and "rejected_since" not in existing):
        return False
    return put_if(
        claim_item(_deployment_key(version_arn), attributes, status="Starting", owner=owner),
        "#status = :in_progress AND execution_id = :id",
        {"#status": "status"},
        {":in_progress": "InProgress", ":id": execution_id},
    )


def start_pipeline(decision: dict[str, Any], *, owner: str, event_id: str) -> dict[str, Any]:
    """Start the group's pipeline once for this exact version, passing its ARN as a V2 pipeline variable.

    A duplicate approval finds the record of the first start and is ledgered `skipped`; it does not follow
    the pipeline (the first execution does). With no pipeline configured, the platform owner is told."""
    version_arn = decision["version_arn"]
    pipeline = resolve_pipeline(decision["group"])
    if not pipeline:
        return _report_missing_pipeline(decision, event_id=event_id)
    # Before the pipeline runs: its deploy actions in the team accounts read this group's versions.
    share_with_deployment_accounts(_governance("sagemaker"), decision["group"])
    approval = str(decision.get("approval") or "")
    if not _claim_start(version_arn, pipeline, owner, approval):
        existing = deployment_record(version_arn)
        record(
            LedgerEntry(
                event_id=event_id,
                action="start_pipeline",
                status="skipped",
                target=str(existing.get("execution_id") or existing.get("pipeline") or pipeline),
                flow=FLOW,
                account=decision.get("source_account", ""),
                detail={
                    "reason": (
                        "another workflow execution is starting this version's pipeline"
                        if existing.get("status") == "Starting"
                        else "a pipeline execution was already started for this version"
                    ),
                    "model_package_arn": version_arn,
                    "pipeline": existing.get("pipeline", pipeline),
                    "execution_id": existing.get("execution_id", ""),
                    "final_status": existing.get("status", ""),
                },
            )
        )
        return {"state": "duplicate", "pipeline": existing.get("pipeline", pipeline)}
    try:
        response = _governance("codepipeline").start_pipeline_execution(
            name=pipeline,
            variables=[{"name": PIPELINE_VARIABLE, "value": version_arn}],
            # The same token for the same version and pipeline: CodePipeline itself drops a second start.
            # (A new decision on the version, approved again after it ended, is a new token.)
            clientRequestToken=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{pipeline}|{version_arn}|{approval}")),
        )
    except Exception:
        # Nothing was started (or, after a lost response, the token makes a second start the same one):
        # give the claim up, so the workflow's retry or the next approval after a fix is not told
        # "already started" for the length of the lease. A failed release leaves that to the lease; the
        # start's own error is the one to report.
        with suppress(ClientError, BotoCoreError):
            release_claim(_deployment_key(version_arn), status="Starting", owner=owner)
        raise
    execution_id = str(response["pipelineExecutionId"])
    state_table().update_item(
        Key=_deployment_key(version_arn),
        UpdateExpression="SET execution_id = :id, #status = :running, started_at = :now",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":id": execution_id, ":running": "InProgress", ":now": _now()},
    )
    return {
        "state": "started",
        "pipeline": pipeline,
        "execution_id": execution_id,
        "attempt": 0,
        "wait_seconds": check_backoff_seconds(0),
    }


def _report_missing_pipeline(decision: dict[str, Any], *, event_id: str) -> dict[str, Any]:
    notify(
        "ml-governance",
        f"[NOT DEPLOYED] {decision['group']} v{decision['version']} approved; no deployment pipeline is set",
        {
            "model_package_arn": decision["version_arn"],
            "what_to_do": (
                f"tag the central group with {TAG_DEPLOYMENT_PIPELINE}=<pipeline name> or add it to "
                "DeploymentPipelineMap, then approve the version again"
            ),
        },
        severity="HIGH",
        account=decision.get("source_account", ""),
        kind="model-deployment-unconfigured",
        event_id=event_id,
        flow=FLOW,
    )
    record(
        LedgerEntry(
            event_id=event_id,
            action="start_pipeline",
            status="notify-only",
            target=decision["version_arn"],
            flow=FLOW,
            account=decision.get("source_account", ""),
            detail={
                "model_package_arn": decision["version_arn"],
                "reason": "no deployment pipeline configured",
            },
        )
    )
    return {"state": "unconfigured", "pipeline": ""}


def check_pipeline(pipeline: dict[str, Any]) -> dict[str, Any]:
    """One look at the pipeline execution: `running` (wait `wait_seconds`, then look again) or `ended`."""
    execution_id = pipeline.get("execution_id")
    if not execution_id:
        raise NoPipelineExecution(f"no pipeline execution to follow for {pipeline.get('pipeline', '?')}")
    attempt = int(pipeline.get("attempt", 0)) + 1
    execution = _governance("codepipeline").get_pipeline_execution(
        pipelineName=pipeline["pipeline"], pipelineExecutionId=execution_id
    )["pipelineExecution"]
    status = str(execution.get("status", ""))
    summary = str(execution.get("statusSummary") or "")
    if status in RUNNING:
        if attempt >= MAX_PIPELINE_CHECKS:
            raise PipelineFollowTimeout(
                f"pipeline {pipeline['pipeline']} execution {execution_id} still {status} after "
                f"{attempt} checks ({FOLLOW_SECONDS // 86400} days): follow it in CodePipeline; "
                "no result is on the card"
            )
        return {
            **pipeline,
            "state": "running",
            "status": status,
            "attempt": attempt,
            "wait_seconds": check_backoff_seconds(attempt),
        }
    ended = {key: value for key, value in pipeline.items() if key != "wait_seconds"}
    return {**ended, "state": "ended", "status": status, "summary": summary, "attempt": attempt}


def record_deployment(decision: dict[str, Any], pipeline: dict[str, Any], *, event_id: str) -> dict[str, Any]:
    """Write the pipeline's final status on the model card and the deployment record, ledger, notify."""
    status = str(pipeline.get("status", ""))
    succeeded = status == SUCCEEDED
    finished_at = _now()
    version_arn = decision["version_arn"]
    try:
        state_table().update_item(
            Key=_deployment_key(version_arn),
            UpdateExpression="SET #status = :status, finished_at = :now, summary = :summary",
            ConditionExpression="execution_id = :id AND attribute_not_exists(finished_at)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":status": status,
                ":now": finished_at,
                ":summary": pipeline.get("summary", ""),
                ":id": pipeline["execution_id"],
            },
        )
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        # A retried step whose first attempt recorded the result: the card, ledger and notice exist.
        return {
            "deployed": succeeded,
            "status": status,
            "model_card": decision["model_card"],
            "card_changed": False,
        }
    # The registry, not the approval this workflow started from, says what the version is now: it may have
    # been rejected while the pipeline ran (the rejection's own workflow wrote that on the card already).
    description = describe_central_version(version_arn)
    approval_now = str(description.get("ModelApprovalStatus") or "")
    still_approved = approval_now == "Approved"
    card = _ensure_card_for(decision, event_id=event_id, description=description)

    def write(content: dict[str, Any]) -> None:
        if still_approved:
            content.setdefault("model_package_details", {})["model_approval_status"] = "Approved"
            model_card.set_custom_details(
                content,
                {
                    "decision_status": "Approved",
                    "decision_by": decision.get("decided_by"),
                    "decision_at": decision.get("decided_at"),
                    "decision_reason": decision.get("reason"),
                },
            )
        model_card.set_custom_details(
            content,
            {
                "deployment_pipeline": pipeline["pipeline"],
                "deployment_execution_id": pipeline["execution_id"],
                "deployment_status": status,
                "deployment_summary": pipeline.get("summary")
                or ("deployed" if succeeded else "not deployed"),
                "deployment_finished_at": finished_at,
            },
        )

    updated = model_card.update_card_content(card["name"], write)
    record(
        LedgerEntry(
            event_id=event_id,
            action="start_pipeline",
            status="done" if succeeded else "failed",
            target=pipeline["execution_id"],
            flow=FLOW,
            account=decision.get("source_account", ""),
            detail={
                "model_package_arn": version_arn,
                "pipeline": pipeline["pipeline"],
                "execution_id": pipeline["execution_id"],
                "final_status": status,
                "summary": pipeline.get("summary", ""),
                "model_card": card["name"],
                **({"note": model_card.ARCHIVED_NOTE} if updated["archived"] else {}),
                "approval_status_at_end": approval_now,
                **(
                    {"warning": f"deployed while {approval_now or 'not approved'}: to be rolled back"}
                    if succeeded and not still_approved
                    else {}
                ),
                # A failed action says why in one line (govern replay reports it as the event's error).
                **(
                    {}
                    if succeeded
                    else {
                        "error": f"deployment pipeline {pipeline['pipeline']} ended {status}"
                        + (f": {pipeline['summary']}" if pipeline.get("summary") else "")
                    }
                ),
            },
        )
    )
    name = f"{decision['group']} v{decision['version']}"
    severity: Severity = "INFO" if succeeded else "HIGH"
    kind = "model-deployed" if succeeded else "model-deployment-failed"
    headline = (
        f"Deployed {name} through {pipeline['pipeline']}"
        if succeeded
        else f"[DEPLOYMENT {status.upper() or 'UNKNOWN'}] {name} through {pipeline['pipeline']}"
    )
    if succeeded and not still_approved:
        # Deployed, but no longer approved: someone has to roll it back; the backbone does not undeploy.
        severity, kind = "CRITICAL", "model-rejected-after-deployment"
        headline = (
            f"[REJECTED AFTER DEPLOYMENT] {name} was deployed through {pipeline['pipeline']} while "
            f"{approval_now or 'not approved'} in the central registry: roll it back"
        )
    notify(
        "ml-governance",
        headline,
        {
            "model_package_arn": version_arn,
            "pipeline": pipeline["pipeline"],
            "execution_id": pipeline["execution_id"],
            "final_status": status,
            "summary": pipeline.get("summary", ""),
            "model_card": card["name"],
            "owner": decision.get("owner", ""),
            "approval_status": approval_now,
            "reason": str(description.get("ApprovalDescription") or ""),
        },
        severity=severity,
        account=decision.get("source_account", ""),
        kind=kind,
        event_id=event_id,
        flow=FLOW,
    )
    return {
        "deployed": succeeded,
        "status": status,
        "approval_status": approval_now,
        "model_card": card["name"],
        "card_changed": updated["changed"],
    }


def _ensure_card_for(
    decision: dict[str, Any], *, event_id: str, description: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The version's card; versions that reached the registry without the promotion get one now.
    `description`: the version as already described, else it is described here."""
    description = description or describe_central_version(decision["version_arn"])
    return model_card.ensure_card(
        description, event_id=event_id, flow=FLOW, account=decision.get("source_account", "")
    )


# ------------------------------------------------------------------------------------ rejected


def record_rejection(decision: dict[str, Any], *, event_id: str) -> dict[str, Any]:
    """Write the rejection on the card, ledger it, and notify - loudly when this version had been deployed."""
    version_arn = decision["version_arn"]
    deployed = deployment_record(version_arn)
    deployed_status = str(deployed.get("status", ""))
    card = _ensure_card_for(decision, event_id=event_id)

    def write(content: dict[str, Any]) -> None:
        package = content.setdefault("model_package_details", {})
        package["model_approval_status"] = "Rejected"
        if decision.get("reason"):
            package["approval_description"] = decision["reason"][:1024]
        model_card.set_custom_details(
            content,
            {
                "decision_status": "Rejected",
                "decision_by": decision.get("decided_by"),
                "decision_at": decision.get("decided_at"),
                "decision_reason": decision.get("reason"),
            },
        )

    updated = model_card.update_card_content(card["name"], write)
    if deployed:
        # Approved again later, a version rejected after (or while) its pipeline ran is deployed again.
        # Only on the run this rejection read: a new approval that took the record over meanwhile keeps
        # its own (its next edit while Approved must not deploy it again).
        seen = deployed.get("approval")
        with suppress(ClientError):
            state_table().update_item(
                Key=_deployment_key(version_arn),
                UpdateExpression="SET rejected_since = :at",
                ConditionExpression=(
                    "attribute_exists(pk) AND approval = :seen"
                    if seen
                    else "attribute_exists(pk) AND attribute_not_exists(approval)"
                ),
                ExpressionAttributeValues={
                    ":at": decision.get("approval") or _now(),
                    **({":seen": seen} if seen else {}),
                },
            )
    # Once per rejection, however many events SageMaker sends for it (each with its own id).
    first_time = once(f"model-rejected#{version_arn}#{decision.get('approval') or event_id}")
    record(
        LedgerEntry(
            event_id=event_id,
            action="write_model_card",
            status="done" if updated["changed"] or first_time else "skipped",
            target=updated["arn"],
            flow=FLOW,
            account=decision.get("source_account", ""),
            detail={
                "model_card": card["name"],
                "change": "rejection recorded" if updated["changed"] else "unchanged",
                **({"note": model_card.ARCHIVED_NOTE} if updated["archived"] else {}),
                "model_package_arn": version_arn,
                "decision": "Rejected",
                "reason": decision.get("reason", ""),
            },
        )
    )
    was_deployed = deployed_status in {SUCCEEDED, "InProgress", "Starting"}
    if not first_time:
        # A duplicate delivery of this rejection: recorded above as skipped, already notified.
        return {"rejected": True, "was_deployed": was_deployed, "model_card": card["name"]}
    severity: Severity = "CRITICAL" if deployed_status == SUCCEEDED else "HIGH" if was_deployed else "MEDIUM"
    name = f"{decision['group']} v{decision['version']}"
    if deployed_status == SUCCEEDED:
        headline = f"[REJECTED AFTER DEPLOYMENT] {name} is deployed: roll it back"
    elif was_deployed:
        headline = f"[REJECTED DURING DEPLOYMENT] {name}: stop the pipeline"
    else:
        headline = f"[REJECTED] {name}: {decision.get('reason') or 'no reason given'}"
    notify(
        "ml-governance",
        headline,
        {
            "model_package_arn": version_arn,
            "reason": decision.get("reason", ""),
            "decided_by": decision.get("decided_by", ""),
            "source_model_package_arn": decision.get("source_model_package_arn", ""),
            "owner": decision.get("owner", ""),
            "was_deployed": was_deployed,
            "deployment": {k: str(v) for k, v in deployed.items() if k != "pk" and k != "sk"},
            "model_card": card["name"],
        },
        severity=severity,
        account=decision.get("source_account", ""),
        kind="model-rejected-after-deployment" if was_deployed else "model-rejected",
        event_id=event_id,
        flow=FLOW,
    )
    return {"rejected": True, "was_deployed": was_deployed, "model_card": card["name"]}
