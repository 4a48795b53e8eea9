"""Issue 5, end to end: a Control Tower lifecycle event through the real rule, state machine and handler."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from govern import operations
from govern.cli import main
from govern.emulator import Organization
from govern.faults import access_denied, inject_api_faults, throttling
from govern.flows.accounts import role_appears_after
from governance.baseline import BASELINE_VERSION, ROLE_WAIT_MAX_ATTEMPTS
from governance.forwarding import FORWARDING_DEAD_LETTER_QUEUE
from governance.ledger import entries_for_account
from tests.conftest import EVENTS_DIR, AwsProfile

LoadEvent = Callable[[str], dict[str, Any]]

NEW_ACCOUNT = "333333333333"
REGIONS = ("us-east-1", "eu-west-1")
MACHINE = "AccountBaselineStateMachine"
ALL_FOUR_ON = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


@pytest.fixture
def two_regions(org: Organization) -> Organization:
    org.configure(BASELINE_REGIONS=",".join(REGIONS))
    return org


def account_public_access_block(org: Organization, region: str, account: str = NEW_ACCOUNT) -> Any:
    s3control = org.session(account, region).client("s3control")
    try:
        return s3control.get_public_access_block(AccountId=account)["PublicAccessBlockConfiguration"]
    except ClientError as error:
        return error.response["Error"]["Code"]


def ebs_encryption_by_default(org: Organization, region: str, account: str = NEW_ACCOUNT) -> bool:
    ec2 = org.session(account, region).client("ec2")
    return bool(ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"])


def inventory(org: Organization) -> list[dict[str, Any]]:
    table = org.session().resource("dynamodb").Table(org.physical_id("AccountInventoryTable"))
    return list(table.scan(ConsistentRead=True)["Items"])


def kinds(org: Organization) -> list[str]:
    return [note.attributes.get("kind", "") for note in org.notifications("platform")]


def states_entered(org: Organization, execution: dict[str, Any] | None = None) -> list[str]:
    """The states the one execution (or `execution`) of the workflow entered, in order."""
    if execution is None:
        [execution] = org.executions(MACHINE)
    history = (
        org.session()
        .client("stepfunctions")
        .get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
    )
    return [
        event["stateEnteredEventDetails"]["name"]
        for event in history
        if event["type"].endswith("StateEntered")
    ]


def test_a_created_account_is_baselined_in_every_configured_region_registered_and_announced(
    two_regions: Organization, load_event: LoadEvent
) -> None:
    org = two_regions
    event = load_event("account-created")
    assert account_public_access_block(org, "us-east-1") == "NoSuchPublicAccessBlockConfiguration"

    [result] = org.replay([event])

    assert result.outcome == "succeeded", result.error
    assert result.rules == ["AccountBaselineStateMachineAccountLifecycle"]
    for region in REGIONS:
        assert account_public_access_block(org, region) == ALL_FOUR_ON
        assert ebs_encryption_by_default(org, region)
    # Only the configured Regions, only the new account.
    assert not ebs_encryption_by_default(org, "ap-southeast-2")
    assert not ebs_encryption_by_default(org, "us-east-1", account=org.governance_account)
    [item] = inventory(org)
    assert item["account_id"] == NEW_ACCOUNT
    assert (item["account_name"], item["ou_name"], item["ou_id"]) == (
        "ml-team-churn-dev",
        "ML-Dev",
        "ou-abcd-11111111",
    )
    assert (item["environment"], item["team"]) == ("dev", "churn")
    assert (item["baseline_version"], item["baseline_status"]) == (BASELINE_VERSION, "baselined")
    assert item["regions"] == list(REGIONS)
    assert item["baselined_at"]
    [notice] = org.notifications("platform")
    assert notice.attributes == {"severity": "INFO", "account": NEW_ACCOUNT, "kind": "account-baselined"}
    assert "ml-team-churn-dev" in notice.subject
    assert notice.message["regions"] == list(REGIONS)
    assert notice.message["baseline_version"] == BASELINE_VERSION


def test_the_replay_reports_a_verified_baseline_of_the_new_account_and_the_notice(
    org: Organization, load_event: LoadEvent
) -> None:
    [result] = org.replay([load_event("account-created")])

    actions = {action.type: action for action in result.actions}
    assert set(actions) == {"baseline_account", "notify"}
    baselined = actions["baseline_account"]
    assert (baselined.status, baselined.verified, baselined.target) == ("done", True, NEW_ACCOUNT)
    assert baselined.detail["settings"]["s3-account-public-access-block"] == ALL_FOUR_ON
    assert actions["notify"].verified


def test_a_prod_account_also_gets_a_strong_password_policy(org: Organization, load_event: LoadEvent) -> None:
    event = load_event("account-created")
    status = event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]
    status["organizationalUnit"] = {
        "organizationalUnitName": "ML-Prod",
        "organizationalUnitId": "ou-abcd-22222222",
    }
    status["account"] = {"accountName": "ml-team-churn-prod", "accountId": "222222222222"}

    [result] = org.replay([event])

    assert result.outcome == "succeeded", result.error
    policy = org.session("222222222222").client("iam").get_account_password_policy()["PasswordPolicy"]
    assert policy["MinimumPasswordLength"] >= 14
    assert policy["RequireSymbols"] and policy["RequireNumbers"]
    assert policy["PasswordReusePrevention"] == 24
    assert account_public_access_block(org, "us-east-1", account="222222222222") == ALL_FOUR_ON
    [baselined] = [action for action in result.actions if action.type == "baseline_account"]
    assert baselined.verified
    assert "iam-password-policy" in baselined.detail["settings"]
    [item] = inventory(org)
    assert (item["account_id"], item["environment"], item["team"]) == ("222222222222", "prod", "churn")


def test_the_verifier_notices_a_setting_turned_off_after_the_baseline(
    org: Organization, load_event: LoadEvent
) -> None:
    from govern.flows.accounts import verify_baseline_account

    event = load_event("account-created")
    org.replay([event])
    [entry] = [entry for entry in org.ledger(event["id"]) if entry.action == "baseline_account"]
    assert verify_baseline_account(entry, org)

    org.session(NEW_ACCOUNT).client("ec2").disable_ebs_encryption_by_default()

    assert not verify_baseline_account(entry, org)


def test_a_failed_creation_notifies_with_control_towers_message_and_changes_nothing(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event("account-creation-failed")
    status = event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]

    [result] = org.replay([event])

    assert result.outcome == "succeeded", result.error
    assert [(action.type, action.status, action.verified) for action in result.actions] == [
        ("notify", "done", True)
    ]
    [notice] = org.notifications("platform")
    assert notice.attributes["kind"] == "account-creation-failed"
    assert notice.attributes["severity"] == "HIGH"
    assert notice.message["control_tower_message"] == status["message"]
    assert notice.message["account_name"] == "ml-team-fraud-prod"
    assert notice.message["organizational_unit"] == {"name": "ML-Prod", "id": "ou-abcd-22222222"}
    assert "ml-team-fraud-prod" in notice.subject and "ML-Prod" in notice.subject
    assert inventory(org) == []
    assert "WaitForRole" not in states_entered(org)
    assert org.assume_role_attempts == {} or set(org.assume_role_attempts) <= {org.management_account}


def test_an_account_still_in_progress_is_ignored(org: Organization, load_event: LoadEvent) -> None:
    event = load_event("account-created")
    event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["state"] = "IN_PROGRESS"

    [result] = org.replay([event])

    assert result.outcome == "ignored"
    assert result.actions == []
    assert inventory(org) == []
    assert org.notifications("platform") == []
    assert account_public_access_block(org, "us-east-1") == "NoSuchPublicAccessBlockConfiguration"


def test_an_account_in_an_unmapped_ou_is_announced_but_not_baselined(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event("account-created")
    event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["organizationalUnit"][
        "organizationalUnitName"
    ] = "Sandbox"

    [result] = org.replay([event])

    assert [(action.type, action.status) for action in result.actions] == [("notify", "done")]
    assert kinds(org) == ["account-not-governed"]
    assert inventory(org) == []
    assert account_public_access_block(org, "us-east-1") == "NoSuchPublicAccessBlockConfiguration"


def test_a_successful_event_without_the_account_id_is_dead_lettered_with_a_one_line_reason(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event("account-created")
    del event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["account"]["accountId"]

    [result] = org.replay([event])

    assert result.outcome == "dead-lettered"
    assert result.error is not None and "\n" not in result.error
    assert "account.accountId: missing" in result.error
    [kept] = [letter for letter in org.dead_letters() if letter.event.get("id") == event["id"]]
    assert kept.event == event
    assert inventory(org) == []


def test_a_role_that_appears_after_a_few_attempts_is_waited_for(
    org: Organization, load_event: LoadEvent
) -> None:
    attempts = role_appears_after(org, NEW_ACCOUNT, failed_attempts=3)

    [result] = org.replay([load_event("account-created")])

    assert result.outcome == "succeeded", result.error
    assert attempts() >= 4
    entered = states_entered(org)
    assert entered.count("WaitBeforeRoleCheck") == 3
    assert entered.count("WaitForRole") == 4
    assert account_public_access_block(org, "us-east-1") == ALL_FOUR_ON
    assert len(inventory(org)) == 1


def test_a_role_whose_policies_are_not_in_effect_yet_is_waited_for(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event("account-created")
    # The role can be assumed, but IAM refuses its first read there: its policies have not propagated yet.
    fault = access_denied("ec2", "GetEbsEncryptionByDefault", times=1, account=NEW_ACCOUNT)

    with inject_api_faults(org, [fault]):
        [result] = org.replay([event])

    assert fault.hits == 1
    assert result.outcome == "succeeded", result.error
    entered = states_entered(org)
    assert (entered.count("WaitForRole"), entered.count("WaitBeforeRoleCheck")) == (2, 1)
    assert ebs_encryption_by_default(org, "us-east-1")
    [item] = inventory(org)
    assert item["baseline_status"] == "baselined"
    assert kinds(org) == ["account-baselined"]
    assert [entry for entry in org.ledger(event["id"]) if entry.status == "failed"] == []


def test_a_role_that_never_appears_fails_after_the_bound_saying_what_to_check(
    org: Organization, load_event: LoadEvent
) -> None:
    org.remove_execution_role(NEW_ACCOUNT)
    event = load_event("account-created")

    [result] = org.replay([event])

    assert result.outcome == "failed"
    assert result.error is not None
    for hint in ("GovernanceExecutionRole", "automatic deployment", "ML-Dev", "trust policy"):
        assert hint in result.error
    assert states_entered(org).count("WaitForRole") == ROLE_WAIT_MAX_ATTEMPTS
    assert org.assume_role_attempts[NEW_ACCOUNT] >= ROLE_WAIT_MAX_ATTEMPTS
    [execution] = org.executions(MACHINE)
    assert execution["status"] == "FAILED"
    [failed] = [entry for entry in org.ledger(event["id"]) if entry.status == "failed"]
    assert (failed.action, failed.detail["error_type"]) == ("baseline_account", "RoleNeverAppeared")
    [notice] = org.notifications("platform")
    assert notice.attributes["severity"] == "HIGH"
    assert "automatic deployment" in notice.message["error"]
    assert inventory(org) == []
    assert not org.has_execution_role(NEW_ACCOUNT)
    assert account_public_access_block(org, "us-east-1") == "NoSuchPublicAccessBlockConfiguration"


def test_a_failed_baseline_is_ledgered_and_notified_against_the_new_account(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event("account-created")
    fault = access_denied("ec2", "EnableEbsEncryptionByDefault")

    with inject_api_faults(org, [fault]):
        [result] = org.replay([event])

    assert result.outcome == "failed"
    assert fault.hits >= 1
    # Filed under the new account, as its successful baseline would be, not under the management account
    # the Control Tower event comes from: `govern ledger --account 333333333333` shows it.
    [failed] = [entry for entry in org.ledger(event["id"]) if entry.status == "failed"]
    assert (failed.action, failed.account, failed.target) == ("baseline_account", NEW_ACCOUNT, NEW_ACCOUNT)
    assert failed.detail["account_name"] == "ml-team-churn-dev"
    assert [(e.action, e.status) for e in entries_for_account(NEW_ACCOUNT)] == [
        ("baseline_account", "failed"),
        ("notify", "done"),
    ]
    assert entries_for_account(org.management_account) == []
    [notice] = org.notifications("platform")
    assert notice.attributes == {
        "severity": "HIGH",
        "account": NEW_ACCOUNT,
        "kind": "account-baseline-failed",
    }
    assert "ml-team-churn-dev (333333333333)" in notice.subject
    assert (notice.message["account_id"], notice.message["account_name"]) == (
        NEW_ACCOUNT,
        "ml-team-churn-dev",
    )
    assert inventory(org) == []


def test_a_create_then_an_update_leave_one_inventory_record(org: Organization, load_event: LoadEvent) -> None:
    created, updated = load_event("account-created"), load_event("account-updated")

    results = org.replay([created, updated])

    assert [result.outcome for result in results] == ["succeeded", "succeeded"]
    [item] = inventory(org)
    assert (item["lifecycle_event"], item["lifecycle_event_id"]) == ("UpdateManagedAccount", updated["id"])
    assert [action.status for action in results[1].actions if action.type == "baseline_account"] == ["done"]
    assert kinds(org) == ["account-baselined", "account-baselined"]


def moved_to(event: dict[str, Any], ou_name: str, ou_id: str) -> dict[str, Any]:
    status = event["detail"]["serviceEventDetails"]["updateManagedAccountStatus"]
    status["organizationalUnit"] = {"organizationalUnitName": ou_name, "organizationalUnitId": ou_id}
    return event


def test_an_account_moved_out_of_the_ml_ous_is_marked_as_left_once_and_no_longer_watched(
    org: Organization, load_event: LoadEvent
) -> None:
    created = load_event("account-created")
    moved = moved_to(load_event("account-updated"), "Sandbox", "ou-abcd-99999999")

    results = org.replay(
        [created, moved, moved_to(load_event("account-updated"), "Sandbox", "ou-abcd-99999999")]
    )

    assert [result.outcome for result in results] == ["succeeded"] * 3
    assert [(a.type, a.status, a.verified) for a in results[1].actions] == [
        ("notify", "done", True),
        ("deregister_account", "done", True),
    ]
    # The redelivery changes nothing and tells no one again.
    assert [(a.type, a.status, a.verified) for a in results[2].actions] == [
        ("deregister_account", "skipped", True)
    ]
    assert kinds(org) == ["account-baselined", "account-left-ml-ous"]
    [item] = inventory(org)
    assert (
        item["baseline_status"],
        item["left_reason"],
        item["left_ou_name"],
        item["lifecycle_event_id"],
    ) == (
        "left",
        "moved",
        "Sandbox",
        moved["id"],
    )
    # The baseline applied while it was governed stays; the forwarding watch no longer reads it.
    assert account_public_access_block(org, "us-east-1") == ALL_FOUR_ON
    assert org.run_scheduled("WatchForwardingFunction")["queues"] == 0

    # Moved back into an ML OU later, it is baselined, registered and watched again.
    back = load_event("account-updated")
    back["id"], back["detail"]["eventID"] = (
        "3d6c1e2f-7a8b-4c9d-8e0f-1a2b3c4d5e6f",
        "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
    )
    back["time"] = back["detail"]["eventTime"] = "2026-11-05T10:00:00Z"

    [result] = org.replay([back])

    assert [(a.type, a.status, a.verified) for a in result.actions if a.type != "notify"] == [
        ("baseline_account", "done", True)
    ]
    [item] = inventory(org)
    assert item["baseline_status"] == "baselined"
    assert not {"left_reason", "left_ou_name", "left_ou_id", "left_at"} & set(item)
    assert org.run_scheduled("WatchForwardingFunction")["queues"] == 1


def later(event: dict[str, Any], day: int) -> dict[str, Any]:
    """`event` as another lifecycle change, on 2026-11-<day>."""
    event["id"] = f"11111111-2222-4333-8444-5555555555{day:02d}"
    event["detail"]["eventID"] = f"aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeee{day:02d}"
    event["time"] = event["detail"]["eventTime"] = f"2026-11-{day:02d}T10:00:00Z"
    return event


def test_an_account_that_left_is_not_announced_as_leaving_again_by_later_changes(
    org: Organization, load_event: LoadEvent
) -> None:
    moved = moved_to(load_event("account-updated"), "Sandbox", "ou-abcd-99999999")
    created, left = org.replay([load_event("account-created"), moved])
    assert (created.outcome, left.outcome) == ("succeeded", "succeeded"), (created.error, left.error)
    [departed] = inventory(org)
    # Later, an Account Factory update of the (no longer ML) account into another OU, then its closure.
    again = later(moved_to(load_event("account-updated"), "Archive", "ou-abcd-88888888"), 8)
    closed = organizations_call(load_event, "CloseAccount")
    closed["time"] = closed["detail"]["eventTime"] = "2026-11-09T10:00:00Z"

    results = org.replay([again, closed])

    assert [result.outcome for result in results] == ["succeeded", "succeeded"], [r.error for r in results]
    for result in results:
        assert [(a.type, a.status, a.verified) for a in result.actions] == [
            ("deregister_account", "skipped", True)
        ]
        assert result.actions[0].detail["inventory"] == "already-left"
    assert kinds(org) == ["account-baselined", "account-left-ml-ous"]
    # The departure recorded first stays as it was.
    [item] = inventory(org)
    assert item == departed
    assert (item["left_reason"], item["left_ou_name"], item["lifecycle_event_id"]) == (
        "moved",
        "Sandbox",
        moved["id"],
    )


def test_a_late_create_after_the_account_left_ends_as_stale_without_waiting_for_the_role(
    org: Organization, load_event: LoadEvent
) -> None:
    moved = moved_to(load_event("account-updated"), "Sandbox", "ou-abcd-99999999")
    assert [r.outcome for r in org.replay([load_event("account-created"), moved])] == ["succeeded"] * 2
    # The StackSet deleted its instance there (RetainStacksOnAccountRemoval=false): the role is gone.
    org.remove_execution_role(NEW_ACCOUNT)
    [departed] = inventory(org)
    role_checks = org.assume_role_attempts.get(NEW_ACCOUNT, 0)
    late = load_event("account-created")  # redelivered, or retried, after the move

    [result] = org.replay([late], seed=False)

    assert result.outcome == "succeeded", result.error
    assert [(a.type, a.status, a.verified) for a in result.actions] == [("baseline_account", "skipped", True)]
    detail = result.actions[0].detail
    assert detail["inventory"] == "stale"
    assert detail["recorded"]["lifecycle_event_id"] == moved["id"]
    # Ended at once: no role waited for, nothing applied, no alarm, the inventory as the move left it.
    execution = max(org.executions(MACHINE), key=lambda e: e["startDate"])
    entered = states_entered(org, execution)
    assert entered == ["DescribeLifecycleEvent", "ChooseByAccountState", "SkipStaleEvent"]
    assert org.assume_role_attempts.get(NEW_ACCOUNT, 0) == role_checks
    assert kinds(org) == ["account-baselined", "account-left-ml-ous"]
    assert [e for e in org.ledger(late["id"]) if e.status == "failed"] == []
    assert inventory(org) == [departed]


def test_an_older_move_out_does_not_undo_a_newer_registration(
    org: Organization, load_event: LoadEvent
) -> None:
    updated = load_event("account-updated")
    late_move = moved_to(load_event("account-updated"), "Sandbox", "ou-abcd-99999999")
    late_move["id"] = "0b9f5b0e-3c1d-4e9a-8f6b-2a7c5d4e3f21"
    late_move["detail"]["eventID"] = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
    late_move["time"] = late_move["detail"]["eventTime"] = "2026-11-01T08:00:00Z"

    results = org.replay([updated, late_move])

    assert [(a.type, a.status, a.verified) for a in results[1].actions] == [
        ("deregister_account", "skipped", True)
    ]
    assert results[1].actions[0].detail["inventory"] == "stale"
    [item] = inventory(org)
    assert item["baseline_status"] == "baselined"
    assert kinds(org) == ["account-baselined"]


def organizations_call(load_event: LoadEvent, name: str, account: str = NEW_ACCOUNT, **changes: Any) -> dict:
    """The sample CloseAccount call, as `name` (CloseAccount, RemoveAccountFromOrganization) for `account`."""
    event = load_event("account-closed")
    event["detail"]["eventName"] = name
    event["detail"]["requestParameters"] = {"accountId": account}
    event["detail"].update(changes)
    return event


@pytest.mark.parametrize(
    ("call", "reason", "kind", "severity"),
    [
        ("CloseAccount", "closed", "account-closed", "MEDIUM"),
        ("RemoveAccountFromOrganization", "removed", "account-removed-from-organization", "HIGH"),
    ],
)
def test_an_account_closed_or_removed_from_the_organization_is_marked_as_left_once_and_no_longer_watched(
    org: Organization, load_event: LoadEvent, call: str, reason: str, kind: str, severity: str
) -> None:
    event = organizations_call(load_event, call)

    results = org.replay([load_event("account-created"), event, organizations_call(load_event, call)])

    assert [result.outcome for result in results] == ["succeeded"] * 3, [r.error for r in results]
    assert [(a.type, a.status, a.verified) for a in results[1].actions] == [
        ("notify", "done", True),
        ("deregister_account", "done", True),
    ]
    # The redelivery (same CloudTrail record) changes nothing and tells no one again.
    assert [(a.type, a.status, a.verified) for a in results[2].actions] == [
        ("deregister_account", "skipped", True)
    ]
    [item] = inventory(org)
    assert (item["baseline_status"], item["left_reason"], item["lifecycle_event"]) == ("left", reason, call)
    assert (item["lifecycle_event_id"], item["lifecycle_change"]) == (event["id"], event["detail"]["eventID"])
    assert not {"left_ou_name", "left_ou_id"} & set(item)
    assert kinds(org) == ["account-baselined", kind]
    notice = org.notifications("platform")[-1]
    assert notice.attributes["severity"] == severity
    # The name comes from the inventory: CloudTrail's record of the call only has the id.
    assert "ml-team-churn-dev (333333333333)" in notice.subject
    assert notice.message["left_reason"] == reason
    entries = [e for e in org.ledger(event["id"]) if e.action == "deregister_account"]
    assert sorted((e.status, e.target, e.detail["left_reason"]) for e in entries) == [
        ("done", NEW_ACCOUNT, reason),
        ("skipped", NEW_ACCOUNT, reason),
    ]
    # What was applied stays; the forwarding watch no longer reads the account's queues.
    assert account_public_access_block(org, "us-east-1") == ALL_FOUR_ON
    assert org.run_scheduled("WatchForwardingFunction")["queues"] == 0


def test_closing_an_account_the_backbone_never_registered_writes_nothing(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event("account-closed")

    [result] = org.replay([event])

    # Routed and run, and nothing to do: no ledger entry, no notice, no inventory item.
    assert result.rules == ["AccountBaselineStateMachineAccountLeftOrganization"]
    assert (result.outcome, result.actions) == ("ignored", [])
    [execution] = org.executions(MACHINE)
    assert execution["status"] == "SUCCEEDED"
    assert org.ledger(event["id"]) == []
    assert org.notifications("platform") == []
    assert inventory(org) == []


@pytest.mark.parametrize(
    ("why", "changes"),
    [
        ("refused by Organizations", {"errorCode": "ConstraintViolationException"}),
        ("called in a member account", {}),
        ("another Organizations call", {"eventName": "MoveAccount"}),
    ],
)
def test_an_organizations_call_that_closed_nothing_leaves_the_account_governed(
    org: Organization, load_event: LoadEvent, why: str, changes: dict[str, Any]
) -> None:
    event = organizations_call(load_event, "CloseAccount", **changes)
    if why == "called in a member account":
        event["account"] = event["detail"]["recipientAccountId"] = "210987654321"

    created, result = org.replay([load_event("account-created"), event])

    assert created.outcome == "succeeded", created.error
    assert (result.rules, result.outcome) == ([], "ignored"), why
    [item] = inventory(org)
    assert item["baseline_status"] == "baselined"
    assert kinds(org) == ["account-baselined"]
    assert org.run_scheduled("WatchForwardingFunction")["queues"] == 1


def test_a_close_older_than_the_registration_does_not_undo_it(
    org: Organization, load_event: LoadEvent
) -> None:
    late = organizations_call(load_event, "CloseAccount")
    late["time"] = late["detail"]["eventTime"] = "2026-11-01T08:00:00Z"

    updated, closed = org.replay([load_event("account-updated"), late])

    assert updated.outcome == "succeeded", updated.error
    assert [(a.type, a.status, a.verified) for a in closed.actions] == [
        ("deregister_account", "skipped", True)
    ]
    assert closed.actions[0].detail["inventory"] == "stale"
    [item] = inventory(org)
    assert item["baseline_status"] == "baselined"
    assert kinds(org) == ["account-baselined"]


def test_a_close_without_the_account_id_is_dead_lettered_with_a_one_line_reason(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event("account-closed")
    del event["detail"]["requestParameters"]

    [result] = org.replay([event])

    assert result.outcome == "dead-lettered"
    assert result.error == (
        "OrganizationsAccountCall is malformed: detail.requestParameters.accountId: missing for CloseAccount"
    )
    assert [letter.event for letter in org.dead_letters()] == [event]


def test_the_same_event_twice_leaves_one_record_and_one_notice(
    org: Organization, load_event: LoadEvent
) -> None:
    event = load_event("account-created")

    first, second = org.replay([event, load_event("account-created")])

    assert first.outcome == "succeeded", first.error
    assert second.outcome == "succeeded", second.error
    assert [(action.type, action.status, action.verified) for action in second.actions] == [
        ("baseline_account", "skipped", True)
    ]
    assert len(inventory(org)) == 1
    assert kinds(org) == ["account-baselined"]
    assert len(org.executions(MACHINE)) == 2


def test_govern_replay_json_reports_the_baseline_and_the_notice(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["replay", "--json", str(EVENTS_DIR / "account-created.json")])

    report = json.loads(capsys.readouterr().out)
    assert status == 0
    [event] = report["events"]
    assert event["outcome"] == "succeeded"
    by_type = {action["type"]: action for action in event["actions"]}
    assert set(by_type) == {"baseline_account", "notify"}
    assert by_type["baseline_account"]["status"] == "done"
    assert by_type["baseline_account"]["verified"] is True
    assert by_type["baseline_account"]["target"] == NEW_ACCOUNT
    assert by_type["notify"]["status"] == "done"
    assert by_type["notify"]["verified"] is True
    assert report["summary"]["succeeded"] == 1


def test_govern_rebaseline_brings_the_accounts_on_an_older_baseline_to_this_one(
    org: Organization, load_event: LoadEvent, capsys: pytest.CaptureFixture[str]
) -> None:
    other = "555555555555"
    created_other = json.loads(json.dumps(load_event("account-created")).replace(NEW_ACCOUNT, other))
    created_other["id"], created_other["detail"]["eventID"] = "rb-created-other", "rb-change-other"
    moved_other = moved_to(
        json.loads(json.dumps(load_event("account-updated")).replace(NEW_ACCOUNT, other)), "Sandbox", "ou-x"
    )
    moved_other["id"], moved_other["detail"]["eventID"] = "rb-moved-other", "rb-move-other"
    results = org.replay([load_event("account-created"), created_other, moved_other])
    assert [result.outcome for result in results] == ["succeeded"] * 3, [r.error for r in results]
    # Both were baselined by an older release; one has since left. The older baseline lacked a setting.
    table = org.session().resource("dynamodb").Table(org.physical_id("AccountInventoryTable"))
    for account in (NEW_ACCOUNT, other):
        table.update_item(
            Key={"account_id": account},
            UpdateExpression="SET baseline_version = :old",
            ExpressionAttributeValues={":old": "2026.10.1"},
        )
    org.session(NEW_ACCOUNT, "us-east-1").client("s3control").delete_public_access_block(
        AccountId=NEW_ACCOUNT
    )
    machine, inventory_table = org.arn(MACHINE), org.physical_id("AccountInventoryTable")
    executions_before = len(org.executions(MACHINE))

    [listed] = operations.rebaseline(machine, dry_run=True, inventory_table=inventory_table)

    assert (listed.account_id, listed.from_version, listed.to_version, listed.status) == (
        NEW_ACCOUNT,
        "2026.10.1",
        BASELINE_VERSION,
        "would-start",
    )
    assert len(org.executions(MACHINE)) == executions_before

    status = main(["rebaseline", "--table", inventory_table, "--state-machine-arn", machine, "--json"])

    document = json.loads(capsys.readouterr().out)
    assert status == 0
    assert document["summary"] == {"accounts": 1, "started": 1, "would_start": 0, "failed": 0}
    [started] = document["accounts"]
    assert org.wait_for_execution(started["execution_arn"]) == "SUCCEEDED"
    items = {item["account_id"]: item for item in inventory(org)}
    assert (items[NEW_ACCOUNT]["baseline_version"], items[NEW_ACCOUNT]["lifecycle_event_id"]) == (
        BASELINE_VERSION,
        started["event_id"],
    )
    assert (items[other]["baseline_status"], items[other]["baseline_version"]) == ("left", "2026.10.1")
    assert account_public_access_block(org, "us-east-1") == ALL_FOUR_ON
    assert sorted((e.action, e.status) for e in org.ledger(started["event_id"])) == [
        ("baseline_account", "done"),
        ("notify", "done"),
    ]
    assert kinds(org)[-1] == "account-baselined"
    # Nothing is left on an older baseline: a second run starts nothing.
    assert operations.rebaseline(machine, dry_run=False, inventory_table=inventory_table) == []


def test_govern_rebaseline_baselines_a_region_added_to_baseline_regions(
    org: Organization, load_event: LoadEvent, capsys: pytest.CaptureFixture[str]
) -> None:
    [created] = org.replay([load_event("account-created")])
    assert created.outcome == "succeeded", created.error
    assert [item["regions"] for item in inventory(org)] == [["us-east-1"]]
    # The platform team adds eu-west-1: the member StackSet gets instances there, and the stack's
    # BaselineRegions names it. The account, vended before, has none of the Regional settings there.
    org.configure(BASELINE_REGIONS="us-east-1,eu-west-1")
    org.session(NEW_ACCOUNT, "eu-west-1").client("sqs").create_queue(QueueName=FORWARDING_DEAD_LETTER_QUEUE)
    assert not ebs_encryption_by_default(org, "eu-west-1")
    command = ["rebaseline", "--table", org.physical_id("AccountInventoryTable")]
    command += ["--state-machine-arn", org.arn(MACHINE), "--json"]

    # Its baseline version is this release's: the version alone finds nothing to do.
    assert main([*command, "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["accounts"] == []
    assert main([*command, "--baseline-regions", "us-east-1,eu-west-1", "--dry-run"]) == 0
    [listed] = json.loads(capsys.readouterr().out)["accounts"]
    assert (listed["account_id"], listed["note"]) == (
        NEW_ACCOUNT,
        "baselined in us-east-1; BaselineRegions is eu-west-1, us-east-1",
    )

    assert main([*command, "--baseline-regions", "us-east-1,eu-west-1"]) == 0

    [started] = json.loads(capsys.readouterr().out)["accounts"]
    assert org.wait_for_execution(started["execution_arn"]) == "SUCCEEDED"
    assert ebs_encryption_by_default(org, "eu-west-1")
    [item] = inventory(org)
    assert (sorted(item["regions"]), item["lifecycle_event_id"]) == (
        ["eu-west-1", "us-east-1"],
        started["event_id"],
    )
    assert org.run_scheduled("WatchForwardingFunction")["queues"] == 2
    assert main([*command, "--baseline-regions", "us-east-1,eu-west-1"]) == 0
    assert json.loads(capsys.readouterr().out)["accounts"] == []
    assert main([*command, "--baseline-regions", "us-east-1,Europe"]) == 1
    assert capsys.readouterr().err.strip() == (
        "govern rebaseline: BASELINE_REGIONS entry 'Europe' is not a Region name"
    )


class MotoOrganization:
    """The organization in moto's Organizations, as the management account sees it."""

    def __init__(self, org: Organization) -> None:
        self.client = org.session(org.management_account).client("organizations")
        self.client.create_organization(FeatureSet="ALL")
        self.root = str(self.client.list_roots()["Roots"][0]["Id"])

    def unit(self, name: str, parent: str | None = None) -> str:
        created = self.client.create_organizational_unit(ParentId=parent or self.root, Name=name)
        return str(created["OrganizationalUnit"]["Id"])

    def accounts(self, parent: str, *names: str) -> list[str]:
        """New accounts, moved from the root into `parent`; their ids, in order."""
        ids = []
        for name in names:
            created = self.client.create_account(Email=f"{name}@example.com", AccountName=name)
            ids.append(str(created["CreateAccountStatus"]["AccountId"]))
            self.move(ids[-1], self.root, parent)
        return ids

    def move(self, account_id: str, source: str, destination: str) -> None:
        self.client.move_account(AccountId=account_id, SourceParentId=source, DestinationParentId=destination)


