"""Config remediation end to end on the offline runtime: each sample event goes through the governance bus
rule of template.yaml, the compliance queue and the real handler; the tests then read the member account,
the security topic and the ledger back."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.sagemaker.models import sagemaker_backends

from govern import operations
from govern.emulator import PROJECT_ROOT, Organization
from govern.faults import Fault, inject_api_faults
from governance.events import parse_event
from governance.events.config import ConfigComplianceChange
from governance.remediation import controls, engine
from governance.remediation.engine import (
    ALREADY_REQUESTED,
    RemediationDeferred,
    TransientRemediationError,
    remediate_evaluation,
)
from governance.remediation.policy import POLICY_FILE_VARIABLE, base_rule_names, packaged_policy_path
from tests.flows.test_metrics import METRICS_ON, emitted

MEMBER = "210987654321"
OTHER_MEMBER = "222222222222"
GOVERNANCE = "111111111111"
MANAGEMENT = "999999999999"
REGION = "us-east-1"
RULE = "ConfigNonComplianceRule"
EventLoader = Callable[[str], dict[str, Any]]


# --------------------------------------------------------------------------- reading the member account back


def aws(org: Organization, account: str, service: str, region: str = REGION) -> Any:
    return org.session(account, region).client(service, region_name=region)  # type: ignore[call-overload]


def _or_none(call: Callable[[], Any], *missing: str) -> Any:
    try:
        return call()
    except ClientError as error:
        assert error.response["Error"]["Code"] in missing, error
        return None


def bucket_state(org: Organization, account: str, bucket: str) -> dict[str, Any]:
    s3 = aws(org, account, "s3")
    policy = _or_none(lambda: s3.get_bucket_policy(Bucket=bucket)["Policy"], "NoSuchBucketPolicy")
    return {
        "grants": s3.get_bucket_acl(Bucket=bucket)["Grants"],
        "policy": json.loads(policy) if policy else None,
        "tags": _or_none(lambda: s3.get_bucket_tagging(Bucket=bucket)["TagSet"], "NoSuchTagSet"),
        "public_access_block": _or_none(
            lambda: s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"],
            "NoSuchPublicAccessBlockConfiguration",
        ),
        "encryption": _or_none(
            lambda: s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"],
            "ServerSideEncryptionConfigurationNotFoundError",
        ),
    }


def notebook_state(org: Organization, account: str, name: str) -> dict[str, Any]:
    sagemaker = aws(org, account, "sagemaker")
    described = sagemaker.describe_notebook_instance(NotebookInstanceName=name)
    tags = sagemaker.list_tags(ResourceArn=described["NotebookInstanceArn"])["Tags"]
    kept = ("NotebookInstanceStatus", "DirectInternetAccess", "RootAccess", "InstanceType", "RoleArn")
    return {**{key: described.get(key) for key in kept}, "tags": {t["Key"]: t["Value"] for t in tags}}


def endpoint_config_state(org: Organization, account: str, name: str) -> dict[str, Any]:
    described = aws(org, account, "sagemaker").describe_endpoint_config(EndpointConfigName=name)
    described.pop("ResponseMetadata")
    return dict(described)


def ingress(org: Organization, account: str, group_id: str) -> set[tuple[str, int, int, str]]:
    rules = aws(org, account, "ec2").describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group_id]}]
    )["SecurityGroupRules"]
    return {
        (
            ("egress-" if rule["IsEgress"] else "") + rule["IpProtocol"],
            rule["FromPort"],
            rule["ToPort"],
            rule.get("CidrIpv4") or rule.get("CidrIpv6"),
        )
        for rule in rules
    }


def account_state(org: Organization, account: str) -> dict[str, Any]:
    cloudtrail = aws(org, account, "cloudtrail")
    trails = cloudtrail.describe_trails()["trailList"]
    return {
        "ebs_encryption_by_default": {
            region: aws(org, account, "ec2", region).get_ebs_encryption_by_default()["EbsEncryptionByDefault"]
            for region in (REGION, "us-west-2")
        },
        "trails": {trail["Name"]: trail for trail in trails},
        "logging": {
            trail["Name"]: cloudtrail.get_trail_status(Name=trail["Name"])["IsLogging"] for trail in trails
        },
    }


def snapshot(org: Organization, event: dict[str, Any]) -> Any:
    detail = event["detail"]
    account, resource = detail["awsAccountId"], detail["resourceId"]
    readers: dict[str, Callable[[Organization, str, str], Any]] = {
        "AWS::S3::Bucket": bucket_state,
        "AWS::SageMaker::NotebookInstance": notebook_state,
        "AWS::SageMaker::EndpointConfig": endpoint_config_state,
        "AWS::EC2::SecurityGroup": ingress,
        "AWS::::Account": lambda org, account, _: account_state(org, account),
    }
    return readers[detail["resourceType"]](org, account, resource)


# --------------------------------------------------------------------------- what each control must change


def only_public_access_blocked(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before["public_access_block"] is None
    assert after["public_access_block"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    assert {**after, "public_access_block": None} == before


def only_default_encryption_set(before: dict[str, Any], after: dict[str, Any]) -> None:
    # s3-bucket-server-side-encryption-enabled is met by any default encryption: SSE-S3, no key to share.
    assert before["encryption"] is None
    [rule] = after["encryption"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert not rule.get("BucketKeyEnabled")
    assert {**after, "encryption": None} == before


def only_tls_statement_added(before: dict[str, Any], after: dict[str, Any]) -> None:
    *kept, added = after["policy"]["Statement"]
    assert kept == before["policy"]["Statement"] and len(kept) == 1
    assert added["Effect"] == "Deny"
    assert added["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {**after, "policy": None} == {**before, "policy": None}


def only_root_access_disabled(before: dict[str, Any], after: dict[str, Any]) -> None:
    # Stopped to be updated and left stopped: the team starts it again, now without root access.
    assert (before["NotebookInstanceStatus"], after["NotebookInstanceStatus"]) == ("InService", "Stopped")
    assert (before["RootAccess"], after["RootAccess"]) == ("Enabled", "Disabled")
    assert after["tags"]["governance:finding"] == "sagemaker-notebook-instance-root-access-check"
    assert "governance:stopped-at" in after["tags"]
    assert after["tags"]["team"] == before["tags"]["team"]
    unchanged = ("DirectInternetAccess", "InstanceType", "RoleArn")
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}


def only_ebs_default_encryption_in_region(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before["ebs_encryption_by_default"] == {REGION: False, "us-west-2": False}
    assert after["ebs_encryption_by_default"] == {REGION: True, "us-west-2": False}
    assert {**after, "ebs_encryption_by_default": None} == {**before, "ebs_encryption_by_default": None}


WIDE = ("tcp", 0, 1024, "0.0.0.0/0")  # the seeded world-open range holding the workload's web ports


def only_world_open_port_revoked(
    port: int, kept: set[tuple[int, int]]
) -> Callable[[set[Any], set[Any]], None]:
    def check(before: set[Any], after: set[Any]) -> None:
        world = {("tcp", port, port, "0.0.0.0/0"), ("tcp", port, port, "::/0")}
        narrowed = {("tcp", low, high, "0.0.0.0/0") for low, high in kept}
        assert world | {WIDE} <= before
        # The wide range is narrowed to what the control allows, never revoked whole.
        assert after == (before - world - {WIDE}) | narrowed
        assert ("tcp", port, port, "10.0.0.0/16") in after  # the same port from the team's VPC stays
        assert ("tcp", 443, 443, "0.0.0.0/0") in after  # an allowed world-open port stays

    return check


def only_trail_started(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before["logging"] == {"org-team-trail": False}
    assert after["logging"] == {"org-team-trail": True}
    assert {**after, "logging": None} == {**before, "logging": None}


# file -> (what must change, severity, subject resource)
CONTROL_EVENTS: dict[str, tuple[Callable[[Any, Any], None], str, str]] = {
    "config-s3-public-read": (
        only_public_access_blocked,
        "HIGH",
        "bucket team-churn-public-data in 210987654321",
    ),
    "config-s3-public-write-control-tower": (
        only_public_access_blocked,
        "HIGH",
        "bucket team-churn-uploads in 210987654321",
    ),
    "config-s3-bucket-level-public-access-securityhub": (
        only_public_access_blocked,
        "HIGH",
        "bucket team-churn-shared in 210987654321",
    ),
    "config-s3-default-encryption-conformance-pack": (
        only_default_encryption_set,
        "MEDIUM",
        "bucket team-churn-raw in 210987654321",
    ),
    "config-s3-tls-required": (
        only_tls_statement_added,
        "MEDIUM",
        "bucket team-churn-features in 210987654321",
    ),
    "config-notebook-root-access": (
        only_root_access_disabled,
        "HIGH",
        "notebook fraud-analysis in 210987654321",
    ),
    "config-ebs-encryption-default": (
        only_ebs_default_encryption_in_region,
        "MEDIUM",
        "account 210987654321 in us-east-1",
    ),
    "config-security-group-ssh": (
        only_world_open_port_revoked(22, kept={(0, 21), (23, 1024)}),
        "HIGH",
        "security group sg-0123456789abcdef0 in 210987654321",
    ),
    "config-security-group-open-ports": (
        only_world_open_port_revoked(8080, kept={(80, 80)}),  # 443 already has its own rule
        "HIGH",
        "security group sg-0fedcba9876543210 in 210987654321",
    ),
    "config-cloudtrail-logging": (only_trail_started, "HIGH", "account 210987654321 in us-east-1"),
}


def assert_subject(notice: Any, severity: str, rule: str, resource: str, outcome: str) -> None:
    """`[SEVERITY] rule: resource outcome` in at most 100 characters (what SNS keeps for e-mail), for
    resources short enough that only the rule name is shortened. A name too long for that is cut in its
    middle: test_remediation_engine.py checks those subjects."""
    subject = notice.subject
    head, tail = f"[{severity}] ", f": {resource} {outcome}"
    assert len(subject) <= 100, subject
    assert subject.startswith(head) and subject.endswith(tail), subject
    shown = subject[len(head) : -len(tail)]
    managed = base_rule_names(rule)[-1]
    assert shown in (rule, managed) or (shown.endswith("…") and managed.startswith(shown[:-1])), subject
    assert notice.message["subject"] == subject


def security_notices(org: Organization, event_id: str) -> list[Any]:
    return [note for note in org.notifications("security") if note.message.get("event_id") == event_id]


def remediations(org: Organization, event_id: str) -> list[Any]:
    return [entry for entry in org.ledger(event_id) if entry.action == "remediate"]


def with_policy(
    org: Organization, tmp_path: Path, extra: str = "", *, replace: tuple[str, str] | None = None
) -> None:
    """Point the function at a variant of the packaged policy file."""
    text = packaged_policy_path().read_text(encoding="utf-8")
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    path = tmp_path / "policy.toml"
    path.write_text(text + "\n" + extra, encoding="utf-8")
    org.configure(**{POLICY_FILE_VARIABLE: str(path)})


def later_evaluation(event: dict[str, Any], *, event_id: str, minutes: int = 90) -> dict[str, Any]:
    """The same rule and resource evaluated NON_COMPLIANT again, later: a new ordering timestamp."""
    fresh = json.loads(json.dumps(event))
    fresh["id"] = event_id
    identifier = fresh["detail"]["newEvaluationResult"]["evaluationResultIdentifier"]
    ordering = datetime.fromisoformat(identifier["orderingTimestamp"]) + timedelta(minutes=minutes)
    identifier["orderingTimestamp"] = ordering.isoformat().replace("+00:00", "Z")
    return fresh


def in_account(event: dict[str, Any], account: str, *, event_id: str) -> dict[str, Any]:
    moved = json.loads(json.dumps(event).replace(MEMBER, account))
    moved["id"] = event_id
    return moved


def in_region(event: dict[str, Any], region: str, *, event_id: str) -> dict[str, Any]:
    """The same evaluation, made by the rule's deployment in another Region."""
    moved = json.loads(json.dumps(event).replace(REGION, region))
    moved["id"] = event_id
    return moved


