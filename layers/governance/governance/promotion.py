"""Flow A: carry a model version approved in a team registry into the central registry, exactly once."""

from __future__ import annotations

import json
import posixpath
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from governance import claims
from governance.claims import forgotten_on_failure, once, state_table, take_claim
from governance.errors import MalformedEvent, TransientAwsError
from governance.ledger import LedgerEntry, record
from governance.naming import central_group_name
from governance.notifier import notify
from governance.sessions import session_for
from governance.settings import comma_list, settings
from governance.tagging import sagemaker_tags

FLOW = "model-promotion"

# Lineage keys written into the central version's CustomerMetadataProperties.
LINEAGE_SOURCE_ARN = "source-model-package-arn"
LINEAGE_SOURCE_ACCOUNT = "source-account"
LINEAGE_SOURCE_VERSION = "source-version"

# Tags of a central model package group.
TAG_OWNER_TEAM = "governance:owner-team"
TAG_SOURCE_ACCOUNT = "governance:source-account"
TAG_SOURCE_GROUP = "governance:source-group"
TAG_DEPLOYMENT_PIPELINE = "governance:deployment-pipeline"

# Keys a team may set on its version (or its group's tags) that the backbone reads.
OWNER_KEY = "owner"
PIPELINE_KEY = "deployment-pipeline"

# The model card's evaluation details come from this report, so the gate always asks for it.
REQUIRED_METRICS: tuple[tuple[str, str], ...] = (("ModelQuality", "Statistics"),)

RISK_RATINGS = {"high": "High", "medium": "Medium", "low": "Low", "unknown": "Unknown"}
RISK_RATING_KEY = "risk-rating"

# A claim older than this is abandoned (its owner died): longer than a Lambda run (900 s) plus retries.
CLAIM_LEASE_SECONDS = 30 * 60
# A duplicate waits for the owner's registration at most this many times (backoff capped at one minute).
MAX_CLAIM_ATTEMPTS = 60
MAX_CLAIM_WAIT_SECONDS = 60

# Streams go through memory in chunks: 64 MiB parts allow objects of up to 640 GiB (10,000 parts). A
# stream that cannot seek is buffered part by part, up to max_in_memory_upload_chunks of them (10 by
# default: 640 MiB, too much for a 1 GiB function beside its runtime): 4 buffered, 4 in flight, 256 MiB.
ARTIFACT_TRANSFER = TransferConfig(
    multipart_threshold=64 * 1024 * 1024,
    multipart_chunksize=64 * 1024 * 1024,
    max_concurrency=4,
)
# s3transfer's setting, which boto3's TransferConfig does not take as an argument.
ARTIFACT_TRANSFER.max_in_memory_upload_chunks = 4


class ReplicationStillInProgress(RuntimeError):
    """Another execution has held the claim on this source version for longer than a duplicate waits."""


class UnsupportedArtifact(ValueError):
    """The version references an artifact the backbone cannot copy (for example a non-S3 location)."""


class ReplicaIndexConflict(RuntimeError):
    """The replica index changed under this execution: another one took over its expired claim."""


class CentralGroupConflict(ValueError):
    """The central group this version's name leads to holds the replicas of another source group."""


# ------------------------------------------------------------------------------------ the source


@dataclass(frozen=True)
class SourceVersion:
    """A team account's model version as its own registry describes it (the registry, not the event, is
    the truth)."""

    arn: str
    account: str
    region: str
    group: str
    version: int
    description: dict[str, Any]

    @property
    def approval_status(self) -> str:
        return str(self.description.get("ModelApprovalStatus", ""))

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.description.get("CustomerMetadataProperties") or {})

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> SourceVersion:
        return cls(
            arn=payload["arn"],
            account=payload["account"],
            region=payload["region"],
            group=payload["group"],
            version=int(payload["version"]),
            description=payload["description"],
        )


def parse_model_package_arn(arn: str) -> tuple[str, str, str, int]:
    """(region, account, group, version) of a versioned model package ARN
    (`arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>`)."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or not parts[5].startswith("model-package/"):
        raise MalformedEvent(f"not a versioned model package ARN: {arn}")
    resource = parts[5].removeprefix("model-package/")
    group, _, version = resource.rpartition("/")
    if not group or not version.isdigit():
        raise MalformedEvent(f"not a versioned model package ARN: {arn}")
    return parts[3], parts[4], group, int(version)


def registry_state_of(description: dict[str, Any]) -> str:
    """What tells one state of a model version from the next in its registry (approved, rejected, approved
    again; metadata edited): its LastModifiedTime, or CreationTime for a version never updated since.
    SageMaker's several events for one change, and their redeliveries, all read the same one."""
    return str(description.get("LastModifiedTime") or description.get("CreationTime") or "")


