"""The remediation engine's decisions the per-control flows leave open, end to end on the offline runtime:
policy exemptions that are not exemptions, notify-only controls with a real action, the last day of an
exemption, evaluations about another resource type, the same evaluation in two accounts or Regions, a
failed fix's severity and a subject that must keep its outcome. Each test reads the emulated AWS back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

import pytest

from govern.emulator import Organization
from govern.faults import access_denied, inject_api_faults
from governance.remediation import engine
from tests.flows.test_config_remediation import (
    GOVERNANCE,
    MEMBER,
    OTHER_MEMBER,
    REGION,
    EventLoader,
    account_state,
    another_bucket,
    assert_subject,
    aws,
    bucket_state,
    in_account,
    in_region,
    notebook_state,
    remediations,
    security_notices,
    snapshot,
    with_policy,
)

PUBLIC_BUCKET = "team-churn-public-data"


def action_statuses(result: Any) -> list[tuple[str, str, bool | None]]:
    return [(a.type, a.status, a.verified) for a in result.actions]


def assert_name_cut_in_subject(notice: Any, head: str, name: str, tail: str) -> None:
    """The subject is `{head}{start}…{end}{tail}` in exactly SNS's 100 characters: the resource's `name`
    shortened in its middle, no more than needed, its start and end kept; the account and the outcome
    (`tail`) whole. SNS carried the subject as composed (the message keeps the same), and the message
    keeps the name whole."""
    subject = notice.subject
    assert len(subject) == 100, subject
    assert subject.startswith(head) and subject.endswith(tail), subject
    start, cut, end = subject.removeprefix(head).removesuffix(tail).partition("…")
    assert cut and start and end and name.startswith(start) and name.endswith(end), subject
    assert notice.message["subject"] == subject
    assert notice.message["resource"] == name


# --------------------------------------------------------------------------- exemptions that are not


def exemption(**fields: str | None) -> str:
    """A [[exemption]] table of the policy file: a valid one, with each field given as None left out."""
    values: dict[str, str | None] = {
        "accounts": '["210987654321"]',
        "resources": f'["{PUBLIC_BUCKET}"]',
        "reason": '"Public dataset for the churn Kaggle challenge (SEC-42)"',
        "owner": '"churn-team@example.com"',
        "expires": "2099-12-31",
        **fields,
    }
    lines = [f"{name} = {value}" for name, value in values.items() if value is not None]
    return "\n[[exemption]]\n" + "\n".join(lines) + "\n"


def replay_leaving_the_public_bucket_alone(org: Organization, event: dict[str, Any], status: str) -> None:
    """Replay the public-read finding and check the bucket, still public, is exactly as it was, and that
    the remediation ended `status` and was notified."""
    before = bucket_state(org, MEMBER, PUBLIC_BUCKET)
    assert before["public_access_block"] is None

    [result] = org.replay([event], seed=False)

    assert result.outcome == "succeeded", result.error
    assert bucket_state(org, MEMBER, PUBLIC_BUCKET) == before
    assert action_statuses(result) == [("remediate", status, True), ("notify", "done", True)]


TOO_SHORT = "String should have at least 1 character"


def refused(case: str, fields: dict[str, str | None], problem: str, *, named: bool = True) -> Any:
    """A case of an exemption the policy refuses: the entry is named by its owner, when it has one."""
    entry = "exemption 'churn-team@example.com' (#1)" if named else "exemption (#1)"
    return pytest.param(fields, f"{entry}: {problem}", id=case)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        refused("no-owner", {"owner": None}, "owner: Field required", named=False),
        refused("empty-owner", {"owner": '""'}, f"owner: {TOO_SHORT}", named=False),
        refused("spaces-for-owner", {"owner": '"   "'}, f"owner: {TOO_SHORT}", named=False),
        refused("no-expiry", {"expires": None}, "expires: Field required"),
        refused("no-reason", {"reason": None}, "reason: Field required"),
        refused("empty-reason", {"reason": '""'}, f"reason: {TOO_SHORT}"),
        refused("spaces-for-reason", {"reason": '" \\t "'}, f"reason: {TOO_SHORT}"),
    ],
)
def test_an_exemption_without_an_owner_an_expiry_or_a_reason_is_refused_naming_it(
    org: Organization, load_event: EventLoader, tmp_path: Path, fields: dict[str, str | None], problem: str
) -> None:
    """Kills M32 (owner), M33 (expiry), M34 (reason): such an entry would exempt the bucket for nobody to
    answer for, forever, or for no reason; the policy file is refused, naming the entry, and the bucket is
    neither exempted nor touched."""
    with_policy(org, tmp_path, exemption(**fields))
    event = load_event("config-s3-public-read")
    org.seed(event)
    before = snapshot(org, event)

    [result] = org.replay([event], seed=False)

    assert result.outcome == "dead-lettered"
    assert result.error is not None
    assert "\n" not in result.error
    assert f"remediation policy {tmp_path / 'policy.toml'}: {problem}" in result.error, result.error
    assert snapshot(org, event) == before
    assert remediations(org, event["id"]) == [] and security_notices(org, event["id"]) == []
    [rejected] = [e for e in org.ledger(event["id"]) if e.action == "dead_letter"]
    assert problem in rejected.detail["error"]


# --------------------------------------------------------------------------- notify-only with an action


def test_a_notify_only_control_with_a_real_action_leaves_the_bucket_alone_and_notifies(
    org: Organization, load_event: EventLoader, tmp_path: Path
) -> None:
    """Kills M03b: the control names block_bucket_public_access but is set to notify-only; nothing runs."""
    with_policy(
        org,
        tmp_path,
        replace=(
            'action = "block_bucket_public_access"\nmode = "enforce"',
            'action = "block_bucket_public_access"\nmode = "notify-only"',
        ),
    )
    event = load_event("config-s3-public-read")
    org.seed(event)

    replay_leaving_the_public_bucket_alone(org, event, "notify-only")
    [notice] = security_notices(org, event["id"])
    assert_subject(
        notice,
        "HIGH",
        "s3-bucket-public-read-prohibited",
        f"bucket {PUBLIC_BUCKET} in {MEMBER}",
        "not remediated (notify-only)",
    )
    assert notice.attributes == {"severity": "HIGH", "account": MEMBER, "kind": "non-compliance"}
    assert (notice.message["mode"], notice.message["action"]) == ("notify-only", "block_bucket_public_access")
    assert notice.message["reason"].startswith("notify-only: Training data and model artifacts")
    [entry] = remediations(org, event["id"])
    assert (entry.status, entry.detail["changes"], entry.detail["verified"]) == ("notify-only", {}, None)
    assert org.config_evaluations == []


# --------------------------------------------------------------------------- the last day of an exemption


def freeze_engine_clock(monkeypatch: pytest.MonkeyPatch, at: datetime) -> None:
    """The engine reads the time as `at` from now on: a test about "today" cannot cross midnight UTC."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Frozen:
            return cls.fromtimestamp(at.timestamp(), tz)

    monkeypatch.setattr(engine, "datetime", Frozen)


