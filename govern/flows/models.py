"""Runtime support of model promotion (flow A) and model deployment (flow B): seed what a SageMaker model
package event refers to, verify replicate_model / write_model_card / start_pipeline, script pipelines.

Seeding a team-account event creates, in that account, the model package group, the version with the event's
inference specification and metadata, and its artifacts as small real S3 objects. Seeding a central-registry
event creates what the promotion would have left (the central group and version with lineage, its artifact
copies, its model card, its replica-index entry) and the group's CodePipeline deployment pipeline.

moto's CodePipeline ends every execution `Succeeded` the moment it starts. `script_pipeline` makes a
pipeline's next executions run for a while and end as a test chooses (e.g. `Failed`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import posixpath
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from governance import model_card
from governance.claims import once
from governance.deployment import PIPELINE_VARIABLE, deployment_record
from governance.errors import MalformedEvent
from governance.naming import central_group_name
from governance.promotion import (
    LINEAGE_SOURCE_ACCOUNT,
    LINEAGE_SOURCE_ARN,
    LINEAGE_SOURCE_VERSION,
    TAG_DEPLOYMENT_PIPELINE,
    TAG_OWNER_TEAM,
    TAG_SOURCE_ACCOUNT,
    CentralVersion,
    announcement_marker,
    deployment_pipeline_map,
    find_replica,
    parse_model_package_arn,
    referenced_artifacts,
    remember_replica,
    replica_with_artifacts,
)

if TYPE_CHECKING:
    from govern.emulator import Organization
    from governance.ledger import LedgerEntry

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "tests" / "schemas" / "model_card.schema.json"
PIPELINE_ROLE = "govern-deployment-pipeline"

# DescribeModelPackage fields CreateModelPackage takes back as they are.
_CREATE_FIELDS = (
    "InferenceSpecification",
    "ModelMetrics",
    "DriftCheckBaselines",
    "CustomerMetadataProperties",
    "MetadataProperties",
    "ModelPackageDescription",
    "Domain",
    "Task",
    "SamplePayloadUrl",
)


def handles(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.sagemaker"


def default_pipeline_name(central_group: str) -> str:
    """The deployment pipeline the emulation gives a central group that names none: `<group>-deploy`."""
    return f"{central_group}-deploy"[:100]


# ------------------------------------------------------------------------------------ seeding


def seed(event: dict[str, Any], org: Organization) -> None:
    """Create what the event's model package needs, in its non-approved-yet-promoted state (idempotent)."""
    detail = event.get("detail") or {}
    arn = detail.get("ModelPackageArn") or next(iter(event.get("resources") or []), None)
    if not isinstance(arn, str):
        return  # a malformed event names no package: the backbone must dead-letter it, nothing to seed
    try:
        _, account, _, version = parse_model_package_arn(arn)
    except MalformedEvent:
        return
    group = str(detail.get("ModelPackageGroupName") or arn.split("/")[-2])
    if account == org.governance_account:
        _seed_central_version(event, org, group, version)
    else:
        _seed_team_version(event, org, account, group, version)


def _ensure_versions(sagemaker: Any, group: str, version: int, make: Callable[[int], dict[str, Any]]) -> str:
    """Versions 1..`version` of `group` exist (moto numbers versions by count); returns the last one's ARN."""
    existing = sagemaker.list_model_packages(ModelPackageGroupName=group, MaxResults=100)
    numbers = {
        int(item["ModelPackageVersion"]): item["ModelPackageArn"]
        for item in existing["ModelPackageSummaryList"]
    }
    for number in range(len(numbers) + 1, version + 1):
        numbers[number] = sagemaker.create_model_package(ModelPackageGroupName=group, **make(number))[
            "ModelPackageArn"
        ]
    return str(numbers[version])


