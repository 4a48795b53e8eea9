"""The SageMaker Model Card of a central model version: built from the registry, written, then updated."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from governance.ledger import LedgerEntry, record
from governance.naming import model_card_name
from governance.sessions import session_for
from governance.settings import settings

CARD_STATUS_PENDING_REVIEW = "PendingReview"
RISK_RATINGS = {"high": "High", "medium": "Medium", "low": "Low", "unknown": "Unknown"}

# Limits of the model card JSON schema and the CreateModelCard API.
_CONTENT_LIMIT = 100_000
_TEXT_1K = 1024
_TEXT_2K = 2048
_LIST_LIMIT = 15
_NAME_LIMIT = 63
_METRICS_PER_GROUP = 50
_CHART_POINTS = 20
_REPORT_BYTES = 1024 * 1024

# custom_details keys written by the deployment flow; a re-run of the promotion keeps them.
DEPLOYMENT_DETAIL_PREFIXES = ("deployment_", "decision_")
# model_package_details fields the deployment flow writes (the central decision), kept from the card.
DECISION_PACKAGE_FIELDS = ("model_approval_status", "approval_description")
CARD_STATUS_ARCHIVED = "Archived"
ARCHIVED_NOTE = "the card is Archived (no more updates are to be made to it); the new content was not written"


class ModelCardConflict(ValueError):
    """A card by this version's card name documents another model package version."""


def _text(value: Any, limit: int = _TEXT_1K) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _governance_sagemaker() -> Any:
    return session_for(settings().require("governance_account_id")).client("sagemaker")


# ------------------------------------------------------------------------------------ metrics reports


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _downsample(points: list[Any], limit: int = _CHART_POINTS) -> list[Any]:
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(index * step)] for index in range(limit)]


def _metric(name: str, value: Any) -> dict[str, Any] | None:
    """One model card metric from one entry of a SageMaker evaluation / model-quality report, or None."""
    metric_name = _text(name, 255)
    notes = ""
    if isinstance(value, dict) and "value" in value:
        if _number(value.get("standard_deviation")):
            notes = f"standard deviation {value['standard_deviation']}"
        value = value["value"]
    if isinstance(value, bool):
        return {"name": metric_name, "type": "boolean", "value": value}
    if _number(value):
        metric = {"name": metric_name, "type": "number", "value": value}
        return {**metric, "notes": notes} if notes else metric
    if isinstance(value, str):
        return {"name": metric_name, "type": "string", "value": _text(value, _NAME_LIMIT)}
    if isinstance(value, list) and value and all(_number(item) for item in value):
        return {"name": metric_name, "type": "bar_chart", "value": _downsample(value)}
    if (
        isinstance(value, dict)
        and value
        and all(isinstance(row, dict) for row in value.values())
        and set(value) == {key for row in value.values() for key in row}
    ):
        # A confusion matrix as SageMaker Model Monitor writes it: {"actual": {"predicted": count}}, the same
        # labels on both axes.
        labels = sorted(value)[:_CHART_POINTS]
        rows = [[value.get(actual, {}).get(predicted, 0) for predicted in labels] for actual in labels]
        if all(_number(cell) for row in rows for cell in row):
            return {
                "name": metric_name,
                "type": "matrix",
                "value": rows,
                "x_axis_name": [_text(label, _NAME_LIMIT) for label in labels],
                "y_axis_name": [_text(label, _NAME_LIMIT) for label in labels],
            }
    if isinstance(value, dict):
        # A curve as two lists, e.g. {"false_positive_rates": [...], "true_positive_rates": [...]}.
        lists = [(key, item) for key, item in value.items() if isinstance(item, list)]
        if len(lists) == 2 and all(_number(point) for _, series in lists for point in series):
            (x_name, xs), (y_name, ys) = lists
            points = [[x, y] for x, y in zip(xs, ys, strict=False)]
            if points:
                return {
                    "name": metric_name,
                    "type": "linear_graph",
                    "value": _downsample(points),
                    "x_axis_name": _text(x_name, _NAME_LIMIT),
                    "y_axis_name": _text(y_name, _NAME_LIMIT),
                }
    return None