# --------------------------------------------------------------------------- every control


@pytest.mark.parametrize("event_file", sorted(CONTROL_EVENTS))
def test_each_control_is_remediated_verified_reevaluated_notified_and_ledgered(
    org: Organization, load_event: EventLoader, event_file: str
) -> None:
    event = load_event(event_file)
    detail = event["detail"]
    rule, account = detail["configRuleName"], detail["awsAccountId"]
    expected_change, severity, resource = CONTROL_EVENTS[event_file]
    org.seed(event)
    before = snapshot(org, event)

    [result] = org.replay([event])

    assert result.rules == [RULE]
    assert result.outcome == "succeeded", result.error
    # The member account really changed, and only in the way the control says.
    expected_change(before, snapshot(org, event))
    # The runtime's report: remediate done and verified by reading the account back, and a notify.
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "done", True),
        ("notify", "done", True),
    ]
    # Config was asked to evaluate the rule again, in the resource's account and region.
    assert org.config_evaluations.count((account, detail["awsRegion"], [rule])) == 1
    # What the security team receives.
    [notice] = security_notices(org, event["id"])
    assert_subject(notice, severity, rule, resource, "remediated")
    if event_file == "config-s3-public-read":  # the issue's own example, to the letter
        assert notice.subject == (
            "[HIGH] s3-bucket-public-read-prohibited: bucket team-churn-public-data in 210987654321 "
            "remediated"
        )
    assert notice.attributes == {"severity": severity, "account": account, "kind": "remediation"}
    message = notice.message
    assert {key: message[key] for key in ("account", "region", "resource", "rule", "mode", "outcome")} == {
        "account": account,
        "region": REGION,
        "resource": detail["resourceId"],
        "rule": rule,
        "mode": "enforce",
        "outcome": "done",
    }
    assert message["action"] in (
        "block_bucket_public_access",
        "enable_bucket_default_encryption",
        "require_tls_for_bucket",
        "stop_notebook_instance",
        "enable_ebs_encryption_by_default",
        "revoke_open_ingress",
        "start_trail_logging",
    )
    assert message["console_link"].startswith("https://")
    assert message["verified"] is True
    assert message["reevaluation"] == "requested"
    # The audit trail.
    [entry] = remediations(org, event["id"])
    assert (entry.status, entry.account, entry.flow) == ("done", account, "config-remediation")
    assert entry.detail["rule"] == rule
    assert entry.detail["verified"] is True
    assert entry.detail["changes"]


def test_an_endpoint_config_without_kms_is_reported_high_and_left_alone(
    org: Organization, load_event: EventLoader
) -> None:
    event = load_event("config-endpoint-config-kms")
    org.seed(event)
    before = snapshot(org, event)
    assert "KmsKeyId" not in before

    [result] = org.replay([event])

    assert result.outcome == "succeeded"
    assert snapshot(org, event) == before
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "notify-only", True),
        ("notify", "done", True),
    ]
    [notice] = security_notices(org, event["id"])
    assert_subject(
        notice,
        "HIGH",
        "sagemaker-endpoint-configuration-kms-key-configured",
        "endpoint config churn-endpoint-config in 210987654321",
        "not remediated (notify-only)",
    )
    assert notice.attributes == {"severity": "HIGH", "account": MEMBER, "kind": "non-compliance"}
    assert notice.message["mode"] == "notify-only"
    assert "immutable" in notice.message["reason"]
    assert org.config_evaluations == []


# --------------------------------------------------------------------------- notebooks: fixed or contained


def set_notebook_status(account: str, name: str, status: str) -> None:
    """Put an emulated notebook in a state moto never leaves it in (it stops and starts at once)."""
    sagemaker_backends[account][REGION].notebook_instances[name].status = status


@pytest.fixture
def metered_org() -> Iterator[Organization]:
    """An organization whose handlers print their metrics (EMF), as CloudWatch would receive them."""
    with Organization(env_overrides=METRICS_ON) as organization:
        yield organization


