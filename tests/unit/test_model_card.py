"""Model cards on plain moto: content valid against the SageMaker model card JSON schema, written once,
updated (not duplicated) on a re-run, linked to the central version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest

from governance import model_card, promotion
from governance.ledger import entries_for_event
from governance.naming import central_group_name, model_card_name
from tests.unit.test_promotion import BUCKET, TEAM, Backbone, provision_backbone, seeded_source

SCHEMA = json.loads((Path(__file__).parents[1] / "schemas" / "model_card.schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


@pytest.fixture
def backbone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Backbone]:
    yield from provision_backbone(monkeypatch)


@pytest.fixture
def central(backbone: Backbone) -> dict[str, Any]:
    """A central version replicated from the team sample (artifacts copied, lineage set), described."""
    _, source = seeded_source(backbone)
    promotion.claim_replication(source, owner="x", attempt=0, event_id="promotion")
    version = promotion.register_central_version(
        source, promotion.copy_artifacts(source), owner="x", event_id="promotion"
    )
    return promotion.describe_central_version(version.arn)


def errors(content: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in VALIDATOR.iter_errors(content)]


def card(name: str) -> dict[str, Any]:
    return dict(boto3.client("sagemaker").describe_model_card(ModelCardName=name))


def versions(name: str) -> list[int]:
    listed = boto3.client("sagemaker").list_model_card_versions(ModelCardName=name)[
        "ModelCardVersionSummaryList"
    ]
    return [item["ModelCardVersion"] for item in listed]


def test_the_kept_schema_is_a_valid_draft_7_schema_that_rejects_unknown_sections() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert errors({"model_overview": {"model_name": "x"}}) == []
    assert errors({"deployment": {}}), "additionalProperties is false at the top"
    assert errors({"intended_uses": {"risk_rating": "Severe"}}), "risk ratings are an enum"


def test_the_content_of_a_central_version_validates_and_says_what_the_issue_asks(
    central: dict[str, Any],
) -> None:
    content = model_card.build_card_content(central)

    assert errors(content) == []
    overview = content["model_overview"]
    assert overview["model_id"] == central["ModelPackageArn"]
    assert overview["model_owner"] == "team-churn"
    assert overview["model_artifact"] == [f"s3://{BUCKET}/{TEAM}/churn-prediction/3/model.tar.gz"]
    uses = content["intended_uses"]
    assert uses["risk_rating"] == "Medium"
    assert uses["purpose_of_model"] == "customer churn prediction"
    assert "pipeline/churn-prediction-train" in content["training_details"]["training_observations"]
    [evaluation] = content["evaluation_details"]
    assert evaluation["metadata"]["report"] == f"s3://{BUCKET}/{TEAM}/churn-prediction/3/evaluation.json"
    [group] = evaluation["metric_groups"]
    metrics = {metric["name"]: metric for metric in group["metric_data"]}
    assert metrics["accuracy"]["type"] == "number" and 0.8 <= metrics["accuracy"]["value"] <= 0.9
    assert metrics["confusion_matrix"]["type"] == "matrix"
    lineage = content["additional_information"]["custom_details"]
    assert (
        lineage["source_model_package_arn"]
        == f"arn:aws:sagemaker:us-east-1:{TEAM}:model-package/churn-prediction/3"
    )
    assert lineage["source_account"] == TEAM and lineage["source_version"] == "3"
    package = content["model_package_details"]
    assert package["model_package_arn"] == central["ModelPackageArn"]
    assert package["model_approval_status"] == "PendingManualApproval"


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (
            {"regression_metrics": {"mse": {"value": 4.6, "standard_deviation": 2.2}}},
            [("mse", "number", 4.6)],
        ),
        (
            {"checks": {"passed": True, "label": "gold"}},
            [("passed", "boolean", True), ("label", "string", "gold")],
        ),
        ({"auc": {"value": 0.91}, "rows": 1200}, [("auc", "number", 0.91), ("rows", "number", 1200)]),
        ({"m": {"per_class_recall": [0.7, 0.8, 0.9]}}, [("per_class_recall", "bar_chart", [0.7, 0.8, 0.9])]),
        (
            {"m": {"roc": {"false_positive_rates": [0.0, 0.5, 1.0], "true_positive_rates": [0.0, 0.8, 1.0]}}},
            [("roc", "linear_graph", [[0.0, 0.0], [0.5, 0.8], [1.0, 1.0]])],
        ),
        ({"m": {"nan": float("nan"), "nested": {"deeper": {"x": 1}}}}, []),
    ],
)
def test_metrics_reports_become_schema_valid_metric_groups(
    report: dict[str, Any], expected: list[Any]
) -> None:
    groups = model_card.metric_groups_from_report(report)

    found = [(m["name"], m["type"], m["value"]) for g in groups for m in g["metric_data"]]
    assert found == expected
    assert errors({"evaluation_details": [{"name": "report", "metric_groups": groups}]}) == []


def test_a_report_that_cannot_be_read_is_said_so_on_a_card_that_still_validates(
    central: dict[str, Any],
) -> None:
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key=f"{TEAM}/churn-prediction/3/evaluation.json", Body=b"not json"
    )

    content = model_card.build_card_content(central)

    [evaluation] = content["evaluation_details"]
    assert "not JSON" in evaluation["evaluation_observation"]
    assert evaluation["metric_groups"] == []
    assert errors(content) == []


def test_an_oversized_report_is_trimmed_under_the_api_limit(central: dict[str, Any]) -> None:
    report = {f"group_{g}": {f"metric_{m}_{'x' * 200}": m / 3 for m in range(50)} for g in range(20)}
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key=f"{TEAM}/churn-prediction/3/evaluation.json", Body=json.dumps(report).encode()
    )

    content = model_card.build_card_content(central)

    assert len(json.dumps(content)) <= 100_000
    assert errors(content) == []


def test_the_card_is_created_pending_review_encrypted_and_linked(
    backbone: Backbone, central: dict[str, Any]
) -> None:
    written = model_card.write_model_card(central, event_id="event-1", flow="model-promotion", account=TEAM)

    assert written["name"] == "210987654321-churn-prediction-v1" and written["change"] == "created"
    described = card(written["name"])
    assert described["ModelCardStatus"] == "PendingReview"
    assert described["SecurityConfig"] == {"KmsKeyId": backbone.key_arn}
    content = json.loads(described["Content"])
    assert errors(content) == []
    assert content["model_package_details"]["model_package_arn"] == central["ModelPackageArn"]
    [entry] = entries_for_event("event-1")
    assert (entry.action, entry.status, entry.target) == (
        "write_model_card",
        "done",
        described["ModelCardArn"],
    )


def test_a_rerun_with_nothing_new_changes_nothing_and_is_skipped(central: dict[str, Any]) -> None:
    name = model_card.write_model_card(central, event_id="event-1", flow="model-promotion", account=TEAM)[
        "name"
    ]

    again = model_card.write_model_card(central, event_id="event-2", flow="model-promotion", account=TEAM)

    assert again["change"] == "unchanged"
    assert versions(name) == [1]
    assert len(boto3.client("sagemaker").list_model_cards()["ModelCardSummaries"]) == 1
    [entry] = entries_for_event("event-2")
    assert (entry.action, entry.status) == ("write_model_card", "skipped")


def test_a_rerun_with_new_content_updates_the_card_and_keeps_what_the_deployment_wrote(
    central: dict[str, Any],
) -> None:
    name = model_card.write_model_card(central, event_id="event-1", flow="model-promotion", account=TEAM)[
        "name"
    ]
    model_card.update_card_content(
        name,
        lambda content: model_card.set_custom_details(
            content, {"deployment_status": "Succeeded", "deployment_execution_id": "exec-1"}
        ),
    )
    changed = {
        **central,
        "CustomerMetadataProperties": {**central["CustomerMetadataProperties"], "risk-rating": "high"},
    }

    updated = model_card.write_model_card(changed, event_id="event-2", flow="model-promotion", account=TEAM)

    assert updated["change"] == "updated"
    assert versions(name) == [1, 2, 3]
    content = json.loads(card(name)["Content"])
    assert content["intended_uses"]["risk_rating"] == "High"
    assert content["additional_information"]["custom_details"]["deployment_status"] == "Succeeded"
    assert card(name)["ModelCardStatus"] == "PendingReview"
    assert errors(content) == []


def test_a_card_created_concurrently_is_compared_not_duplicated(
    central: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = model_card.write_model_card(central, event_id="event-1", flow="model-promotion", account=TEAM)[
        "name"
    ]
    real_describe = model_card.describe_card
    calls = {"n": 0}

    def not_yet_then_real(card_name: str) -> dict[str, Any] | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else real_describe(card_name)

    # The other execution's CreateModelCard lands between this one's describe and create.
    monkeypatch.setattr(model_card, "describe_card", not_yet_then_real)
    again = model_card.write_model_card(central, event_id="event-2", flow="model-promotion", account=TEAM)

    assert again["change"] == "unchanged"
    assert versions(name) == [1]


def test_a_card_update_keeps_the_review_status(central: dict[str, Any]) -> None:
    name = model_card.write_model_card(central, event_id="e", flow="model-promotion", account=TEAM)["name"]
    boto3.client("sagemaker").update_model_card(ModelCardName=name, ModelCardStatus="Approved")

    result = model_card.update_card_content(
        name, lambda c: model_card.set_custom_details(c, {"deployment_status": "x"})
    )

    assert result["changed"] is True
    assert card(name)["ModelCardStatus"] == "Approved"
    unchanged = model_card.update_card_content(name, lambda c: None)
    assert unchanged["changed"] is False


def test_ensure_card_writes_one_for_a_version_that_arrived_another_way(central: dict[str, Any]) -> None:
    first = model_card.ensure_card(central, event_id="e", flow="model-deployment", account=TEAM)
    second = model_card.ensure_card(central, event_id="e", flow="model-deployment", account=TEAM)

    assert first["change"] == "created" and second["change"] == "unchanged"
    assert versions(first["name"]) == [1]


def test_names_that_fit_are_kept_and_cut_names_stay_apart() -> None:
    assert central_group_name(TEAM, "churn-prediction") == f"{TEAM}-churn-prediction"
    assert model_card_name(f"{TEAM}-churn-prediction", 3) == f"{TEAM}-churn-prediction-v3"
    long_groups = [central_group_name(TEAM, "x" * 60 + suffix) for suffix in ("a", "b")]
    assert len(set(long_groups)) == 2 and all(len(name) == 63 for name in long_groups)
    assert central_group_name(TEAM, "x" * 60 + "a") == long_groups[0], "the same group, the same name"
    cards = [model_card_name(f"{TEAM}-{'y' * 48}{suffix}", 12) for suffix in ("a", "b")]
    assert len(set(cards)) == 2 and all(len(name) <= 63 and name.endswith("-v12") for name in cards)


def test_a_card_of_another_version_by_the_same_name_is_left_alone_and_refused(
    central: dict[str, Any],
) -> None:
    written = model_card.write_model_card(central, event_id="e1", flow="model-promotion", account=TEAM)
    before = card(written["name"])
    # Another version whose card name is the same (as a plain cut of two long group names made it).
    other = {**central, "ModelPackageArn": central["ModelPackageArn"].replace("/1", "/7")}

    for write in (model_card.write_model_card, model_card.ensure_card):
        with pytest.raises(model_card.ModelCardConflict) as refused:
            write(other, event_id="e2", flow="model-promotion", account=TEAM)
        assert str(refused.value) == (
            f"model card {written['name']} documents {central['ModelPackageArn']}, "
            f"not {other['ModelPackageArn']}; it was left as it is"
        )

    assert versions(written["name"]) == [1]
    assert card(written["name"])["Content"] == before["Content"]
    assert entries_for_event("e2") == []


def test_new_content_for_an_archived_card_is_left_out_with_a_note_not_a_failure(
    central: dict[str, Any],
) -> None:
    name = model_card.write_model_card(central, event_id="e1", flow="model-promotion", account=TEAM)["name"]
    boto3.client("sagemaker").update_model_card(ModelCardName=name, ModelCardStatus="Archived")
    archived = card(name)
    changed = {
        **central,
        "CustomerMetadataProperties": {**central["CustomerMetadataProperties"], "risk-rating": "high"},
    }

    written = model_card.write_model_card(changed, event_id="e2", flow="model-promotion", account=TEAM)

    assert written["change"] == "archived"
    assert versions(name) == [1, 2]
    assert (card(name)["ModelCardStatus"], card(name)["Content"]) == ("Archived", archived["Content"])
    [entry] = entries_for_event("e2")
    assert (entry.action, entry.status) == ("write_model_card", "skipped")
    assert entry.detail["note"] == model_card.ARCHIVED_NOTE


def test_the_central_decision_on_the_registry_is_not_new_promotion_content(central: dict[str, Any]) -> None:
    name = model_card.write_model_card(central, event_id="e1", flow="model-promotion", account=TEAM)["name"]
    boto3.client("sagemaker").update_model_card(ModelCardName=name, ModelCardStatus="Approved")
    decided = {**central, "ModelApprovalStatus": "Approved", "ApprovalDescription": "board change MLG-118"}

    again = model_card.write_model_card(decided, event_id="e2", flow="model-promotion", account=TEAM)

    assert again["change"] == "unchanged"
    assert versions(name) == [1, 2]
    assert card(name)["ModelCardStatus"] == "Approved"
    assert "approval_description" not in json.loads(card(name)["Content"])["model_package_details"]


def test_a_promotion_that_changes_an_approved_card_sends_it_back_to_review(central: dict[str, Any]) -> None:
    """Reviewers approved what the card said; content the promotion changes has not been reviewed."""
    name = model_card.write_model_card(central, event_id="e1", flow="model-promotion", account=TEAM)["name"]
    boto3.client("sagemaker").update_model_card(ModelCardName=name, ModelCardStatus="Approved")
    changed = {
        **central,
        "CustomerMetadataProperties": {**central["CustomerMetadataProperties"], "risk-rating": "high"},
    }

    written = model_card.write_model_card(changed, event_id="e2", flow="model-promotion", account=TEAM)

    assert written["change"] == "updated"
    described = card(name)
    assert described["ModelCardStatus"] == "PendingReview"
    assert json.loads(described["Content"])["intended_uses"]["risk_rating"] == "High"


def test_a_description_longer_than_the_schema_allows_is_cut_to_fit_with_a_mark(
    central: dict[str, Any],
) -> None:
    content = model_card.build_card_content({**central, "ModelPackageDescription": "d" * 5_000})

    description = content["model_overview"]["model_description"]
    assert len(description) == 1024 and description.endswith("…")
    assert errors(content) == []


def test_a_long_metric_series_is_cut_to_the_schemas_twenty_points_keeping_both_ends() -> None:
    [group] = model_card.metric_groups_from_report({"m": {"loss": [float(step) for step in range(100)]}})

    [metric] = group["metric_data"]
    assert metric["type"] == "bar_chart"
    assert len(metric["value"]) == 20 and metric["value"][0] == 0.0 and metric["value"][-1] == 99.0
    assert errors({"evaluation_details": [{"name": "report", "metric_groups": [group]}]}) == []


def test_a_standard_deviation_that_is_not_a_number_adds_no_note() -> None:
    [group] = model_card.metric_groups_from_report(
        {
            "r": {
                "mse": {"value": 4.6, "standard_deviation": "n/a"},
                "mae": {"value": 1.2, "standard_deviation": 0.3},
            }
        }
    )

    notes = {metric["name"]: metric.get("notes") for metric in group["metric_data"]}
    assert notes == {"mse": None, "mae": "standard deviation 0.3"}


def test_custom_details_leave_out_what_has_no_value() -> None:
    content: dict[str, Any] = {}

    model_card.set_custom_details(
        content, {"deployment_status": "Succeeded", "deployment_error": None, "decision_note": ""}
    )

    assert content["additional_information"]["custom_details"] == {"deployment_status": "Succeeded"}


def test_details_added_to_a_card_already_at_the_size_limit_keep_it_under_the_limit(
    central: dict[str, Any],
) -> None:
    report = {f"group_{g}": {f"metric_{m}_{'x' * 200}": m / 3 for m in range(50)} for g in range(20)}
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key=f"{TEAM}/churn-prediction/3/evaluation.json", Body=json.dumps(report).encode()
    )
    name = model_card.write_model_card(central, event_id="e", flow="model-promotion", account=TEAM)["name"]
    details = {f"deployment_note_{index}": "n" * 1_000 for index in range(5)}

    result = model_card.update_card_content(name, lambda c: model_card.set_custom_details(c, details))

    assert result["changed"] is True
    saved = card(name)["Content"]
    assert len(saved) <= 100_000
    assert json.loads(saved)["additional_information"]["custom_details"]["deployment_note_4"] == "n" * 1_000
