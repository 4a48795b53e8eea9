"""Model promotion logic on plain moto: gate, artifact copies, the replica index, registration, notices."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient
from moto import mock_aws

from govern.emulator import RUNTIME_ENVIRONMENT, model_cards_updated_as_sagemaker_does
from govern.flows import models as model_support
from governance import promotion, sessions
from governance.errors import TransientAwsError
from governance.ledger import entries_for_event
from governance.promotion import GateResult, SourceVersion
from governance.settings import settings
from tests.conftest import read_event

GOVERNANCE = "111111111111"
TEAM = "210987654321"
REGION = "us-east-1"
BUCKET = f"ml-governance-artifacts-{GOVERNANCE}-{REGION}"
APPROVED = "model-approved-in-team-account"


@dataclass
class Backbone:
    """The governance account's resources the model flows use, on plain moto (no runtime, no workflows)."""

    key_arn: str
    queue_url: str  # subscribed to the ML-governance topic
    governance_account: str = GOVERNANCE
    region: str = REGION

    # The part of govern.emulator.Organization that govern.flows.models uses, so its seed runs here too.
    def session(self, account_id: str | None = None, region: str | None = None) -> boto3.Session:
        if account_id in (None, GOVERNANCE):
            return boto3.Session(region_name=region or REGION)
        return sessions.session_for(str(account_id))

    def arn(self, logical_id: str) -> str:
        assert logical_id == "GovernanceKey"
        return self.key_arn

    def physical_id(self, logical_id: str) -> str:
        assert logical_id == "CentralArtifactBucket"
        return BUCKET

    def notifications(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", region_name=REGION)
        messages = sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        return [json.loads(json.loads(message["Body"])["Message"]) for message in messages]


def provision_backbone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Backbone]:
    """Moto with the governance account 111111111111 as the caller's own account (assumed-role credentials),
    and the tables, bucket, key and topics of template.yaml that flows A and B need."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MOTO_ACCOUNT_ID", raising=False)
    with mock_aws(), model_cards_updated_as_sagemaker_does():
        credentials = boto3.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{GOVERNANCE}:role/backbone", RoleSessionName="unit-tests"
        )["Credentials"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["SecretAccessKey"])
        monkeypatch.setenv("AWS_SESSION_TOKEN", credentials["SessionToken"])
        # boto3's default session resolved the first credentials already: start a new one with these.
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        assert boto3.client("sts").get_caller_identity()["Account"] == GOVERNANCE
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
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
        dynamodb.create_table(
            TableName="state",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
        )
        key_arn = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topics = {
            name: sns.create_topic(Name=name)["TopicArn"] for name in ("security", "platform", "models")
        }
        queue_url = sqs.create_queue(QueueName="models-capture")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topics["models"], Protocol="sqs", Endpoint=queue_arn)
        environment = {
            "STAGE": "test",
            "GOVERNANCE_ACCOUNT_ID": GOVERNANCE,
            "LEDGER_TABLE": "ledger",
            "STATE_TABLE": "state",
            "SECURITY_TOPIC_ARN": topics["security"],
            "PLATFORM_TOPIC_ARN": topics["platform"],
            "ML_GOVERNANCE_TOPIC_ARN": topics["models"],
            "ARTIFACT_BUCKET": BUCKET,
            "KMS_KEY_ARN": key_arn,
            "REQUIRED_MODEL_METADATA": "owner,use-case,risk-rating",
            "DEPLOYMENT_PIPELINE_MAP": "",
            "POLL_BASE_SECONDS": "10",
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        settings.cache_clear()
        sessions.forget_sessions()
        yield Backbone(key_arn=key_arn, queue_url=queue_url)
    settings.cache_clear()
    sessions.forget_sessions()


@pytest.fixture
def backbone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Backbone]:
    yield from provision_backbone(monkeypatch)


def seeded_source(
    backbone: Backbone, name: str = APPROVED, **detail: Any
) -> tuple[dict[str, Any], SourceVersion]:
    """A sample event (detail fields overridden) whose version and artifacts exist in the team account."""
    event = read_event(name)
    event["detail"].update(detail)
    model_support.seed(event, backbone)  # type: ignore[arg-type]
    return event, promotion.load_source_version(event)


def central_sagemaker() -> Any:
    return boto3.client("sagemaker", region_name=REGION)


def api_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every AWS operation made from now on, as `service:Operation`."""
    calls: list[str] = []
    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def recording(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        calls.append(f"{self.meta.service_model.service_name}:{operation_name}")
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return calls


# ------------------------------------------------------------------------------------ the source and the gate


def test_the_source_version_is_read_from_its_own_registry_not_from_the_event(backbone: Backbone) -> None:
    event, _ = seeded_source(backbone)
    # The event claims more than the registry holds: the registry wins.
    event["detail"]["CustomerMetadataProperties"] = {
        "owner": "someone-else",
        "use-case": "x",
        "risk-rating": "low",
    }

    source = promotion.load_source_version(event)

    assert source.account == TEAM and source.group == "churn-prediction" and source.version == 3
    assert source.metadata["owner"] == "team-churn"
    assert source.metadata["risk-rating"] == "medium"
    assert source.approval_status == "Approved"


def test_the_gate_passes_a_version_with_every_required_key_and_quality_metrics(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)
    assert promotion.check_governance_gate(source) == GateResult(True)


def test_the_gate_names_exactly_what_is_missing(backbone: Backbone) -> None:
    _, source = seeded_source(backbone, "model-approved-missing-metadata")

    gate = promotion.check_governance_gate(source)

    assert not gate.passed
    assert gate.missing_metadata == ["use-case", "risk-rating"]
    assert gate.missing_metrics == ["ModelMetrics.ModelQuality.Statistics"]
    assert gate.problems == []


def test_a_required_key_given_only_spaces_is_missing(backbone: Backbone) -> None:
    metadata = {**read_event(APPROVED)["detail"]["CustomerMetadataProperties"], "use-case": "   "}
    _, source = seeded_source(backbone, CustomerMetadataProperties=metadata)
    assert source.metadata["use-case"] == "   "  # as the team's registry holds it

    gate = promotion.check_governance_gate(source)

    assert (gate.passed, gate.missing_metadata) == (False, ["use-case"])


def test_the_required_keys_come_from_the_settings(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUIRED_MODEL_METADATA", "owner, data-classification")
    settings.cache_clear()
    _, source = seeded_source(backbone)

    assert promotion.check_governance_gate(source).missing_metadata == ["data-classification"]


def test_the_gate_refuses_an_unknown_risk_rating_a_failed_version_and_one_no_longer_approved(
    backbone: Backbone,
) -> None:
    _, source = seeded_source(backbone)
    description = {
        **source.description,
        "ModelApprovalStatus": "Rejected",
        "ModelPackageStatus": "Failed",
        "CustomerMetadataProperties": {**source.metadata, "risk-rating": "severe"},
    }

    gate = promotion.check_governance_gate(
        SourceVersion(**{**source.to_payload(), "description": description})
    )

    assert not gate.passed
    assert gate.problems == [
        "ModelApprovalStatus is Rejected in the source registry",
        "ModelPackageStatus is Failed: only a Completed version can be registered centrally",
        "risk-rating 'severe' is not one of High, Medium, Low, Unknown",
    ]


def test_the_gate_refuses_what_createmodelpackage_would_refuse_once_every_artifact_is_copied(
    backbone: Backbone,
) -> None:
    """50 metadata entries at most, lineage included; an image in another Region than the registry's."""
    _, source = seeded_source(backbone)
    metadata = {**source.metadata, **{f"team-key-{n}": "x" for n in range(48 - len(source.metadata))}}
    containers = [
        {**container, "Image": container["Image"].replace(".us-east-1.", ".eu-west-1.")}
        for container in source.description["InferenceSpecification"]["Containers"]
    ]
    description = {
        **source.description,
        "CustomerMetadataProperties": metadata,
        "InferenceSpecification": {**source.description["InferenceSpecification"], "Containers": containers},
    }

    gate = promotion.check_governance_gate(
        SourceVersion(**{**source.to_payload(), "description": description})
    )

    assert not gate.passed
    assert gate.problems == [
        "CustomerMetadataProperties has 48 keys; the central version adds 3 lineage keys and SageMaker "
        "allows 50: remove 1",
        "InferenceSpecification.Containers[0].Image is in eu-west-1; the central registry is in us-east-1, "
        "and SageMaker needs a model's image in its own Region: push it to ECR there and register the "
        "version with it",
    ]
    # 47 keys and an image of the registry's Region pass.
    fits = {**source.description, "CustomerMetadataProperties": dict(list(metadata.items())[:47])}
    assert promotion.check_governance_gate(
        SourceVersion(**{**source.to_payload(), "description": fits})
    ).passed


@pytest.mark.parametrize("status", ["Pending", "InProgress"])
def test_a_version_sagemaker_has_not_finished_is_read_again_not_refused(
    backbone: Backbone, status: str
) -> None:
    """Created already Approved, a version can be described before it is Completed: the workflow's Retry
    on TransientAwsError reads it again; only Failed or Deleting is refused."""
    _, source = seeded_source(backbone)
    description = {**source.description, "ModelPackageStatus": status}

    with pytest.raises(TransientAwsError, match=f"still {status}"):
        promotion.check_governance_gate(SourceVersion(**{**source.to_payload(), "description": description}))


def test_a_gate_failure_is_notified_with_what_is_missing_and_ledgered_once(backbone: Backbone) -> None:
    event, source = seeded_source(backbone, "model-approved-missing-metadata")
    gate = promotion.check_governance_gate(source)

    promotion.report_gate_failure(source, gate, event_id=event["id"])
    promotion.report_gate_failure(source, gate, event_id=event["id"])  # the same event delivered again

    [notice] = backbone.notifications()
    assert notice["missing_metadata"] == ["use-case", "risk-rating"]
    assert notice["missing_metrics"] == ["ModelMetrics.ModelQuality.Statistics"]
    assert notice["source_model_package_arn"] == source.arn
    replicate = [
        (e.status, e.target) for e in entries_for_event(event["id"]) if e.action == "replicate_model"
    ]
    assert replicate == [("notify-only", source.arn), ("skipped", source.arn)]
    # Nothing reached the central registry or the central bucket.
    assert central_sagemaker().list_model_package_groups()["ModelPackageGroupSummaryList"] == []
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=BUCKET)


# ------------------------------------------------------------------------------------ artifacts


def test_every_artifact_is_planned_under_account_group_version(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)

    planned = promotion.plan_artifact_copies(source)

    assert [(p.path, p.copy_uri) for p in planned] == [
        (
            "InferenceSpecification.Containers[0].ModelDataUrl",
            f"s3://{BUCKET}/{TEAM}/churn-prediction/3/model.tar.gz",
        ),
        (
            "ModelMetrics.ModelQuality.Statistics.S3Uri",
            f"s3://{BUCKET}/{TEAM}/churn-prediction/3/evaluation.json",
        ),
    ]


def test_two_artifacts_with_one_file_name_keep_apart_and_one_object_is_copied_once(
    backbone: Backbone,
) -> None:
    _, source = seeded_source(backbone)
    containers = source.description["InferenceSpecification"]["Containers"]
    second = {**containers[0], "ModelDataUrl": "s3://sagemaker-us-east-1-210987654321/other/model.tar.gz"}
    same_again = dict(containers[0])
    description = {
        **source.description,
        "InferenceSpecification": {
            **source.description["InferenceSpecification"],
            "Containers": [*containers, second, same_again],
        },
    }

    planned = promotion.plan_artifact_copies(
        SourceVersion(**{**source.to_payload(), "description": description})
    )

    copies = [p.copy_uri.rsplit("/", 2)[-1] for p in planned]
    assert copies == ["model.tar.gz", "1-model.tar.gz", "model.tar.gz", "evaluation.json"]


def test_a_non_s3_artifact_is_refused_with_its_location(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)
    description = json.loads(json.dumps(source.description))
    description["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] = (
        "https://example.com/model.tar.gz"
    )

    with pytest.raises(promotion.UnsupportedArtifact, match=r"https://example.com/model.tar.gz"):
        promotion.plan_artifact_copies(SourceVersion(**{**source.to_payload(), "description": description}))


def test_artifacts_are_copied_byte_for_byte_and_encrypted_with_the_backbone_key(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)

    copies = promotion.copy_artifacts(source)

    team_s3 = backbone.session(TEAM).client("s3")
    central_s3 = boto3.client("s3")
    for copy in copies:
        bucket, key = copy["copy"].removeprefix("s3://").split("/", 1)
        head = central_s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == backbone.key_arn
        source_bucket, source_key = copy["source"].removeprefix("s3://").split("/", 1)
        original = team_s3.get_object(Bucket=source_bucket, Key=source_key)["Body"].read()
        assert central_s3.get_object(Bucket=bucket, Key=key)["Body"].read() == original
        assert copy["bytes"] == len(original)


def test_a_second_copy_run_keeps_the_copies_already_made(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)
    promotion.copy_artifacts(source)

    again = promotion.copy_artifacts(source)

    assert [copy["copied"] for copy in again] == [False, False]
    versions = boto3.client("s3").list_object_versions(Bucket=BUCKET)["Versions"]
    assert len(versions) == 2, "no object was written twice"


def s3_location(uri: str) -> tuple[str, str]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return bucket, key


def test_a_copy_that_is_not_of_this_object_or_not_under_the_backbone_key_is_made_again(
    backbone: Backbone,
) -> None:
    _, source = seeded_source(backbone)
    [first, *_] = promotion.copy_artifacts(source)
    bucket, key = s3_location(first["copy"])
    central_s3 = boto3.client("s3")
    original = central_s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    # What an earlier copy left when the team's object held other bytes of the same length.
    central_s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=bytes(len(original)),
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=backbone.key_arn,
        Metadata={"source-etag": "0" * 32},
    )

    [again, *_] = promotion.copy_artifacts(source)

    assert again["copied"] is True
    assert central_s3.get_object(Bucket=bucket, Key=key)["Body"].read() == original

    # The same bytes, but not under the backbone's key (put there by hand, with the bucket's default).
    central_s3.put_object(
        Bucket=bucket, Key=key, Body=original, Metadata={"source-etag": first["source_etag"]}
    )

    [third, *_] = promotion.copy_artifacts(source)

    assert third["copied"] is True
    head = central_s3.head_object(Bucket=bucket, Key=key)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", backbone.key_arn)