def governed_by_account_factory(org: Organization, load_event: LoadEvent, *accounts: str) -> None:
    """Each account created by Account Factory in an ML OU, and baselined by the backbone then."""
    events = []
    for number, account in enumerate(accounts):
        event = json.loads(json.dumps(load_event("account-created")).replace(NEW_ACCOUNT, account))
        event["id"], event["detail"]["eventID"] = f"af-created-{number}", f"af-change-{number}"
        events.append(event)
    assert [result.outcome for result in org.replay(events)] == ["succeeded"] * len(accounts)


def enroll_command(org: Organization, aws_profile: AwsProfile) -> list[str]:
    aws_profile(org, org.management_account, "management")
    machine, table = org.arn(MACHINE), org.physical_id("AccountInventoryTable")
    command = ["enroll", "--organizations-profile", "management", "--table", table]
    return [
        *command,
        "--state-machine-arn",
        machine,
        "--ou-environment-map",
        "ML-Dev=dev,ML-Prod=prod",
        "--json",
    ]


def test_govern_enroll_baselines_the_ml_accounts_enrolled_before_the_backbone(
    org: Organization, load_event: LoadEvent, aws_profile: AwsProfile, capsys: pytest.CaptureFixture[str]
) -> None:
    organization = MotoOrganization(org)
    dev, sandbox = organization.unit("ML-Dev"), organization.unit("Sandbox")
    prod = organization.unit("ML-Prod", sandbox)  # nested: OUs are found anywhere in the tree
    legacy, governed = organization.accounts(dev, "ml-team-legacy-dev", "ml-team-churn-dev")
    [risk], [playground] = (
        organization.accounts(prod, "ml-team-risk-prod"),
        organization.accounts(sandbox, "playground"),
    )
    for member in (legacy, risk, governed):
        org.ensure_member(member)  # the member StackSet reached them when it was deployed
    governed_by_account_factory(org, load_event, governed)
    command = enroll_command(org, aws_profile)
    executions_before = len(org.executions(MACHINE))

    assert main([*command, "--dry-run"]) == 0

    listed = json.loads(capsys.readouterr().out)
    assert [(a["account_id"], a["ou_name"], a["status"]) for a in listed["accounts"]] == sorted(
        [(legacy, "ML-Dev", "would-start"), (risk, "ML-Prod", "would-start")]
    )
    assert len(org.executions(MACHINE)) == executions_before

    assert main(command) == 0

    started = json.loads(capsys.readouterr().out)["accounts"]
    assert [org.wait_for_execution(a["execution_arn"]) for a in started] == ["SUCCEEDED", "SUCCEEDED"]
    items = {item["account_id"]: item for item in inventory(org)}
    assert set(items) == {governed, legacy, risk}
    assert (items[legacy]["baseline_status"], items[legacy]["environment"], items[legacy]["team"]) == (
        "baselined",
        "dev",
        "legacy",
    )
    assert (items[risk]["environment"], items[risk]["team"]) == ("prod", "risk")
    policy = org.session(risk).client("iam").get_account_password_policy()["PasswordPolicy"]
    assert policy["MinimumPasswordLength"] >= 14
    assert account_public_access_block(org, "us-east-1", account=legacy) == ALL_FOUR_ON
    assert playground not in items
    # Enrolled, they are watched like any vended account; a second run finds nothing to do.
    assert org.run_scheduled("WatchForwardingFunction")["queues"] == 3
    assert main(command) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["accounts"] == 0