def _json_safe(value: Any) -> Any:
    """DescribeModelPackage returns datetimes; a Step Functions payload carries JSON only."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items() if key != "ResponseMetadata"}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def load_source_version(event: dict[str, Any]) -> SourceVersion:
    """Parse the approval event; describe the version in its own account, through GovernanceExecutionRole."""
    # Only this step parses an event: the models (pydantic) load here, not when any other step starts.
    from governance.events import parse_event
    from governance.events.sagemaker import ModelPackageStateChange

    approval = parse_event(event, ModelPackageStateChange)
    region, account, _, version = parse_model_package_arn(approval.detail.ModelPackageArn)
    response = (
        session_for(account)
        .client("sagemaker", region_name=region)
        .describe_model_package(ModelPackageName=approval.detail.ModelPackageArn)
    )
    description = _json_safe(response)
    # The ARN lower-cases nothing we rely on; the registry's own group name is kept as the team spelled it.
    group = str(description.get("ModelPackageGroupName") or approval.detail.ModelPackageGroupName)
    return SourceVersion(
        arn=str(description.get("ModelPackageArn") or approval.detail.ModelPackageArn),
        account=account,
        region=region,
        group=group,
        version=int(description.get("ModelPackageVersion") or version),
        description=description,
    )


# ------------------------------------------------------------------------------------ the gate


@dataclass(frozen=True)
class GateResult:
    """What the governance gate found: passed, or exactly what is missing or wrong."""

    passed: bool
    missing_metadata: list[str] = field(default_factory=list)
    missing_metrics: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [*self.missing_metadata, *self.missing_metrics]

    def to_payload(self) -> dict[str, Any]:
        return {**asdict(self), "missing": self.missing}


def required_metadata_keys() -> list[str]:
    """CustomerMetadataProperties keys a version needs (REQUIRED_MODEL_METADATA, comma-separated)."""
    return comma_list(settings().required_model_metadata)


def _metrics_source(description: dict[str, Any], section: str, name: str) -> str:
    source = ((description.get("ModelMetrics") or {}).get(section) or {}).get(name) or {}
    return str(source.get("S3Uri") or "")


# CreateModelPackage's CustomerMetadataProperties: at most 50 entries (the API's CustomerMetadataMap).
MAX_METADATA_ENTRIES = 50
# <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>: the Region an ECR image lives in.
ECR_IMAGE_REGION = re.compile(r"^\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")


def container_images(description: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(path, image URI) of every inference container of a version."""
    specifications = [("InferenceSpecification", description.get("InferenceSpecification") or {})]
    specifications += [
        (f"AdditionalInferenceSpecifications[{index}]", spec)
        for index, spec in enumerate(description.get("AdditionalInferenceSpecifications") or [])
    ]
    for where, specification in specifications:
        for index, container in enumerate(specification.get("Containers") or []):
            if container.get("Image"):
                yield f"{where}.Containers[{index}].Image", str(container["Image"])


def check_governance_gate(source: SourceVersion) -> GateResult:
    """Required metadata present and non-empty, model quality metrics present, still approved at source."""
    metadata = source.metadata
    missing_metadata = [key for key in required_metadata_keys() if not str(metadata.get(key, "")).strip()]
    missing_metrics = [
        f"ModelMetrics.{section}.{name}"
        for section, name in REQUIRED_METRICS
        if not _metrics_source(source.description, section, name)
    ]
    problems = []
    if source.approval_status != "Approved":
        problems.append(f"ModelApprovalStatus is {source.approval_status or 'unset'} in the source registry")
    status = str(source.description.get("ModelPackageStatus") or "Completed")
    if status in ("Pending", "InProgress"):
        # A version created already Approved can be described before SageMaker has finished it: wait.
        raise TransientAwsError(
            f"{source.arn} is still {status} in its registry; the workflow reads it again until Completed"
        )
    if status != "Completed":
        problems.append(
            f"ModelPackageStatus is {status}: only a Completed version can be registered centrally"
        )
    rating = str(metadata.get(RISK_RATING_KEY, "")).strip()
    if rating and rating.lower() not in RISK_RATINGS:
        problems.append(f"{RISK_RATING_KEY} '{rating}' is not one of {', '.join(RISK_RATINGS.values())}")
    # Found here, before anything is copied, rather than by CreateModelPackage once every artifact is.
    entries = len(lineage_metadata(source))
    if entries > MAX_METADATA_ENTRIES:
        problems.append(
            f"CustomerMetadataProperties has {len(metadata)} keys; the central version adds "
            f"{entries - len(metadata)} lineage keys and SageMaker allows {MAX_METADATA_ENTRIES}: remove "
            f"{entries - MAX_METADATA_ENTRIES}"
        )
    region = settings().region
    for path, image in container_images(source.description):
        found = ECR_IMAGE_REGION.match(image)
        if found and found.group(1) != region:
            problems.append(
                f"{path} is in {found.group(1)}; the central registry is in {region}, and SageMaker needs a "
                "model's image in its own Region: push it to ECR there and register the version with it"
            )
    passed = not (missing_metadata or missing_metrics or problems)
    return GateResult(passed, missing_metadata, missing_metrics, problems)