def test_the_object_version_looked_at_is_the_one_copied(backbone: Backbone) -> None:
    """The team overwrites its artifact while the copy runs: the copy is still of the object whose ETag
    it records, never a mix of one object's ETag and another's bytes."""
    _, source = seeded_source(backbone)
    [reference, *_] = promotion.plan_artifact_copies(source)
    source_bucket, source_key = s3_location(reference.source_uri)
    team_s3 = sessions.session_for(TEAM).client("s3", region_name=REGION)  # the client the copy uses
    team_s3.put_bucket_versioning(Bucket=source_bucket, VersioningConfiguration={"Status": "Enabled"})
    looked_at = team_s3.get_object(Bucket=source_bucket, Key=source_key)["Body"].read()
    team_s3.put_object(Bucket=source_bucket, Key=source_key, Body=looked_at)  # now a versioned object
    overwritten: list[bool] = []

    def overwrite_before_the_read(**_: Any) -> None:
        if not overwritten:
            overwritten.append(True)
            team_s3.put_object(Bucket=source_bucket, Key=source_key, Body=b"retrained, not approved")

    team_s3.meta.events.register("before-call.s3.GetObject", overwrite_before_the_read)
    try:
        [copy, *_] = promotion.copy_artifacts(source)
    finally:
        team_s3.meta.events.unregister("before-call.s3.GetObject", overwrite_before_the_read)

    assert overwritten == [True]
    bucket, key = s3_location(copy["copy"])
    central = boto3.client("s3").get_object(Bucket=bucket, Key=key)
    assert central["Body"].read() == looked_at
    assert central["Metadata"]["source-etag"] == copy["source_etag"]