def _placeholder_version(number: int) -> dict[str, Any]:
    """An earlier version the event does not describe, only so the event's version gets its number."""
    return {
        "ModelPackageDescription": f"emulation placeholder for version {number}",
        "ModelApprovalStatus": "Rejected",
        "InferenceSpecification": {
            "Containers": [{"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        "CustomerMetadataProperties": {"govern-placeholder": "true"},
    }


def _version_from_event(detail: dict[str, Any]) -> Callable[[int], dict[str, Any]]:
    def make(number: int) -> dict[str, Any]:
        if number != int(detail.get("ModelPackageVersion", number)):
            return _placeholder_version(number)
        arguments = {key: detail[key] for key in _CREATE_FIELDS if detail.get(key)}
        arguments["ModelApprovalStatus"] = detail.get("ModelApprovalStatus", "PendingManualApproval")
        return arguments

    return make


def _ensure_group(sagemaker: Any, group: str, tags: dict[str, str]) -> str:
    try:
        arn = str(sagemaker.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"])
    except ClientError:
        return str(
            sagemaker.create_model_package_group(
                ModelPackageGroupName=group, Tags=[{"Key": k, "Value": v} for k, v in tags.items() if v]
            )["ModelPackageGroupArn"]
        )
    present = {tag["Key"] for tag in sagemaker.list_tags(ResourceArn=arn).get("Tags", [])}
    missing = [{"Key": k, "Value": v} for k, v in tags.items() if v and k not in present]
    if missing:
        sagemaker.add_tags(ResourceArn=arn, Tags=missing)
    return arn


def _sync_approval(sagemaker: Any, arn: str, detail: dict[str, Any]) -> None:
    """The event reports a decision someone took: make the registry show it (the registry is the truth)."""
    status = detail.get("ModelApprovalStatus")
    described = sagemaker.describe_model_package(ModelPackageName=arn)
    reason = detail.get("ApprovalDescription")
    if status and (
        described.get("ModelApprovalStatus") != status
        or (reason and described.get("ApprovalDescription") != reason)
    ):
        arguments = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
        if detail.get("ApprovalDescription"):
            arguments["ApprovalDescription"] = detail["ApprovalDescription"]
        # moto replaces CustomerMetadataProperties on every update: hand the current ones back.
        arguments["CustomerMetadataProperties"] = described.get("CustomerMetadataProperties") or {}
        sagemaker.update_model_package(**arguments)


def _seed_team_version(
    event: dict[str, Any], org: Organization, account: str, group: str, version: int
) -> None:
    detail = event["detail"]
    session = org.session(account)
    sagemaker = session.client("sagemaker")
    # The team declares its deployment pipeline on its group; the promotion carries it to the central group.
    _ensure_group(
        sagemaker, group, {TAG_DEPLOYMENT_PIPELINE: default_pipeline_name(central_group_name(account, group))}
    )
    arn = _ensure_versions(sagemaker, group, version, _version_from_event(detail))
    _sync_approval(sagemaker, arn, detail)
    s3 = session.client("s3")
    source_arn = str(detail.get("ModelPackageArn") or arn)
    sources = [uri for _, uri in referenced_artifacts(detail)]
    copied = _bytes_copied_by_a_seeded_replication(org, source_arn, sources)
    for uri in sources:
        _ensure_object(s3, uri, copied.get(uri) or _artifact_bytes(uri, source_arn), kms_key=None)


def _bytes_copied_by_a_seeded_replication(
    org: Organization, source_arn: str, sources: list[str]
) -> dict[str, bytes]:
    """An archive replayed out of order: a central approval's seed stood for this version's replication and
    had to guess where its copies came from. The team's event now says: its objects hold what was copied,
    and the replica index names them (matched by file name, as the promotion names its copies)."""
    central, recorded = replica_with_artifacts(source_arn)
    if central is None or not recorded or {a["source"] for a in recorded} >= set(sources):
        return {}
    copies = {posixpath.basename(urlparse(a["copy"]).path): a["copy"] for a in recorded}
    s3 = org.session().client("s3")
    copied: dict[str, bytes] = {}
    pairs = []
    for uri in dict.fromkeys(sources):
        copy = copies.get(posixpath.basename(urlparse(uri).path))
        if copy is not None:
            parsed = urlparse(copy)
            copied[uri] = s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read()
            pairs.append({"source": uri, "copy": copy})
    matched = {pair["copy"] for pair in pairs}
    remember_replica(source_arn, central, pairs + [a for a in recorded if a["copy"] not in matched])
    return copied


def _seed_central_version(event: dict[str, Any], org: Organization, group: str, version: int) -> None:
    detail = event["detail"]
    session = org.session()
    sagemaker = session.client("sagemaker")
    metadata = detail.get("CustomerMetadataProperties") or {}
    pipeline = deployment_pipeline_map().get(group) or default_pipeline_name(group)
    tags = {
        TAG_OWNER_TEAM: metadata.get("owner", ""),
        TAG_SOURCE_ACCOUNT: metadata.get(LINEAGE_SOURCE_ACCOUNT, ""),
    }
    if group not in deployment_pipeline_map():
        tags[TAG_DEPLOYMENT_PIPELINE] = pipeline
    group_arn = _ensure_group(sagemaker, group, tags)
    for tag in sagemaker.list_tags(ResourceArn=group_arn).get("Tags", []):
        if tag["Key"] == TAG_DEPLOYMENT_PIPELINE:
            pipeline = tag["Value"]
    arn = _ensure_versions(sagemaker, group, version, _version_from_event(detail))
    s3 = session.client("s3")
    kms_key = org.arn("GovernanceKey")
    artifacts = []
    for _, uri in referenced_artifacts(detail):
        source_uri = _source_uri_of(uri, metadata)
        _ensure_object(s3, uri, _artifact_bytes(uri, metadata.get(LINEAGE_SOURCE_ARN, arn)), kms_key=kms_key)
        artifacts.append({"source": source_uri, "copy": uri})
    source_arn = metadata.get(LINEAGE_SOURCE_ARN)
    if source_arn and find_replica(source_arn) is None:
        # The replication this seed stands for registered the copy and announced it for central review.
        remember_replica(source_arn, CentralVersion(arn, group, version), artifacts)
        once(announcement_marker(arn))
    description = json.loads(json.dumps(sagemaker.describe_model_package(ModelPackageName=arn), default=str))
    if model_card.describe_card(model_card.card_name_of(description)) is None:
        sagemaker.create_model_card(
            ModelCardName=model_card.card_name_of(description),
            Content=json.dumps(model_card.build_card_content(description), sort_keys=True),
            ModelCardStatus=model_card.CARD_STATUS_PENDING_REVIEW,
        )
    _sync_approval(sagemaker, arn, detail)
    ensure_pipeline(org, pipeline)


def _source_uri_of(copy_uri: str, metadata: dict[str, str]) -> str:
    """Where the promotion would have copied `copy_uri` from (for the replica index the seed writes)."""
    account = metadata.get(LINEAGE_SOURCE_ACCOUNT, "")
    name = urlparse(copy_uri).path.rsplit("/", 1)[-1]
    return f"s3://sagemaker-us-east-1-{account}/{metadata.get(LINEAGE_SOURCE_VERSION, '')}/{name}"


def _artifact_bytes(uri: str, package_arn: str) -> bytes:
    """Small but real artifacts, different per version: a model.tar.gz, an evaluation report, or bytes."""
    name = urlparse(uri).path.rsplit("/", 1)[-1]
    digest = hashlib.sha256(f"{package_arn}|{uri}".encode()).hexdigest()
    quality = 0.80 + int(digest[:2], 16) / 2550  # 0.80 .. 0.90, stable per artifact
    if name.endswith(".tar.gz"):
        model = json.dumps({"booster": "gbtree", "trees": 120, "fingerprint": digest}).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
            member = tarfile.TarInfo("xgboost-model")
            member.size, member.mtime = len(model), 0
            archive.addfile(member, io.BytesIO(model))
        return buffer.getvalue()
    if name.endswith(".json"):
        report = {
            "binary_classification_metrics": {
                "accuracy": {"value": round(quality, 4), "standard_deviation": 0.004},
                "auc": {"value": round(quality + 0.05, 4), "standard_deviation": 0.003},
                "recall": {"value": round(quality - 0.08, 4), "standard_deviation": 0.006},
                "confusion_matrix": {"0": {"0": 812, "1": 41}, "1": {"0": 67, "1": 280}},
            }
        }
        return json.dumps(report, indent=2).encode()
    return gzip.compress(f"artifact {uri} {digest}".encode(), mtime=0)


def _ensure_object(s3: Any, uri: str, body: bytes, *, kms_key: str | None) -> None:
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket)
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return
    except ClientError:
        pass
    extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else {}
    s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)


# ------------------------------------------------------------------------------------ pipelines


def ensure_pipeline(org: Organization, name: str) -> str:
    """A CodePipeline V2 deployment pipeline `name` in the governance account, taking the ModelPackageArn
    variable (its CloudFormation stage deploys exactly that version); returns its ARN."""
    session = org.session()
    codepipeline = session.client("codepipeline")
    try:
        return str(codepipeline.get_pipeline(name=name)["metadata"]["pipelineArn"])
    except ClientError:
        pass
    iam = session.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "codepipeline.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    try:
        role_arn = iam.get_role(RoleName=PIPELINE_ROLE)["Role"]["Arn"]
    except ClientError:
        role_arn = iam.create_role(RoleName=PIPELINE_ROLE, AssumeRolePolicyDocument=json.dumps(trust))[
            "Role"
        ]["Arn"]
    bucket = org.physical_id("CentralArtifactBucket")
    codepipeline.create_pipeline(
        pipeline={
            "name": name,
            "roleArn": role_arn,
            "pipelineType": "V2",
            "executionMode": "QUEUED",
            "artifactStore": {"type": "S3", "location": bucket},
            "variables": [
                {"name": PIPELINE_VARIABLE, "description": "the exact model package version to deploy"}
            ],
            "stages": [
                {
                    "name": "Source",
                    "actions": [
                        {
                            "name": "EndpointTemplate",
                            "actionTypeId": {
                                "category": "Source",
                                "owner": "AWS",
                                "provider": "S3",
                                "version": "1",
                            },
                            "configuration": {"S3Bucket": bucket, "S3ObjectKey": "deployment/endpoint.zip"},
                            "outputArtifacts": [{"name": "Template"}],
                        }
                    ],
                },
                {
                    "name": "Deploy",
                    "actions": [
                        {
                            "name": "Endpoint",
                            "actionTypeId": {
                                "category": "Deploy",
                                "owner": "AWS",
                                "provider": "CloudFormation",
                                "version": "1",
                            },
                            "configuration": {
                                "ActionMode": "CREATE_UPDATE",
                                "StackName": f"{name}-endpoint",
                                "TemplatePath": "Template::endpoint.yaml",
                                "ParameterOverrides": json.dumps(
                                    {"ModelPackageArn": f"#{{variables.{PIPELINE_VARIABLE}}}"}
                                ),
                            },
                            "inputArtifacts": [{"name": "Template"}],
                        }
                    ],
                },
            ],
        }
    )
    return str(codepipeline.get_pipeline(name=name)["metadata"]["pipelineArn"])


class _ScriptedExecutions(dict):  # type: ignore[type-arg]
    """A pipeline's executions that stay InProgress for some reads, then end as scripted."""

    def __init__(
        self, existing: dict[str, Any], final_status: str, summary: str, running_checks: int
    ) -> None:
        super().__init__(existing)
        self.final_status = final_status
        self.summary = summary
        self.running_checks = running_checks
        self.reads: dict[str, int] = {}

    def __setitem__(self, execution_id: str, execution: Any) -> None:
        execution.status = "InProgress"
        self.reads[execution_id] = 0
        super().__setitem__(execution_id, execution)

    def get(self, execution_id: str, default: Any = None) -> Any:  # moto's GetPipelineExecution reads here
        execution = super().get(execution_id, default)
        if execution is not None and execution_id in self.reads:
            self.reads[execution_id] += 1
            if self.reads[execution_id] > self.running_checks:
                execution.status = self.final_status
                execution.status_summary = self.summary or None
        return execution


def script_pipeline(
    org: Organization,
    name: str,
    *,
    final_status: str = "Failed",
    summary: str = "Deploy/Endpoint: CREATE_FAILED (emulated)",
    running_checks: int = 1,
) -> None:
    """Make pipeline `name`'s next executions report InProgress to the first `running_checks`
    GetPipelineExecution calls, then `final_status` (Succeeded, Failed, Stopped, ...) with `summary`.
    Creates the pipeline when it does not exist yet (seeding finds it and leaves it as it is)."""
    ensure_pipeline(org, name)
    script_pipeline_executions(
        org.governance_account,
        org.region,
        name,
        final_status=final_status,
        summary=summary,
        running_checks=running_checks,
    )


def script_pipeline_executions(
    account: str, region: str, name: str, *, final_status: str, summary: str = "", running_checks: int = 1
) -> None:
    """`script_pipeline` on plain moto: the pipeline must exist in `account`/`region`."""
    from moto.codepipeline.models import codepipeline_backends

    pipeline = codepipeline_backends[account][region].pipelines[name]
    pipeline.executions = _ScriptedExecutions(pipeline.executions, final_status, summary, running_checks)


def pipeline_executions_carrying(org: Organization, pipeline: str, version_arn: str) -> list[dict[str, Any]]:
    """Every execution of `pipeline` whose ModelPackageArn variable is `version_arn`."""
    codepipeline = org.session().client("codepipeline")
    found = []
    for summary in codepipeline.list_pipeline_executions(pipelineName=pipeline)["pipelineExecutionSummaries"]:
        execution = codepipeline.get_pipeline_execution(
            pipelineName=pipeline, pipelineExecutionId=summary["pipelineExecutionId"]
        )["pipelineExecution"]
        variables = {item["name"]: item.get("resolvedValue") for item in execution.get("variables", [])}
        if variables.get(PIPELINE_VARIABLE) == version_arn:
            found.append(dict(execution))
    return found


# ------------------------------------------------------------------------------------ verification


def card_schema_errors(content: dict[str, Any]) -> list[str]:
    """Problems of `content` against the model card JSON schema kept in tests/schemas (empty: valid)."""
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, error.path)) or '(root)'}: {error.message}"
        for error in validator.iter_errors(content)
    ]


