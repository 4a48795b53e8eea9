"""Unit tests of governance.baseline on moto: the facts, the baseline, the role wait, the inventory."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from govern.template import load_template
from governance import baseline
from governance.baseline import (
    BASELINE_VERSION,
    ROLE_WAIT_CAP_SECONDS,
    ROLE_WAIT_MAX_ATTEMPTS,
    AccountFacts,
    BaselineConfigurationError,
    BaselineNotVerified,
    RoleNeverAppeared,
    RoleNotReady,
)
from governance.events import MalformedEvent
from governance.ledger import entries_for_event
from governance.sessions import RoleAssumptionError, forget_sessions
from governance.settings import settings

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
GOVERNANCE = "111111111111"
NEW_ACCOUNT = "333333333333"
REGION = "us-east-1"
INVENTORY = "inventory"
LEDGER = "ledger"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def member(service: str, region: str = REGION, account: str = NEW_ACCOUNT) -> Any:
    """An admin client in a member account (moto's AssumeRole switches accounts by the role ARN)."""
    credentials = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/test-admin", RoleSessionName="test"
    )["Credentials"]
    return boto3.client(
        service,  # type: ignore[call-overload]
        region_name=region,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Moto with the governance account's inventory, ledger and platform topic (subscribed by a queue)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "GOVERNANCE_ACCOUNT_ID": GOVERNANCE,
        "INVENTORY_TABLE": INVENTORY,
        "LEDGER_TABLE": LEDGER,
        "OU_ENVIRONMENT_MAP": "ML-Dev=dev,ML-Test=test,ML-Prod=prod",
        "BASELINE_REGIONS": "us-east-1,eu-west-1",
        "POLL_BASE_SECONDS": "10",
    }.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    forget_sessions()
    with mock_aws():
        # Not MOTO_ACCOUNT_ID, which would pin every call to one account: the process runs on credentials
        # of the governance account, and moto maps assumed-role credentials to their own account.
        governance = boto3.client("sts", region_name=REGION).assume_role(
            RoleArn=f"arn:aws:iam::{GOVERNANCE}:role/backbone", RoleSessionName="test"
        )["Credentials"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", governance["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", governance["SecretAccessKey"])
        monkeypatch.setenv("AWS_SESSION_TOKEN", governance["SessionToken"])
        # boto3's default session caches the credentials it first resolved.
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName=INVENTORY,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "account_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "account_id", "KeyType": "HASH"}],
        )
        dynamodb.create_table(
            TableName=LEDGER,
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
                    "IndexName": f"by-{hash_key.replace('_id', '')}",
                    "KeySchema": [
                        {"AttributeName": hash_key, "KeyType": "HASH"},
                        {"AttributeName": "entry", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for hash_key in ("event_id", "account")
            ],
        )
        topic = boto3.client("sns", region_name=REGION).create_topic(Name="platform")["TopicArn"]
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="platform-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        boto3.client("sns", region_name=REGION).subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        monkeypatch.setenv("PLATFORM_TOPIC_ARN", topic)
        # The notifier resolves every audience's topic setting, whichever it publishes to.
        monkeypatch.setenv("SECURITY_TOPIC_ARN", topic.replace("platform", "security"))
        monkeypatch.setenv("ML_GOVERNANCE_TOPIC_ARN", topic.replace("platform", "models"))
        settings.cache_clear()
        yield {"topic": topic, "queue_url": queue_url}
    settings.cache_clear()
    forget_sessions()


def platform_notices(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs", region_name=REGION)
    notices: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return notices
        for message in messages:
            envelope = json.loads(message["Body"])
            notices.append({"subject": envelope["Subject"], **json.loads(envelope["Message"])})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def inventory_items() -> list[dict[str, Any]]:
    return boto3.resource("dynamodb", region_name=REGION).Table(INVENTORY).scan()["Items"]


def account_public_access_block(region: str = REGION, account: str = NEW_ACCOUNT) -> dict[str, bool] | None:
    try:
        return member("s3control", region, account).get_public_access_block(AccountId=account)[
            "PublicAccessBlockConfiguration"
        ]
    except ClientError:
        return None


def ebs_encryption_by_default(region: str, account: str = NEW_ACCOUNT) -> bool:
    return bool(member("ec2", region, account).get_ebs_encryption_by_default()["EbsEncryptionByDefault"])


def facts_of(name: str, **changes: Any) -> AccountFacts:
    return dataclasses.replace(baseline.describe_lifecycle_event(load_event(name)), **changes)


def baseline_account(facts: AccountFacts) -> dict[str, Any]:
    """Apply, verify, register and report, as the state machine does."""
    verified = baseline.verify_baseline(facts, baseline.apply_baseline(facts))
    registration = baseline.register_account(facts, verified)
    return baseline.report_baseline(facts, verified, registration)


# --- what the event says ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account_name", "team"),
    [
        ("ml-team-churn-dev", "churn"),
        ("ML-Team-Fraud-Detection-prod", "fraud-detection"),
        ("ml-team-churn", "churn"),
        ("ml-team-churn-test", "churn"),
        ("data-lake-prod", "unassigned"),
        ("ml-team--dev", "unassigned"),
        # The team names resources and tags: only lower-case letters, digits and single hyphens.
        ("ml-team-churn_model-dev", "unassigned"),
        ("ml-team-churn--model-dev", "unassigned"),
        ("ml-team-churn-dev-", "unassigned"),
    ],
)
def test_the_team_comes_from_the_account_name(account_name: str, team: str) -> None:
    assert baseline.team_from_account_name(account_name, ["dev", "test", "prod"]) == team


def test_the_longest_environment_suffix_is_the_one_taken_off() -> None:
    """With environments `prod` and `non-prod`, `ml-team-churn-non-prod` is team churn in non-prod, not
    team `churn-non` in prod."""
    assert baseline.team_from_account_name("ml-team-churn-non-prod", ["prod", "non-prod"]) == "churn"
    assert baseline.team_from_account_name("ml-team-churn-prod", ["prod", "non-prod"]) == "churn"


def test_an_ou_is_mapped_by_its_id_before_its_name() -> None:
    """Ids are unique and stable; a name is neither (ML/Prod and Workloads/Prod), so an id entry wins."""
    mapping = {"ou-ab12-prod0001": "prod", "prod": "dev", "sandbox": "dev"}

    assert baseline.environment_of_ou("ou-ab12-prod0001", "Prod", mapping) == "prod"
    assert baseline.environment_of_ou("OU-AB12-PROD0001 ", "Prod", mapping) == "prod"
    assert baseline.environment_of_ou("ou-ab12-other001", " Sandbox", mapping) == "dev"
    assert baseline.environment_of_ou("ou-ab12-other001", "Security", mapping) == ""


def test_a_created_account_is_described_with_environment_team_and_change(aws: dict[str, str]) -> None:
    event = load_event("account-created.json")

    facts = baseline.describe_lifecycle_event(event)

    assert (facts.state, facts.account_id, facts.account_name) == (
        "SUCCEEDED",
        NEW_ACCOUNT,
        "ml-team-churn-dev",
    )
    assert (facts.ou_name, facts.ou_id, facts.environment, facts.team) == (
        "ML-Dev",
        "ou-abcd-11111111",
        "dev",
        "churn",
    )
    assert facts.change == event["detail"]["eventID"]
    assert facts.lifecycle_at == "2026-11-02T09:41:27Z"
    assert facts.governed


def test_a_failed_creation_is_described_without_an_account_id(aws: dict[str, str]) -> None:
    facts = baseline.describe_lifecycle_event(load_event("account-creation-failed.json"))

    assert (facts.state, facts.account_id, facts.environment) == ("FAILED", "", "prod")
    assert "email address" in facts.message


@pytest.mark.parametrize("state", ["IN_PROGRESS", "SOMETHING_NEW"])
def test_states_without_an_outcome_are_described_for_the_workflow_to_ignore(
    aws: dict[str, str], state: str
) -> None:
    event = load_event("account-created.json")
    event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["state"] = state
    del event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["account"]["accountId"]

    assert baseline.describe_lifecycle_event(event).state == state


def test_an_account_outside_the_mapped_ous_is_not_governed(aws: dict[str, str]) -> None:
    event = load_event("account-created.json")
    event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["organizationalUnit"][
        "organizationalUnitName"
    ] = "Sandbox"

    facts = baseline.describe_lifecycle_event(event)

    assert facts.environment == ""
    assert not facts.governed


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda event: event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["account"].pop(
                "accountId"
            ),
            "account.accountId: missing",
        ),
        (
            lambda event: event["detail"]["serviceEventDetails"].pop("createManagedAccountStatus"),
            "createManagedAccountStatus: missing",
        ),
    ],
)
def test_an_unusable_successful_event_is_malformed(aws: dict[str, str], mutate: Any, message: str) -> None:
    event = load_event("account-created.json")
    mutate(event)

    with pytest.raises(MalformedEvent, match=message):
        baseline.describe_lifecycle_event(event)