def test_a_large_artifact_goes_through_a_multipart_transfer(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, source = seeded_source(backbone)
    big = os.urandom(11 * 1024 * 1024)
    bucket, key = "sagemaker-us-east-1-210987654321", "churn-prediction/model-3/model.tar.gz"
    backbone.session(TEAM).client("s3").put_object(Bucket=bucket, Key=key, Body=big)
    # The production part size (64 MiB) scaled down so an 11 MiB object needs three parts.
    monkeypatch.setattr(
        promotion,
        "ARTIFACT_TRANSFER",
        TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024),
    )

    promotion.copy_artifacts(source)

    head = boto3.client("s3").head_object(Bucket=BUCKET, Key=f"{TEAM}/churn-prediction/3/model.tar.gz")
    assert head["ETag"].strip('"').endswith("-3"), "three parts"
    assert head["SSEKMSKeyId"] == backbone.key_arn
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"{TEAM}/churn-prediction/3/model.tar.gz")["Body"]
    assert body.read() == big


def test_the_artifact_copy_buffers_at_most_half_the_functions_memory() -> None:
    """A stream that cannot seek (the team's GetObject body) is buffered part by part: the parts waiting
    and the parts in flight must fit beside the runtime, or a large model runs the function out of memory."""
    from govern.emulator import PROJECT_ROOT
    from govern.template import load_template

    function = load_template(PROJECT_ROOT / "template.yaml")["Resources"]["PromoteModelFunction"][
        "Properties"
    ]
    config = promotion.ARTIFACT_TRANSFER
    buffered = (
        config.max_in_memory_upload_chunks + config.max_request_concurrency
    ) * config.multipart_chunksize
    assert buffered <= function["MemorySize"] * 1024 * 1024 // 2