def test_govern_enroll_deregisters_the_governed_accounts_that_left_without_an_event(
    org: Organization, load_event: LoadEvent, aws_profile: AwsProfile, capsys: pytest.CaptureFixture[str]
) -> None:
    organization = MotoOrganization(org)
    dev, sandbox = organization.unit("ML-Dev"), organization.unit("Sandbox")
    staying, moved, closed, removed = organization.accounts(
        dev, "ml-team-churn-dev", "ml-team-old-dev", "ml-team-gone-dev", "ml-team-out-dev"
    )
    for member in (staying, moved, closed, removed):
        org.ensure_member(member)
    governed_by_account_factory(org, load_event, staying, moved, closed, removed)
    # Then, out of the backbone's sight: a move in the Organizations console (Control Tower says nothing),
    # and a closure and a removal whose CloudTrail records never reached the governance bus.
    organization.move(moved, dev, sandbox)
    organization.client.close_account(AccountId=closed)
    organization.client.remove_account_from_organization(AccountId=removed)
    command = enroll_command(org, aws_profile)
    executions_before = len(org.executions(MACHINE))

    assert main([*command, "--dry-run"]) == 0

    listed = json.loads(capsys.readouterr().out)["accounts"]
    assert sorted((a["account_id"], a["change"], a["ou_name"], a["to_version"]) for a in listed) == sorted(
        [(moved, "moved", "Sandbox", ""), (closed, "closed", "", ""), (removed, "removed", "", "")]
    )
    assert len(org.executions(MACHINE)) == executions_before
    assert {item["baseline_status"] for item in inventory(org)} == {"baselined"}
    assert main([*command[:-1], "--dry-run"]) == 0
    text = capsys.readouterr().out.splitlines()
    # The name is the inventory's (all four were vended from the same sample event).
    assert f"would-start {moved} ml-team-churn-dev (Sandbox): {BASELINE_VERSION} -> left, moved" in text
    assert f"would-start {closed} ml-team-churn-dev: {BASELINE_VERSION} -> left, closed" in text

    assert main(command) == 0

    started = {a["change"]: a for a in json.loads(capsys.readouterr().out)["accounts"]}
    assert [org.wait_for_execution(a["execution_arn"]) for a in started.values()] == ["SUCCEEDED"] * 3
    items = {item["account_id"]: item for item in inventory(org)}
    assert items[staying]["baseline_status"] == "baselined"
    assert (items[moved]["baseline_status"], items[moved]["left_reason"], items[moved]["left_ou_name"]) == (
        "left",
        "moved",
        "Sandbox",
    )
    assert (items[closed]["baseline_status"], items[closed]["left_reason"]) == ("left", "closed")
    assert (items[removed]["baseline_status"], items[removed]["left_reason"]) == ("left", "removed")
    for change, account in (("moved", moved), ("closed", closed), ("removed", removed)):
        entries = org.ledger(started[change]["event_id"])
        assert sorted((e.action, e.status) for e in entries) == [
            ("deregister_account", "done"),
            ("notify", "done"),
        ]
        assert [e.target for e in entries if e.action == "deregister_account"] == [account], change
    assert sorted(kinds(org)[4:]) == [
        "account-closed",
        "account-left-ml-ous",
        "account-removed-from-organization",
    ]
    # Only the account still in an ML OU is watched; a second run finds nothing to do.
    assert org.run_scheduled("WatchForwardingFunction")["queues"] == 1
    assert main(command) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["accounts"] == 0