def report_gate_failure(source: SourceVersion, gate: GateResult, *, event_id: str) -> dict[str, Any]:
    """Nothing is replicated: tell the ML-governance topic exactly what is missing, and ledger it. A duplicate
    delivery of the same event is ledgered `skipped` and not notified again."""
    reasons = ([f"missing {', '.join(gate.missing)}"] if gate.missing else []) + gate.problems
    # Once per state of the version, however many events SageMaker sends for one change (each its own id);
    # fixed and approved again, the version has a new LastModifiedTime, and a new failure is told again.
    marker = f"model-gate-failed#{source.arn}#{registry_state_of(source.description) or event_id}"
    if not once(marker):
        record(
            LedgerEntry(
                event_id=event_id,
                action="replicate_model",
                status="skipped",
                target=source.arn,
                flow=FLOW,
                account=source.account,
                detail={
                    "reason": "already reported",
                    "source_model_package_arn": source.arn,
                    **gate.to_payload(),
                },
            )
        )
        return {"replicated": False, "missing": gate.missing, "problems": gate.problems}
    subject = f"[NOT REPLICATED] {source.group} v{source.version} from {source.account}: {'; '.join(reasons)}"
    with forgotten_on_failure(marker):
        notify(
            "ml-governance",
            subject,
            {
                "source_model_package_arn": source.arn,
                "missing_metadata": gate.missing_metadata,
                "missing_metrics": gate.missing_metrics,
                "problems": gate.problems,
                "required_metadata": required_metadata_keys(),
                "what_to_do": "add what is missing to the version in its registry, then approve it again",
            },
            severity="MEDIUM",
            account=source.account,
            kind="model-gate-failed",
            event_id=event_id,
            flow=FLOW,
        )
    record(
        LedgerEntry(
            event_id=event_id,
            action="replicate_model",
            status="notify-only",
            target=source.arn,
            flow=FLOW,
            account=source.account,
            detail={"source_model_package_arn": source.arn, **gate.to_payload()},
        )
    )
    return {"replicated": False, "missing": gate.missing, "problems": gate.problems}


# ------------------------------------------------------------------------------------ artifacts


@dataclass(frozen=True)
class ArtifactReference:
    """One S3 object a version points at, where it sits in the description, and where its copy goes."""

    path: str  # where in DescribeModelPackage, e.g. InferenceSpecification.Containers[0].ModelDataUrl
    source_uri: str
    copy_uri: str


def _split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise UnsupportedArtifact(f"not an S3 object URI: {uri}")
    return parsed.netloc, parsed.path.lstrip("/")