# ------------------------------------------------------------------------------------ claim and register


def register(
    source: SourceVersion, owner: str = "execution-1", event_id: str = "event-1"
) -> promotion.CentralVersion:
    claim = promotion.claim_replication(source, owner=owner, attempt=0, event_id=event_id)
    assert claim["state"] == "claimed"
    return promotion.register_central_version(
        source, promotion.copy_artifacts(source), owner=owner, event_id=event_id
    )


def test_the_central_version_carries_the_copies_the_metrics_and_the_lineage(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)

    central = register(source)

    described = central_sagemaker().describe_model_package(ModelPackageName=central.arn)
    assert central.group == f"{TEAM}-churn-prediction" and central.version == 1
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
    [container] = described["InferenceSpecification"]["Containers"]
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/{TEAM}/churn-prediction/3/model.tar.gz"
    assert container["Image"] == source.description["InferenceSpecification"]["Containers"][0]["Image"]
    assert described["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == (
        f"s3://{BUCKET}/{TEAM}/churn-prediction/3/evaluation.json"
    )
    assert described["CustomerMetadataProperties"] == {
        "owner": "team-churn",
        "use-case": "customer churn prediction",
        "risk-rating": "medium",
        "source-model-package-arn": source.arn,
        "source-account": TEAM,
        "source-version": "3",
    }
    assert described["MetadataProperties"] == source.description["MetadataProperties"]