def remediation_deliveries(org: Organization, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of records of each batch the remediation function is invoked with, as it runs."""
    batches: list[int] = []
    invoke = org._invoke

    def record(function: Any, payload: Any) -> Any:
        if function.logical_id == "RemediateConfigFunction":
            batches.append(len(payload["Records"]))
        return invoke(function, payload)

    monkeypatch.setattr(org, "_invoke", record)
    return batches


def test_root_access_is_disabled_on_the_delivery_after_the_stop(
    metered_org: Organization,
    load_event: EventLoader,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    org = metered_org
    event = load_event("config-notebook-root-access")
    deliveries = remediation_deliveries(org, monkeypatch)
    capsys.readouterr()

    [result] = org.replay([event])

    assert result.outcome == "succeeded", result.error
    # The first delivery stopped the notebook, which cannot be updated until it is Stopped: the queue
    # delivered the record again, and that delivery disabled root access.
    assert deliveries == [1, 1]
    state = notebook_state(org, MEMBER, "fraud-analysis")
    assert (state["NotebookInstanceStatus"], state["RootAccess"]) == ("Stopped", "Disabled")
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "done", True),
        ("notify", "done", True),
    ]
    [entry] = remediations(org, event["id"])
    assert (entry.status, entry.detail["changes"]["root_access"]) == ("done", "Disabled")
    [notice] = security_notices(org, event["id"])
    assert_subject(
        notice,
        "HIGH",
        "sagemaker-notebook-instance-root-access-check",
        "notebook fraud-analysis in 210987654321",
        "remediated",
    )
    assert notice.attributes["kind"] == "remediation"
    assert org.config_evaluations == [(MEMBER, REGION, ["sagemaker-notebook-instance-root-access-check"])]
    totals = emitted(capsys.readouterr().out)
    assert (totals["Remediated"], totals["RemediationsNotifyOnly"]) == (1, 0)


def test_direct_internet_access_is_contained_and_reported_not_remediated(
    metered_org: Organization, load_event: EventLoader, capsys: pytest.CaptureFixture[str]
) -> None:
    org = metered_org
    event = load_event("config-notebook-direct-internet")
    org.seed(event)
    before = notebook_state(org, MEMBER, "churn-exploration")
    capsys.readouterr()

    [result] = org.replay([event], seed=False)

    after = notebook_state(org, MEMBER, "churn-exploration")
    assert (before["NotebookInstanceStatus"], after["NotebookInstanceStatus"]) == ("InService", "Stopped")
    # What the rule checks cannot be changed: it is still NON_COMPLIANT, and nothing says otherwise.
    assert after["DirectInternetAccess"] == before["DirectInternetAccess"] == "Enabled"
    assert after["RootAccess"] == before["RootAccess"]
    assert after["tags"]["governance:finding"] == "sagemaker-notebook-no-direct-internet-access"
    assert result.outcome == "succeeded", result.error
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "notify-only", True),
        ("notify", "done", True),
    ]
    [notice] = security_notices(org, event["id"])
    assert_subject(
        notice,
        "HIGH",
        "sagemaker-notebook-no-direct-internet-access",
        "notebook churn-exploration in 210987654321",
        "contained, not remediated",
    )
    assert notice.attributes == {"severity": "HIGH", "account": MEMBER, "kind": "non-compliance"}
    message = notice.message
    assert (message["outcome"], message["verified"], message["reevaluation"]) == (
        "notify-only",
        True,
        "not requested",
    )
    assert message["reason"] == (
        "contained, not remediated: direct internet access cannot be changed on an existing notebook "
        "instance; it was stopped; recreate it in a VPC subnet with DirectInternetAccess=Disabled"
    )
    assert (message["changes"]["contained"], message["changes"]["stopped"]) == (True, True)
    assert org.config_evaluations == []  # a re-evaluation would find it NON_COMPLIANT again
    [entry] = remediations(org, event["id"])
    assert (entry.status, entry.detail["changes"]["contained"]) == ("notify-only", True)
    assert entry.detail["reason"] == message["reason"]
    totals = emitted(capsys.readouterr().out)
    assert (totals["Remediated"], totals["RemediationsNotifyOnly"]) == (0, 1)
    # The notebook was changed (stopped): that counts against the account's hourly cap.
    assert cap_counter(org, MEMBER)["count"] == {"N": "1"}


def test_a_notebook_found_stopping_gets_root_access_disabled_on_a_later_delivery(
    org: Organization, load_event: EventLoader
) -> None:
    event = load_event("config-notebook-root-access")
    org.seed(event)
    set_notebook_status(MEMBER, "fraud-analysis", "Stopping")
    change = parse_event(event, ConfigComplianceChange)

    with pytest.raises(TransientRemediationError, match="fraud-analysis is Stopping"):
        remediate_evaluation(change)

    waiting = notebook_state(org, MEMBER, "fraud-analysis")
    assert (waiting["NotebookInstanceStatus"], waiting["RootAccess"]) == ("Stopping", "Enabled")
    assert "governance:finding" not in waiting["tags"]
    assert remediations(org, event["id"]) == [] and security_notices(org, event["id"]) == []

    set_notebook_status(MEMBER, "fraud-analysis", "Stopped")  # SageMaker has finished stopping it
    decision = remediate_evaluation(change)

    assert (decision.status, decision.headline, decision.verified) == ("done", "remediated", True)
    after = notebook_state(org, MEMBER, "fraud-analysis")
    assert (after["NotebookInstanceStatus"], after["RootAccess"]) == ("Stopped", "Disabled")
    assert "governance:stopped-at" not in after["tags"]  # someone else stopped it
    assert [e.status for e in remediations(org, event["id"])] == ["done"]
    [notice] = security_notices(org, event["id"])
    assert notice.subject.endswith("notebook fraud-analysis in 210987654321 remediated")


def test_an_already_stopped_notebook_gets_root_access_disabled_and_stays_stopped(
    org: Organization, load_event: EventLoader
) -> None:
    event = load_event("config-notebook-root-access")
    org.seed(event)
    aws(org, MEMBER, "sagemaker").stop_notebook_instance(NotebookInstanceName="fraud-analysis")

    [result] = org.replay([event], seed=False)

    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "done", True),
        ("notify", "done", True),
    ]
    after = notebook_state(org, MEMBER, "fraud-analysis")
    assert (after["NotebookInstanceStatus"], after["RootAccess"]) == ("Stopped", "Disabled")
    assert "governance:stopped-at" not in after["tags"]  # the backbone did not stop it
    [entry] = remediations(org, event["id"])
    assert entry.detail["changes"]["status_before"] == "Stopped"


def test_a_notebook_still_pending_is_retried_then_dead_lettered_unchanged(
    org: Organization, load_event: EventLoader
) -> None:
    event = load_event("config-notebook-root-access")
    org.seed(event)
    set_notebook_status(MEMBER, "fraud-analysis", "Pending")

    [result] = org.replay([event], seed=False)

    # The emulation redelivers at once, so the notebook never leaves Pending between deliveries.
    assert result.outcome == "dead-lettered"
    assert result.error is not None and "notebook instance fraud-analysis is Pending" in result.error
    state = notebook_state(org, MEMBER, "fraud-analysis")
    assert (state["NotebookInstanceStatus"], state["RootAccess"]) == ("Pending", "Enabled")
    assert "governance:finding" not in state["tags"]
    [notice] = security_notices(org, event["id"])
    assert notice.subject.endswith("notebook fraud-analysis in 210987654321 NOT remediated, dead-lettered")


TEAM_KEY = "arn:aws:kms:us-east-1:210987654321:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def encrypted_with_the_teams_key(org: Organization, bucket: str, *, bucket_key: bool) -> list[dict[str, Any]]:
    rules = [
        {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": TEAM_KEY},
            "BucketKeyEnabled": bucket_key,
        }
    ]
    aws(org, MEMBER, "s3").put_bucket_encryption(
        Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules}
    )
    return rules


def on_rule(event: dict[str, Any], rule: str) -> dict[str, Any]:
    """The same evaluation, reported by another Config rule."""
    text = json.dumps(event).replace(event["detail"]["configRuleName"], rule)
    return {**json.loads(text), "id": f"{event['id']}-{rule}"}


def test_the_kms_rule_moves_an_sse_s3_bucket_to_kms_and_leaves_a_bucket_on_the_teams_key_alone(
    org: Organization, load_event: EventLoader
) -> None:
    sse_s3 = on_rule(load_event("config-s3-default-encryption-conformance-pack"), "s3-default-encryption-kms")
    team_key = in_account(sse_s3, MEMBER, event_id="team-key-bucket")
    team_key["detail"]["resourceId"] = "team-churn-curated"
    org.seed(sse_s3)
    s3 = aws(org, MEMBER, "s3")
    aes = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    s3.put_bucket_encryption(Bucket="team-churn-raw", ServerSideEncryptionConfiguration=aes)
    s3.create_bucket(Bucket="team-churn-curated")
    kept = encrypted_with_the_teams_key(org, "team-churn-curated", bucket_key=False)

    first, second = org.replay([sse_s3, team_key], seed=False)

    [rule] = bucket_state(org, MEMBER, "team-churn-raw")["encryption"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms"}  # aws/s3
    assert rule["BucketKeyEnabled"] is True
    assert [(a.type, a.status) for a in first.actions] == [("remediate", "done"), ("notify", "done")]
    # The team's key and its bucket-key setting stay: its key policy may condition on the object's ARN.
    assert bucket_state(org, MEMBER, "team-churn-curated")["encryption"] == kept
    assert [(a.type, a.status) for a in second.actions] == [("remediate", "notify-only"), ("notify", "done")]


def test_a_resource_the_control_finds_compliant_is_not_claimed_remediated(
    org: Organization, load_event: EventLoader
) -> None:
    """Config says NON_COMPLIANT, but the bucket already has what the control sets: nothing is changed,
    nothing claimed, the cap slot is given back and Config is asked to look again."""
    event = load_event("config-s3-default-encryption-conformance-pack")
    org.seed(event)
    compliant = encrypted_with_the_teams_key(org, "team-churn-raw", bucket_key=True)
    before = bucket_state(org, MEMBER, "team-churn-raw")

    [result] = org.replay([event], seed=False)

    assert result.outcome == "succeeded"
    assert bucket_state(org, MEMBER, "team-churn-raw") == before
    assert before["encryption"] == compliant
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "notify-only", True),
        ("notify", "done", True),
    ]
    [notice] = security_notices(org, event["id"])
    assert notice.subject.endswith("bucket team-churn-raw in 210987654321 not remediated (already compliant)")
    assert notice.attributes["kind"] == "non-compliance"
    assert notice.message["outcome"] == "notify-only"
    assert "found nothing to change" in notice.message["reason"]
    assert "Config reports it NON_COMPLIANT" in notice.message["reason"]
    assert notice.message["reevaluation"] == "requested"
    assert len(org.config_evaluations) == 1
    assert cap_counter(org, MEMBER)["count"] == {"N": "0"}, "nothing was fixed: the slot was given back"


# ----------------------------------------------------------------------- S3: what already denies plain HTTP

FEATURES = "arn:aws:s3:::team-churn-features"
TLS_DENY = {
    "Sid": "TeamDeniesHttp",
    "Effect": "Deny",
    "Principal": "*",
    "Action": "s3:*",
    "Resource": [FEATURES, f"{FEATURES}/*"],
    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
}


def replay_with_team_statement(
    org: Organization, load_event: EventLoader, statement: dict[str, Any]
) -> tuple[Any, list[dict[str, Any]]]:
    """The TLS finding replayed on team-churn-features, whose seeded policy the team gave one more
    statement: the replay's result, and the statements the bucket had before it."""
    event = load_event("config-s3-tls-required")
    org.seed(event)
    s3 = aws(org, MEMBER, "s3")
    policy = json.loads(s3.get_bucket_policy(Bucket="team-churn-features")["Policy"])
    policy["Statement"].append(statement)
    s3.put_bucket_policy(Bucket="team-churn-features", Policy=json.dumps(policy))
    [result] = org.replay([event], seed=False)
    assert result.outcome == "succeeded", result.error
    return result, list(policy["Statement"])


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(TLS_DENY, id="the usual statement"),
        pytest.param({**TLS_DENY, "Principal": {"AWS": "*"}, "Resource": "*"}, id="AWS-star, every resource"),
        pytest.param(
            {
                **TLS_DENY,
                "Action": ["s3:*"],
                "Condition": {"BoolIfExists": {"aws:SecureTransport": ["false"]}},
            },
            id="BoolIfExists, list values",
        ),
        pytest.param(
            {
                **TLS_DENY,
                "Action": "S3:*",
                "Condition": {"Bool": {"AWS:SecureTransport": ["false", "FALSE"]}},
            },
            id="other capitalisation, a repeated value",
        ),
    ],
)
def test_a_teams_own_statement_denying_plain_http_is_kept_and_nothing_added(
    org: Organization, load_event: EventLoader, statement: dict[str, Any]
) -> None:
    result, statements = replay_with_team_statement(org, load_event, statement)

    assert bucket_state(org, MEMBER, "team-churn-features")["policy"]["Statement"] == statements
    assert [(a.type, a.status) for a in result.actions] == [("remediate", "notify-only"), ("notify", "done")]
    [notice] = security_notices(org, result.id)
    assert notice.subject.endswith("not remediated (already compliant)"), notice.subject