def metric_groups_from_report(report: Any) -> list[dict[str, Any]]:
    """Model card metric groups from a SageMaker evaluation or model-quality report, such as
    `{"binary_classification_metrics": {"auc": {"value": 0.9}}}`; loose top-level scalars go into a group
    named `metrics`."""
    if not isinstance(report, dict):
        return []
    groups = []
    loose = []
    for group_name, metrics in report.items():
        if isinstance(metrics, dict) and not ("value" in metrics and len(metrics) <= 2):
            data = [m for m in (_metric(str(k), v) for k, v in metrics.items()) if m]
            if data:
                groups.append(
                    {"name": _text(group_name, _NAME_LIMIT), "metric_data": data[:_METRICS_PER_GROUP]}
                )
        else:
            metric = _metric(str(group_name), metrics)
            if metric:
                loose.append(metric)
    if loose:
        groups.append({"name": "metrics", "metric_data": loose[:_METRICS_PER_GROUP]})
    return groups


def read_report(uri: str) -> tuple[Any, str]:
    """(parsed JSON or None, a problem in one line or "") for a metrics report in the central bucket."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3":
        return None, f"not an S3 URI: {uri}"
    s3 = session_for(settings().require("governance_account_id")).client("s3")
    try:
        body = s3.get_object(
            Bucket=parsed.netloc, Key=parsed.path.lstrip("/"), Range=f"bytes=0-{_REPORT_BYTES - 1}"
        )
        raw = body["Body"].read()
    except ClientError as error:
        return None, f"report not readable ({error.response['Error']['Code']})"
    try:
        return json.loads(raw), ""
    except (ValueError, UnicodeDecodeError):
        return None, "report is not JSON (or larger than 1 MiB)"


# ------------------------------------------------------------------------------------ content


def _evaluation_details(description: dict[str, Any]) -> list[dict[str, Any]]:
    details = []
    for section, sources in sorted((description.get("ModelMetrics") or {}).items()):
        for name, source in sorted((sources or {}).items()):
            if not isinstance(source, dict) or not source.get("S3Uri"):
                continue
            report, problem = read_report(str(source["S3Uri"]))
            groups = metric_groups_from_report(report) if report is not None else []
            observation = problem or (
                f"{sum(len(g['metric_data']) for g in groups)} metrics read from the {section} {name} report"
                if groups
                else f"the {section} {name} report holds no metric the model card schema can show"
            )
            details.append(
                {
                    "name": _text(f"{section} {name}", _NAME_LIMIT),
                    "evaluation_observation": _text(observation, 2096),
                    "metadata": {
                        "report": _text(source["S3Uri"]),
                        "content_type": _text(source.get("ContentType", "")),
                    },
                    "metric_groups": groups,
                }
            )
    return details


def build_card_content(description: dict[str, Any]) -> dict[str, Any]:
    """Model card content for a central version (DescribeModelPackage output), valid against the model card
    JSON schema: overview, intended uses with risk rating, training and evaluation details, lineage."""
    metadata: dict[str, str] = dict(description.get("CustomerMetadataProperties") or {})
    containers = (description.get("InferenceSpecification") or {}).get("Containers") or []
    arn = str(description["ModelPackageArn"])
    group = str(description.get("ModelPackageGroupName", ""))
    version = int(description.get("ModelPackageVersion") or arn.rsplit("/", 1)[1])
    source_arn = metadata.get("source-model-package-arn", "")
    source_account = metadata.get("source-account", "")
    owner = metadata.get("owner", "")
    use_case = metadata.get("use-case", "")
    raw_rating = metadata.get("risk-rating", "").strip()
    generated_by = str((description.get("MetadataProperties") or {}).get("GeneratedBy", ""))

    overview: dict[str, Any] = {
        "model_description": _text(
            description.get("ModelPackageDescription")
            or f"{group} version {version} in the central model registry"
        ),
        "model_id": arn,
        "model_name": _text(group),
        "model_version": version,
        "model_artifact": [_text(c["ModelDataUrl"]) for c in containers if c.get("ModelDataUrl")][
            :_LIST_LIMIT
        ],
        "inference_environment": {
            "container_image": [_text(c["Image"]) for c in containers if c.get("Image")][:_LIST_LIMIT]
        },
    }
    if owner:
        overview["model_owner"] = _text(owner)
    if source_account:
        overview["model_creator"] = _text(f"team account {source_account}")
    for key, field in (("problem-type", "problem_type"), ("algorithm", "algorithm_type")):
        if metadata.get(key):
            overview[field] = _text(metadata[key])

    intended: dict[str, Any] = {"risk_rating": RISK_RATINGS.get(raw_rating.lower(), "Unknown")}
    if use_case:
        intended["purpose_of_model"] = _text(use_case, _TEXT_2K)
    intended["intended_uses"] = _text(metadata.get("intended-uses") or use_case or "not declared", _TEXT_2K)
    intended["explanations_for_risk_rating"] = _text(
        metadata.get("risk-rating-explanation")
        or (
            f"risk-rating '{raw_rating}' declared by {owner or 'the owning team'} in the source registry"
            if raw_rating
            else "no risk-rating declared in the source registry"
        ),
        _TEXT_2K,
    )

    training: dict[str, Any] = {
        "training_observations": _text(
            f"Trained by {generated_by}."
            if generated_by
            else "The source registry records no training provenance."
        )
    }
    if ":training-job/" in generated_by:
        training["training_job_details"] = {"training_arn": _text(generated_by)}

    custom = {
        "source_model_package_arn": source_arn,
        "source_account": source_account,
        "source_version": metadata.get("source-version", ""),
        "central_model_package_arn": arn,
        "replicated_by": "ml-governance backbone (model promotion)",
    }
    content: dict[str, Any] = {
        "model_overview": overview,
        "intended_uses": intended,
        "training_details": training,
        "evaluation_details": _evaluation_details(description),
        "additional_information": {
            "caveats_and_recommendations": _text(
                "Deploy only this exact version, through the central registry's approval and the group's "
                "deployment pipeline. The artifacts are copies in the central bucket; the lineage keys below "
                "name the team's original.",
                _TEXT_2K,
            ),
            "custom_details": {key: _text(value) for key, value in custom.items() if value},
        },
        "model_package_details": _package_details(description),
    }
    return _fit(content)


def _package_details(description: dict[str, Any]) -> dict[str, Any]:
    containers = (description.get("InferenceSpecification") or {}).get("Containers") or []
    details: dict[str, Any] = {
        "model_package_arn": str(description["ModelPackageArn"]),
        "model_package_group_name": str(description.get("ModelPackageGroupName", ""))[:_NAME_LIMIT],
        "model_package_version": int(
            description.get("ModelPackageVersion") or str(description["ModelPackageArn"]).rsplit("/", 1)[1]
        ),
        "model_approval_status": str(description.get("ModelApprovalStatus") or "PendingManualApproval"),
    }
    status = description.get("ModelPackageStatus")
    if status in {"Pending", "InProgress", "Completed", "Failed", "Deleting"}:
        details["model_package_status"] = status
    if description.get("ModelPackageDescription"):
        details["model_package_description"] = _text(description["ModelPackageDescription"])
    if description.get("ApprovalDescription"):
        details["approval_description"] = _text(description["ApprovalDescription"])
    for key, field in (("Domain", "domain"), ("Task", "task")):
        if description.get(key):
            details[field] = str(description[key])
    if containers:
        details["inference_specification"] = {
            "containers": [
                {
                    "image": _text(c.get("Image", ""), 255),
                    **({"model_data_url": _text(c["ModelDataUrl"])} if c.get("ModelDataUrl") else {}),
                }
                for c in containers[:_LIST_LIMIT]
            ]
        }
    return details


def _fit(content: dict[str, Any]) -> dict[str, Any]:
    """Keep the serialized content under the API's 100,000 characters by dropping the longest metric lists."""
    while len(json.dumps(content)) > _CONTENT_LIMIT:
        groups = [g for e in content.get("evaluation_details", []) for g in e.get("metric_groups", [])]
        longest = max(groups, key=lambda g: len(json.dumps(g)), default=None)
        if longest is None or len(longest["metric_data"]) <= 1:
            break
        longest["metric_data"] = longest["metric_data"][: len(longest["metric_data"]) // 2]
    return content


def merge_promotion_content(existing: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """The promotion's sections from `fresh`, and what the deployment flow wrote from `existing`."""
    merged = json.loads(json.dumps(fresh))
    kept = {
        key: value
        for key, value in ((existing.get("additional_information") or {}).get("custom_details") or {}).items()
        if key.startswith(DEPLOYMENT_DETAIL_PREFIXES)
    }
    merged.setdefault("additional_information", {}).setdefault("custom_details", {}).update(kept)
    # The central decision is the deployment flow's to write: the registry's current approval (which a
    # redelivered team event reads again) is never new promotion content, whether the card holds it or not.
    old_package = existing.get("model_package_details") or {}
    package = merged.setdefault("model_package_details", {})
    for key in DECISION_PACKAGE_FIELDS:
        if key in old_package:
            package[key] = old_package[key]
        else:
            package.pop(key, None)
    return merged


# ------------------------------------------------------------------------------------ the card itself


def card_name_of(description: dict[str, Any]) -> str:
    arn = str(description["ModelPackageArn"])
    group = str(description.get("ModelPackageGroupName") or arn.split("/")[-2])
    return model_card_name(group, int(description.get("ModelPackageVersion") or arn.rsplit("/", 1)[1]))


def describe_card(name: str) -> dict[str, Any] | None:
    """The latest version of a card, or None when there is no card by that name."""
    try:
        return dict(_governance_sagemaker().describe_model_card(ModelCardName=name))
    except ClientError as error:
        if error.response["Error"]["Code"] in {"ResourceNotFound", "ResourceNotFoundException"}:
            return None
        raise


def _refuse_a_card_of_another_version(existing: dict[str, Any], description: dict[str, Any]) -> None:
    """Two versions must never share a card: writing one's content over the other's would lose a review."""
    wanted = str(description["ModelPackageArn"])
    try:
        content = json.loads(existing.get("Content") or "{}")
    except ValueError:
        content = {}
    documented = str((content.get("model_package_details") or {}).get("model_package_arn") or "")
    if documented and documented != wanted:
        raise ModelCardConflict(
            f"model card {existing.get('ModelCardName', '?')} documents {documented}, not {wanted}; "
            "it was left as it is"
        )


def write_model_card(
    description: dict[str, Any], *, event_id: str, flow: str, account: str
) -> dict[str, Any]:
    """Create the card of a central version (PendingReview), or update it when the promotion's own content
    changed (which needs a new review); a re-run with nothing new keeps the card and its review status and
    is ledgered `skipped`, as is new content for an Archived card. Returns name, ARN and the change
    (created, updated, unchanged, archived)."""
    name = card_name_of(description)
    fresh = build_card_content(description)
    sagemaker = _governance_sagemaker()
    existing = describe_card(name)
    change = "created"
    if existing is None:
        tags = [
            {"Key": "governance:model-package-arn", "Value": str(description["ModelPackageArn"])[:256]},
            {"Key": "governance:flow", "Value": flow},
        ]
        try:
            arn = str(
                sagemaker.create_model_card(
                    ModelCardName=name,
                    Content=json.dumps(fresh, sort_keys=True),
                    ModelCardStatus=CARD_STATUS_PENDING_REVIEW,
                    SecurityConfig={"KmsKeyId": settings().require("kms_key_arn")},
                    Tags=tags,
                )["ModelCardArn"]
            )
        except ClientError as error:
            # A concurrent duplicate created it first: fall through and compare with its content.
            if error.response["Error"]["Code"] != "ConflictException":
                raise
            existing = describe_card(name)
            if existing is None:
                raise
    if existing is not None:
        _refuse_a_card_of_another_version(existing, description)
        arn = str(existing["ModelCardArn"])
        current = json.loads(existing.get("Content") or "{}")
        merged = merge_promotion_content(current, fresh)
        if merged == current:
            change = "unchanged"
        elif existing.get("ModelCardStatus") == CARD_STATUS_ARCHIVED:
            # SageMaker: no more updates should be made to an archived card; whoever archived it meant it so.
            change = "archived"
        else:
            change = "updated"
            sagemaker.update_model_card(ModelCardName=name, Content=json.dumps(merged, sort_keys=True))
            # Content the promotion changed needs a new review. SageMaker takes the content and the status
            # in two calls: it refuses an UpdateModelCard that carries both.
            if existing.get("ModelCardStatus") != CARD_STATUS_PENDING_REVIEW:
                sagemaker.update_model_card(ModelCardName=name, ModelCardStatus=CARD_STATUS_PENDING_REVIEW)
    record(
        LedgerEntry(
            event_id=event_id,
            action="write_model_card",
            status="skipped" if change in ("unchanged", "archived") else "done",
            target=arn,
            flow=flow,
            account=account,
            detail={
                "model_card": name,
                "change": change,
                "model_package_arn": str(description["ModelPackageArn"]),
                **({"note": ARCHIVED_NOTE} if change == "archived" else {}),
            },
        )
    )
    return {"name": name, "arn": arn, "change": change}


def update_card_content(name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply `change` to the card's content and save it as a new card version when anything changed;
    the card keeps its review status. An Archived card is left as it is (`archived` in the answer), as
    the promotion leaves it: SageMaker says no more updates should be made to one."""
    existing = describe_card(name)
    if existing is None:
        raise LookupError(f"model card {name} does not exist")
    if existing.get("ModelCardStatus") == CARD_STATUS_ARCHIVED:
        return {"name": name, "arn": str(existing["ModelCardArn"]), "changed": False, "archived": True}
    current = json.loads(existing.get("Content") or "{}")
    updated = json.loads(json.dumps(current))
    change(updated)
    changed = updated != current
    if changed:
        # Content only: the status stays as it is (SageMaker refuses a call that updates both).
        _governance_sagemaker().update_model_card(
            ModelCardName=name, Content=json.dumps(_fit(updated), sort_keys=True)
        )
    return {"name": name, "arn": str(existing["ModelCardArn"]), "changed": changed, "archived": False}


def set_custom_details(content: dict[str, Any], details: dict[str, Any]) -> None:
    """Write `details` (keys like `deployment_status`) into additional_information.custom_details."""
    custom = content.setdefault("additional_information", {}).setdefault("custom_details", {})
    for key, value in details.items():
        if value is not None and value != "":
            custom[key] = _text(value)


def ensure_card(description: dict[str, Any], *, event_id: str, flow: str, account: str) -> dict[str, Any]:
    """The card of a central version, written now if the version reached the registry another way."""
    existing = describe_card(card_name_of(description))
    if existing is not None:
        _refuse_a_card_of_another_version(existing, description)
        return {
            "name": str(existing["ModelCardName"]),
            "arn": str(existing["ModelCardArn"]),
            "change": "unchanged",
        }
    return write_model_card(description, event_id=event_id, flow=flow, account=account)