def test_the_central_group_is_tagged_with_owner_source_account_and_pipeline(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)

    register(source)

    group_arn = central_sagemaker().describe_model_package_group(
        ModelPackageGroupName=f"{TEAM}-churn-prediction"
    )["ModelPackageGroupArn"]
    tags = {t["Key"]: t["Value"] for t in central_sagemaker().list_tags(ResourceArn=group_arn)["Tags"]}
    assert tags == {
        "governance:owner-team": "team-churn",
        "governance:source-account": TEAM,
        "governance:source-group": "churn-prediction",
        # declared by the team on its own group (the seed does, as a team would)
        "governance:deployment-pipeline": f"{TEAM}-churn-prediction-deploy",
    }


def test_the_pipeline_comes_from_the_version_then_the_team_group_then_the_map(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, source = seeded_source(backbone)
    group = f"{TEAM}-churn-prediction"
    assert promotion.resolve_deployment_pipeline(source, group) == f"{group}-deploy"

    declared = {
        **source.description,
        "CustomerMetadataProperties": {**source.metadata, "deployment-pipeline": "p1"},
    }
    assert (
        promotion.resolve_deployment_pipeline(
            SourceVersion(**{**source.to_payload(), "description": declared}), group
        )
        == "p1"
    )

    team_group = f"arn:aws:sagemaker:{REGION}:{TEAM}:model-package-group/churn-prediction"
    backbone.session(TEAM).client("sagemaker").delete_tags(
        ResourceArn=team_group, TagKeys=["governance:deployment-pipeline"]
    )
    monkeypatch.setenv("DEPLOYMENT_PIPELINE_MAP", f"other=p0, {group}=p2")
    settings.cache_clear()
    assert promotion.resolve_deployment_pipeline(source, group) == "p2"


def test_registration_is_ledgered_with_the_source_and_the_copies(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)

    central = register(source)

    [entry] = entries_for_event("event-1")
    assert (entry.action, entry.status, entry.target) == ("replicate_model", "done", central.arn)
    assert entry.detail["source_model_package_arn"] == source.arn
    assert [a["copy"].rsplit("/", 1)[-1] for a in entry.detail["artifacts"]] == [
        "model.tar.gz",
        "evaluation.json",
    ]


def test_a_duplicate_finds_the_replica_by_key_without_listing_versions(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, source = seeded_source(backbone)
    central = register(source)
    calls = api_calls(monkeypatch)

    claim = promotion.claim_replication(source, owner="execution-2", attempt=0, event_id="event-2")

    assert claim["state"] == "registered"
    assert claim["central"] == {**central.to_payload(), "replicated": False}
    assert calls == ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:PutItem"], (
        "claim, index lookup, ledger"
    )
    [entry] = entries_for_event("event-2")
    assert (entry.action, entry.status, entry.target) == ("replicate_model", "skipped", central.arn)


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("10", [10, 20, 40, 60, 60, 60, 60, 60]),
        # The offline runtime's base: never 0, or a duplicate spends its checks at CPU speed (see there).
        (RUNTIME_ENVIRONMENT["POLL_BASE_SECONDS"], [1, 2, 4, 8, 16, 32, 60, 60]),
    ],
    ids=["deployed", "offline"],
)
def test_while_one_execution_holds_the_claim_a_duplicate_waits_with_bounded_backoff(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch, base: str, expected: list[int]
) -> None:
    monkeypatch.setenv("POLL_BASE_SECONDS", base)
    settings.cache_clear()
    _, source = seeded_source(backbone)
    assert promotion.claim_replication(source, owner="a", attempt=0, event_id="e")["state"] == "claimed"

    waits = [
        promotion.claim_replication(source, owner="b", attempt=attempt, event_id="e")["wait_seconds"]
        for attempt in range(8)
    ]

    assert waits == expected
    with pytest.raises(promotion.ReplicationStillInProgress, match="still being replicated"):
        promotion.claim_replication(source, owner="b", attempt=promotion.MAX_CLAIM_ATTEMPTS - 1, event_id="e")