@pytest.mark.parametrize(
    "statement",
    [
        # Narrowed by a second condition: HTTP through any other endpoint is still allowed.
        pytest.param(
            {
                **TLS_DENY,
                "Condition": {**TLS_DENY["Condition"], "StringEquals": {"aws:SourceVpce": "vpce-1a2b"}},
            },
            id="narrowed to one VPC endpoint",
        ),
        pytest.param(
            {
                **TLS_DENY,
                "Condition": {"Bool": {"aws:SecureTransport": "false", "aws:ViaAWSService": "false"}},
            },
            id="narrowed by a second Bool key",
        ),
        pytest.param({**TLS_DENY, "Condition": {"Bool": {"aws:SecureTransport": "true"}}}, id="denies HTTPS"),
        pytest.param({**TLS_DENY, "Effect": "Allow"}, id="Allow, not Deny"),
        pytest.param({**TLS_DENY, "Principal": {"AWS": f"arn:aws:iam::{MEMBER}:root"}}, id="one principal"),
        pytest.param({**TLS_DENY, "Resource": f"{FEATURES}/*"}, id="objects only, not the bucket"),
        pytest.param({**TLS_DENY, "Action": "s3:GetObject"}, id="one action"),
    ],
)
def test_a_statement_that_lets_some_plain_http_through_gets_the_tls_statement_added_beside_it(
    org: Organization, load_event: EventLoader, statement: dict[str, Any]
) -> None:
    result, statements = replay_with_team_statement(org, load_event, statement)

    *kept, added = bucket_state(org, MEMBER, "team-churn-features")["policy"]["Statement"]
    assert kept == statements, "every statement of the team's stays as it was"
    assert {key: added[key] for key in ("Effect", "Principal", "Action", "Resource", "Condition")} == {
        key: TLS_DENY[key] for key in ("Effect", "Principal", "Action", "Resource", "Condition")
    }
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "done", True),
        ("notify", "done", True),
    ]
    [entry] = remediations(org, result.id)
    assert entry.detail["changes"]["statements_kept"] == len(statements)


def test_s3_slowing_down_the_policy_write_is_waited_out_and_the_statement_lands_once(
    org: Organization, load_event: EventLoader
) -> None:
    event = load_event("config-s3-tls-required")
    org.seed(event)
    slow_down = Fault("s3", "PutBucketPolicy", "SlowDown", status=503, times=6)

    with inject_api_faults(org, [slow_down]):
        [result] = org.replay([event], seed=False)

    # botocore's own retries met the first errors; the queue's redelivery the rest.
    assert slow_down.hits == 6
    assert result.outcome == "succeeded", result.error
    statements = bucket_state(org, MEMBER, "team-churn-features")["policy"]["Statement"]
    assert [s["Sid"] for s in statements] == ["TeamRoleReadsData", "DenyInsecureTransport"]
    assert [e.status for e in remediations(org, event["id"])] == ["done"]


# --------------------------------------------------------------------------- safety


@pytest.mark.parametrize("how", ["global DryRun", "control mode"])
def test_dry_run_changes_nothing_and_says_what_it_would_have_done(
    org: Organization, load_event: EventLoader, tmp_path: Path, how: str
) -> None:
    if how == "global DryRun":
        org.configure(DRY_RUN="true")
    else:
        with_policy(
            org,
            tmp_path,
            replace=(
                'action = "block_bucket_public_access"\nmode = "enforce"',
                'action = "block_bucket_public_access"\nmode = "dry-run"',
            ),
        )
    event = load_event("config-s3-public-read")
    org.seed(event)
    before = snapshot(org, event)

    [result] = org.replay([event])

    assert result.outcome == "succeeded"
    assert snapshot(org, event) == before
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "dry-run", True),
        ("notify", "done", True),
    ]
    [notice] = security_notices(org, event["id"])
    assert_subject(
        notice,
        "HIGH",
        "s3-bucket-public-read-prohibited",
        "bucket team-churn-public-data in 210987654321",
        "would be remediated (dry-run)",
    )
    assert notice.attributes["kind"] == "remediation-dry-run"
    assert "would turn on all four S3 Block Public Access settings" in notice.message["reason"]
    assert org.config_evaluations == []


