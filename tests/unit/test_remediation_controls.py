"""Each remediation action on plain moto, in a member account: state before, remediate, state after, and
proof that nothing else about the resource changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.cloudtrail.models import Trail
from moto.sagemaker.models import sagemaker_backends
from pydantic import ValidationError

from govern.emulator import PROJECT_ROOT, notebook_instances_updated_as_sagemaker_does
from govern.template import load_template
from governance.remediation import controls
from governance.remediation.controls import (
    ACTIONS,
    FINDING_TAG,
    PUBLIC_ACCESS_BLOCK_SETTINGS,
    STOPPED_AT_TAG,
    IngressParameters,
    RemediationFailed,
    RemediationNotReady,
)
from governance.remediation.engine import REEVALUATION_PERMISSION
from governance.remediation.resources import TAG_PERMISSIONS

MEMBER = "210987654321"
REGION = "us-east-1"


@pytest.fixture
def member(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.Session]:
    """A session in the member account, as GovernanceExecutionRole would give the backbone."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MOTO_ACCOUNT_ID", raising=False)
    with mock_aws(), notebook_instances_updated_as_sagemaker_does():
        credentials = boto3.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{MEMBER}:role/GovernanceExecutionRole", RoleSessionName="test"
        )["Credentials"]
        yield boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=REGION,
        )


def client(session: boto3.Session, service: str, region: str = REGION) -> Any:
    return session.client(service, region_name=region)  # type: ignore[call-overload]


# --------------------------------------------------------------------------- S3


def public_bucket(session: boto3.Session, name: str = "team-churn-public-data") -> dict[str, Any]:
    """A bucket with a public ACL, a public policy statement and tags; returns its observable state."""
    s3 = client(session, "s3")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_acl(Bucket=name, ACL="public-read")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PublicRead",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{name}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "team", "Value": "churn"}]})
    return bucket_state(session, name)


def bucket_state(session: boto3.Session, name: str) -> dict[str, Any]:
    """Everything about a bucket a remediation could touch, read back from S3."""
    s3 = client(session, "s3")

    def read(call: Any, key: str, missing: str) -> Any:
        try:
            return call(Bucket=name)[key]
        except ClientError as error:
            assert error.response["Error"]["Code"] == missing
            return None

    policy = read(s3.get_bucket_policy, "Policy", "NoSuchBucketPolicy")
    return {
        "grants": s3.get_bucket_acl(Bucket=name)["Grants"],
        "policy": json.loads(policy) if policy else None,
        "tags": read(s3.get_bucket_tagging, "TagSet", "NoSuchTagSet"),
        "public_access_block": read(
            s3.get_public_access_block,
            "PublicAccessBlockConfiguration",
            "NoSuchPublicAccessBlockConfiguration",
        ),
        "encryption": read(
            s3.get_bucket_encryption,
            "ServerSideEncryptionConfiguration",
            "ServerSideEncryptionConfigurationNotFoundError",
        ),
    }


def test_block_bucket_public_access_turns_on_all_four_settings_and_changes_nothing_else(
    member: boto3.Session,
) -> None:
    action = ACTIONS["block_bucket_public_access"]
    before = public_bucket(member)
    assert before["public_access_block"] is None
    assert not action.verify(member, REGION, "team-churn-public-data", {})

    changes = action.remediate(member, REGION, "team-churn-public-data", {})

    after = bucket_state(member, "team-churn-public-data")
    assert after["public_access_block"] == dict.fromkeys(PUBLIC_ACCESS_BLOCK_SETTINGS, True)
    assert {**after, "public_access_block": None} == before
    assert changes["public_access_block_before"] == {}
    assert action.verify(member, REGION, "team-churn-public-data", {})


def test_block_bucket_public_access_completes_a_partial_block(member: boto3.Session) -> None:
    public_bucket(member)
    client(member, "s3").put_public_access_block(
        Bucket="team-churn-public-data",
        PublicAccessBlockConfiguration={"BlockPublicAcls": True, "IgnorePublicAcls": True},
    )
    action = ACTIONS["block_bucket_public_access"]
    assert not action.verify(member, REGION, "team-churn-public-data", {})

    changes = action.remediate(member, REGION, "team-churn-public-data", {})

    assert changes["public_access_block_before"]["BlockPublicPolicy"] is False
    assert action.verify(member, REGION, "team-churn-public-data", {})


def test_a_bucket_already_blocked_is_not_claimed_changed(member: boto3.Session) -> None:
    public_bucket(member)
    block = dict.fromkeys(controls.PUBLIC_ACCESS_BLOCK_SETTINGS, True)
    client(member, "s3").put_public_access_block(
        Bucket="team-churn-public-data", PublicAccessBlockConfiguration=block
    )
    before = bucket_state(member, "team-churn-public-data")

    changes = ACTIONS["block_bucket_public_access"].remediate(member, REGION, "team-churn-public-data", {})

    assert changes == {"changed": False, "public_access_block_before": block}
    assert bucket_state(member, "team-churn-public-data") == before


def test_default_encryption_is_sse_kms_with_bucket_key_and_policy_untouched(member: boto3.Session) -> None:
    action = ACTIONS["enable_bucket_default_encryption"]
    before = public_bucket(member, "team-churn-raw")
    assert before["encryption"] is None
    parameters = {"algorithm": "aws:kms", "bucket_key": True}
    assert not action.verify(member, REGION, "team-churn-raw", parameters)

    changes = action.remediate(member, REGION, "team-churn-raw", parameters)

    after = bucket_state(member, "team-churn-raw")
    [rule] = after["encryption"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["BucketKeyEnabled"] is True
    assert {**after, "encryption": None} == before
    assert changes["changed"] is True
    assert action.verify(member, REGION, "team-churn-raw", parameters)


def test_default_encryption_replaces_sse_s3_and_uses_the_configured_key(member: boto3.Session) -> None:
    s3 = client(member, "s3")
    s3.create_bucket(Bucket="team-churn-raw")
    s3.put_bucket_encryption(
        Bucket="team-churn-raw",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    key = "arn:aws:kms:us-east-1:210987654321:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    parameters = {"kms_key_id": key}
    action = ACTIONS["enable_bucket_default_encryption"]
    assert not action.verify(member, REGION, "team-churn-raw", parameters)

    action.remediate(member, REGION, "team-churn-raw", parameters)

    [rule] = s3.get_bucket_encryption(Bucket="team-churn-raw")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    assert action.verify(member, REGION, "team-churn-raw", parameters)


def test_default_encryption_leaves_a_compliant_kms_configuration_alone(member: boto3.Session) -> None:
    s3 = client(member, "s3")
    s3.create_bucket(Bucket="team-churn-raw")
    existing = {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": "aws:kms",
                    "KMSMasterKeyID": "alias/team",
                },
                "BucketKeyEnabled": True,
            }
        ]
    }
    s3.put_bucket_encryption(Bucket="team-churn-raw", ServerSideEncryptionConfiguration=existing)

    changes = ACTIONS["enable_bucket_default_encryption"].remediate(member, REGION, "team-churn-raw", {})

    assert changes["changed"] is False
    assert s3.get_bucket_encryption(Bucket="team-churn-raw")["ServerSideEncryptionConfiguration"] == existing