def test_the_same_execution_may_claim_again_and_a_released_claim_is_free(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)
    assert promotion.claim_replication(source, owner="a", attempt=0, event_id="e")["state"] == "claimed"
    assert promotion.claim_replication(source, owner="a", attempt=0, event_id="e")["state"] == "claimed"

    assert promotion.release_claim(source.arn, owner="b") is False, "only the owner releases"
    assert promotion.release_claim(source.arn, owner="a") is True

    assert promotion.claim_replication(source, owner="b", attempt=0, event_id="e")["state"] == "claimed"


def test_a_release_after_the_registration_keeps_the_record_of_the_central_version(backbone: Backbone) -> None:
    """A step after the registration fails (the card, the notice) and the workflow's catch releases its
    claim: the item is no longer a claim but the record of the version made, so it stays, and a duplicate
    finds that version rather than registering a second one."""
    _, source = seeded_source(backbone)
    central = register(source, owner="execution-1")

    assert promotion.release_claim(source.arn, owner="execution-1") is False

    duplicate = promotion.claim_replication(source, owner="execution-2", attempt=0, event_id="event-2")
    assert (duplicate["state"], duplicate["central"]["arn"]) == ("registered", central.arn)
    versions = central_sagemaker().list_model_packages(ModelPackageGroupName=central.group)
    assert len(versions["ModelPackageSummaryList"]) == 1


def test_an_abandoned_claim_is_taken_over_after_its_lease(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)
    promotion.claim_replication(source, owner="dead", attempt=0, event_id="e")
    boto3.resource("dynamodb").Table("state").update_item(
        Key={"pk": f"model-replica#{source.arn}", "sk": "central-version"},
        UpdateExpression="SET claimed_at = :old",
        ExpressionAttributeValues={":old": 0},
    )

    assert promotion.claim_replication(source, owner="alive", attempt=0, event_id="e")["state"] == "claimed"