def test_dry_run_switched_off_lets_the_same_evaluation_be_acted_on(
    org: Organization, load_event: EventLoader
) -> None:
    event = load_event("config-s3-public-read")
    org.configure(DRY_RUN="true")
    [dry] = org.replay([event])
    org.configure(DRY_RUN="false")

    [real] = org.replay([event])

    assert [a.status for a in dry.actions if a.type == "remediate"] == ["dry-run"]
    assert [a.status for a in real.actions if a.type == "remediate"] == ["done"]
    assert bucket_state(org, MEMBER, "team-churn-public-data")["public_access_block"]


@pytest.mark.parametrize(
    ("until", "reason", "status"),
    [
        ("2099-12-31", "Public dataset for the churn Kaggle challenge (SEC-42)", "exempt"),
        ("2020-01-31", "Expired exemption", "done"),
        ("2099-12-31", "", "done"),  # an exemption without a reason is not an exemption
    ],
)
def test_resource_tag_exemptions_count_until_they_expire(
    org: Organization, load_event: EventLoader, until: str, reason: str, status: str
) -> None:
    event = load_event("config-s3-public-read")
    org.seed(event)
    tags = [{"Key": "team", "Value": "churn"}, {"Key": "governance:exempt-until", "Value": until}]
    if reason:
        tags.append({"Key": "governance:exempt-reason", "Value": reason})
    aws(org, MEMBER, "s3").put_bucket_tagging(Bucket="team-churn-public-data", Tagging={"TagSet": tags})
    before = snapshot(org, event)

    [result] = org.replay([event])

    assert result.outcome == "succeeded"
    [remediate] = [a for a in result.actions if a.type == "remediate"]
    assert (remediate.status, remediate.verified) == (status, True)
    [notice] = security_notices(org, event["id"])
    if status == "exempt":
        assert snapshot(org, event) == before
        assert_subject(
            notice,
            "HIGH",
            "s3-bucket-public-read-prohibited",
            "bucket team-churn-public-data in 210987654321",
            "exempt until 2099-12-31",
        )
        assert notice.attributes["kind"] == "exemption"
        assert notice.message["exemption"] == {
            "source": "tag",
            "reason": reason,
            "owner": "",
            "expires": until,
        }
    else:
        assert snapshot(org, event)["public_access_block"]
        assert notice.attributes["kind"] == "remediation"
        assert any("governance:exempt" in note or "expired" in note for note in notice.message["notes"])


def test_an_exemption_tag_counts_on_any_page_of_a_notebooks_tags(
    org: Organization, load_event: EventLoader
) -> None:
    """SageMaker's ListTags answers 50 tags at a time: an exemption on the second page still holds."""
    event = load_event("config-notebook-root-access")
    org.seed(event)
    sagemaker = aws(org, MEMBER, "sagemaker")
    arn = sagemaker.describe_notebook_instance(NotebookInstanceName="fraud-analysis")["NotebookInstanceArn"]
    sagemaker.add_tags(
        ResourceArn=arn, Tags=[{"Key": f"cost-centre-{n:02}", "Value": "x"} for n in range(50)]
    )
    sagemaker.add_tags(
        ResourceArn=arn,
        Tags=[
            {"Key": "governance:exempt-until", "Value": "2099-12-31"},
            {"Key": "governance:exempt-reason", "Value": "GPU driver debugging (SEC-77)"},
        ],
    )
    assert "governance:exempt-until" not in {t["Key"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}
    before = snapshot(org, event)

    [result] = org.replay([event])

    assert [(a.status, a.verified) for a in result.actions if a.type == "remediate"] == [("exempt", True)]
    assert snapshot(org, event) == before


@pytest.mark.parametrize(("expires", "status"), [("2099-06-30", "exempt"), ("2021-06-30", "done")])
def test_policy_file_exemptions_count_until_they_expire(
    org: Organization, load_event: EventLoader, tmp_path: Path, expires: str, status: str
) -> None:
    with_policy(
        org,
        tmp_path,
        f"""
[[exemption]]
accounts = ["2109876543??"]
resources = ["sg-0123456789abcdef0"]
controls = ["security-group-open-ssh"]
reason = "Bastion for the incident drill"
owner = "secops@example.com"
expires = {expires}
""",
    )
    event = load_event("config-security-group-ssh")
    org.seed(event)
    before = snapshot(org, event)

    [result] = org.replay([event])

    [remediate] = [a for a in result.actions if a.type == "remediate"]
    assert (result.outcome, remediate.status, remediate.verified) == ("succeeded", status, True)
    [notice] = security_notices(org, event["id"])
    if status == "exempt":
        assert snapshot(org, event) == before
        assert notice.message["exemption"] == {
            "source": "policy",
            "reason": "Bastion for the incident drill",
            "owner": "secops@example.com",
            "expires": expires,
        }
    else:
        assert ("tcp", 22, 22, "0.0.0.0/0") not in snapshot(org, event)
        assert notice.message["notes"] == [
            f"policy exemption of secops@example.com expired on {expires}; it no longer counts"
        ]


def test_the_management_account_is_never_touched(org: Organization, load_event: EventLoader) -> None:
    event = load_event("config-in-management-account")
    org.seed(event)
    before = snapshot(org, event)

    [result] = org.replay([event])

    assert result.outcome == "succeeded"
    assert snapshot(org, event) == before
    assert MANAGEMENT not in org.assume_role_attempts  # not even to read tags
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "notify-only", True),
        ("notify", "done", True),
    ]
    [notice] = security_notices(org, event["id"])
    assert_subject(
        notice,
        "HIGH",
        "s3-bucket-public-read-prohibited",
        "bucket org-billing-reports in 999999999999",
        "not remediated (management account)",
    )
    assert notice.attributes == {"severity": "HIGH", "account": MANAGEMENT, "kind": "non-compliance"}
    assert "never acts in the management account" in notice.message["reason"]


def test_the_governance_account_is_never_touched(org: Organization, load_event: EventLoader) -> None:
    # The governance account's own evaluations reach the function when the member StackSet also covers
    # its OU; the runtime routes governance-account events to the default bus, so call the logic directly.
    event = in_account(load_event("config-s3-public-read"), GOVERNANCE, event_id="gov-evaluation-1")
    aws(org, GOVERNANCE, "s3").create_bucket(Bucket="team-churn-public-data")
    assume_role_attempts = dict(org.assume_role_attempts)

    decision = remediate_evaluation(parse_event(event, ConfigComplianceChange))

    assert (decision.status, decision.headline) == ("notify-only", "not remediated (governance account)")
    assert bucket_state(org, GOVERNANCE, "team-churn-public-data")["public_access_block"] is None
    assert org.assume_role_attempts == assume_role_attempts
    [notice] = security_notices(org, "gov-evaluation-1")
    assert notice.attributes == {"severity": "HIGH", "account": GOVERNANCE, "kind": "non-compliance"}
    assert [e.status for e in remediations(org, "gov-evaluation-1")] == ["notify-only"]


def cap_counter(org: Organization, account: str) -> dict[str, Any]:
    """The account's hourly-cap item of the current hour, as DynamoDB stores it."""
    return dict(
        aws(org, GOVERNANCE, "dynamodb").get_item(
            TableName=org.physical_id("StateTable"),
            Key={
                "pk": {"S": f"remediation-cap#{account}"},
                "sk": {"S": datetime.now(UTC).strftime("%Y-%m-%dT%H")},
            },
        )["Item"]
    )