def test_default_encryption_leaves_a_bucket_on_the_teams_own_key_as_it_is(member: boto3.Session) -> None:
    """Neither encryption rule asks for a bucket key, and turning it on changes the encryption context
    (the bucket's ARN instead of the object's) that the team's key policy may condition on."""
    before = public_bucket(member, "team-churn-raw")
    s3 = client(member, "s3")
    cmk = "arn:aws:kms:us-east-1:210987654321:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    s3.put_bucket_encryption(
        Bucket="team-churn-raw",
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": cmk},
                    "BucketKeyEnabled": False,
                }
            ]
        },
    )
    with_key = bucket_state(member, "team-churn-raw")
    parameters = {"algorithm": "aws:kms", "bucket_key": True}  # the shipped KMS control's parameters
    action = ACTIONS["enable_bucket_default_encryption"]

    changes = action.remediate(member, REGION, "team-churn-raw", parameters)

    assert changes["changed"] is False
    assert bucket_state(member, "team-churn-raw") == with_key
    assert {**with_key, "encryption": None} == {**before, "encryption": None}
    assert action.verify(member, REGION, "team-churn-raw", parameters)


def test_the_sse_control_gives_a_bucket_without_encryption_sse_s3_and_leaves_kms_alone(
    member: boto3.Session,
) -> None:
    s3 = client(member, "s3")
    action = ACTIONS["enable_bucket_default_encryption"]
    parameters = {"algorithm": "AES256"}  # s3-bucket-server-side-encryption-enabled: any encryption will do
    s3.create_bucket(Bucket="team-churn-raw")
    s3.create_bucket(Bucket="team-churn-kms")
    kms = {
        "Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": False}
        ]
    }
    s3.put_bucket_encryption(Bucket="team-churn-kms", ServerSideEncryptionConfiguration=kms)

    written = action.remediate(member, REGION, "team-churn-raw", parameters)
    kept = action.remediate(member, REGION, "team-churn-kms", parameters)

    [rule] = s3.get_bucket_encryption(Bucket="team-churn-raw")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert (written["changed"], kept["changed"]) == (True, False)
    assert s3.get_bucket_encryption(Bucket="team-churn-kms")["ServerSideEncryptionConfiguration"] == kms


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"algorithm": "AES256", "kms_key_id": "arn:aws:kms:us-east-1:210987654321:key/1234abcd"},
            "kms_key_id needs algorithm 'aws:kms'",
        ),
        ({"kms_key_id": "alias/team"}, "kms_key_id 'alias/team' is not a KMS key ARN"),
        ({"kms_key_id": "1234abcd-12ab-34cd-56ef-1234567890ab"}, "is not a KMS key ARN"),
    ],
)
def test_encryption_parameters_are_validated(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ACTIONS["enable_bucket_default_encryption"].parameters.model_validate(parameters)


def test_tls_statement_is_added_and_every_existing_statement_kept(member: boto3.Session) -> None:
    before = public_bucket(member, "team-churn-features")
    action = ACTIONS["require_tls_for_bucket"]
    assert not action.verify(member, REGION, "team-churn-features", {})

    changes = action.remediate(member, REGION, "team-churn-features", {})

    after = bucket_state(member, "team-churn-features")
    existing, added = after["policy"]["Statement"]
    assert existing == before["policy"]["Statement"][0]
    assert added == {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::team-churn-features", "arn:aws:s3:::team-churn-features/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    assert {**after, "policy": None} == {**before, "policy": None}
    assert changes == {"changed": True, "statement_added": "DenyInsecureTransport", "statements_kept": 1}
    assert action.verify(member, REGION, "team-churn-features", {})


def test_tls_remediation_is_idempotent_and_creates_a_policy_when_there_is_none(member: boto3.Session) -> None:
    client(member, "s3").create_bucket(Bucket="team-churn-features")
    action = ACTIONS["require_tls_for_bucket"]

    first = action.remediate(member, REGION, "team-churn-features", {})
    second = action.remediate(member, REGION, "team-churn-features", {})

    statements = bucket_state(member, "team-churn-features")["policy"]["Statement"]
    assert len(statements) == 1
    assert first["changed"] is True
    assert second["changed"] is False


def test_tls_statement_gets_its_own_sid_when_the_team_already_uses_that_sid(member: boto3.Session) -> None:
    s3 = client(member, "s3")
    s3.create_bucket(Bucket="team-churn-features")
    team = {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:DeleteBucket",
        "Resource": "arn:aws:s3:::team-churn-features",
    }
    s3.put_bucket_policy(
        Bucket="team-churn-features", Policy=json.dumps({"Version": "2012-10-17", "Statement": team})
    )

    ACTIONS["require_tls_for_bucket"].remediate(member, REGION, "team-churn-features", {})

    statements = bucket_state(member, "team-churn-features")["policy"]["Statement"]
    assert [s["Sid"] for s in statements] == ["DenyInsecureTransport", "DenyInsecureTransportByGovernance"]
    assert statements[0] == team


def team_policy(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, indent=2)


def readers_policy(accounts: int) -> str:
    """A bucket policy letting `accounts` accounts read, written as compactly as S3 counts it."""
    statement = {
        "Sid": "Readers",
        "Effect": "Allow",
        "Principal": {"AWS": [str(100000000000 + n) for n in range(accounts)]},
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::team-churn-features/*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, separators=(",", ":"))


def test_tls_statement_fits_a_policy_near_s3s_20_kb_limit(member: boto3.Session) -> None:
    s3 = client(member, "s3")
    s3.create_bucket(Bucket="team-churn-features")
    policy = readers_policy(1300)  # 19,667 bytes; 20,979 with json.dumps's default spaces
    s3.put_bucket_policy(Bucket="team-churn-features", Policy=policy)
    assert len(json.dumps(json.loads(policy))) > controls.MAX_BUCKET_POLICY_BYTES

    changes = ACTIONS["require_tls_for_bucket"].remediate(member, REGION, "team-churn-features", {})

    stored = s3.get_bucket_policy(Bucket="team-churn-features")["Policy"]
    assert len(stored.encode()) <= controls.MAX_BUCKET_POLICY_BYTES
    assert [s["Sid"] for s in json.loads(stored)["Statement"]] == ["Readers", "DenyInsecureTransport"]
    assert changes["changed"] is True


def test_a_policy_the_tls_statement_would_push_past_20_kb_is_left_alone_and_said_so(
    member: boto3.Session,
) -> None:
    s3 = client(member, "s3")
    s3.create_bucket(Bucket="team-churn-features")
    policy = readers_policy(1340)  # 20,267 bytes: 20,485 with the TLS statement
    s3.put_bucket_policy(Bucket="team-churn-features", Policy=policy)

    with pytest.raises(controls.RemediationFailed) as refused:
        ACTIONS["require_tls_for_bucket"].remediate(member, REGION, "team-churn-features", {})

    assert str(refused.value) == (
        "the bucket policy of team-churn-features would be 20,485 bytes with the TLS statement added, and "
        "S3 accepts at most 20,480; shorten the policy, then this control can add it"
    )
    assert s3.get_bucket_policy(Bucket="team-churn-features")["Policy"] == policy


def test_a_policy_naming_a_deleted_principal_is_left_alone_and_the_principal_named(
    member: boto3.Session,
) -> None:
    s3 = client(member, "s3")
    s3.create_bucket(Bucket="team-churn-features")
    policy = team_policy(
        [
            {
                "Sid": "FormerReader",
                "Effect": "Allow",
                "Principal": {"AWS": ["AROAJQABLZS4A3QDU576Q", f"arn:aws:iam::{MEMBER}:role/reader"]},
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::team-churn-features/*",
            }
        ],
    )
    s3.put_bucket_policy(Bucket="team-churn-features", Policy=policy)

    with pytest.raises(controls.RemediationFailed) as refused:
        ACTIONS["require_tls_for_bucket"].remediate(member, REGION, "team-churn-features", {})

    assert "names principals that no longer exist (AROAJQABLZS4A3QDU576Q)" in str(refused.value)
    assert json.loads(s3.get_bucket_policy(Bucket="team-churn-features")["Policy"]) == json.loads(policy)


def refuse(session: boto3.Session, operation: str, code: str, status: int) -> None:
    """S3 answers `operation` with this error, as AWS would where moto accepts the call."""

    def answer(**_: Any) -> tuple[Any, dict[str, Any]]:
        error = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return SimpleNamespace(status_code=status), error

    session.events.register(f"before-call.s3.{operation}", answer)


def test_a_public_policy_under_block_public_access_is_reported_as_such(member: boto3.Session) -> None:
    # S3 rejects any write of a public bucket policy while BlockPublicPolicy is on; moto does not.
    s3 = client(member, "s3")
    public_bucket(member, "team-churn-features")
    s3.put_public_access_block(
        Bucket="team-churn-features",
        PublicAccessBlockConfiguration=dict.fromkeys(controls.PUBLIC_ACCESS_BLOCK_SETTINGS, True),
    )
    before = s3.get_bucket_policy(Bucket="team-churn-features")["Policy"]
    refuse(member, "PutBucketPolicy", "AccessDenied", 403)

    with pytest.raises(controls.RemediationFailed) as refused:
        ACTIONS["require_tls_for_bucket"].remediate(member, REGION, "team-churn-features", {})

    assert "the policy already grants public access" in str(refused.value)
    assert "Block Public Access (BlockPublicPolicy) is on" in str(refused.value)
    assert s3.get_bucket_policy(Bucket="team-churn-features")["Policy"] == before


# --------------------------------------------------------------------------- SageMaker notebooks


def notebook(session: boto3.Session, name: str = "churn-exploration") -> dict[str, Any]:
    sagemaker = client(session, "sagemaker")
    sagemaker.create_notebook_instance(
        NotebookInstanceName=name,
        InstanceType="ml.t3.medium",
        RoleArn=f"arn:aws:iam::{MEMBER}:role/notebook",
        DirectInternetAccess="Enabled",
        RootAccess="Enabled",
        Tags=[{"Key": "team", "Value": "churn"}],
    )
    return notebook_state(session, name)


def notebook_state(session: boto3.Session, name: str) -> dict[str, Any]:
    sagemaker = client(session, "sagemaker")
    described = sagemaker.describe_notebook_instance(NotebookInstanceName=name)
    described.pop("ResponseMetadata")
    described.pop("LastModifiedTime", None)
    tags = sagemaker.list_tags(ResourceArn=described["NotebookInstanceArn"])["Tags"]
    return {**described, "Tags": {tag["Key"]: tag["Value"] for tag in tags}}


ROOT_ACCESS = "sagemaker-notebook-instance-root-access-check"
DIRECT_INTERNET = "sagemaker-notebook-no-direct-internet-access"


def set_status(name: str, status: str) -> None:
    """Put the emulated notebook in a state moto never leaves it in (it stops and starts at once)."""
    sagemaker_backends[MEMBER][REGION].notebook_instances[name].status = status


def test_direct_internet_access_is_contained_by_stopping_not_claimed_fixed(member: boto3.Session) -> None:
    before = notebook(member)
    assert before["NotebookInstanceStatus"] == "InService"
    action = ACTIONS["stop_notebook_instance"]
    assert not action.verify(member, REGION, "churn-exploration", {}, finding=DIRECT_INTERNET)

    changes = action.remediate(member, REGION, "churn-exploration", {}, finding=DIRECT_INTERNET)

    after = notebook_state(member, "churn-exploration")
    assert after["NotebookInstanceStatus"] == "Stopped"
    assert after["Tags"]["team"] == "churn"
    assert after["Tags"][FINDING_TAG] == DIRECT_INTERNET
    assert STOPPED_AT_TAG in after["Tags"]
    # Stopping changes nothing the rule checks: direct internet access is still on.
    untouched = ("DirectInternetAccess", "RootAccess", "InstanceType", "RoleArn", "NotebookInstanceArn")
    assert {key: after[key] for key in untouched} == {key: before[key] for key in untouched}
    assert after["DirectInternetAccess"] == "Enabled"
    assert (changes["changed"], changes["contained"], changes["stopped"]) == (True, True, True)
    assert changes["status_before"] == "InService"
    assert changes["reason"] == (
        "direct internet access cannot be changed on an existing notebook instance; it was stopped; "
        "recreate it in a VPC subnet with DirectInternetAccess=Disabled"
    )
    # What the action did holds; nothing it cannot do is checked.
    assert action.verify(member, REGION, "churn-exploration", {}, finding=DIRECT_INTERNET)


def test_an_already_stopped_notebook_is_only_tagged_for_direct_internet_access(member: boto3.Session) -> None:
    notebook(member, "fraud-analysis")
    client(member, "sagemaker").stop_notebook_instance(NotebookInstanceName="fraud-analysis")

    with mock.patch("moto.sagemaker.models.FakeSagemakerNotebookInstance.stop") as stop:
        changes = ACTIONS["stop_notebook_instance"].remediate(
            member, REGION, "fraud-analysis", {}, finding=DIRECT_INTERNET
        )

    stop.assert_not_called()
    assert (changes["stopped"], changes["contained"]) == (False, True)
    assert "it was already stopped" in changes["reason"]
    after = notebook_state(member, "fraud-analysis")
    assert after["Tags"][FINDING_TAG] == DIRECT_INTERNET
    assert STOPPED_AT_TAG not in after["Tags"]  # the backbone did not stop it
    assert ACTIONS["stop_notebook_instance"].verify(
        member, REGION, "fraud-analysis", {}, finding=DIRECT_INTERNET
    )


def test_root_access_is_disabled_once_the_notebook_has_stopped(member: boto3.Session) -> None:
    before = notebook(member, "fraud-analysis")
    action = ACTIONS["stop_notebook_instance"]
    assert not action.verify(member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS)

    # StopNotebookInstance returns while the instance is still Stopping: the update waits for a redelivery.
    with pytest.raises(RemediationNotReady, match="fraud-analysis was InService and is now stopping"):
        action.remediate(member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS)

    stopping = notebook_state(member, "fraud-analysis")
    assert stopping["NotebookInstanceStatus"] == "Stopped"  # moto stops at once
    assert stopping["RootAccess"] == "Enabled"
    assert stopping["Tags"][FINDING_TAG] == ROOT_ACCESS
    assert STOPPED_AT_TAG in stopping["Tags"]
    assert not action.verify(member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS)

    changes = action.remediate(member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS)

    after = notebook_state(member, "fraud-analysis")
    assert after["RootAccess"] == "Disabled"
    assert after["NotebookInstanceStatus"] == "Stopped"  # the team starts it again, not the backbone
    assert after["Tags"][FINDING_TAG] == ROOT_ACCESS
    assert after["Tags"][STOPPED_AT_TAG] == stopping["Tags"][STOPPED_AT_TAG]
    untouched = ("DirectInternetAccess", "InstanceType", "RoleArn", "NotebookInstanceArn")
    assert {key: after[key] for key in untouched} == {key: before[key] for key in untouched}
    assert changes["changed"] is True
    assert "contained" not in changes
    assert (changes["root_access_before"], changes["root_access"]) == ("Enabled", "Disabled")
    assert action.verify(member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS)


@pytest.mark.parametrize(
    "rule",
    [
        "AWSControlTower_AWS-GR_SAGEMAKER_NOTEBOOK_INSTANCE_ROOT_ACCESS_CHECK",
        "securityhub-sagemaker-notebook-instance-root-access-check-a1b2c3",
        "sagemaker-notebook-instance-root-access-check-conformance-pack-x7k2m9q1",
    ],
)
def test_root_access_is_recognised_under_every_deployers_rule_name(member: boto3.Session, rule: str) -> None:
    notebook(member, "fraud-analysis")
    client(member, "sagemaker").stop_notebook_instance(NotebookInstanceName="fraud-analysis")

    changes = ACTIONS["stop_notebook_instance"].remediate(member, REGION, "fraud-analysis", {}, finding=rule)

    assert changes["root_access"] == "Disabled"
    assert notebook_state(member, "fraud-analysis")["RootAccess"] == "Disabled"
    assert notebook_state(member, "fraud-analysis")["Tags"][FINDING_TAG] == rule
    assert ACTIONS["stop_notebook_instance"].verify(member, REGION, "fraud-analysis", {}, finding=rule)


def test_an_already_stopped_notebook_gets_root_access_disabled_without_a_stop(member: boto3.Session) -> None:
    notebook(member, "fraud-analysis")
    client(member, "sagemaker").stop_notebook_instance(NotebookInstanceName="fraud-analysis")

    with mock.patch("moto.sagemaker.models.FakeSagemakerNotebookInstance.stop") as stop:
        changes = ACTIONS["stop_notebook_instance"].remediate(
            member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS
        )

    stop.assert_not_called()
    after = notebook_state(member, "fraud-analysis")
    assert (after["NotebookInstanceStatus"], after["RootAccess"]) == ("Stopped", "Disabled")
    assert after["Tags"][FINDING_TAG] == ROOT_ACCESS
    assert STOPPED_AT_TAG not in after["Tags"]
    assert changes["status_before"] == "Stopped"


def test_a_notebook_found_stopping_gets_root_access_disabled_on_a_later_delivery(
    member: boto3.Session,
) -> None:
    notebook(member, "fraud-analysis")
    set_status("fraud-analysis", "Stopping")
    action = ACTIONS["stop_notebook_instance"]

    with pytest.raises(RemediationNotReady, match="fraud-analysis is Stopping"):
        action.remediate(member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS)

    waiting = notebook_state(member, "fraud-analysis")
    assert (waiting["NotebookInstanceStatus"], waiting["RootAccess"]) == ("Stopping", "Enabled")
    assert FINDING_TAG not in waiting["Tags"]

    set_status("fraud-analysis", "Stopped")
    action.remediate(member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS)

    assert notebook_state(member, "fraud-analysis")["RootAccess"] == "Disabled"
    assert action.verify(member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS)


def test_root_access_still_being_applied_is_read_back_at_a_later_delivery(member: boto3.Session) -> None:
    # UpdateNotebookInstance returns while the instance is Updating; it may show the old setting until done.
    notebook(member, "fraud-analysis")
    client(member, "sagemaker").stop_notebook_instance(NotebookInstanceName="fraud-analysis")
    action = ACTIONS["stop_notebook_instance"]
    action.remediate(member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS)
    instance = sagemaker_backends[MEMBER][REGION].notebook_instances["fraud-analysis"]
    instance.status, instance.root_access = "Updating", "Enabled"

    with pytest.raises(RemediationNotReady, match="fraud-analysis is Updating"):
        action.verify(member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS)

    # The update lands; the redelivered evaluation finds it done, and it was this finding's doing.
    instance.status, instance.root_access = "Stopped", "Disabled"
    again = action.remediate(member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS)
    assert again == {"changed": True, "status_before": "Stopped", "root_access": "Disabled"}
    assert action.verify(member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS)
    assert notebook_state(member, "fraud-analysis")["RootAccess"] == "Disabled"


def test_a_notebook_with_root_access_already_disabled_is_left_running(member: boto3.Session) -> None:
    client(member, "sagemaker").create_notebook_instance(
        NotebookInstanceName="fraud-analysis",
        InstanceType="ml.t3.medium",
        RoleArn=f"arn:aws:iam::{MEMBER}:role/notebook",
        RootAccess="Disabled",
    )

    changes = ACTIONS["stop_notebook_instance"].remediate(
        member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS
    )

    assert changes == {"changed": False, "status_before": "InService", "root_access": "Disabled"}
    after = notebook_state(member, "fraud-analysis")
    assert after["NotebookInstanceStatus"] == "InService"
    assert FINDING_TAG not in after["Tags"]


@pytest.mark.parametrize("finding", [ROOT_ACCESS, DIRECT_INTERNET])
def test_a_notebook_still_starting_is_retried_later(member: boto3.Session, finding: str) -> None:
    notebook(member)
    set_status("churn-exploration", "Pending")

    with pytest.raises(RemediationNotReady, match="churn-exploration is Pending"):
        ACTIONS["stop_notebook_instance"].remediate(member, REGION, "churn-exploration", {}, finding=finding)

    after = notebook_state(member, "churn-exploration")
    assert (after["NotebookInstanceStatus"], after["RootAccess"]) == ("Pending", "Enabled")
    assert FINDING_TAG not in after["Tags"]


def test_a_failed_notebook_cannot_have_root_access_disabled(member: boto3.Session) -> None:
    notebook(member, "fraud-analysis")
    set_status("fraud-analysis", "Failed")

    with pytest.raises(RemediationFailed) as failed:
        ACTIONS["stop_notebook_instance"].remediate(member, REGION, "fraud-analysis", {}, finding=ROOT_ACCESS)

    assert str(failed.value) == (
        "notebook instance fraud-analysis is Failed; root access can be disabled only on a Stopped instance"
    )
    after = notebook_state(member, "fraud-analysis")
    assert (after["RootAccess"], FINDING_TAG in after["Tags"]) == ("Enabled", False)


# --------------------------------------------------------------------------- EBS


def test_ebs_encryption_by_default_is_enabled_in_that_region_only(member: boto3.Session) -> None:
    action = ACTIONS["enable_ebs_encryption_by_default"]
    assert client(member, "ec2").get_ebs_encryption_by_default()["EbsEncryptionByDefault"] is False
    assert not action.verify(member, REGION, MEMBER, {})

    changes = action.remediate(member, REGION, MEMBER, {})

    assert client(member, "ec2").get_ebs_encryption_by_default()["EbsEncryptionByDefault"] is True
    assert (
        client(member, "ec2", "us-west-2").get_ebs_encryption_by_default()["EbsEncryptionByDefault"] is False
    )
    assert changes == {"changed": True, "region": REGION}
    assert action.verify(member, REGION, MEMBER, {})


# --------------------------------------------------------------------------- security groups


def ingress_rules(session: boto3.Session, group_id: str) -> set[tuple[str, int, int, str]]:
    rules = client(session, "ec2").describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group_id]}]
    )
    return {
        (
            ("egress " if rule["IsEgress"] else "") + rule["IpProtocol"],
            rule["FromPort"],
            rule["ToPort"],
            rule.get("CidrIpv4") or rule.get("CidrIpv6"),
        )
        for rule in rules["SecurityGroupRules"]
    }


def security_group(session: boto3.Session, permissions: list[dict[str, Any]]) -> str:
    ec2 = client(session, "ec2")
    group_id = str(ec2.create_security_group(GroupName="team", Description="team workload")["GroupId"])
    ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=permissions)
    return group_id


WORLD_SSH = {
    "IpProtocol": "tcp",
    "FromPort": 22,
    "ToPort": 22,
    "IpRanges": [{"CidrIp": "0.0.0.0/0"}, {"CidrIp": "10.0.0.0/16"}],
    "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
}
WORLD_HTTPS = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}


def test_ssh_open_to_the_world_is_revoked_exactly(member: boto3.Session) -> None:
    group_id = security_group(member, [WORLD_SSH, WORLD_HTTPS])
    before = ingress_rules(member, group_id)
    parameters = {"blocked_tcp_ports": ["22"]}
    action = ACTIONS["revoke_open_ingress"]
    assert not action.verify(member, REGION, group_id, parameters)

    changes = action.remediate(member, REGION, group_id, parameters)

    after = ingress_rules(member, group_id)
    assert before - after == {("tcp", 22, 22, "0.0.0.0/0"), ("tcp", 22, 22, "::/0")}
    assert after == before - {("tcp", 22, 22, "0.0.0.0/0"), ("tcp", 22, 22, "::/0")}
    assert ("tcp", 22, 22, "10.0.0.0/16") in after
    assert ("tcp", 443, 443, "0.0.0.0/0") in after
    assert sorted(item["cidr"] for item in changes["revoked"]) == ["0.0.0.0/0", "::/0"]
    assert changes["kept"] == []  # nothing of port 22 may stay open to the world: nothing is added
    assert action.verify(member, REGION, group_id, parameters)


def described_ingress(session: boto3.Session, group_id: str) -> set[tuple[str, int, int, str, str]]:
    """The ingress rules with their source (CIDR or group) and description: what a narrowed rule keeps."""
    rules = client(session, "ec2").describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group_id]}]
    )
    return {
        (
            rule["IpProtocol"],
            rule["FromPort"],
            rule["ToPort"],
            rule.get("CidrIpv4") or rule.get("CidrIpv6") or rule["ReferencedGroupInfo"]["GroupId"],
            rule.get("Description", ""),
        )
        for rule in rules["SecurityGroupRules"]
        if not rule["IsEgress"]
    }


def world(
    protocol: str, low: int, high: int, cidr: str = "0.0.0.0/0", description: str = ""
) -> dict[str, Any]:
    """One ingress permission from a single source, as authorize_security_group_ingress takes it."""
    source: dict[str, str] = {"CidrIpv6" if ":" in cidr else "CidrIp": cidr}
    if description:
        source["Description"] = description
    return {
        "IpProtocol": protocol,
        **({} if protocol == "-1" else {"FromPort": low, "ToPort": high}),
        ("Ipv6Ranges" if ":" in cidr else "IpRanges"): [source],
    }


def test_a_world_open_range_loses_only_the_blocked_port(member: boto3.Session) -> None:
    group_id = security_group(
        member,
        [
            world("tcp", 1, 1024, description="web tier"),
            world("tcp", 1, 1024, "10.0.0.0/16", "team VPC"),
            world("tcp", 1, 1024, "2001:db8::/32"),
            WORLD_HTTPS,
        ],
    )
    parameters = {"blocked_tcp_ports": ["22"]}
    action = ACTIONS["revoke_open_ingress"]

    changes = action.remediate(member, REGION, group_id, parameters)

    # 80 and 443 stay open to the world: only port 22 goes, from the same CIDR, with the same description.
    assert described_ingress(member, group_id) == {
        ("tcp", 1, 21, "0.0.0.0/0", "web tier"),
        ("tcp", 23, 1024, "0.0.0.0/0", "web tier"),
        ("tcp", 1, 1024, "10.0.0.0/16", "team VPC"),
        ("tcp", 1, 1024, "2001:db8::/32", ""),
        ("tcp", 443, 443, "0.0.0.0/0", ""),
    }
    [revoked] = changes["revoked"]
    assert (revoked["protocol"], revoked["ports"], revoked["cidr"]) == ("tcp", "1-1024", "0.0.0.0/0")
    assert [(kept["ports"], kept["cidr"], kept["added"]) for kept in changes["kept"]] == [
        ("1-21", "0.0.0.0/0", True),
        ("23-1024", "0.0.0.0/0", True),
    ]
    assert all(kept["replaces"] == revoked["rule_id"] for kept in changes["kept"])
    assert action.verify(member, REGION, group_id, parameters, changes=changes)


@pytest.mark.parametrize(
    ("ports", "blocked", "kept"),
    [
        ((22, 80), ["22"], {(23, 80)}),
        ((1, 22), ["22"], {(1, 21)}),
        ((2000, 3000), ["1024-2048"], {(2049, 3000)}),
        ((3389, 3389), ["3389", "3390"], set()),
        (
            (0, 65535),
            ["20", "21", "3306", "3389", "4333"],
            {(0, 19), (22, 3305), (3307, 3388), (3390, 4332), (4334, 65535)},
        ),
    ],
    ids=["starts-at-blocked", "ends-at-blocked", "blocked-range", "entirely-blocked", "every-port"],
)
def test_a_world_open_range_keeps_every_port_but_the_blocked_ones(
    member: boto3.Session, ports: tuple[int, int], blocked: list[str], kept: set[tuple[int, int]]
) -> None:
    group_id = security_group(member, [world("tcp", *ports, description="team range")])
    parameters = {"blocked_tcp_ports": blocked}

    changes = ACTIONS["revoke_open_ingress"].remediate(member, REGION, group_id, parameters)

    assert described_ingress(member, group_id) == {
        ("tcp", low, high, "0.0.0.0/0", "team range") for low, high in kept
    }
    assert changes["changed"] is True
    assert len(changes["revoked"]) == 1
    assert len(changes["kept"]) == len(kept)
    assert ACTIONS["revoke_open_ingress"].verify(member, REGION, group_id, parameters, changes=changes)


def test_an_ipv6_world_open_range_is_narrowed_from_ipv6(member: boto3.Session) -> None:
    group_id = security_group(
        member, [world("tcp", 0, 1024, "::/0", "web over IPv6"), world("tcp", 0, 1024, "10.0.0.0/8")]
    )

    changes = ACTIONS["revoke_open_ingress"].remediate(
        member, REGION, group_id, {"blocked_tcp_ports": ["22"]}
    )

    assert described_ingress(member, group_id) == {
        ("tcp", 0, 21, "::/0", "web over IPv6"),
        ("tcp", 23, 1024, "::/0", "web over IPv6"),
        ("tcp", 0, 1024, "10.0.0.0/8", ""),
    }
    assert {kept["cidr"] for kept in changes["kept"]} == {"::/0"}


def test_all_traffic_from_the_world_is_revoked_whole_when_a_port_is_blocked_and_the_team_is_told(
    member: boto3.Session,
) -> None:
    group_id = security_group(
        member,
        [
            world("-1", -1, -1, description="anything"),
            world("-1", -1, -1, "10.0.0.0/16"),
            world("tcp", 3000, 3500, "::/0"),
            world("udp", 3389, 3389),
            WORLD_HTTPS,
        ],
    )
    parameters = {"blocked_tcp_ports": ["3389"]}

    changes = ACTIONS["revoke_open_ingress"].remediate(member, REGION, group_id, parameters)

    # "Every protocol but tcp 3389" is no rule a security group can hold: the all-traffic rule goes whole.
    assert described_ingress(member, group_id) == {
        ("-1", -1, -1, "10.0.0.0/16", ""),
        ("tcp", 3000, 3388, "::/0", ""),
        ("tcp", 3390, 3500, "::/0", ""),
        ("udp", 3389, 3389, "0.0.0.0/0", ""),
        ("tcp", 443, 443, "0.0.0.0/0", ""),
    }
    reason = (
        "all traffic from 0.0.0.0/0 cannot be narrowed to leave out port 3389; revoked whole: add back "
        "what the workload needs as tcp or udp rules"
    )
    [whole] = [rule for rule in changes["revoked"] if rule["protocol"] == "-1"]
    assert whole["reason"] == reason
    assert changes["notes"] == [reason]
    assert [(kept["protocol"], kept["ports"], kept["cidr"]) for kept in changes["kept"]] == [
        ("tcp", "3000-3388", "::/0"),
        ("tcp", "3390-3500", "::/0"),
    ]
    assert ACTIONS["revoke_open_ingress"].verify(member, REGION, group_id, parameters, changes=changes)


def test_all_traffic_from_the_world_becomes_the_authorized_ports(member: boto3.Session) -> None:
    group_id = security_group(member, [world("-1", -1, -1, "::/0", "open for the demo"), WORLD_HTTPS])
    parameters = {"allowed_tcp_ports": ["80", "443"], "allowed_udp_ports": ["53"]}

    changes = ACTIONS["revoke_open_ingress"].remediate(member, REGION, group_id, parameters)

    assert described_ingress(member, group_id) == {
        ("tcp", 80, 80, "::/0", "open for the demo"),
        ("tcp", 443, 443, "::/0", "open for the demo"),
        ("udp", 53, 53, "::/0", "open for the demo"),
        ("tcp", 443, 443, "0.0.0.0/0", ""),
    }
    assert "notes" not in changes
    assert ACTIONS["revoke_open_ingress"].verify(member, REGION, group_id, parameters, changes=changes)


def test_every_port_open_to_the_world_becomes_the_authorized_ports(member: boto3.Session) -> None:
    group_id = security_group(
        member,
        [
            world("tcp", 0, 65535, description="everything"),
            world("udp", 0, 65535, description="everything"),
            world("tcp", 0, 65535, "10.0.0.0/16"),
            WORLD_HTTPS,
        ],
    )
    parameters = {"allowed_tcp_ports": ["80", "443", "8000-8005", "8006"], "allowed_udp_ports": []}

    changes = ACTIONS["revoke_open_ingress"].remediate(member, REGION, group_id, parameters)

    assert described_ingress(member, group_id) == {
        ("tcp", 80, 80, "0.0.0.0/0", "everything"),
        ("tcp", 443, 443, "0.0.0.0/0", ""),  # already there: kept as it was
        ("tcp", 8000, 8006, "0.0.0.0/0", "everything"),
        ("tcp", 0, 65535, "10.0.0.0/16", ""),
    }
    assert [(kept["protocol"], kept["ports"], kept["added"]) for kept in changes["kept"]] == [
        ("tcp", "80", True),
        ("tcp", "443", False),
        ("tcp", "8000-8006", True),
    ]
    assert {(rule["protocol"], rule["ports"]) for rule in changes["revoked"]} == {
        ("tcp", "0-65535"),
        ("udp", "0-65535"),
    }
    assert ACTIONS["revoke_open_ingress"].verify(member, REGION, group_id, parameters, changes=changes)


def test_rules_from_other_sources_are_left_alone(member: boto3.Session) -> None:
    ec2 = client(member, "ec2")
    other = str(ec2.create_security_group(GroupName="lb", Description="load balancer")["GroupId"])
    group_id = security_group(
        member,
        [
            world("tcp", 0, 65535, "10.0.0.0/16", "team VPC"),
            world("-1", -1, -1, "2001:db8::/32"),
            world("tcp", 22, 22, "203.0.113.7/32", "bastion"),
            {"IpProtocol": "tcp", "FromPort": 0, "ToPort": 65535, "UserIdGroupPairs": [{"GroupId": other}]},
            world("tcp", 0, 1024),
        ],
    )
    others = {rule for rule in described_ingress(member, group_id) if rule[3] != "0.0.0.0/0"}

    ACTIONS["revoke_open_ingress"].remediate(member, REGION, group_id, {"blocked_tcp_ports": ["22"]})

    assert described_ingress(member, group_id) == others | {
        ("tcp", 0, 21, "0.0.0.0/0", ""),
        ("tcp", 23, 1024, "0.0.0.0/0", ""),
    }


def test_the_remainder_is_authorized_before_the_rule_is_revoked(member: boto3.Session) -> None:
    group_id = security_group(member, [world("tcp", 1, 1024)])
    calls: list[str] = []
    member.events.register("before-call.ec2.*", lambda model, **_: calls.append(model.name))

    ACTIONS["revoke_open_ingress"].remediate(member, REGION, group_id, {"blocked_tcp_ports": ["22"]})

    # No moment with 80 and 443 closed: both parts exist before the wide rule goes.
    changing = [name for name in calls if not name.startswith("Describe")]
    assert changing == ["AuthorizeSecurityGroupIngress"] * 2 + ["RevokeSecurityGroupIngress"]


def test_verification_fails_when_the_kept_ports_are_gone(member: boto3.Session) -> None:
    group_id = security_group(member, [world("tcp", 1, 1024)])
    parameters = {"blocked_tcp_ports": ["22"]}
    action = ACTIONS["revoke_open_ingress"]
    changes = action.remediate(member, REGION, group_id, parameters)
    ec2 = client(member, "ec2")
    ec2.revoke_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 23, "ToPort": 1024, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )

    # Port 22 is closed, but so are 80 and 443: that is not the fix the control promises.
    assert not action.verify(member, REGION, group_id, parameters, changes=changes)
    assert action.verify(member, REGION, group_id, parameters)  # without the changes: only port 22 is asked
    # Ports kept by two rules that together cover them still count.
    ec2.authorize_security_group_ingress(
        GroupId=group_id, IpPermissions=[world("tcp", 23, 500), world("tcp", 501, 1024)]
    )
    assert action.verify(member, REGION, group_id, parameters, changes=changes)


def test_only_authorized_ports_stay_open_to_the_world(member: boto3.Session) -> None:
    group_id = security_group(
        member,
        [
            {
                "IpProtocol": "tcp",
                "FromPort": 8080,
                "ToPort": 8080,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
            },
            {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
            {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            WORLD_HTTPS,
        ],
    )
    before = ingress_rules(member, group_id)
    parameters = {"allowed_tcp_ports": ["80", "443"], "allowed_udp_ports": []}

    ACTIONS["revoke_open_ingress"].remediate(member, REGION, group_id, parameters)

    assert before - ingress_rules(member, group_id) == {
        ("tcp", 8080, 8080, "0.0.0.0/0"),
        ("tcp", 8080, 8080, "::/0"),
        ("udp", 53, 53, "0.0.0.0/0"),
    }
    assert ACTIONS["revoke_open_ingress"].verify(member, REGION, group_id, parameters)


def test_a_group_with_nothing_forbidden_is_left_alone(member: boto3.Session) -> None:
    group_id = security_group(member, [WORLD_HTTPS])
    before = ingress_rules(member, group_id)

    changes = ACTIONS["revoke_open_ingress"].remediate(
        member, REGION, group_id, {"blocked_tcp_ports": ["22"]}
    )

    assert changes == {"changed": False, "revoked": [], "kept": []}
    assert ingress_rules(member, group_id) == before


def test_an_unknown_security_group_is_an_error_not_a_success(member: boto3.Session) -> None:
    with pytest.raises(ClientError, match=r"InvalidGroup\.NotFound"):
        ACTIONS["revoke_open_ingress"].remediate(
            member, REGION, "sg-0123456789abcdef0", {"blocked_tcp_ports": ["22"]}
        )


@pytest.mark.parametrize(
    ("parameters", "protocol", "ports", "forbidden"),
    [
        ({"blocked_tcp_ports": ["22"]}, "tcp", (22, 22), True),
        ({"blocked_tcp_ports": ["22"]}, "6", (0, 1024), True),
        ({"blocked_tcp_ports": ["22"]}, "tcp", (23, 80), False),
        ({"blocked_tcp_ports": ["22"]}, "udp", (22, 22), False),
        ({"blocked_tcp_ports": ["1024-2048"]}, "tcp", (2000, 3000), True),
        ({"blocked_tcp_ports": ["22"]}, "-1", (-1, -1), True),
        ({"allowed_tcp_ports": ["80", "443"]}, "tcp", (443, 443), False),
        ({"allowed_tcp_ports": ["80", "443"]}, "tcp", (80, 443), True),
        ({"allowed_tcp_ports": ["8000-8005", "8006"]}, "tcp", (8001, 8006), False),
        ({"allowed_tcp_ports": ["443"]}, "udp", (443, 443), True),
        ({"allowed_tcp_ports": ["443"]}, "icmp", (8, -1), False),
    ],
)
def test_which_world_open_rules_a_control_forbids(
    parameters: dict[str, Any], protocol: str, ports: tuple[int, int], forbidden: bool
) -> None:
    assert IngressParameters.model_validate(parameters).forbids(protocol, *ports) is forbidden


@pytest.mark.parametrize(
    ("parameters", "protocol", "ports", "kept"),
    [
        ({"blocked_tcp_ports": ["22"]}, "tcp", (1, 1024), [(1, 21), (23, 1024)]),
        ({"blocked_tcp_ports": ["22", "21", "20-23"]}, "6", (0, 100), [(0, 19), (24, 100)]),
        ({"blocked_tcp_ports": ["22"]}, "udp", (0, 1024), [(0, 1024)]),
        ({"blocked_tcp_ports": ["22"]}, "tcp", (-1, -1), [(0, 21), (23, 65535)]),
        ({"allowed_tcp_ports": ["80", "443"]}, "tcp", (0, 1024), [(80, 80), (443, 443)]),
        ({"allowed_tcp_ports": ["80-90"], "allowed_udp_ports": ["53"]}, "17", (50, 60), [(53, 53)]),
        ({"allowed_tcp_ports": ["80-90"]}, "tcp", (85, 100), [(85, 90)]),
        ({"allowed_tcp_ports": ["443"]}, "udp", (0, 65535), []),
    ],
)
def test_what_a_world_open_range_keeps(
    parameters: dict[str, Any], protocol: str, ports: tuple[int, int], kept: list[tuple[int, int]]
) -> None:
    assert IngressParameters.model_validate(parameters).permitted(protocol, *ports) == kept


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "give either blocked_tcp_ports or allowed_tcp_ports"),
        ({"blocked_tcp_ports": ["22"], "allowed_tcp_ports": ["443"]}, "give either"),
        ({"blocked_tcp_ports": ["ssh"]}, "'ssh' is not a port"),
        ({"blocked_tcp_ports": ["70000"]}, "within 0-65535"),
        ({"blocked_tcp_ports": ["22"], "ports": ["22"]}, "Extra inputs are not permitted"),
    ],
)
def test_ingress_parameters_are_validated(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IngressParameters.model_validate(parameters)


# --------------------------------------------------------------------------- CloudTrail


def trail(session: boto3.Session, name: str, *, logging: bool, multi_region: bool = False) -> str:
    bucket = f"{name}-logs"
    client(session, "s3").create_bucket(Bucket=bucket)
    cloudtrail = client(session, "cloudtrail")
    arn = str(
        cloudtrail.create_trail(Name=name, S3BucketName=bucket, IsMultiRegionTrail=multi_region)["TrailARN"]
    )
    if logging:
        cloudtrail.start_logging(Name=name)
    return arn


def is_logging(session: boto3.Session, arn: str) -> bool:
    return bool(client(session, "cloudtrail").get_trail_status(Name=arn)["IsLogging"])


def test_one_stopped_trail_is_started_a_multi_region_one_first_and_the_others_left_and_named(
    member: boto3.Session,
) -> None:
    """cloudtrail-enabled asks for one logging trail; a trail may be stopped on purpose (data events cost
    per event), so the least change is one trail, the one that records every Region."""
    regional = trail(member, "a-team-trail", logging=False)
    data_events = trail(member, "b-data-events-trail", logging=False)
    everywhere = trail(member, "z-account-trail", logging=False, multi_region=True)
    action = ACTIONS["start_trail_logging"]
    assert not action.verify(member, REGION, MEMBER, {})

    with mock.patch.object(Trail, "start_logging", autospec=True, side_effect=Trail.start_logging) as start:
        changes = action.remediate(member, REGION, MEMBER, {})

    assert [call.args[0].arn for call in start.call_args_list] == [everywhere]
    assert [is_logging(member, arn) for arn in (everywhere, regional, data_events)] == [True, False, False]
    assert changes["changed"] is True and changes["started"] == [everywhere]
    assert sorted(changes["left_stopped"]) == sorted([regional, data_events])
    assert action.verify(member, REGION, MEMBER, {}, changes=changes)


def test_a_trail_already_logging_leaves_the_stopped_ones_alone(member: boto3.Session) -> None:
    stopped = trail(member, "org-team-trail", logging=False)
    running = trail(member, "data-events-trail", logging=True)
    action = ACTIONS["start_trail_logging"]

    with mock.patch.object(Trail, "start_logging", autospec=True, side_effect=Trail.start_logging) as start:
        changes = action.remediate(member, REGION, MEMBER, {})

    assert start.call_args_list == []
    assert not is_logging(member, stopped) and is_logging(member, running)
    assert changes == {"changed": False, "started": [], "logging": [running], "trails": [stopped, running]}
    assert action.verify(member, REGION, MEMBER, {}, changes=changes)


def test_a_started_trail_deleted_or_stopped_again_before_the_read_back_fails_it(
    member: boto3.Session,
) -> None:
    first = trail(member, "a-team-trail", logging=False)
    other = trail(member, "b-team-trail", logging=True)
    action = ACTIONS["start_trail_logging"]

    assert not action.verify(member, REGION, MEMBER, {}, changes={"started": [first]})
    client(member, "cloudtrail").delete_trail(Name=first)
    assert is_logging(member, other)
    assert not action.verify(member, REGION, MEMBER, {}, changes={"started": [first]})


def test_an_account_without_a_trail_of_its_own_cannot_be_fixed(member: boto3.Session) -> None:
    with pytest.raises(RemediationFailed, match="has no CloudTrail trail of its own"):
        ACTIONS["start_trail_logging"].remediate(member, REGION, MEMBER, {})
    assert not ACTIONS["start_trail_logging"].verify(member, REGION, MEMBER, {})


def test_every_action_names_what_it_does_and_its_resource_types() -> None:
    for name, action in ACTIONS.items():
        assert action.name == name
        assert action.summary and action.summary[0].islower()
        assert all(kind.startswith("AWS::") for kind in action.resource_types)


# --------------------------------------------------------------------------- what the member role must allow


def execution_role_actions() -> set[str]:
    """Every action GovernanceExecutionRole's inline policies allow, read from the member template."""
    template = load_template(PROJECT_ROOT / "templates" / "member-account.yaml")
    role = template["Resources"]["GovernanceExecutionRole"]["Properties"]
    allowed: set[str] = set()
    for policy in role.get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement.get("Effect") == "Allow":
                actions = statement["Action"]
                allowed.update([actions] if isinstance(actions, str) else actions)
    return allowed


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_the_member_role_allows_what_each_action_calls(name: str) -> None:
    action = ACTIONS[name]
    assert action.permissions
    assert set(action.permissions) <= execution_role_actions()


def test_the_member_role_allows_reading_exemption_tags_and_asking_for_reevaluation() -> None:
    needed = {REEVALUATION_PERMISSION} | {p for permissions in TAG_PERMISSIONS.values() for p in permissions}
    assert needed <= execution_role_actions()