def test_a_retried_registration_returns_the_version_it_already_made(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)
    central = register(source)

    again = promotion.register_central_version(source, [], owner="execution-1", event_id="event-1")

    assert again == central
    versions = central_sagemaker().list_model_packages(ModelPackageGroupName=central.group)
    assert len(versions["ModelPackageSummaryList"]) == 1


def test_a_registration_whose_claim_was_taken_over_stops_with_a_clear_error(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)
    promotion.claim_replication(source, owner="slow", attempt=0, event_id="e")
    table = boto3.resource("dynamodb").Table("state")
    table.update_item(
        Key={"pk": f"model-replica#{source.arn}", "sk": "central-version"},
        UpdateExpression="SET #o = :other",
        ExpressionAttributeNames={"#o": "owner"},
        ExpressionAttributeValues={":other": "took-over"},
    )

    with pytest.raises(promotion.ReplicaIndexConflict, match="taken over"):
        promotion.register_central_version(
            source, promotion.copy_artifacts(source), owner="slow", event_id="e"
        )


def test_the_replication_is_announced_once_per_central_version(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)
    central = register(source)
    card = {"name": "210987654321-churn-prediction-v1"}

    first = promotion.announce_replication(source, central, card, event_id="event-1")
    second = promotion.announce_replication(source, central, card, event_id="event-1")

    assert first["notified"] is True and second == {"notified": False}
    [notice] = backbone.notifications()
    assert notice["central_model_package_arn"] == central.arn
    assert notice["source_model_package_arn"] == source.arn
    assert notice["kind"] == "model-replicated"


def test_a_notice_that_could_not_be_sent_is_sent_by_the_retry(
    backbone: Backbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, source = seeded_source(backbone)
    central = register(source)
    topic = os.environ["ML_GOVERNANCE_TOPIC_ARN"]
    monkeypatch.setenv("ML_GOVERNANCE_TOPIC_ARN", f"{topic}-deleted")
    settings.cache_clear()
    with pytest.raises(Exception, match="NotFound"):
        promotion.announce_replication(source, central, {}, event_id="event-1")

    monkeypatch.setenv("ML_GOVERNANCE_TOPIC_ARN", topic)
    settings.cache_clear()
    retried = promotion.announce_replication(source, central, {}, event_id="event-1")

    assert retried["notified"] is True
    assert len(backbone.notifications()) == 1


def test_additional_data_sources_are_planned_and_a_prefix_or_manifest_is_refused(backbone: Backbone) -> None:
    _, source = seeded_source(backbone)
    description = json.loads(json.dumps(source.description))
    [container] = description["InferenceSpecification"]["Containers"]
    container["AdditionalS3DataSource"] = {"S3DataType": "S3Object", "S3Uri": "s3://team/x/tokenizer.tar.gz"}
    container["AdditionalModelDataSources"] = [
        {
            "ChannelName": "adapter",
            "S3DataSource": {"S3DataType": "S3Object", "S3Uri": "s3://team/x/adapter.bin"},
        }
    ]

    planned = promotion.plan_artifact_copies(
        SourceVersion(**{**source.to_payload(), "description": description})
    )

    assert [(p.path, p.copy_uri.rsplit("/", 1)[-1]) for p in planned][1:3] == [
        ("InferenceSpecification.Containers[0].AdditionalS3DataSource.S3Uri", "tokenizer.tar.gz"),
        (
            "InferenceSpecification.Containers[0].AdditionalModelDataSources[0].S3DataSource.S3Uri",
            "adapter.bin",
        ),
    ]
    for refused, match in (
        ({"S3DataType": "S3Prefix", "S3Uri": "s3://team/x/adapter/"}, "S3DataType S3Prefix"),
        ({"S3DataType": "S3Object", "S3Uri": "s3://team/x/a", "ManifestS3Uri": "s3://team/m"}, "a manifest"),
    ):
        container["AdditionalModelDataSources"][0]["S3DataSource"] = refused
        with pytest.raises(promotion.UnsupportedArtifact, match=match):
            promotion.plan_artifact_copies(
                SourceVersion(**{**source.to_payload(), "description": description})
            )