def three_findings_under_a_cap_of_two(
    org: Organization, load_event: EventLoader
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The hourly cap set to 2, and three fixable findings in MEMBER seeded: the third is one too many."""
    org.configure(MAX_ACTIONS_PER_ACCOUNT_PER_HOUR="2")
    first, second, third = (
        load_event(name)
        for name in ("config-s3-public-read", "config-s3-tls-required", "config-ebs-encryption-default")
    )
    for event in (first, second, third):
        org.seed(event)
    return first, second, third


def test_past_the_hourly_cap_an_account_is_notified_once_and_not_changed(
    org: Organization, load_event: EventLoader
) -> None:
    first, second, third = three_findings_under_a_cap_of_two(org, load_event)
    elsewhere = in_account(
        load_event("config-s3-default-encryption-conformance-pack"),
        OTHER_MEMBER,
        event_id="other-account-encryption",
    )
    org.seed(elsewhere)
    before = snapshot(org, third)

    results = org.replay([first, second, third, elsewhere])

    statuses = [[a.status for a in r.actions if a.type == "remediate"] for r in results]
    assert statuses == [["done"], ["done"], ["notify-only"], ["done"]]  # the cap is per account
    # The emulation redelivers at once, so every delivery of the third falls in the same hour: the queue
    # dead-letters it (in AWS the function asks SQS to hold it until the hour turns; see below).
    assert [r.outcome for r in results] == ["succeeded", "succeeded", "dead-lettered", "succeeded"]
    assert snapshot(org, third) == before
    held, dead_lettered = security_notices(org, third["id"])
    assert_subject(
        held,
        "MEDIUM",
        "ec2-ebs-encryption-by-default",
        "account 210987654321 in us-east-1",
        "not remediated (hourly cap reached)",
    )
    assert "already had 2 remediations this hour" in held.message["reason"]
    assert "kept on the compliance queue and tried again after" in held.message["reason"]
    # Told once however many deliveries the cap refused, then told that it waits in the DLQ.
    assert dead_lettered.subject.endswith("NOT remediated, dead-lettered")
    assert "hourly remediation cap" in dead_lettered.message["reason"]
    assert "govern redrive" in dead_lettered.message["reason"]
    assert [(e.action, e.status) for e in org.ledger(third["id"]) if e.action != "notify"] == [
        ("remediate", "notify-only"),
        ("dead_letter", "failed"),
    ]
    counter = cap_counter(org, MEMBER)
    assert counter["count"] == {"N": "2"}
    assert int(counter["expires_at"]["N"]) > datetime.now(UTC).timestamp()


def test_the_cap_tells_of_each_evaluation_it_holds_back_once(
    org: Organization, load_event: EventLoader
) -> None:
    """Once per evaluation, not per rule: another bucket the same rule finds, and the same bucket found again
    later (a new evaluation), are each told, and the redeliveries of each are not."""
    org.configure(MAX_ACTIONS_PER_ACCOUNT_PER_HOUR="1")
    fixed, bucket = load_event("config-s3-tls-required"), load_event("config-s3-public-read")
    name = bucket["detail"]["resourceId"]
    other_bucket = json.loads(json.dumps(bucket).replace(name, f"{name}-2"))
    other_bucket["id"] = "other-bucket-public-read"
    again = later_evaluation(bucket, event_id="same-bucket-public-read-again")
    for event in (fixed, bucket, other_bucket):
        org.seed(event)

    results = org.replay([fixed, bucket, other_bucket, again])

    assert [r.outcome for r in results] == ["succeeded", "dead-lettered", "dead-lettered", "dead-lettered"]
    for event in (bucket, other_bucket, again):
        [held] = [n for n in security_notices(org, event["id"]) if "hourly cap" in n.subject]
        assert (held.message["resource"], held.message["outcome"]) == (
            event["detail"]["resourceId"],
            "notify-only",
        )
    s3 = aws(org, MEMBER, "s3")
    for held_bucket in (name, f"{name}-2"):
        with pytest.raises(ClientError, match="NoSuchPublicAccessBlockConfiguration"):
            s3.get_public_access_block(Bucket=held_bucket)
    assert cap_counter(org, MEMBER)["count"] == {"N": "1"}


def test_an_evaluation_the_cap_held_back_is_remediated_after_the_hour_by_redrive(
    org: Organization, load_event: EventLoader
) -> None:
    """Nothing the cap refused is stored as handled: once the cap allows, `govern redrive` of the
    compliance DLQ brings the evaluation back and it is fixed."""
    first, second, third = three_findings_under_a_cap_of_two(org, load_event)
    [*_, held] = org.replay([first, second, third])
    assert held.outcome == "dead-lettered"
    assert account_state(org, MEMBER)["ebs_encryption_by_default"][REGION] is False

    org.configure(MAX_ACTIONS_PER_ACCOUNT_PER_HOUR="20")  # the hour turned: the cap allows again
    dlq = aws(org, GOVERNANCE, "sqs").get_queue_url(QueueName="ml-governance-dev-config-compliance-dlq")
    [listed] = operations.redrive(dlq["QueueUrl"], dry_run=True)
    # SQS kept the message without a reason; the function's last delivery wrote it in the ledger.
    assert listed.why_dead_lettered.startswith("gave up after ") and listed.status == "would-move"
    assert "hourly remediation cap" in listed.why_dead_lettered
    [moved] = operations.redrive(dlq["QueueUrl"], dry_run=False)
    org.replay([], sequential=False)  # the function drains the compliance queue

    assert (moved.status, moved.event_id) == ("moved", third["id"])
    assert account_state(org, MEMBER)["ebs_encryption_by_default"][REGION] is True
    assert [e.status for e in remediations(org, third["id"])] == ["notify-only", "done"]
    *_, fixed = security_notices(org, third["id"])
    assert fixed.subject.endswith("account 210987654321 in us-east-1 remediated")
    assert org.dead_letters() == []


def test_a_redelivery_after_the_hour_acts_on_what_the_cap_held_back(
    org: Organization, load_event: EventLoader
) -> None:
    first, second, third = three_findings_under_a_cap_of_two(org, load_event)
    org.replay([first, second])
    change = parse_event(third, ConfigComplianceChange)

    for _ in range(2):  # two deliveries within the hour: both refused, the security team told once
        with pytest.raises(RemediationDeferred) as deferred:
            remediate_evaluation(change)
    next_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert next_hour < deferred.value.retry_at <= next_hour + timedelta(minutes=1)
    assert len(security_notices(org, third["id"])) == 1
    assert account_state(org, MEMBER)["ebs_encryption_by_default"][REGION] is False

    org.configure(MAX_ACTIONS_PER_ACCOUNT_PER_HOUR="20")  # the hour turned
    decision = remediate_evaluation(change)

    assert (decision.status, decision.verified) == ("done", True)
    assert account_state(org, MEMBER)["ebs_encryption_by_default"][REGION] is True
    assert [e.status for e in remediations(org, third["id"])] == ["notify-only", "done"]
    assert remediate_evaluation(change).status == "skipped"  # and now it is handled, once


def test_the_function_keeps_a_held_back_record_out_of_sight_until_the_hour_turns(
    org: Organization, load_event: EventLoader
) -> None:
    """A redelivery within the hour would only be refused again and use up a receive: the function asks
    SQS to keep the record invisible until the hour has turned, instead of the queue's visibility timeout."""
    first, second, third = three_findings_under_a_cap_of_two(org, load_event)
    org.replay([first, second])
    sqs = aws(org, GOVERNANCE, "sqs")
    queue = org.physical_id("ConfigComplianceQueue")
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(third))
    [message] = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=1, AttributeNames=["All"])["Messages"]
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message["Attributes"],
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": org.arn("ConfigComplianceQueue"),
        "awsRegion": REGION,
    }

    response = org._invoke(org.function_spec("RemediateConfigFunction"), {"Records": [record]})
    time.sleep(1.5)  # past the visibility the record was received with

    assert response["batchItemFailures"] == [{"itemIdentifier": message["MessageId"]}]
    assert sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0).get("Messages", []) == []
    assert sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])[
        "Attributes"
    ] == {"ApproximateNumberOfMessagesNotVisible": "1"}
    assert account_state(org, MEMBER)["ebs_encryption_by_default"][REGION] is False


def test_deliveries_that_changed_nothing_give_their_cap_slot_back(
    org: Organization, load_event: EventLoader
) -> None:
    """A throttled member account must not use up its hourly cap on the queue's redeliveries."""
    throttled, tls, ebs = three_findings_under_a_cap_of_two(org, load_event)

    with inject_api_faults(org, [Fault("s3", "PutPublicAccessBlock", "SlowDown", status=503, times=99)]):
        [dead] = org.replay([throttled])
    counter = cap_counter(org, MEMBER)
    results = org.replay([tls, ebs])

    assert dead.outcome == "dead-lettered"
    assert counter["count"] == {"N": "0"}, "three deliveries took a slot each and gave it back"
    # The cap of 2 is still whole: both later findings in the account are fixed.
    assert [[a.status for a in r.actions if a.type == "remediate"] for r in results] == [["done"], ["done"]]


