"""Flow A end to end: a team-account approval event through the template's rule, the real ModelPromotion
state machine and handler, across two emulated accounts; assertions read the emulated AWS back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from govern.emulator import Organization
from govern.flows import models as model_support
from governance.naming import central_group_name, model_card_name

TEAM = "210987654321"
GROUP = central_group_name(TEAM, "churn-prediction")
APPROVED = "model-approved-in-team-account"
MACHINE = "ModelPromotionStateMachine"
LoadEvent = Callable[[str], dict[str, Any]]


def replicas(org: Organization, source_arn: str, group: str = GROUP) -> list[dict[str, Any]]:
    """Central versions whose lineage names `source_arn` (the verifier's reading, shared on purpose)."""
    return model_support._replicas_of(org, group, source_arn)


def central_groups(org: Organization) -> list[str]:
    listed = org.session().client("sagemaker").list_model_package_groups()["ModelPackageGroupSummaryList"]
    return [group["ModelPackageGroupName"] for group in listed]


def central_objects(org: Organization, prefix: str = "") -> dict[str, dict[str, Any]]:
    s3 = org.session().client("s3")
    bucket = org.physical_id("CentralArtifactBucket")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {item["Key"]: dict(s3.head_object(Bucket=bucket, Key=item["Key"])) for item in listed}


def cards(org: Organization) -> list[str]:
    summaries = org.session().client("sagemaker").list_model_cards()["ModelCardSummaries"]
    return [summary["ModelCardName"] for summary in summaries]


def card_content(org: Organization, name: str) -> dict[str, Any]:
    described = org.session().client("sagemaker").describe_model_card(ModelCardName=name)
    return json.loads(described["Content"])  # type: ignore[no-any-return]


def entered_states(org: Organization, execution_arn: str) -> list[str]:
    history = (
        org.session()
        .client("stepfunctions")
        .get_execution_history(executionArn=execution_arn, maxResults=1000)
    )
    return [
        e["stateEnteredEventDetails"]["name"] for e in history["events"] if e["type"].endswith("StateEntered")
    ]


def test_an_approved_version_is_replicated_once_with_its_artifacts_lineage_card_and_notice(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event(APPROVED)
    source_arn = event["detail"]["ModelPackageArn"]

    [result] = org.replay([event])

    assert result.outcome == "succeeded", result.error
    assert result.rules == ["ModelPromotionStateMachineTeamApproval"]
    [central] = replicas(org, source_arn)
    assert central["ModelApprovalStatus"] == "PendingManualApproval"
    assert central["ModelPackageArn"] == f"arn:aws:sagemaker:us-east-1:111111111111:model-package/{GROUP}/1"
    lineage = central["CustomerMetadataProperties"]
    assert lineage["source-model-package-arn"] == source_arn
    assert lineage["source-account"] == TEAM and lineage["source-version"] == "3"
    # Artifacts: byte-identical copies of the team's objects, SSE-KMS under the backbone key.
    copies = central_objects(org, f"{TEAM}/churn-prediction/3/")
    assert sorted(copies) == [
        f"{TEAM}/churn-prediction/3/evaluation.json",
        f"{TEAM}/churn-prediction/3/model.tar.gz",
    ]
    team_s3, central_s3 = org.session(TEAM).client("s3"), org.session().client("s3")
    for key, head in copies.items():
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == org.arn("GovernanceKey")
        name = key.rsplit("/", 1)[-1]
        original = team_s3.get_object(
            Bucket=f"sagemaker-us-east-1-{TEAM}", Key=f"churn-prediction/model-3/{name}"
        )
        copied = central_s3.get_object(Bucket=org.physical_id("CentralArtifactBucket"), Key=key)
        assert copied["Body"].read() == original["Body"].read()
    [container] = central["InferenceSpecification"]["Containers"]
    assert (
        container["ModelDataUrl"]
        == f"s3://{org.physical_id('CentralArtifactBucket')}/{TEAM}/churn-prediction/3/model.tar.gz"
    )
    # The model card: valid against the schema, linked to the version, pending review.
    assert cards(org) == [f"{GROUP}-v1"]
    content = card_content(org, f"{GROUP}-v1")
    assert model_support.card_schema_errors(content) == []
    assert content["model_package_details"]["model_package_arn"] == central["ModelPackageArn"]
    assert content["intended_uses"]["risk_rating"] == "Medium"
    assert content["additional_information"]["custom_details"]["source_model_package_arn"] == source_arn
    assert (
        org.session().client("sagemaker").describe_model_card(ModelCardName=f"{GROUP}-v1")["ModelCardStatus"]
        == "PendingReview"
    )
    # The notice and the ledger.
    [notice] = org.notifications("ml-governance")
    assert notice.attributes == {"severity": "INFO", "account": TEAM, "kind": "model-replicated"}
    assert notice.message["central_model_package_arn"] == central["ModelPackageArn"]
    ledger = [(e.action, e.status, e.target) for e in org.ledger(event["id"])]
    assert ("replicate_model", "done", central["ModelPackageArn"]) in ledger
    assert (
        "write_model_card",
        "done",
        f"arn:aws:sagemaker:us-east-1:111111111111:model-card/{GROUP}-v1",
    ) in ledger
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("replicate_model", "done", True),
        ("write_model_card", "done", True),
        ("notify", "done", True),
    ]


def test_a_claim_state_the_workflow_does_not_know_is_recorded_and_notified_as_a_failure(
    org: Organization, load_event: LoadEvent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ClaimOutcome's Default: without an error set, RecordFailure would fail on its own Parameters
    (States.Runtime, which no Catch catches), and the failure would be neither ledgered nor notified."""
    from governance import promotion

    surprise = {"state": "surprise", "attempt": 1, "wait_seconds": 0, "central": None}
    monkeypatch.setattr(promotion, "claim_replication", lambda *args, **kwargs: surprise)
    event = load_event(APPROVED)

    [result] = org.replay([event])

    assert result.outcome == "failed"
    [execution] = org.executions("ModelPromotionStateMachine")
    assert execution["status"] == "FAILED"
    entered = entered_states(org, execution["executionArn"])
    assert entered[-4:] == ["ClaimOutcome", "UnexpectedClaimState", "RecordFailure", "PromotionFailed"]
    [failed] = [entry for entry in org.ledger(event["id"]) if entry.status == "failed"]
    assert failed.detail["error_type"] == "UnexpectedClaimState"
    assert '"state":"surprise"' in failed.detail["error"]
    assert any("FAILED" in note.subject for note in org.notifications("ml-governance"))
    assert replicas(org, event["detail"]["ModelPackageArn"]) == []


def test_the_central_group_is_created_tagged_with_owner_account_and_pipeline(
    org: Organization, load_event: LoadEvent
) -> None:
    org.replay([load_event(APPROVED)])

    sagemaker = org.session().client("sagemaker")
    group_arn = sagemaker.describe_model_package_group(ModelPackageGroupName=GROUP)["ModelPackageGroupArn"]
    tags = {tag["Key"]: tag["Value"] for tag in sagemaker.list_tags(ResourceArn=group_arn)["Tags"]}
    assert tags["governance:owner-team"] == "team-churn"
    assert tags["governance:source-account"] == TEAM
    assert tags["governance:deployment-pipeline"] == f"{GROUP}-deploy"


def test_the_same_event_three_times_gives_one_version_one_card_one_notice(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event(APPROVED)

    results = org.replay([event, event, event])

    assert [r.outcome for r in results] == ["succeeded"] * 3
    assert len(replicas(org, event["detail"]["ModelPackageArn"])) == 1
    assert cards(org) == [f"{GROUP}-v1"]
    card_versions = org.session().client("sagemaker").list_model_card_versions(ModelCardName=f"{GROUP}-v1")
    assert len(card_versions["ModelCardVersionSummaryList"]) == 1
    assert len(org.notifications("ml-governance")) == 1
    for duplicate in results[1:]:
        assert [(a.type, a.status, a.verified) for a in duplicate.actions] == [
            ("replicate_model", "skipped", True),
            ("write_model_card", "skipped", True),
        ]


def test_concurrent_duplicates_register_once(org: Organization, load_event: LoadEvent) -> None:
    event = load_event(APPROVED)

    results = org.replay([event, event, event], sequential=False)

    assert [r.outcome for r in results] == ["succeeded"] * 3, [r.error for r in results]
    assert len(replicas(org, event["detail"]["ModelPackageArn"])) == 1
    versions = org.session().client("sagemaker").list_model_packages(ModelPackageGroupName=GROUP)
    assert len(versions["ModelPackageSummaryList"]) == 1
    assert cards(org) == [f"{GROUP}-v1"]
    assert len(org.notifications("ml-governance")) == 1
    statuses = sorted(e.status for e in org.ledger(event["id"]) if e.action == "replicate_model")
    assert statuses == ["done", "skipped", "skipped"]
    # A duplicate that found the claim taken waited in workflow time (1 s, 2 s, 4 s... offline, run a
    # hundred times faster). Waits of 0 s spent their 60 checks at CPU speed, and on a busy CI machine
    # the duplicates gave up before the owner had registered the version. Whether a duplicate meets the
    # claim at all depends on timing (it may arrive after the owner has registered): the unit test of the
    # backoff checks the offline values without that race.
    sfn = org.session().client("stepfunctions")
    waits = [
        json.loads(entered["stateEnteredEventDetails"]["input"])["claim"]["wait_seconds"]
        for execution in org.executions(MACHINE)
        for entered in sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)[
            "events"
        ]
        if entered["type"] == "WaitStateEntered"
        and entered["stateEnteredEventDetails"]["name"] == "WaitForOtherExecution"
    ]
    assert all(wait >= 1 for wait in waits), waits


def test_missing_metadata_replicates_nothing_and_the_notice_lists_what_is_missing(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event("model-approved-missing-metadata")

    [result] = org.replay([event])

    assert result.outcome == "succeeded", "a gate failure is a governance decision, not a workflow failure"
    [execution] = org.executions(MACHINE)
    assert execution["status"] == "SUCCEEDED"
    assert central_groups(org) == []
    assert central_objects(org) == {}
    assert cards(org) == []
    [notice] = org.notifications("ml-governance")
    assert notice.attributes["kind"] == "model-gate-failed"
    assert notice.message["missing_metadata"] == ["use-case", "risk-rating"]
    assert notice.message["missing_metrics"] == ["ModelMetrics.ModelQuality.Statistics"]
    assert "use-case" in notice.subject and "risk-rating" in notice.subject
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("notify", "done", True),
        ("replicate_model", "notify-only", True),
    ]


def test_a_version_stopped_at_the_gate_is_told_once_however_many_events_sagemaker_sends(
    org: Organization, load_event: LoadEvent
) -> None:
    """SageMaker may send several events for one change, each with its own id: one notice. Fixed and
    approved again (a new LastModifiedTime), a version still short of something is told again."""
    event = load_event("model-approved-missing-metadata")
    org.seed(event)
    second = {**event, "id": "c06eac7d-8b9f-5ace-4c5d-6f708192a3b4"}

    results = org.replay([event, second], seed=False)

    assert [r.outcome for r in results] == ["succeeded", "succeeded"]
    assert [n.attributes["kind"] for n in org.notifications("ml-governance")] == ["model-gate-failed"]
    assert [(a.type, a.status) for a in results[1].actions] == [("replicate_model", "skipped")]
    team = org.session(event["account"]).client("sagemaker")
    arn = event["detail"]["ModelPackageArn"]
    metadata = team.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"]
    team.update_model_package(
        ModelPackageArn=arn, CustomerMetadataProperties={**metadata, "use-case": "fraud scoring"}
    )
    [still_short] = org.replay([{**event, "id": "d17fbd8e-9ca0-5bdf-5d6e-708192a3b4c5"}], seed=False)
    [*_, notice] = org.notifications("ml-governance")
    assert notice.message["missing_metadata"] == ["risk-rating"]
    assert [a.status for a in still_short.actions if a.type == "replicate_model"] == ["notify-only"]


def test_the_registry_not_the_event_decides_what_is_missing(org: Organization, load_event: LoadEvent) -> None:
    event = load_event(APPROVED)
    org.seed(event)
    team = org.session(TEAM).client("sagemaker")
    arn = event["detail"]["ModelPackageArn"]
    metadata = dict(team.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"])
    del metadata["risk-rating"]  # the team removed it after the event was sent
    team.update_model_package(ModelPackageArn=arn, CustomerMetadataProperties=metadata)

    [result] = org.replay([event])

    assert result.outcome == "succeeded"
    assert replicas(org, arn) == []
    [notice] = org.notifications("ml-governance")
    assert notice.message["missing_metadata"] == ["risk-rating"]


def test_a_missing_member_role_fails_visibly_and_the_replay_after_the_fix_does_not_duplicate(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event(APPROVED)
    source_arn = event["detail"]["ModelPackageArn"]
    org.remove_execution_role(TEAM)

    [failed] = org.replay([event])

    assert failed.outcome == "failed"
    assert "GovernanceExecutionRole" in (failed.error or "") and TEAM in (failed.error or "")
    [execution] = org.executions(MACHINE)
    assert execution["status"] == "FAILED"
    assert "RecordFailure" in entered_states(org, execution["executionArn"])
    [failure] = [e for e in org.ledger(event["id"]) if e.status == "failed"]
    assert failure.action == "replicate_model" and failure.detail["error_type"] == "RoleAssumptionError"
    [notice] = org.notifications("ml-governance")
    assert notice.subject.startswith("[FAILED] model-promotion") and notice.attributes["severity"] == "HIGH"
    assert replicas(org, source_arn) == [] and central_objects(org) == {}

    org.ensure_member(TEAM)
    [fixed] = org.replay([event])
    [again] = org.replay([event])

    assert fixed.outcome == "succeeded" and again.outcome == "succeeded"
    assert len(replicas(org, source_arn)) == 1
    assert [a.status for a in again.actions if a.type == "replicate_model"] == ["skipped"]
    assert cards(org) == [f"{GROUP}-v1"]


def test_a_failure_after_the_claim_releases_it_so_the_retry_registers_once(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event(APPROVED)
    org.seed(event)
    team_s3 = org.session(TEAM).client("s3")
    bucket, key = f"sagemaker-us-east-1-{TEAM}", "churn-prediction/model-3/evaluation.json"
    report = team_s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    team_s3.delete_object(Bucket=bucket, Key=key)  # the metrics report vanished: the copy step fails

    [failed] = org.replay([event], seed=False)

    assert failed.outcome == "failed"
    [execution] = org.executions(MACHINE)
    assert {"CopyArtifacts", "ReleaseClaim", "RecordFailure"} <= set(
        entered_states(org, execution["executionArn"])
    )
    state = org.session().resource("dynamodb").Table(org.physical_id("StateTable"))
    claim = state.get_item(
        Key={"pk": f"model-replica#{event['detail']['ModelPackageArn']}", "sk": "central-version"}
    )
    assert "Item" not in claim, "the failed execution gave its claim up"
    assert central_groups(org) == []

    team_s3.put_object(Bucket=bucket, Key=key, Body=report)
    [fixed] = org.replay([event], seed=False)

    assert fixed.outcome == "succeeded"
    assert len(replicas(org, event["detail"]["ModelPackageArn"])) == 1


def test_a_malformed_approval_is_dead_lettered_with_a_one_line_reason(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event("malformed-model-approval")

    [result] = org.replay([event])

    assert result.outcome == "dead-lettered"
    assert result.error is not None and "\n" not in result.error
    assert "detail.ModelPackageArn: Field required" in result.error
    [kept] = [letter for letter in org.dead_letters() if isinstance(letter.event, dict)]
    assert kept.event["id"] == event["id"]
    assert central_groups(org) == []


def test_pending_and_team_rejected_versions_are_ignored(org: Organization, load_event: LoadEvent) -> None:
    results = org.replay(
        [load_event("model-pending-in-team-account"), load_event("model-rejected-in-team-account")]
    )

    assert [(r.outcome, r.rules, r.actions) for r in results] == [("ignored", [], []), ("ignored", [], [])]
    assert org.executions(MACHINE) == []
    assert central_groups(org) == []


def team_approval(load_event: LoadEvent, group: str, event_id: str, pipeline: str = "") -> dict[str, Any]:
    """The team sample approval, for version 1 of another team group (its own artifacts, its own pipeline)."""
    event = load_event(APPROVED)
    detail = event["detail"]
    arn = f"arn:aws:sagemaker:us-east-1:{TEAM}:model-package/{group}/1"
    detail.update(
        ModelPackageGroupName=group, ModelPackageName=group, ModelPackageArn=arn, ModelPackageVersion=1
    )
    event.update(resources=[arn], id=event_id)
    for container in detail["InferenceSpecification"]["Containers"]:
        container["ModelDataUrl"] = f"s3://sagemaker-us-east-1-{TEAM}/{group}/model-1/model.tar.gz"
    detail["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] = (
        f"s3://sagemaker-us-east-1-{TEAM}/{group}/model-1/evaluation.json"
    )
    if pipeline:
        detail["CustomerMetadataProperties"]["deployment-pipeline"] = pipeline
    return event


def test_team_groups_that_differ_only_past_the_name_limit_get_a_central_group_and_card_each(
    org: Organization, load_event: LoadEvent
) -> None:
    # 57 characters each, the same first 51: `<account>-<group>` must be cut to fit 63.
    retail, telco = (
        "customer-churn-prediction-xgboost-classifier-emea-retail",
        "customer-churn-prediction-xgboost-classifier-emea-telco",
    )
    events = [
        team_approval(load_event, retail, "00000000-0000-0000-0000-00000000000a", "retail-deploy"),
        team_approval(load_event, telco, "00000000-0000-0000-0000-00000000000b", "telco-deploy"),
    ]

    results = org.replay(events)

    assert [r.outcome for r in results] == ["succeeded", "succeeded"], [r.error for r in results]
    sagemaker = org.session().client("sagemaker")
    groups = central_groups(org)
    assert len(groups) == 2 and all(len(name) <= 63 for name in groups)
    for team_group, pipeline, event in (
        (retail, "retail-deploy", events[0]),
        (telco, "telco-deploy", events[1]),
    ):
        central_group = central_group_name(TEAM, team_group)
        group_arn = sagemaker.describe_model_package_group(ModelPackageGroupName=central_group)[
            "ModelPackageGroupArn"
        ]
        tags = {tag["Key"]: tag["Value"] for tag in sagemaker.list_tags(ResourceArn=group_arn)["Tags"]}
        assert tags["governance:source-group"] == team_group
        assert tags["governance:deployment-pipeline"] == pipeline
        [central] = replicas(org, event["detail"]["ModelPackageArn"], central_group)
        card = card_content(org, model_card_name(central_group, 1))
        assert card["model_package_details"]["model_package_arn"] == central["ModelPackageArn"]
    assert len(cards(org)) == 2


def test_a_central_group_holding_another_team_groups_replicas_is_refused(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event(APPROVED)
    sagemaker = org.session().client("sagemaker")
    sagemaker.create_model_package_group(
        ModelPackageGroupName=GROUP,
        Tags=[
            {"Key": "governance:source-account", "Value": TEAM},
            {"Key": "governance:source-group", "Value": "churn-prediction-v2"},
            {"Key": "governance:deployment-pipeline", "Value": "churn-v2-deploy"},
        ],
    )

    [result] = org.replay([event])

    assert result.outcome == "failed"
    assert result.error is not None and "\n" not in result.error
    assert f"central group {GROUP} holds the replicas of churn-prediction-v2" in result.error
    assert sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"] == []
    assert cards(org) == []
    [failure] = [e for e in org.ledger(event["id"]) if e.status == "failed"]
    assert failure.action == "replicate_model" and failure.detail["error_type"] == "CentralGroupConflict"
    [notice] = org.notifications("ml-governance")
    assert notice.subject.startswith("[FAILED] model-promotion") and notice.attributes["severity"] == "HIGH"
    state = org.session().resource("dynamodb").Table(org.physical_id("StateTable"))
    claim = state.get_item(
        Key={"pk": f"model-replica#{event['detail']['ModelPackageArn']}", "sk": "central-version"}
    )
    assert "Item" not in claim, "the failed execution gave its claim up"


def test_central_groups_whose_card_names_must_be_cut_get_a_card_each(
    org: Organization, load_event: LoadEvent
) -> None:
    # The central groups fit (62 characters) but `-v1` does not: a plain cut gave both versions one card.
    base = "fraud-detection-gradient-boosted-trees-card-tx-"
    events = [
        team_approval(load_event, base + "uk", "00000000-0000-0000-0000-0000000000c1"),
        team_approval(load_event, base + "us", "00000000-0000-0000-0000-0000000000c2"),
    ]

    results = org.replay(events)

    assert [r.outcome for r in results] == ["succeeded", "succeeded"], [r.error for r in results]
    documented = {
        name: card_content(org, name)["model_package_details"]["model_package_arn"] for name in cards(org)
    }
    assert sorted(documented.values()) == sorted(
        replica["ModelPackageArn"]
        for event in events
        for replica in replicas(
            org,
            event["detail"]["ModelPackageArn"],
            central_group_name(TEAM, event["detail"]["ModelPackageGroupName"]),
        )
    )
    assert len(documented) == 2 and all(len(name) <= 63 and name.endswith("-v1") for name in documented)


def test_additional_model_data_is_copied_and_the_central_version_points_only_at_the_copies(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event(APPROVED)
    team_bucket = f"sagemaker-us-east-1-{TEAM}"
    [container] = event["detail"]["InferenceSpecification"]["Containers"]
    container["AdditionalS3DataSource"] = {
        "S3DataType": "S3Object",
        "S3Uri": f"s3://{team_bucket}/churn-prediction/model-3/tokenizer.tar.gz",
        "CompressionType": "Gzip",
    }
    container["AdditionalModelDataSources"] = [
        {
            "ChannelName": "adapter",
            "S3DataSource": {
                "S3Uri": f"s3://{team_bucket}/churn-prediction/model-3/adapter.safetensors",
                "S3DataType": "S3Object",
                "CompressionType": "None",
            },
        }
    ]

    [result] = org.replay([event])

    assert result.outcome == "succeeded", result.error
    [central] = replicas(org, event["detail"]["ModelPackageArn"])
    bucket = org.physical_id("CentralArtifactBucket")
    [copied] = central["InferenceSpecification"]["Containers"]
    assert (
        copied["AdditionalS3DataSource"]["S3Uri"]
        == f"s3://{bucket}/{TEAM}/churn-prediction/3/tokenizer.tar.gz"
    )
    assert copied["AdditionalModelDataSources"][0]["S3DataSource"]["S3Uri"] == (
        f"s3://{bucket}/{TEAM}/churn-prediction/3/adapter.safetensors"
    )
    assert team_bucket not in json.dumps(central["InferenceSpecification"])
    assert sorted(central_objects(org, f"{TEAM}/churn-prediction/3/")) == [
        f"{TEAM}/churn-prediction/3/{name}"
        for name in ("adapter.safetensors", "evaluation.json", "model.tar.gz", "tokenizer.tar.gz")
    ]
    [replicated] = [a for a in result.actions if a.type == "replicate_model"]
    assert (replicated.status, replicated.verified) == ("done", True)


def test_additional_model_data_under_a_prefix_fails_naming_it_and_registers_nothing(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event(APPROVED)
    org.seed(event)
    # Version 4 of the team group loads an adapter from a prefix (many objects), as LoRA adapters often do.
    team_sagemaker = org.session(TEAM).client("sagemaker")
    described = team_sagemaker.describe_model_package(ModelPackageName=event["detail"]["ModelPackageArn"])
    [container] = described["InferenceSpecification"]["Containers"]
    adapter = {
        "S3Uri": f"s3://sagemaker-us-east-1-{TEAM}/churn/adapter/",
        "S3DataType": "S3Prefix",
        "CompressionType": "None",
    }
    container["AdditionalModelDataSources"] = [{"ChannelName": "adapter", "S3DataSource": adapter}]
    arn = team_sagemaker.create_model_package(
        ModelPackageGroupName="churn-prediction",
        ModelApprovalStatus="Approved",
        InferenceSpecification=described["InferenceSpecification"],
        ModelMetrics=described["ModelMetrics"],
        CustomerMetadataProperties=described["CustomerMetadataProperties"],
    )["ModelPackageArn"]
    assert arn.endswith("/4")
    event["detail"].update(ModelPackageArn=arn, ModelPackageVersion=4)
    event["resources"] = [arn]

    [result] = org.replay([event], seed=False)

    assert result.outcome == "failed"
    assert result.error is not None and "\n" not in result.error
    assert "InferenceSpecification.Containers[0].AdditionalModelDataSources[0].S3DataSource" in result.error
    assert "S3Prefix" in result.error
    [failure] = [e for e in org.ledger(event["id"]) if e.status == "failed"]
    assert failure.action == "replicate_model" and failure.detail["error_type"] == "UnsupportedArtifact"
    [notice] = org.notifications("ml-governance")
    assert notice.subject.startswith("[FAILED] model-promotion")
    assert replicas(org, arn) == [] and central_objects(org) == {}


def test_the_deployment_accounts_may_read_the_central_versions_they_deploy(
    org: Organization, load_event: LoadEvent
) -> None:
    """A pipeline deploying into team test and prod accounts creates the model there from the central
    version: DeploymentAccountIds puts the group's resource policy that lets those accounts, and only
    them, read it."""
    org.configure(DEPLOYMENT_ACCOUNT_IDS="444444444444,555555555555")
    event = load_event(APPROVED)

    [result] = org.replay([event])

    assert result.outcome == "succeeded", result.error
    [group] = central_groups(org)
    sagemaker = org.session().client("sagemaker")
    policy = json.loads(
        sagemaker.get_model_package_group_policy(ModelPackageGroupName=group)["ResourcePolicy"]
    )
    [statement] = policy["Statement"]
    assert statement["Principal"] == {
        "AWS": ["arn:aws:iam::444444444444:root", "arn:aws:iam::555555555555:root"]
    }
    assert statement["Action"] == [
        "sagemaker:DescribeModelPackageGroup",
        "sagemaker:DescribeModelPackage",
        "sagemaker:ListModelPackages",
        "sagemaker:CreateModel",
    ]
    group_arn = sagemaker.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]
    assert statement["Resource"] == [group_arn, group_arn.replace("-group/", "/") + "/*"]
    # One account fewer: the next promotion into the group says so.
    org.configure(DEPLOYMENT_ACCOUNT_IDS="444444444444")
    second = json.loads(json.dumps(event).replace("churn-prediction/3", "churn-prediction/4"))
    second["id"], second["detail"]["ModelPackageVersion"] = "e391df0a-becf-5df1-7f80-92a3b4c5d6e7", 4
    [again] = org.replay([second])
    assert again.outcome == "succeeded", again.error
    policy = json.loads(
        sagemaker.get_model_package_group_policy(ModelPackageGroupName=group)["ResourcePolicy"]
    )
    assert policy["Statement"][0]["Principal"] == {"AWS": ["arn:aws:iam::444444444444:root"]}


def test_a_group_made_before_the_accounts_were_named_is_shared_at_its_next_deployment(
    org: Organization, load_event: LoadEvent
) -> None:
    """The Approved versions already in the registry are the ones a pipeline deploys: the deployment brings
    the group's policy up to date, and keeps a statement put by hand."""
    [promoted] = org.replay([load_event(APPROVED)])
    assert promoted.outcome == "succeeded", promoted.error
    [group] = central_groups(org)
    sagemaker = org.session().client("sagemaker")
    by_hand = {
        "Sid": "AuditorsRead",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::777777777777:root"},
        "Action": "sagemaker:DescribeModelPackage",
        "Resource": "*",
    }
    sagemaker.put_model_package_group_policy(
        ModelPackageGroupName=group,
        ResourcePolicy=json.dumps({"Version": "2012-10-17", "Statement": [by_hand]}),
    )
    org.configure(DEPLOYMENT_ACCOUNT_IDS="444444444444")
    central = load_event("model-approved-in-central-registry")

    [deployed] = org.replay([central])

    assert deployed.outcome == "succeeded", deployed.error
    policy = json.loads(
        sagemaker.get_model_package_group_policy(ModelPackageGroupName=group)["ResourcePolicy"]
    )
    assert [s["Sid"] for s in policy["Statement"]] == [
        "AuditorsRead",
        "DeploymentAccountsReadCentralVersions",
    ]
    assert policy["Statement"][0] == by_hand
    assert policy["Statement"][1]["Principal"] == {"AWS": ["arn:aws:iam::444444444444:root"]}


def test_without_deployment_accounts_nothing_is_shared(org: Organization, load_event: LoadEvent) -> None:
    [result] = org.replay([load_event(APPROVED)])

    assert result.outcome == "succeeded", result.error
    [group] = central_groups(org)
    with pytest.raises(ClientError, match="Cannot find resource policy"):
        org.session().client("sagemaker").get_model_package_group_policy(ModelPackageGroupName=group)