def test_a_departure_notice_throttled_past_its_retries_is_sent_when_the_workflow_retries(
    org: Organization, load_event: LoadEvent
) -> None:
    [created] = org.replay([load_event("account-created")])
    assert created.outcome == "succeeded", created.error
    closed = organizations_call(load_event, "CloseAccount")
    # Every attempt botocore makes at the notice fails: the step fails after the item was written.
    fault = throttling("sns", "Publish", times=5, request_contains="account-closed")

    with inject_api_faults(org, [fault]):
        [result] = org.replay([closed], seed=False)

    assert fault.hits == 5
    assert result.outcome == "succeeded", result.error
    # The workflow's retry found the item already written, and told the platform admins all the same.
    assert kinds(org) == ["account-baselined", "account-closed"]
    [item] = inventory(org)
    assert (item["baseline_status"], item["left_reason"]) == ("left", "closed")
    assert sorted((e.action, e.status) for e in org.ledger(closed["id"])) == [
        ("deregister_account", "done"),
        ("notify", "done"),
    ]
    # A redelivery afterwards tells no one again.
    [again] = org.replay([organizations_call(load_event, "CloseAccount")])
    assert [(a.type, a.status) for a in again.actions] == [("deregister_account", "skipped")]
    assert kinds(org) == ["account-baselined", "account-closed"]