def test_a_rule_no_control_covers_is_notify_only(org: Organization, load_event: EventLoader) -> None:
    event = load_event("config-unknown-rule")
    org.seed(event)
    before = snapshot(org, event)

    [result] = org.replay([event])

    assert result.outcome == "succeeded"
    assert snapshot(org, event) == before
    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "notify-only", True),
        ("notify", "done", True),
    ]
    [notice] = security_notices(org, event["id"])
    assert_subject(
        notice,
        "MEDIUM",
        "team-custom-tagging-rule",
        "bucket team-churn-misc in 210987654321",
        "not remediated (no control in policy)",
    )
    assert notice.attributes == {"severity": "MEDIUM", "account": MEMBER, "kind": "non-compliance"}
    assert notice.message["annotation"] == "Missing required tags: cost-center, data-classification."
    assert org.config_evaluations == []


def test_a_missing_member_role_fails_loudly(org: Organization, load_event: EventLoader) -> None:
    event = load_event("config-s3-public-read")
    org.seed(event)
    org.remove_execution_role(MEMBER)

    [result] = org.replay([event], seed=False)

    assert result.outcome == "failed"
    assert result.error is not None and "GovernanceExecutionRole" in result.error and MEMBER in result.error
    assert bucket_state(org, MEMBER, "team-churn-public-data")["public_access_block"] is None
    [notice] = security_notices(org, event["id"])
    assert notice.attributes == {"severity": "HIGH", "account": MEMBER, "kind": "remediation-failed"}
    assert_subject(
        notice,
        "HIGH",
        "s3-bucket-public-read-prohibited",
        "bucket team-churn-public-data in 210987654321",
        "remediation FAILED",
    )


# --------------------------------------------------------------------------- security groups: least change


def test_a_narrowed_range_is_told_to_the_security_team_and_kept_in_the_ledger(
    org: Organization, load_event: EventLoader
) -> None:
    event = load_event("config-security-group-open-ports")

    [result] = org.replay([event])

    assert result.outcome == "succeeded", result.error
    [notice] = security_notices(org, event["id"])
    [entry] = remediations(org, event["id"])
    for changes in (notice.message["changes"], entry.detail["changes"]):
        assert sorted((r["protocol"], r["ports"], r["cidr"]) for r in changes["revoked"]) == [
            ("tcp", "0-1024", "0.0.0.0/0"),
            ("tcp", "8080", "0.0.0.0/0"),
            ("tcp", "8080", "::/0"),
        ]
        assert [(k["ports"], k["cidr"], k["description"], k["added"]) for k in changes["kept"]] == [
            ("80", "0.0.0.0/0", "team web tier", True),
            ("443", "0.0.0.0/0", "team web tier", False),  # the group's own 443 rule already said so
        ]
    assert notice.message["notes"] == entry.detail.get("notes", []) == []


def test_all_traffic_from_the_world_revoked_whole_is_explained_in_the_notice_and_the_ledger(
    org: Organization, load_event: EventLoader
) -> None:
    event = load_event("config-security-group-ssh")
    org.seed(event)
    group_id = event["detail"]["resourceId"]
    aws(org, MEMBER, "ec2").authorize_security_group_ingress(
        GroupId=group_id, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )

    [result] = org.replay([event])

    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "done", True),
        ("notify", "done", True),
    ]
    assert ("-1", -1, -1, "0.0.0.0/0") not in ingress(org, MEMBER, group_id)
    reason = (
        "all traffic from 0.0.0.0/0 cannot be narrowed to leave out port 22; revoked whole: add back what "
        "the workload needs as tcp or udp rules"
    )
    [notice] = security_notices(org, event["id"])
    [entry] = remediations(org, event["id"])
    assert notice.message["notes"] == entry.detail["notes"] == [reason]
    for changes in (notice.message["changes"], entry.detail["changes"]):
        [whole] = [rule for rule in changes["revoked"] if rule["protocol"] == "-1"]
        assert whole["reason"] == reason
        assert "notes" not in changes


# --------------------------------------------------------------------------- exactly once, and again when new


def test_three_deliveries_of_one_evaluation_act_once(org: Organization, load_event: EventLoader) -> None:
    event = load_event("config-security-group-ssh")

    results = org.replay([event, event, event])

    assert [[(a.type, a.status, a.verified) for a in r.actions] for r in results] == [
        [("remediate", "done", True), ("notify", "done", True)],
        [("remediate", "skipped", True)],
        [("remediate", "skipped", True)],
    ]
    assert [r.outcome for r in results] == ["succeeded"] * 3
    assert len(security_notices(org, event["id"])) == 1
    assert org.config_evaluations == [(MEMBER, REGION, ["restricted-ssh"])]
    assert [e.status for e in remediations(org, event["id"])] == ["done", "skipped", "skipped"]


def test_a_new_evaluation_of_the_same_resource_acts_again(org: Organization, load_event: EventLoader) -> None:
    first = load_event("config-s3-public-read")
    again = later_evaluation(first, event_id="b7c2a3f4-0000-4000-8000-000000000001")
    org.replay([first])
    # Someone turns the block off again; Config notices and reports a new NON_COMPLIANT evaluation.
    aws(org, MEMBER, "s3").delete_public_access_block(Bucket="team-churn-public-data")

    [result] = org.replay([again])

    assert [(a.type, a.status, a.verified) for a in result.actions] == [
        ("remediate", "done", True),
        ("notify", "done", True),
    ]
    assert bucket_state(org, MEMBER, "team-churn-public-data")["public_access_block"]
    assert len(security_notices(org, first["id"])) == len(security_notices(org, again["id"])) == 1


# --------------------------------------------------------------------------- bad input