def _single_object(path: str, source: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The S3 URI of an `S3DataSource`-like block that names one object; a prefix (many objects) or a
    manifest is refused, since the copy would have to follow it."""
    data_type = str(source.get("S3DataType") or "S3Object")
    if data_type != "S3Object" or source.get("ManifestS3Uri"):
        kind = "a manifest" if source.get("ManifestS3Uri") else f"S3DataType {data_type}"
        raise UnsupportedArtifact(f"{path} ({kind}: more than one object) is not copied yet")
    if source.get("S3Uri"):
        yield f"{path}.S3Uri", str(source["S3Uri"])


def _container_artifacts(where: str, container: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every S3 object a ModelPackageContainerDefinition points at: the model data and the additional data
    sources (a tokenizer, an adapter) that SageMaker loads beside it."""
    if container.get("ModelDataUrl"):
        yield f"{where}.ModelDataUrl", str(container["ModelDataUrl"])
    if container.get("ModelDataSource"):
        raise UnsupportedArtifact(f"{where}.ModelDataSource (uncompressed model data) is not copied yet")
    if container.get("AdditionalS3DataSource"):
        yield from _single_object(f"{where}.AdditionalS3DataSource", container["AdditionalS3DataSource"])
    for index, extra in enumerate(container.get("AdditionalModelDataSources") or []):
        yield from _single_object(
            f"{where}.AdditionalModelDataSources[{index}].S3DataSource", extra.get("S3DataSource") or {}
        )


def referenced_artifacts(description: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(path, S3 URI) of every artifact the version references, in a stable order."""
    for index, container in enumerate(
        (description.get("InferenceSpecification") or {}).get("Containers") or []
    ):
        yield from _container_artifacts(f"InferenceSpecification.Containers[{index}]", container)
    for spec_index, spec in enumerate(description.get("AdditionalInferenceSpecifications") or []):
        for index, container in enumerate(spec.get("Containers") or []):
            yield from _container_artifacts(
                f"AdditionalInferenceSpecifications[{spec_index}].Containers[{index}]", container
            )
    for block in ("ModelMetrics", "DriftCheckBaselines"):
        for section, sources in sorted((description.get(block) or {}).items()):
            for name, source in sorted((sources or {}).items()):
                if isinstance(source, dict) and source.get("S3Uri"):
                    yield f"{block}.{section}.{name}.S3Uri", str(source["S3Uri"])
    if description.get("SamplePayloadUrl"):
        yield "SamplePayloadUrl", str(description["SamplePayloadUrl"])


def central_prefix(source: SourceVersion) -> str:
    """`<source account>/<group>/<version>/`: where the copies of one source version live."""
    return f"{source.account}/{source.group}/{source.version}/"


def plan_artifact_copies(source: SourceVersion) -> list[ArtifactReference]:
    """Every referenced artifact and its destination; one copy per distinct source object."""
    bucket = settings().require("artifact_bucket")
    prefix = central_prefix(source)
    planned: list[ArtifactReference] = []
    copies: dict[str, str] = {}
    used_keys: set[str] = set()
    for path, uri in referenced_artifacts(source.description):
        _split_s3_uri(uri)
        if uri not in copies:
            name = posixpath.basename(urlparse(uri).path) or "artifact"
            key = prefix + name
            if key in used_keys:
                # Two artifacts with one file name (two containers' model.tar.gz): keep both, apart.
                key = prefix + f"{len(used_keys)}-{name}"
            used_keys.add(key)
            copies[uri] = f"s3://{bucket}/{key}"
        planned.append(ArtifactReference(path, uri, copies[uri]))
    return planned


def _copy_one(source_uri: str, copy_uri: str, source: SourceVersion) -> dict[str, Any]:
    """Stream one object from the team's bucket (read as the member role) into the central bucket (written
    by this function), SSE-KMS under the backbone key; a copy already made of the same source object stays."""
    source_bucket, source_key = _split_s3_uri(source_uri)
    target_bucket, target_key = _split_s3_uri(copy_uri)
    kms_key = settings().require("kms_key_arn")
    source_s3 = session_for(source.account).client("s3", region_name=source.region)
    central_s3 = session_for(settings().require("governance_account_id")).client("s3")
    head = source_s3.head_object(Bucket=source_bucket, Key=source_key)
    source_etag = str(head.get("ETag", "")).strip('"')
    size = int(head.get("ContentLength", 0))
    try:
        existing = central_s3.head_object(Bucket=target_bucket, Key=target_key)
    except ClientError as error:
        if error.response["Error"]["Code"] not in {"404", "NoSuchKey", "NotFound"}:
            raise
        existing = None
    if (
        existing is not None
        and existing.get("Metadata", {}).get("source-etag") == source_etag
        and int(existing.get("ContentLength", -1)) == size
        and existing.get("SSEKMSKeyId") == kms_key
    ):
        return {
            "source": source_uri,
            "copy": copy_uri,
            "bytes": size,
            "source_etag": source_etag,
            "copied": False,
        }
    get_args: dict[str, Any] = {"Bucket": source_bucket, "Key": source_key}
    if head.get("VersionId") and head["VersionId"] != "null":
        # Pin the object version we looked at, so a concurrent overwrite cannot mix two objects.
        get_args["VersionId"] = head["VersionId"]
    body = source_s3.get_object(**get_args)["Body"]
    extra: dict[str, Any] = {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": kms_key,
        "Metadata": {
            "source-etag": source_etag,
            "source-account": source.account,
            "source-model-package-arn": source.arn[:1024],
        },
    }
    if head.get("ContentType"):
        extra["ContentType"] = head["ContentType"]
    # A managed transfer: multipart above the threshold, parts uploaded in parallel, retried per part.
    central_s3.upload_fileobj(body, target_bucket, target_key, ExtraArgs=extra, Config=ARTIFACT_TRANSFER)
    return {"source": source_uri, "copy": copy_uri, "bytes": size, "source_etag": source_etag, "copied": True}


def copy_artifacts(source: SourceVersion) -> list[dict[str, Any]]:
    """Copy every artifact of `source` into the central bucket; returns one record per reference."""
    done: dict[str, dict[str, Any]] = {}
    copies = []
    for reference in plan_artifact_copies(source):
        if reference.source_uri not in done:
            done[reference.source_uri] = _copy_one(reference.source_uri, reference.copy_uri, source)
        copies.append({"path": reference.path, **done[reference.source_uri]})
    return copies


# ------------------------------------------------------------------------------------ the replica index


def _replica_key(source_arn: str) -> dict[str, str]:
    return {"pk": f"model-replica#{source_arn}", "sk": "central-version"}


@dataclass(frozen=True)
class CentralVersion:
    """The central registry's copy of a source version."""

    arn: str
    group: str
    version: int

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CentralVersion:
        return cls(arn=payload["arn"], group=payload["group"], version=int(payload["version"]))


def _replica_item(source_arn: str) -> dict[str, Any]:
    return dict(state_table().get_item(Key=_replica_key(source_arn), ConsistentRead=True).get("Item") or {})


def replica_with_artifacts(source_arn: str) -> tuple[CentralVersion | None, list[dict[str, str]]]:
    """The central copy of `source_arn` and the source and copy of each artifact the index records for it,
    from one read of the index."""
    item = _replica_item(source_arn)
    return _registered(item), [{"source": a["source"], "copy": a["copy"]} for a in item.get("artifacts", [])]


def find_replica(source_arn: str) -> CentralVersion | None:
    """The central copy of `source_arn`, by one key lookup (never a scan of the group's versions)."""
    return _registered(_replica_item(source_arn))


def _registered(item: dict[str, Any]) -> CentralVersion | None:
    if item.get("status") != "registered":
        return None
    return CentralVersion(str(item["central_arn"]), str(item["central_group"]), int(item["central_version"]))


def remember_replica(source_arn: str, central: CentralVersion, artifacts: list[dict[str, Any]]) -> None:
    """Record a registration in the index unconditionally (used when the central version already exists)."""
    state_table().put_item(
        Item={
            **_replica_key(source_arn),
            "status": "registered",
            "source_arn": source_arn,
            "central_arn": central.arn,
            "central_group": central.group,
            "central_version": central.version,
            "artifacts": [{"source": a["source"], "copy": a["copy"]} for a in artifacts],
            "registered_at": int(time.time()),
        }
    )


def claim_backoff_seconds(attempt: int) -> int:
    """Bounded exponential backoff from POLL_BASE_SECONDS (10 s deployed; 1 s offline, scaled down again)."""
    return int(min(settings().poll_base_seconds * (2 ** min(attempt, 10)), MAX_CLAIM_WAIT_SECONDS))


def claim_replication(source: SourceVersion, *, owner: str, attempt: int, event_id: str) -> dict[str, Any]:
    """Take the right to register `source` (a conditional put: concurrent duplicates cannot both win).

    Returns `{"state": "claimed"}`, `{"state": "registered", "central": ...}` (an earlier delivery did it;
    the duplicate is ledgered `skipped`) or `{"state": "in-progress", "wait_seconds": n}` (wait, retry)."""
    if take_claim(
        _replica_key(source.arn),
        status="claimed",
        owner=owner,
        lease_seconds=CLAIM_LEASE_SECONDS,
        attributes={"source_arn": source.arn},
    ):
        return {"state": "claimed", "attempt": attempt, "wait_seconds": 0, "central": {}}
    item = _replica_item(source.arn)
    central = _registered(item)
    if central is not None:
        record(
            LedgerEntry(
                event_id=event_id,
                action="replicate_model",
                status="skipped",
                target=central.arn,
                flow=FLOW,
                account=source.account,
                detail={
                    "reason": "already replicated",
                    "source_model_package_arn": source.arn,
                    "central_model_package_arn": central.arn,
                    "artifacts": [dict(a) for a in item.get("artifacts", [])],
                },
            )
        )
        return {
            "state": "registered",
            "attempt": attempt,
            "wait_seconds": 0,
            "central": {**central.to_payload(), "replicated": False},
        }
    if attempt + 1 >= MAX_CLAIM_ATTEMPTS:
        raise ReplicationStillInProgress(
            f"{source.arn} is still being replicated by another execution after {attempt + 1} checks"
        )
    return {
        "state": "in-progress",
        "attempt": attempt + 1,
        "wait_seconds": claim_backoff_seconds(attempt),
        "central": {},
    }


def release_claim(source_arn: str, *, owner: str) -> bool:
    """Give up this execution's claim after a failure, so a retry or a redelivery can take it at once."""
    return claims.release_claim(_replica_key(source_arn), status="claimed", owner=owner)


# ------------------------------------------------------------------------------------ registration


def resolve_deployment_pipeline(source: SourceVersion, central_group: str) -> str:
    """The version's `deployment-pipeline` metadata, else its group's tag, else DEPLOYMENT_PIPELINE_MAP."""
    declared = source.metadata.get(PIPELINE_KEY, "").strip()
    if declared:
        return declared
    sagemaker = session_for(source.account).client("sagemaker", region_name=source.region)
    partition = source.arn.split(":", 2)[1]
    group_arn = (
        f"arn:{partition}:sagemaker:{source.region}:{source.account}:model-package-group/{source.group}"
    )
    try:
        tags = sagemaker_tags(sagemaker, group_arn)
    except ClientError:
        # Tags are optional context; a group without them (or without ListTags) still promotes.
        tags = []
    for tag in tags:
        if tag.get("Key") == TAG_DEPLOYMENT_PIPELINE and tag.get("Value"):
            return str(tag["Value"])
    return deployment_pipeline_map().get(central_group, "")


def deployment_pipeline_map() -> dict[str, str]:
    """DEPLOYMENT_PIPELINE_MAP (`central-group=pipeline,...`) as a dict."""
    mapping = {}
    for pair in settings().deployment_pipeline_map.split(","):
        group, sep, pipeline = pair.partition("=")
        if sep and group.strip() and pipeline.strip():
            mapping[group.strip()] = pipeline.strip()
    return mapping


def ensure_central_group(source: SourceVersion, central_group: str) -> str:
    """Create the central group when missing, tagged with owner team, source account and pipeline."""
    sagemaker = session_for(settings().require("governance_account_id")).client("sagemaker")
    tags = {
        TAG_OWNER_TEAM: source.metadata.get(OWNER_KEY, "").strip() or "unknown",
        TAG_SOURCE_ACCOUNT: source.account,
        TAG_SOURCE_GROUP: source.group,
    }
    pipeline = resolve_deployment_pipeline(source, central_group)
    if pipeline:
        tags[TAG_DEPLOYMENT_PIPELINE] = pipeline
    try:
        described = sagemaker.describe_model_package_group(ModelPackageGroupName=central_group)
    except ClientError as error:
        if "does not exist" not in str(error):
            raise
        described = None
    if described is None:
        try:
            created = str(
                sagemaker.create_model_package_group(
                    ModelPackageGroupName=central_group,
                    ModelPackageGroupDescription=(
                        f"Central replicas of {source.group} from account {source.account}"
                    )[:1024],
                    Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
                )["ModelPackageGroupArn"]
            )
        except ClientError as error:
            # Two source versions of one group may race to create it; the loser uses the winner's.
            if "already exists" not in str(error):
                raise
            described = sagemaker.describe_model_package_group(ModelPackageGroupName=central_group)
        else:
            share_with_deployment_accounts(sagemaker, central_group, created)
            return created
    group_arn = str(described["ModelPackageGroupArn"])
    present_tags = {
        str(tag["Key"]): str(tag.get("Value", "")) for tag in sagemaker_tags(sagemaker, group_arn)
    }
    _refuse_a_group_of_another_source(central_group, present_tags, source)
    present = set(present_tags)
    # Only missing tags are added: a platform owner may have changed the pipeline tag on purpose.
    missing = [{"Key": key, "Value": value} for key, value in tags.items() if key not in present]
    if missing:
        sagemaker.add_tags(ResourceArn=group_arn, Tags=missing)
    share_with_deployment_accounts(sagemaker, central_group, group_arn)
    return group_arn


# What a deployment account may do with the central versions: read them and create a model from one.
DEPLOYMENT_ACCOUNT_ACTIONS = (
    "sagemaker:DescribeModelPackageGroup",
    "sagemaker:DescribeModelPackage",
    "sagemaker:ListModelPackages",
    "sagemaker:CreateModel",
)


DEPLOYMENT_STATEMENT_SID = "DeploymentAccountsReadCentralVersions"


def deployment_statement(group_arn: str, accounts: list[str]) -> dict[str, Any]:
    """The statement of the central group's resource policy that lets the deployment accounts
    (DeploymentAccountIds) read its versions, as a pipeline deploying into team test and prod accounts
    needs; nothing more."""
    partition = group_arn.split(":")[1]
    return {
        "Sid": DEPLOYMENT_STATEMENT_SID,
        "Effect": "Allow",
        "Principal": {"AWS": [f"arn:{partition}:iam::{account}:root" for account in accounts]},
        "Action": list(DEPLOYMENT_ACCOUNT_ACTIONS),
        "Resource": [group_arn, group_arn.replace(":model-package-group/", ":model-package/") + "/*"],
    }


def share_with_deployment_accounts(sagemaker: Any, central_group: str, group_arn: str = "") -> None:
    """Keep the backbone's statement of the group's resource policy as DEPLOYMENT_ACCOUNT_IDS says, at every
    promotion into the group and every deployment from it: a group made before the accounts were named,
    or a list changed since, is brought up to date. Other statements (put by hand) stay. With no accounts
    named, the policy is left as it is."""
    accounts = comma_list(settings().deployment_account_ids)
    if not accounts:
        return
    if not group_arn:
        group_arn = str(
            sagemaker.describe_model_package_group(ModelPackageGroupName=central_group)[
                "ModelPackageGroupArn"
            ]
        )
    try:
        current = json.loads(
            sagemaker.get_model_package_group_policy(ModelPackageGroupName=central_group)["ResourcePolicy"]
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("ValidationException", "ResourceNotFound"):
            raise
        current = {"Version": "2012-10-17", "Statement": []}
    others = [s for s in current.get("Statement", []) if s.get("Sid") != DEPLOYMENT_STATEMENT_SID]
    wanted = {**current, "Statement": [*others, deployment_statement(group_arn, accounts)]}
    if wanted != current:
        sagemaker.put_model_package_group_policy(
            ModelPackageGroupName=central_group, ResourcePolicy=json.dumps(wanted)
        )


def _refuse_a_group_of_another_source(
    central_group: str, tags: dict[str, str], source: SourceVersion
) -> None:
    """A central group's tags say whose replicas it holds, and its deployment pipeline is that team's: a
    version of another source group must never be registered (and so deployed) there."""
    # A tag that is missing or empty says nothing (a group made by hand): the promotion adds it below.
    owner = (tags.get(TAG_SOURCE_ACCOUNT) or source.account, tags.get(TAG_SOURCE_GROUP) or source.group)
    if owner != (source.account, source.group):
        raise CentralGroupConflict(
            f"central group {central_group} holds the replicas of {owner[1]} from account {owner[0]}, "
            f"not of {source.group} from account {source.account}; {source.arn} was not registered"
        )


def _without(block: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in block.items() if name != key}


def _rewritten(description: dict[str, Any], copies: dict[str, str]) -> dict[str, Any]:
    """The parts of the source description the central version takes, with S3 URIs pointing at the copies."""

    def swap(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: swap(item) for key, item in value.items()}
        if isinstance(value, list):
            return [swap(item) for item in value]
        if isinstance(value, str) and value in copies:
            return copies[value]
        return value

    def without_source_etags(spec: dict[str, Any]) -> dict[str, Any]:
        # ETags describe the source objects; each copy is verified by its own metadata instead.
        containers = []
        for container in spec.get("Containers", []):
            kept = _without(container, "ModelDataETag")
            if kept.get("AdditionalS3DataSource"):
                kept["AdditionalS3DataSource"] = _without(kept["AdditionalS3DataSource"], "ETag")
            if kept.get("AdditionalModelDataSources"):
                kept["AdditionalModelDataSources"] = [
                    {**extra, "S3DataSource": _without(extra.get("S3DataSource") or {}, "ETag")}
                    for extra in kept["AdditionalModelDataSources"]
                ]
            containers.append(kept)
        return {**spec, "Containers": containers}

    taken: dict[str, Any] = {}
    if description.get("InferenceSpecification"):
        taken["InferenceSpecification"] = swap(without_source_etags(description["InferenceSpecification"]))
    if description.get("AdditionalInferenceSpecifications"):
        taken["AdditionalInferenceSpecifications"] = [
            swap(without_source_etags(spec)) for spec in description["AdditionalInferenceSpecifications"]
        ]
    for key in ("ModelMetrics", "DriftCheckBaselines", "SamplePayloadUrl"):
        if description.get(key):
            taken[key] = swap(description[key])
    for key in ("MetadataProperties", "Domain", "Task"):
        if description.get(key):
            taken[key] = description[key]
    return taken


def lineage_metadata(source: SourceVersion) -> dict[str, str]:
    """The team's metadata plus where the version came from (source ARN, account, version)."""
    return {
        **source.metadata,
        LINEAGE_SOURCE_ARN: source.arn,
        LINEAGE_SOURCE_ACCOUNT: source.account,
        LINEAGE_SOURCE_VERSION: str(source.version),
    }


def register_central_version(
    source: SourceVersion, artifacts: list[dict[str, Any]], *, owner: str, event_id: str
) -> CentralVersion:
    """Create the central version (PendingManualApproval) once, under this execution's claim, and index it."""
    already = _registered(_replica_item(source.arn))
    if already is not None:
        # A retried step (the first attempt registered, then its response was lost): nothing to add.
        return already
    central_group = central_group_name(source.account, source.group)
    ensure_central_group(source, central_group)
    copies = {artifact["source"]: artifact["copy"] for artifact in artifacts}
    sagemaker = session_for(settings().require("governance_account_id")).client("sagemaker")
    response = sagemaker.create_model_package(
        ModelPackageGroupName=central_group,
        ModelPackageDescription=(
            f"Replica of {source.arn}, approved in account {source.account}; "
            "artifacts copied to the central bucket."
        )[:1024],
        ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties=lineage_metadata(source),
        # Same token for the same source version: SageMaker itself refuses to register it twice.
        ClientToken=str(uuid.uuid5(uuid.NAMESPACE_URL, source.arn)),
        **_rewritten(source.description, copies),
    )
    central_arn = str(response["ModelPackageArn"])
    central = CentralVersion(central_arn, central_group, int(central_arn.rsplit("/", 1)[1]))
    try:
        state_table().update_item(
            Key=_replica_key(source.arn),
            UpdateExpression=(
                "SET #status = :registered, central_arn = :arn, central_group = :group, "
                "central_version = :version, artifacts = :artifacts, registered_at = :now"
            ),
            ConditionExpression="#status = :claimed AND #owner = :me",
            ExpressionAttributeNames={"#status": "status", "#owner": "owner"},
            ExpressionAttributeValues={
                ":registered": "registered",
                ":claimed": "claimed",
                ":me": owner,
                ":arn": central.arn,
                ":group": central.group,
                ":version": central.version,
                ":artifacts": [{"source": a["source"], "copy": a["copy"]} for a in artifacts],
                ":now": int(time.time()),
            },
        )
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            raise ReplicaIndexConflict(
                f"the claim on {source.arn} was taken over while {central.arn} was being registered"
            ) from error
        raise
    record(
        LedgerEntry(
            event_id=event_id,
            action="replicate_model",
            status="done",
            target=central.arn,
            flow=FLOW,
            account=source.account,
            detail={
                "source_model_package_arn": source.arn,
                "central_model_package_arn": central.arn,
                "central_group": central.group,
                "central_version": central.version,
                "artifacts": [
                    {"source": a["source"], "copy": a["copy"], "bytes": a["bytes"]} for a in artifacts
                ],
            },
        )
    )
    return central


def describe_central_version(central_arn: str) -> dict[str, Any]:
    """The central version as the central registry describes it (JSON-safe)."""
    sagemaker = session_for(settings().require("governance_account_id")).client("sagemaker")
    return dict(_json_safe(sagemaker.describe_model_package(ModelPackageName=central_arn)))


def announcement_marker(central_arn: str) -> str:
    """The state table's once-marker of the "pending central approval" notice for a central version."""
    return f"model-replicated#{central_arn}"


def announce_replication(
    source: SourceVersion, central: CentralVersion, card: dict[str, Any], *, event_id: str
) -> dict[str, Any]:
    """Tell the ML-governance topic a version waits for central approval - once per central version, however
    many deliveries (or retries) reach this step; the first to mark the replica index announces."""
    marker = announcement_marker(central.arn)
    if not once(marker):
        return {"notified": False}
    subject = (
        f"Replicated {source.group} v{source.version} from {source.account} as {central.group} "
        f"v{central.version}: pending central approval"
    )
    with forgotten_on_failure(marker):
        message_id = notify(
            "ml-governance",
            subject,
            {
                "source_model_package_arn": source.arn,
                "central_model_package_arn": central.arn,
                "model_card": card.get("name", ""),
                "owner": source.metadata.get(OWNER_KEY, ""),
                "next_step": "review the model card, then approve or reject the version centrally",
            },
            severity="INFO",
            account=source.account,
            kind="model-replicated",
            event_id=event_id,
            flow=FLOW,
        )
    return {"notified": True, "message_id": message_id}