def _replicas_of(org: Organization, group: str, source_arn: str) -> list[dict[str, Any]]:
    sagemaker = org.session().client("sagemaker")
    try:
        listed = sagemaker.list_model_packages(ModelPackageGroupName=group, MaxResults=100)[
            "ModelPackageSummaryList"
        ]
    except ClientError:
        return []
    found = []
    for item in listed:
        described = sagemaker.describe_model_package(ModelPackageName=item["ModelPackageArn"])
        if (described.get("CustomerMetadataProperties") or {}).get(LINEAGE_SOURCE_ARN) == source_arn:
            found.append(dict(described))
    return found


def _copy_is_faithful(org: Organization, source_account: str, source_uri: str, copy_uri: str) -> bool:
    """The copy is byte-identical to the source object and SSE-KMS under the backbone key."""
    source, copy = urlparse(source_uri), urlparse(copy_uri)
    central = org.session().client("s3")
    head = central.head_object(Bucket=copy.netloc, Key=copy.path.lstrip("/"))
    if head.get("ServerSideEncryption") != "aws:kms" or head.get("SSEKMSKeyId") != org.arn("GovernanceKey"):
        return False
    copied = central.get_object(Bucket=copy.netloc, Key=copy.path.lstrip("/"))["Body"].read()
    original = (
        org.session(source_account)
        .client("s3")
        .get_object(Bucket=source.netloc, Key=source.path.lstrip("/"))["Body"]
        .read()
    )
    return copied == original