def test_a_move_out_that_cannot_be_recorded_fails_as_a_deregistration_not_as_a_notice(
    org: Organization, load_event: LoadEvent
) -> None:
    [created] = org.replay([load_event("account-created")])
    assert created.outcome == "succeeded", created.error
    moved = moved_to(load_event("account-updated"), "Sandbox", "ou-abcd-99999999")
    fault = access_denied("dynamodb", "UpdateItem", request_contains=org.physical_id("AccountInventoryTable"))

    with inject_api_faults(org, [fault]):
        [result] = org.replay([moved], seed=False)

    assert fault.hits == 1
    assert result.outcome in ("failed", "dead-lettered"), result.outcome
    assert result.error and fault.error in result.error
    # The ledger says what failed: the deregistration, which the workflow reached directly.
    assert [(e.action, e.status) for e in org.ledger(moved["id"]) if e.status == "failed"] == [
        ("deregister_account", "failed")
    ]
    [item] = inventory(org)
    assert item["baseline_status"] == "baselined"


def test_a_setting_read_back_stale_is_read_again_before_the_baseline_is_called_failed(
    two_regions: Organization, load_event: LoadEvent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EC2 and S3 settings are eventually consistent: the first read after the write may still show the
    old value. The workflow reads again (Retry on BaselineNotVerified) rather than failing the account."""
    from dataclasses import replace

    from governance import baseline

    reads: list[str] = []

    def stale_once(account_id: str, region: str) -> bool:
        reads.append(region)
        if len(reads) == 1:
            return False  # the write has not reached this endpoint yet
        return bool(baseline._read_ebs_encryption_by_default(account_id, region))

    stale = replace(baseline.EBS_ENCRYPTION_BY_DEFAULT, read=stale_once)
    controls = (baseline.S3_ACCOUNT_PUBLIC_ACCESS_BLOCK, stale)
    monkeypatch.setitem(baseline.ENVIRONMENT_CONTROLS, "dev", controls)

    [result] = two_regions.replay([load_event("account-created")])

    assert result.outcome == "succeeded", result.error
    assert states_entered(two_regions).count("VerifyBaseline") == 1  # retried within the state
    assert len(reads) == 2 * len(REGIONS)
    assert [item["account_id"] for item in inventory(two_regions)] == [NEW_ACCOUNT]
    assert all(ebs_encryption_by_default(two_regions, region) for region in REGIONS)
    assert "RecordFailure" not in states_entered(two_regions)