@pytest.mark.parametrize("source", ["tag", "policy"])
def test_an_exemption_holds_through_its_last_day_and_names_its_owner(
    org: Organization,
    load_event: EventLoader,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    """Kills M08 (an exemption lapsing on its expiry date instead of after it) and M36 (the owner of a tag
    exemption missing from the notice and the ledger). The engine's clock is frozen at the time the test
    starts, so the expiry date is "today" however long the run takes."""
    now = datetime.now(UTC)
    freeze_engine_clock(monkeypatch, now)
    today = now.date().isoformat()
    reason, owner = "Public dataset for the churn Kaggle challenge (SEC-42)", "churn-team@example.com"
    if source == "policy":
        with_policy(org, tmp_path, exemption(expires=today))
    event = load_event("config-s3-public-read")
    org.seed(event)
    if source == "tag":
        tags = {
            "team": "churn",
            "governance:exempt-until": today,
            "governance:exempt-reason": reason,
            "governance:exempt-owner": owner,
        }
        aws(org, MEMBER, "s3").put_bucket_tagging(
            Bucket=PUBLIC_BUCKET, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
        )

    replay_leaving_the_public_bucket_alone(org, event, "exempt")
    held = {"source": source, "reason": reason, "owner": owner, "expires": today}
    [notice] = security_notices(org, event["id"])
    assert_subject(
        notice,
        "HIGH",
        "s3-bucket-public-read-prohibited",
        f"bucket {PUBLIC_BUCKET} in {MEMBER}",
        f"exempt until {today}",
    )
    assert notice.attributes["kind"] == "exemption"
    assert notice.message["exemption"] == held
    assert notice.message["notes"] == []
    [entry] = remediations(org, event["id"])
    assert (entry.status, entry.detail["exemption"]) == ("exempt", held)
    assert org.config_evaluations == []


# --------------------------------------------------------------------------- another resource type


def test_an_evaluation_about_another_resource_type_than_the_controls_is_notify_only(
    org: Organization, load_event: EventLoader
) -> None:
    """Kills M31: a rule the bucket control covers reports an S3 access point (a custom rule reusing the
    name, say); acting would block public access on whatever bucket bears the access point's name."""
    bucket_event = load_event("config-s3-public-read")
    org.seed(bucket_event)  # a bucket of the access point's name exists, public
    event = json.loads(json.dumps(bucket_event).replace("AWS::S3::Bucket", "AWS::S3::AccessPoint"))
    event["id"] = "5a1d8e0c-access-point-evaluation"

    replay_leaving_the_public_bucket_alone(org, event, "notify-only")
    [notice] = security_notices(org, event["id"])
    # The outcome is long: the name gives way in the subject (the body keeps it), the account and it do not.
    assert_name_cut_in_subject(
        notice,
        "[HIGH] s3-bucke…: accesspoint ",
        PUBLIC_BUCKET,
        f" in {MEMBER} not remediated (unexpected resource type)",
    )
    assert notice.attributes["kind"] == "non-compliance"
    assert notice.message["reason"] == (
        "control s3-bucket-public-access acts on AWS::S3::Bucket, but the evaluation is about "
        "AWS::S3::AccessPoint; notify-only"
    )
    [entry] = remediations(org, event["id"])
    assert (entry.status, entry.detail["changes"]) == ("notify-only", {})
    assert org.config_evaluations == []


# --------------------------------------------------------------------------- not duplicates


def test_the_same_evaluation_in_another_account_is_acted_on_too(
    org: Organization, load_event: EventLoader
) -> None:
    """Kills M27: two teams each have a notebook named fraud-analysis, evaluated at the same instant; the
    idempotency key must tell the accounts apart, or the second team's notebook keeps root access."""
    first = load_event("config-notebook-root-access")
    second = in_account(first, OTHER_MEMBER, event_id="0b9e2c11-other-team-notebook")
    identifier = "evaluationResultIdentifier"
    assert (
        first["detail"]["resourceId"],
        first["detail"]["configRuleName"],
        first["detail"]["newEvaluationResult"][identifier]["orderingTimestamp"],
    ) == (
        second["detail"]["resourceId"],
        second["detail"]["configRuleName"],
        second["detail"]["newEvaluationResult"][identifier]["orderingTimestamp"],
    )

    results = org.replay([first, second])

    assert [r.outcome for r in results] == ["succeeded", "succeeded"], [r.error for r in results]
    for account in (MEMBER, OTHER_MEMBER):
        state = notebook_state(org, account, "fraud-analysis")
        assert (state["NotebookInstanceStatus"], state["RootAccess"]) == ("Stopped", "Disabled"), account
    for event in (first, second):
        assert [e.status for e in remediations(org, event["id"])] == ["done"]
        [notice] = security_notices(org, event["id"])
        assert notice.subject.endswith(f"notebook fraud-analysis in {event['account']} remediated")
    rule = "sagemaker-notebook-instance-root-access-check"
    assert sorted(org.config_evaluations) == [(MEMBER, REGION, [rule]), (OTHER_MEMBER, REGION, [rule])]


def test_the_same_evaluation_in_another_region_is_acted_on_too(
    org: Organization, load_event: EventLoader
) -> None:
    """Kills M28: an account-level rule evaluates the account (same resource id) in each Region; EBS
    encryption by default is a per-Region setting, so both evaluations must be acted on."""
    east = load_event("config-ebs-encryption-default")
    west = in_region(east, "us-west-2", event_id="3c7f5d22-ebs-default-us-west-2")
    assert east["detail"]["resourceId"] == west["detail"]["resourceId"] == MEMBER
    assert account_state(org, MEMBER)["ebs_encryption_by_default"] == {REGION: False, "us-west-2": False}

    results = org.replay([east, west])

    assert [r.outcome for r in results] == ["succeeded", "succeeded"], [r.error for r in results]
    assert account_state(org, MEMBER)["ebs_encryption_by_default"] == {REGION: True, "us-west-2": True}
    assert [action_statuses(r) for r in results] == [
        [("remediate", "done", True), ("notify", "done", True)]
    ] * 2
    for event, region in ((east, REGION), (west, "us-west-2")):
        [notice] = security_notices(org, event["id"])
        assert notice.subject.endswith(f"account {MEMBER} in {region} remediated")
    rule = "ec2-ebs-encryption-by-default"
    assert sorted(org.config_evaluations) == [(MEMBER, REGION, [rule]), (MEMBER, "us-west-2", [rule])]


# --------------------------------------------------------------------------- a failed fix


def test_a_medium_control_whose_fix_fails_is_notified_high(
    org: Organization, load_event: EventLoader
) -> None:
    """Kills M37: the TLS control is MEDIUM, but a violation the backbone failed to fix is one nobody is
    fixing: `_failed` raises it to HIGH, in the notice and the ledger."""
    event = load_event("config-s3-tls-required")
    bucket = event["detail"]["resourceId"]
    org.seed(event)
    before = bucket_state(org, MEMBER, bucket)

    with inject_api_faults(org, [access_denied("s3", "PutBucketPolicy", times=99, account=MEMBER)]) as faults:
        [result] = org.replay([event], seed=False)

    assert faults[0].hits == 1  # refused, not retried
    assert result.outcome == "failed"
    assert bucket_state(org, MEMBER, bucket) == before
    assert [s["Sid"] for s in before["policy"]["Statement"]] == ["TeamRoleReadsData"]
    [notice] = security_notices(org, event["id"])
    assert_subject(
        notice, "HIGH", "s3-bucket-ssl-requests-only", f"bucket {bucket} in {MEMBER}", "remediation FAILED"
    )
    assert notice.attributes == {"severity": "HIGH", "account": MEMBER, "kind": "remediation-failed"}
    assert notice.message["severity"] == "HIGH"
    assert "S3 refused the bucket policy of team-churn-features" in notice.message["reason"]
    [entry] = remediations(org, event["id"])
    assert (entry.status, entry.detail["severity"], entry.detail["verified"]) == ("failed", "HIGH", False)
    assert org.config_evaluations == []


# --------------------------------------------------------------------------- the subject keeps its outcome


LONG_BUCKET = "team-churn-feature-store-training-snapshots-2026-11-replica-eu1"  # 63, S3's longest


def test_a_long_bucket_name_does_not_cut_the_account_or_the_outcome_from_the_subject(
    org: Organization, load_event: EventLoader
) -> None:
    """SNS keeps 100 characters of a subject. With a 63-character bucket and the dry-run outcome, shortening
    the rule is not enough: the bucket's name gives way in its middle, and the account and the outcome, what
    a human scans the inbox for, stay whole."""
    assert len(LONG_BUCKET) == 63
    org.configure(DRY_RUN="true")
    event = another_bucket(load_event("config-s3-public-read"), LONG_BUCKET, event_id="long-bucket-dry-run")
    org.seed(event)
    before = bucket_state(org, MEMBER, LONG_BUCKET)

    [result] = org.replay([event], seed=False)

    assert result.outcome == "succeeded", result.error
    assert bucket_state(org, MEMBER, LONG_BUCKET) == before
    [notice] = security_notices(org, event["id"])
    assert_name_cut_in_subject(
        notice, "[HIGH] s3-bucke…: bucket ", LONG_BUCKET, f" in {MEMBER} would be remediated (dry-run)"
    )


# --------------------------------------------------------------------------- the hourly cap


def test_a_slot_given_back_more_often_than_taken_does_not_raise_the_cap(org: Organization) -> None:
    """Giving a slot back is conditional on a count above zero: one given back twice, or after its hour's
    item is gone, must not leave the account a negative count, and so more actions than the cap."""
    now = datetime.now(UTC)
    hour = now.strftime("%Y-%m-%dT%H")

    engine._give_back_action_slot(MEMBER, hour)  # nothing was taken this hour: a no-op, logged
    assert engine._take_action_slot(MEMBER, 1, now) == hour
    engine._give_back_action_slot(MEMBER, hour)
    engine._give_back_action_slot(MEMBER, hour)  # once too often

    assert engine._take_action_slot(MEMBER, 1, now) == hour
    assert engine._take_action_slot(MEMBER, 1, now) is None
    item = aws(org, GOVERNANCE, "dynamodb").get_item(
        TableName=org.physical_id("StateTable"),
        Key=engine._cap_key(MEMBER, hour),
    )["Item"]
    assert item["count"] == {"N": "1"}