def verify_replicate_model(entry: LedgerEntry, org: Organization) -> bool:
    """done/skipped: the central version exists exactly once for its source, with the right lineage,
    pointing only at copies that are byte-identical and encrypted with the backbone key. notify-only: no
    trace of the source version in the central registry, bucket or replica index."""
    if entry.status == "notify-only":
        source_arn = entry.target
        _, account, group, version = parse_model_package_arn(source_arn)
        prefix = f"{account}/{group}/{version}/"
        listed = (
            org.session()
            .client("s3")
            .list_objects_v2(Bucket=org.physical_id("CentralArtifactBucket"), Prefix=prefix)
        )
        return (
            not _replicas_of(org, central_group_name(account, group), source_arn)
            and find_replica(source_arn) is None
            and not listed.get("Contents")
        )
    if entry.status not in ("done", "skipped"):
        return False
    source_arn = entry.detail["source_model_package_arn"]
    _, account, group, version = parse_model_package_arn(source_arn)
    replicas = _replicas_of(org, central_group_name(account, group), source_arn)
    if len(replicas) != 1 or replicas[0]["ModelPackageArn"] != entry.target:
        return False
    central = replicas[0]
    lineage = central.get("CustomerMetadataProperties") or {}
    if lineage.get(LINEAGE_SOURCE_ACCOUNT) != account or lineage.get(LINEAGE_SOURCE_VERSION) != str(version):
        return False
    if central.get("ModelApprovalStatus") not in ("PendingManualApproval", "Approved", "Rejected"):
        return False
    copies = {artifact["copy"]: artifact["source"] for artifact in entry.detail.get("artifacts", [])}
    referenced = [uri for _, uri in referenced_artifacts(central)]
    bucket = org.physical_id("CentralArtifactBucket")
    if not referenced or any(
        not uri.startswith(f"s3://{bucket}/{account}/{group}/{version}/") for uri in referenced
    ):
        return False
    if set(referenced) - set(copies):
        return False
    return all(_copy_is_faithful(org, account, copies[uri], uri) for uri in set(referenced))