def test_an_ou_mapped_by_id_is_governed_and_a_namesake_elsewhere_is_not(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OU names repeat in nested trees (Workloads/ML-Dev and ML/ML-Dev) and change on a rename; ids do not."""
    monkeypatch.setenv("OU_ENVIRONMENT_MAP", "ou-abcd-11111111=dev,ou-abcd-22222222=prod")
    settings.cache_clear()
    event = load_event("account-created.json")
    unit = event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["organizationalUnit"]

    unit["organizationalUnitName"] = "Renamed-ML-Dev"
    renamed = baseline.describe_lifecycle_event(event)
    unit.update(organizationalUnitName="ML-Dev", organizationalUnitId="ou-wxyz-99999999")
    namesake = baseline.describe_lifecycle_event(event)

    assert (renamed.governed, renamed.environment) == (True, "dev")
    assert (namesake.governed, namesake.environment) == (False, "")


def test_a_broken_ou_environment_map_is_named(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OU_ENVIRONMENT_MAP", "ML-Dev=dev,ML-Prod")
    settings.cache_clear()

    with pytest.raises(BaselineConfigurationError, match="OU_ENVIRONMENT_MAP entry 'ML-Prod'"):
        baseline.describe_lifecycle_event(load_event("account-created.json"))


def test_baseline_regions_default_to_the_function_region(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASELINE_REGIONS", " ")
    settings.cache_clear()
    assert baseline.baseline_regions() == [REGION]

    monkeypatch.setenv("BASELINE_REGIONS", "eu-west-1, us-east-1,eu-west-1")
    settings.cache_clear()
    assert baseline.baseline_regions() == ["eu-west-1", "us-east-1"]


def test_a_stack_deployed_without_baseline_regions_baselines_its_own_region(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deployed in eu-west-1 (docs/rollout.md) without BaselineRegions: accounts are baselined where the
    # bus the member StackSet forwards to is, not in a Region the template names.
    default = load_template(ROOT / "template.yaml")["Parameters"]["BaselineRegions"]["Default"]
    monkeypatch.setenv("BASELINE_REGIONS", default)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    settings.cache_clear()

    applied = baseline.apply_baseline(facts_of("account-created.json"))

    assert applied["regions"] == ["eu-west-1"]
    assert ebs_encryption_by_default("eu-west-1")
    assert not ebs_encryption_by_default(REGION)


# --- the baseline ----------------------------------------------------------------------------------


def test_the_baseline_is_applied_and_read_back_in_every_configured_region(aws: dict[str, str]) -> None:
    facts = facts_of("account-created.json")
    assert account_public_access_block() is None
    assert not ebs_encryption_by_default("eu-west-1")

    applied = baseline.apply_baseline(facts)
    verified = baseline.verify_baseline(facts, applied)

    assert account_public_access_block() == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    assert ebs_encryption_by_default("us-east-1")
    assert ebs_encryption_by_default("eu-west-1")
    # Only the configured Regions, only the new account.
    assert not ebs_encryption_by_default("ap-southeast-2")
    assert not ebs_encryption_by_default("us-east-1", account=GOVERNANCE)
    assert verified["regions"] == ["us-east-1", "eu-west-1"]
    assert verified["baseline_version"] == BASELINE_VERSION
    assert set(verified["settings"]) == {"s3-account-public-access-block", "ebs-encryption-by-default"}


def test_an_environment_added_to_the_map_later_gets_the_common_controls(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A platform team adds a `sandbox` OU to OU_ENVIRONMENT_MAP before the backbone knows the environment:
    its accounts are baselined like dev and test, never left bare."""
    monkeypatch.setenv("OU_ENVIRONMENT_MAP", "ML-Sandbox=sandbox")
    settings.cache_clear()
    facts = facts_of("account-created.json", ou_name="ML-Sandbox", environment="sandbox")

    verified = baseline.verify_baseline(facts, baseline.apply_baseline(facts))

    assert account_public_access_block() == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    assert ebs_encryption_by_default("us-east-1") and ebs_encryption_by_default("eu-west-1")
    assert set(verified["settings"]) == {"s3-account-public-access-block", "ebs-encryption-by-default"}


def test_prod_accounts_also_get_a_strong_password_policy(aws: dict[str, str]) -> None:
    prod = facts_of("account-created.json", environment="prod", account_id="222222222222")
    dev = facts_of("account-created.json")

    baseline.verify_baseline(prod, baseline.apply_baseline(prod))
    baseline.verify_baseline(dev, baseline.apply_baseline(dev))

    policy = member("iam", account="222222222222").get_account_password_policy()["PasswordPolicy"]
    assert policy["MinimumPasswordLength"] == 14
    assert policy["PasswordReusePrevention"] == 24
    with pytest.raises(ClientError, match="NoSuchEntity"):
        member("iam").get_account_password_policy()


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # Tightened by the security team: every stricter value stays, HardExpiry included.
        (
            {
                "MinimumPasswordLength": 24,
                "MaxPasswordAge": 30,
                "PasswordReusePrevention": 24,
                "HardExpiry": True,
            },
            {
                "MinimumPasswordLength": 24,
                "MaxPasswordAge": 30,
                "PasswordReusePrevention": 24,
                "HardExpiry": True,
            },
        ),
        # Weaker in some fields, stricter in one: each field gets the stricter of the two.
        (
            {"MinimumPasswordLength": 20, "MaxPasswordAge": 180, "PasswordReusePrevention": 5},
            {
                "MinimumPasswordLength": 20,
                "MaxPasswordAge": 90,
                "PasswordReusePrevention": 24,
                "HardExpiry": False,
            },
        ),
    ],
    ids=["stricter", "mixed"],
)
def test_a_prod_baseline_never_weakens_the_password_policy_the_account_has(
    aws: dict[str, str], before: dict[str, object], after: dict[str, object]
) -> None:
    """UpdateAccountPasswordPolicy replaces the whole policy: a field left out goes back to its default."""
    iam = member("iam", account="222222222222")
    iam.update_account_password_policy(**before)
    prod = facts_of("account-created.json", environment="prod", account_id="222222222222")

    verified = baseline.verify_baseline(prod, baseline.apply_baseline(prod))

    policy = iam.get_account_password_policy()["PasswordPolicy"]
    assert {name: policy.get(name, False) for name in after} == after
    assert policy["RequireSymbols"] and policy["RequireNumbers"] and policy["RequireUppercaseCharacters"]
    assert verified["baseline_version"] == BASELINE_VERSION