def batch_sizes(org: Organization, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of records of each SQS batch the functions are invoked with from now on, in order."""
    batches: list[int] = []
    invoke = org._invoke

    def record_batches(function: Any, payload: Any) -> Any:
        if isinstance(payload, dict) and "Records" in payload:
            batches.append(len(payload["Records"]))
        return invoke(function, payload)

    monkeypatch.setattr(org, "_invoke", record_batches)
    return batches


def test_one_malformed_record_goes_to_the_dlq_and_the_rest_of_its_batch_is_processed(
    org: Organization, load_event: EventLoader, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = [load_event("config-s3-public-read"), load_event("config-ebs-encryption-default")]
    malformed = load_event("malformed-config-evaluation")
    batches = batch_sizes(org, monkeypatch)

    results = org.replay([good[0], malformed, good[1]], sequential=False)

    assert batches[0] == 3  # the three arrived together
    assert [r.outcome for r in results] == ["succeeded", "dead-lettered", "succeeded"]
    assert results[1].error == (
        "ConfigComplianceChange is malformed: detail.resourceId: Field required; "
        "detail.newEvaluationResult.evaluationResultIdentifier: Field required"
    )
    [kept] = org.dead_letters()
    assert kept.queue == "ml-governance-dev-config-compliance-dlq"
    assert kept.event == malformed
    assert bucket_state(org, MEMBER, "team-churn-public-data")["public_access_block"]
    assert account_state(org, MEMBER)["ebs_encryption_by_default"][REGION] is True
    # Retried (3 receives) before the DLQ, but its reason is recorded once.
    assert [(e.action, e.status) for e in org.ledger(malformed["id"])] == [("dead_letter", "failed")]


def test_a_compliant_evaluation_is_not_routed_and_handled_gracefully_if_it_arrives(
    org: Organization, load_event: EventLoader
) -> None:
    event = load_event("config-compliant")

    [result] = org.replay([event])
    # Even put straight on the queue (as a misconfigured rule would), it is consumed without a change.
    queue = org.physical_id("ConfigComplianceQueue")
    aws(org, GOVERNANCE, "sqs").send_message(QueueUrl=queue, MessageBody=json.dumps(event))
    org.replay([], sequential=False)

    assert (result.outcome, result.rules, result.actions) == ("ignored", [], [])
    assert org.ledger(event["id"]) == []
    assert org.dead_letters() == []
    assert aws(org, GOVERNANCE, "sqs").get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"] == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def test_a_bad_policy_file_fails_loudly_naming_the_entry(
    org: Organization, load_event: EventLoader, tmp_path: Path
) -> None:
    with_policy(
        org,
        tmp_path,
        replace=('id = "s3-bucket-tls-only"\nrules', 'id = "s3-bucket-tls-only"\nrulez = []\nrules'),
    )
    event = load_event("config-s3-public-read")

    [result] = org.replay([event])

    assert result.outcome == "dead-lettered"
    assert result.error is not None
    assert "control 's3-bucket-tls-only' (#4): rulez: Extra inputs are not permitted" in result.error
    assert bucket_state(org, MEMBER, "team-churn-public-data")["public_access_block"] is None


# --------------------------------------------------------------------------- govern replay --json


def test_govern_replay_json_reports_each_control_done_verified_and_notified() -> None:
    files = [str(PROJECT_ROOT / "events" / f"{name}.json") for name in sorted(CONTROL_EVENTS)]
    completed = subprocess.run(
        [sys.executable, "-m", "govern.cli", "replay", "--json", *files],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=PROJECT_ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads(completed.stdout)
    assert report["summary"] == {
        "events": len(files),
        "succeeded": len(files),
        "failed": 0,
        "ignored": 0,
        "dead_lettered": 0,
    }
    for event in report["events"]:
        assert event["rules"] == [RULE]
        actions = {action["type"]: action for action in event["actions"]}
        assert (actions["remediate"]["status"], actions["remediate"]["verified"]) == ("done", True), event
        assert (actions["notify"]["status"], actions["notify"]["verified"]) == ("done", True), event
        assert actions["notify"]["target"].endswith(":ml-governance-dev-security")


# --------------------------------------------------------------------------- re-evaluation requests


def another_bucket(event: dict[str, Any], bucket: str, *, event_id: str) -> dict[str, Any]:
    moved = json.loads(json.dumps(event).replace("team-churn-public-data", bucket))
    moved["id"] = event_id
    return moved


def test_a_batch_that_would_outlast_its_invocation_hands_records_back_untouched_and_loses_none(
    org: Organization, load_event: EventLoader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Less than one record's time left (here: a 10 s timeout, under the 30 s budget): the invocation
    takes its first record and hands the rest back to the queue as they came, rather than time out the
    whole batch. A record out of time on its last delivery is dead-lettered at once, ledgered and
    notified, never silently: taking all those would time the batch out."""
    first = load_event("config-s3-public-read")
    findings = [first] + [
        another_bucket(
            first, f"team-churn-public-data-{n}", event_id=f"7b0cf7f4-4d3c-4c59-9c1e-2a1f6a0d2b{n:02}"
        )
        for n in range(2, 8)
    ]
    for event in findings:
        org.seed(event)
    [function] = [f for f in org.functions.values() if f.logical_id == "RemediateConfigFunction"]
    monkeypatch.setattr(function, "timeout", 10)
    batches = batch_sizes(org, monkeypatch)

    results = org.replay(findings, sequential=False)

    # One record an invocation; the fifth delivery (ComplianceMaxReceives) is the last of the other two.
    assert batches == [7, 6, 5, 4, 3]
    assert [r.outcome for r in results] == ["succeeded"] * 5 + ["dead-lettered"] * 2
    done, late = findings[:5], findings[5:]
    for event in done:
        assert bucket_state(org, MEMBER, event["detail"]["resourceId"])["public_access_block"], event["id"]
        assert [(e.action, e.status) for e in org.ledger(event["id"])] == [
            ("remediate", "done"),
            ("notify", "done"),
        ]
    assert sorted(kept.event["id"] for kept in org.dead_letters()) == sorted(e["id"] for e in late)
    for event in late:
        assert not bucket_state(org, MEMBER, event["detail"]["resourceId"])["public_access_block"]
        [entry] = [e for e in org.ledger(event["id"]) if e.action == "dead_letter"]
        assert entry.status == "failed" and "out of time in its batch" in entry.detail["error"], entry.detail
    assert sum("dead-lettered" in note.subject for note in org.notifications("security")) == 2


def test_a_burst_of_one_rule_asks_config_to_reevaluate_once(
    org: Organization, load_event: EventLoader
) -> None:
    first = load_event("config-s3-public-read")
    second = another_bucket(
        first, "team-churn-public-data-2", event_id="7b0cf7f4-4d3c-4c59-9c1e-2a1f6a0d2b11"
    )
    for event in (first, second):
        org.seed(event)

    results = org.replay([first, second], sequential=False)

    assert [result.outcome for result in results] == ["succeeded", "succeeded"]
    for bucket in ("team-churn-public-data", "team-churn-public-data-2"):
        assert bucket_state(org, MEMBER, bucket)["public_access_block"]
    reevaluations = sorted(
        remediations(org, event["id"])[0].detail["reevaluation"] for event in (first, second)
    )
    assert reevaluations == [ALREADY_REQUESTED, "requested"]
    # Config was asked once: a second request within the minute would be refused (LimitExceededException).
    assert org.config_evaluations == [(MEMBER, REGION, ["s3-bucket-public-read-prohibited"])]


def test_a_refused_reevaluation_request_leaves_the_verified_fix_done(
    org: Organization, load_event: EventLoader
) -> None:
    event = load_event("config-s3-public-read")
    org.seed(event)
    refused = Fault("config", "StartConfigRulesEvaluation", "LimitExceededException", 400)

    with inject_api_faults(org, [refused]):
        [result] = org.replay([event])

    assert result.outcome == "succeeded"
    assert refused.hits == 1
    [entry] = remediations(org, event["id"])
    assert (entry.status, entry.detail["verified"], entry.detail["reevaluation"]) == (
        "done",
        True,
        ALREADY_REQUESTED,
    )
    assert bucket_state(org, MEMBER, "team-churn-public-data")["public_access_block"]
    assert org.config_evaluations == []


def public_read_with_a_read_back(
    org: Organization, load_event: EventLoader, monkeypatch: pytest.MonkeyPatch, verify: Callable[..., bool]
) -> tuple[dict[str, Any], list[float]]:
    """The public-read sample seeded, with `verify(real_verify, *args)` as its action's read-back; returns
    the event and the list the waits between read-backs are recorded in (nothing sleeps)."""
    event = load_event("config-s3-public-read")
    org.seed(event)
    real = controls.ACTIONS["block_bucket_public_access"]
    replaced = dataclasses.replace(real, verify_with=lambda *args: verify(real.verify_with, *args))
    monkeypatch.setitem(controls.ACTIONS, real.name, replaced)
    waits: list[float] = []
    monkeypatch.setattr(engine.time, "sleep", waits.append)
    return event, waits


def test_a_read_back_that_lags_the_fix_is_tried_again_before_the_fix_is_called_failed(
    org: Organization, load_event: EventLoader, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S3 and EC2 document eventually consistent reads: the first read-backs may still show the old state.
    reads: list[bool] = []

    def lagging(real: Callable[..., bool], *args: Any) -> bool:
        reads.append(real(*args))
        return len(reads) > 2 and reads[-1]  # the first two reads still show the old state

    event, waits = public_read_with_a_read_back(org, load_event, monkeypatch, lagging)

    [result] = org.replay([event])

    assert result.outcome == "succeeded"
    assert waits == list(engine.VERIFY_WAITS_S[:2])
    [entry] = remediations(org, event["id"])
    assert (entry.status, entry.detail["verified"]) == ("done", True)
    assert all(bucket_state(org, MEMBER, "team-churn-public-data")["public_access_block"].values())


def test_a_fix_the_read_back_never_shows_is_failed_after_every_wait(
    org: Organization, load_event: EventLoader, monkeypatch: pytest.MonkeyPatch
) -> None:
    event, waits = public_read_with_a_read_back(org, load_event, monkeypatch, lambda *_: False)

    [result] = org.replay([event])

    assert waits == list(engine.VERIFY_WAITS_S)
    [entry] = remediations(org, event["id"])
    assert entry.status == "failed"
    assert entry.detail["error"] == (
        "block_bucket_public_access ran but reading the resource back, 7.5 s later, still shows it not fixed"
    )
    assert result.outcome == "failed"


def test_the_function_knows_which_delivery_the_queue_dead_letters_after(org: Organization) -> None:
    """The last delivery is ledgered and notified before SQS moves the record aside; it must be the
    queue's own maxReceiveCount, whatever ComplianceMaxReceives is deployed with."""
    sqs = org.session().client("sqs")
    url = sqs.get_queue_url(QueueName="ml-governance-dev-config-compliance")["QueueUrl"]
    redrive = json.loads(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"][
            "RedrivePolicy"
        ]
    )
    functions = org.session().client("lambda").list_functions()["Functions"]
    [remediate] = [f for f in functions if f["FunctionName"].endswith("RemediateConfigFunction")]

    assert redrive["deadLetterTargetArn"].endswith(":ml-governance-dev-config-compliance-dlq")
    assert (
        int(remediate["Environment"]["Variables"]["COMPLIANCE_MAX_RECEIVES"])
        == int(redrive["maxReceiveCount"])
        == 5
    )