def verify_write_model_card(entry: LedgerEntry, org: Organization) -> bool:
    """The card exists, validates against the model card JSON schema, links to its version, and is the only
    card that does; a rejection recorded on it reads Rejected."""
    if entry.status not in ("done", "skipped"):
        return False
    sagemaker = org.session().client("sagemaker")
    name = entry.detail["model_card"]
    content = json.loads(sagemaker.describe_model_card(ModelCardName=name)["Content"])
    if card_schema_errors(content):
        return False
    version_arn = entry.detail["model_package_arn"]
    package = content.get("model_package_details") or {}
    if package.get("model_package_arn") != version_arn:
        return False
    if entry.detail.get("decision") == "Rejected" and package.get("model_approval_status") != "Rejected":
        return False
    linked = 0
    for summary in sagemaker.list_model_cards(MaxResults=100)["ModelCardSummaries"]:
        other = json.loads(sagemaker.describe_model_card(ModelCardName=summary["ModelCardName"])["Content"])
        linked += (other.get("model_package_details") or {}).get("model_package_arn") == version_arn
    return linked == 1


def verify_start_pipeline(entry: LedgerEntry, org: Organization) -> bool:
    """Exactly one execution of the pipeline carries the version ARN; its final status is the ledgered one
    and is written on the model card. notify-only (no pipeline configured): nothing was started."""
    version_arn = entry.detail.get("model_package_arn", "")
    if entry.status == "notify-only":
        return not deployment_record(version_arn).get("execution_id")
    if entry.status not in ("done", "skipped", "failed") or not entry.detail.get("pipeline"):
        return False
    executions = pipeline_executions_carrying(org, entry.detail["pipeline"], version_arn)
    if len(executions) != 1:
        return False
    [execution] = executions
    if entry.status == "skipped":
        return True
    if execution["pipelineExecutionId"] != entry.target or execution["status"] != entry.detail.get(
        "final_status"
    ):
        return False
    card = json.loads(
        org.session()
        .client("sagemaker")
        .describe_model_card(ModelCardName=entry.detail["model_card"])["Content"]
    )
    custom = (card.get("additional_information") or {}).get("custom_details") or {}
    return bool(
        custom.get("deployment_execution_id") == entry.target
        and custom.get("deployment_status") == entry.detail.get("final_status")
    )


VERIFIERS: dict[str, Callable[[LedgerEntry, Organization], bool]] = {
    "replicate_model": verify_replicate_model,
    "write_model_card": verify_write_model_card,
    "start_pipeline": verify_start_pipeline,
}