def test_a_password_policy_weaker_than_the_baseline_fails_verification(aws: dict[str, str]) -> None:
    prod = facts_of("account-created.json", environment="prod", account_id="222222222222")
    applied = baseline.apply_baseline(prod)
    member("iam", account="222222222222").update_account_password_policy(MinimumPasswordLength=8)

    with pytest.raises(baseline.BaselineNotVerified, match="expected at least as strict as"):
        baseline.verify_baseline(prod, applied)


def test_applying_twice_is_harmless_and_the_second_time_writes_nothing(aws: dict[str, str]) -> None:
    facts = facts_of("account-created.json")

    first = baseline.apply_baseline(facts)
    second = baseline.apply_baseline(facts)

    assert first["changed"] == [
        "s3-account-public-access-block",
        "ebs-encryption-by-default in us-east-1",
        "ebs-encryption-by-default in eu-west-1",
    ]
    assert second["changed"] == []
    assert {k: v for k, v in first.items() if k != "changed"} == {
        k: v for k, v in second.items() if k != "changed"
    }
    baseline.verify_baseline(facts, second)


def test_a_setting_held_in_place_by_an_organization_policy_is_not_written(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An organization-level S3 policy makes the account's Block Public Access read-only: the baseline
    reads it on, and does not try (and fail) to write it."""
    facts = facts_of("account-created.json")
    member("s3control").put_public_access_block(
        AccountId=facts.account_id, PublicAccessBlockConfiguration=dict(baseline.PUBLIC_ACCESS_BLOCK_ALL_ON)
    )

    def refused(account_id: str, region: str) -> None:
        raise AssertionError("the organization policy refuses this write")

    locked = replace(baseline.S3_ACCOUNT_PUBLIC_ACCESS_BLOCK, apply=refused)
    monkeypatch.setitem(baseline.ENVIRONMENT_CONTROLS, "dev", (locked, baseline.EBS_ENCRYPTION_BY_DEFAULT))

    applied = baseline.apply_baseline(facts)

    assert applied["changed"] == [
        "ebs-encryption-by-default in us-east-1",
        "ebs-encryption-by-default in eu-west-1",
    ]
    baseline.verify_baseline(facts, applied)


def test_a_setting_that_does_not_read_back_fails_verification_and_names_it(aws: dict[str, str]) -> None:
    facts = facts_of("account-created.json")
    applied = baseline.apply_baseline(facts)
    member("ec2", "eu-west-1").disable_ebs_encryption_by_default()

    with pytest.raises(BaselineNotVerified, match="ebs-encryption-by-default in eu-west-1 reads False"):
        baseline.verify_baseline(facts, applied)


def test_an_account_outside_the_mapped_ous_is_never_baselined(aws: dict[str, str]) -> None:
    facts = facts_of("account-created.json", environment="")

    with pytest.raises(MalformedEvent, match="cannot be baselined"):
        baseline.apply_baseline(facts)
    assert account_public_access_block() is None


# --- waiting for the role --------------------------------------------------------------------------


def test_the_role_is_ready_when_it_can_be_assumed(aws: dict[str, str]) -> None:
    assert baseline.wait_for_role(facts_of("account-created.json"), 0) == {"ready": True, "checks": 1}


def test_a_role_that_cannot_be_assumed_is_not_ready(
    aws: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    role = f"arn:aws:iam::{NEW_ACCOUNT}:role/GovernanceExecutionRole"

    def refuse(account_id: str) -> Any:
        raise RoleAssumptionError(role, account_id, "AccessDenied")

    monkeypatch.setattr(baseline, "session_for", refuse)

    with pytest.raises(RoleNotReady, match=rf"check 3 of {ROLE_WAIT_MAX_ATTEMPTS}.*AccessDenied"):
        baseline.wait_for_role(facts_of("account-created.json"), 2)


def test_role_checks_back_off_doubling_up_to_the_cap(aws: dict[str, str]) -> None:
    facts = facts_of("account-created.json")

    schedule = [baseline.schedule_role_check(facts, attempt) for attempt in range(ROLE_WAIT_MAX_ATTEMPTS - 1)]

    assert [step["attempt"] for step in schedule] == list(range(1, ROLE_WAIT_MAX_ATTEMPTS))
    assert [step["wait_seconds"] for step in schedule][:6] == [10, 20, 40, 80, 160, ROLE_WAIT_CAP_SECONDS]
    assert max(step["wait_seconds"] for step in schedule) == ROLE_WAIT_CAP_SECONDS


def test_past_the_bound_the_role_never_appeared_and_the_message_says_what_to_check(
    aws: dict[str, str],
) -> None:
    with pytest.raises(RoleNeverAppeared) as raised:
        baseline.schedule_role_check(facts_of("account-created.json"), ROLE_WAIT_MAX_ATTEMPTS - 1)

    message = str(raised.value)
    assert f"arn:aws:iam::{NEW_ACCOUNT}:role/GovernanceExecutionRole" in message
    assert "automatic deployment enabled for OU ML-Dev (ou-abcd-11111111)" in message
    assert "trust policy" in message
    assert "\n" not in message


# --- inventory, notice and ledger ------------------------------------------------------------------


def test_a_baselined_account_is_registered_notified_and_ledgered(aws: dict[str, str]) -> None:
    facts = facts_of("account-created.json")

    result = baseline_account(facts)

    assert result == {"status": "done", "account_id": NEW_ACCOUNT, "inventory": "registered"}
    [item] = inventory_items()
    assert item["account_id"] == NEW_ACCOUNT
    assert (item["account_name"], item["ou_name"], item["environment"], item["team"]) == (
        "ml-team-churn-dev",
        "ML-Dev",
        "dev",
        "churn",
    )
    assert (item["baseline_version"], item["baseline_status"]) == (BASELINE_VERSION, "baselined")
    assert item["regions"] == ["us-east-1", "eu-west-1"]
    [notice] = platform_notices(aws["queue_url"])
    assert notice["kind"] == "account-baselined"
    assert NEW_ACCOUNT in notice["subject"]
    assert notice["regions"] == ["us-east-1", "eu-west-1"]
    entries = entries_for_event(facts.event_id)
    assert sorted((e.action, e.status) for e in entries) == [("baseline_account", "done"), ("notify", "done")]
    [ledgered] = [e for e in entries if e.action == "baseline_account"]
    assert ledgered.target == NEW_ACCOUNT
    assert ledgered.detail["baseline_version"] == BASELINE_VERSION
    assert ledgered.detail["regions"] == ["us-east-1", "eu-west-1"]


def test_the_same_event_twice_leaves_one_record_one_notice_and_a_skipped_entry(aws: dict[str, str]) -> None:
    facts = facts_of("account-created.json")

    baseline_account(facts)
    second = baseline_account(facts)

    assert second["status"] == "skipped"
    assert len(inventory_items()) == 1
    assert len(platform_notices(aws["queue_url"])) == 1
    statuses = sorted(e.status for e in entries_for_event(facts.event_id) if e.action == "baseline_account")
    assert statuses == ["done", "skipped"]


def test_an_update_after_the_create_rewrites_the_one_record(aws: dict[str, str]) -> None:
    created = facts_of("account-created.json")
    updated = facts_of("account-updated.json")

    baseline_account(created)
    first_baselined_at = inventory_items()[0]["first_baselined_at"]
    result = baseline_account(updated)

    assert result["inventory"] == "updated"
    [item] = inventory_items()
    assert item["lifecycle_event"] == "UpdateManagedAccount"
    assert item["lifecycle_event_id"] == updated.event_id
    assert item["first_baselined_at"] == first_baselined_at
    assert len(platform_notices(aws["queue_url"])) == 2


def test_an_update_in_the_same_second_as_the_create_still_rewrites_the_record(aws: dict[str, str]) -> None:
    """Event times have whole seconds: a move to another OU right after the creation can carry the same
    time. A different change at the same time is newer news, not a duplicate."""
    created = facts_of("account-created.json")
    moved = facts_of(
        "account-updated.json", lifecycle_at=created.lifecycle_at, ou_name="ML-Test", environment="test"
    )
    assert moved.change != created.change

    baseline_account(created)
    result = baseline_account(moved)

    assert result["inventory"] == "updated"
    [item] = inventory_items()
    assert (item["lifecycle_change"], item["ou_name"], item["environment"]) == (
        moved.change,
        "ML-Test",
        "test",
    )


def test_a_late_create_does_not_roll_back_the_record_of_an_update(aws: dict[str, str]) -> None:
    updated = facts_of("account-updated.json", ou_name="ML-Test", environment="test")
    created = facts_of("account-created.json")

    baseline_account(updated)
    result = baseline_account(created)

    assert result == {"status": "done", "account_id": NEW_ACCOUNT, "inventory": "stale"}
    [item] = inventory_items()
    assert (item["lifecycle_event"], item["ou_name"], item["environment"]) == (
        "UpdateManagedAccount",
        "ML-Test",
        "test",
    )


def test_an_event_older_than_the_recorded_change_is_described_as_stale_and_skipped(
    aws: dict[str, str],
) -> None:
    baseline_account(facts_of("account-updated.json"))
    [before] = inventory_items()

    late = baseline.describe_for_workflow(load_event("account-created.json"))
    current = baseline.describe_for_workflow(load_event("account-updated.json"))

    assert (late["stale"], late["registered"]) == (True, False)
    assert current["stale"] is False  # the same change again: a duplicate, handled at registration
    result = baseline.skip_stale_event(AccountFacts.from_payload(late))
    assert result == {"status": "skipped", "account_id": NEW_ACCOUNT, "inventory": "stale"}
    [entry] = [e for e in entries_for_event(late["event_id"]) if e.action == "baseline_account"]
    assert (entry.status, entry.detail["recorded"]["lifecycle_event"]) == ("skipped", "UpdateManagedAccount")
    assert inventory_items() == [before]
    assert len(platform_notices(aws["queue_url"])) == 1  # the update's only


def test_a_failed_creation_is_notified_with_control_towers_message(aws: dict[str, str]) -> None:
    facts = facts_of("account-creation-failed.json")

    baseline.notify_creation_failed(facts)

    [notice] = platform_notices(aws["queue_url"])
    assert notice["kind"] == "account-creation-failed"
    assert notice["severity"] == "HIGH"
    assert notice["control_tower_message"] == facts.message
    assert notice["account_name"] == "ml-team-fraud-prod"
    assert notice["organizational_unit"] == {"name": "ML-Prod", "id": "ou-abcd-22222222"}
    assert inventory_items() == []
    assert [(e.action, e.status) for e in entries_for_event(facts.event_id)] == [("notify", "done")]


def test_a_failed_update_is_said_as_an_update_of_an_account_that_exists(aws: dict[str, str]) -> None:
    """An OU move or a retried creation that fails: the account may be governed already."""
    event = load_event("account-updated.json")
    status = event["detail"]["serviceEventDetails"]["updateManagedAccountStatus"]
    status.update(state="FAILED", message="AWS Control Tower could not update the enrolled account.")
    facts = baseline.describe_lifecycle_event(event)

    result = baseline.notify_creation_failed(facts)

    [notice] = platform_notices(aws["queue_url"])
    assert result["kind"] == notice["kind"] == "account-update-failed"
    assert notice["subject"] == (
        "[FAILED] Control Tower could not update account ml-team-churn-dev (333333333333) in OU ML-Dev"
    )
    assert "keeps that baseline" in notice["what_happened"]
    assert notice["control_tower_message"] == "AWS Control Tower could not update the enrolled account."
    assert inventory_items() == []


def test_accounts_on_an_older_baseline_are_found(aws: dict[str, str]) -> None:
    baseline_account(facts_of("account-created.json"))
    table = boto3.resource("dynamodb", region_name=REGION).Table(INVENTORY)
    table.put_item(
        Item={"account_id": "210987654321", "baseline_version": "2025.1.3", "baseline_status": "baselined"}
    )
    # An account that left the ML OUs is not re-baselined, however old its baseline.
    table.put_item(
        Item={"account_id": "111122223333", "baseline_version": "2024.1.1", "baseline_status": "left"}
    )

    older = baseline.accounts_on_older_baseline()

    assert [item["account_id"] for item in older] == ["210987654321"]
    assert baseline.accounts_on_older_baseline("2099.1.1")[0]["account_id"] == "210987654321"
    assert len(baseline.accounts_on_older_baseline("2099.1.1")) == 2
    # Versions compare as numbers: 2026.9.4 is older than 2026.11.1, though it sorts after it as text.
    table.put_item(
        Item={"account_id": "210987654321", "baseline_version": "2026.9.4", "baseline_status": "baselined"}
    )
    assert [item["note"] for item in baseline.accounts_on_older_baseline("2026.11.1")] == [
        "baseline 2026.9.4 is older than 2026.11.1"
    ]


def test_every_governed_account_is_found_past_the_first_page_of_the_inventory(aws: dict[str, str]) -> None:
    """A scan answers at most 1 MB a page: 300 accounts of 5 KB each are two pages, and all are found."""
    table = boto3.resource("dynamodb", region_name=REGION).Table(INVENTORY)
    with table.batch_writer() as batch:
        for number in range(300):
            batch.put_item(
                Item={
                    "account_id": f"{number:012d}",
                    "baseline_status": "baselined",
                    "account_name": "x" * 5000,
                }
            )
    assert "LastEvaluatedKey" in table.scan()  # more than one page

    assert len(baseline.governed_accounts()) == 300


def test_accounts_baselined_in_other_regions_than_baseline_regions_now_are_found(aws: dict[str, str]) -> None:
    baseline_account(facts_of("account-created.json"))  # this release, in BASELINE_REGIONS
    [item] = inventory_items()
    recorded = list(item["regions"])
    assert recorded == ["us-east-1", "eu-west-1"]

    assert baseline.accounts_on_older_baseline(regions=reversed(recorded)) == []
    [added] = baseline.accounts_on_older_baseline(regions=[*recorded, "ap-southeast-2"])
    assert (added["account_id"], added["note"]) == (
        "333333333333",
        "baselined in eu-west-1, us-east-1; BaselineRegions is ap-southeast-2, eu-west-1, us-east-1",
    )
    # A Region dropped from BaselineRegions: the watch still reads it until the account is re-baselined.
    [dropped] = baseline.accounts_on_older_baseline(regions=["us-east-1"])
    assert dropped["note"] == "baselined in eu-west-1, us-east-1; BaselineRegions is us-east-1"
    # Without the Regions, only the version counts, as before.
    assert baseline.accounts_on_older_baseline() == []
    with pytest.raises(baseline.BaselineConfigurationError, match="'Europe' is not a Region name"):
        baseline.region_list("us-east-1, Europe")


def test_facts_survive_the_round_trip_through_the_state_machine(aws: dict[str, str]) -> None:
    facts = facts_of("account-created.json")

    dumped = json.loads(json.dumps(facts.to_payload()))

    assert dumped["governed"] is True
    assert AccountFacts.from_payload(copy.deepcopy(dumped)) == facts


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, "account: expected an object, got NoneType"),
        ({"event_id": "e"}, "account.event_name: missing"),
        (
            {"event_id": "e", "event_name": "n", "state": 3, "change": "c", "lifecycle_at": "t"},
            "account.state: expected a string, got int",
        ),
    ],
)
def test_facts_that_are_not_the_workflows_own_are_refused_by_name(payload: Any, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=f"^{re.escape(reason)}$"):
        AccountFacts.from_payload(payload)


# --- what the member role must allow -----------------------------------------------------------------


def execution_role_actions() -> set[str]:
    """Every action GovernanceExecutionRole's inline policies allow, from the member template."""
    template = load_template(ROOT / "templates" / "member-account.yaml")
    role = template["Resources"]["GovernanceExecutionRole"]["Properties"]
    allowed: set[str] = set()
    for policy in role.get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement.get("Effect") == "Allow":
                actions = statement["Action"]
                allowed.update([actions] if isinstance(actions, str) else actions)
    return allowed


@pytest.mark.parametrize(
    "control",
    [
        baseline.S3_ACCOUNT_PUBLIC_ACCESS_BLOCK,
        baseline.EBS_ENCRYPTION_BY_DEFAULT,
        baseline.IAM_PASSWORD_POLICY,
    ],
    ids=lambda control: control.name,
)
def test_the_member_role_allows_what_each_control_needs(control: baseline.Control) -> None:
    assert control.permissions
    assert set(control.permissions) <= execution_role_actions()


def test_every_control_of_every_environment_declares_its_permissions() -> None:
    controls = [control for controls in baseline.ENVIRONMENT_CONTROLS.values() for control in controls]
    assert [control.name for control in controls if not control.permissions] == []
