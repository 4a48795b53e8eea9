"""Runtime support of the account-baseline flow: seed a vended account's member role, verify its baseline."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from governance.baseline import STRONG_PASSWORD_POLICY

if TYPE_CHECKING:
    from govern.emulator import Organization
    from governance.ledger import LedgerEntry


def _status(event: dict[str, Any]) -> dict[str, Any]:
    details = (event.get("detail") or {}).get("serviceEventDetails") or {}
    found = details.get("createManagedAccountStatus") or details.get("updateManagedAccountStatus")
    return found if isinstance(found, dict) else {}


def vended_account(event: dict[str, Any]) -> str | None:
    """The id of the account Control Tower created or updated successfully, or None."""
    status = _status(event)
    account_id = (status.get("account") or {}).get("accountId")
    if status.get("state") != "SUCCEEDED" or not isinstance(account_id, str):
        return None
    return account_id


def handles(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.controltower"


def seed(event: dict[str, Any], org: Organization) -> None:
    """A SUCCEEDED account gets GovernanceExecutionRole, as the member StackSet would deploy it; a FAILED
    creation has no account; an account a scenario keeps without the role (remove_execution_role,
    role_appears_after) stays without it."""
    account_id = vended_account(event)
    if account_id is None or org.role_withheld(account_id):
        return
    org.ensure_member(account_id)


def role_appears_after(org: Organization, account_id: str, failed_attempts: int) -> Callable[[], int]:
    """Scenario: the member StackSet deploys GovernanceExecutionRole in `account_id` late.

    Removes the role now; the first `failed_attempts` AssumeRole calls into the account are refused
    (AccessDenied, as in AWS), and the role is created just before the next one, which succeeds.
    Returns a function giving the number of AssumeRole attempts seen so far.
    """
    org.remove_execution_role(account_id)
    attempts = 0
    lock = threading.Lock()

    def deploy_role_late(account: str, role_name: str) -> None:
        nonlocal attempts
        if account != account_id or role_name != "GovernanceExecutionRole":
            return
        with lock:
            attempts += 1
            due = attempts == failed_attempts + 1
        if due:
            org.ensure_member(account_id)

    org.assume_role_hooks.append(deploy_role_late)
    return lambda: attempts


# --- verification --------------------------------------------------------------------------------

# Per baseline setting: does the account read it as on, in that Region (admin session of the account)?
_CHECKS: dict[str, Callable[[Any, str, str], bool]] = {}


def _checks(name: str) -> Callable[[Callable[[Any, str, str], bool]], Callable[[Any, str, str], bool]]:
    def register(check: Callable[[Any, str, str], bool]) -> Callable[[Any, str, str], bool]:
        _CHECKS[name] = check
        return check

    return register


@_checks("s3-account-public-access-block")
def _public_access_blocked(session: Any, account_id: str, region: str) -> bool:
    try:
        found = session.client("s3control", region_name=region).get_public_access_block(AccountId=account_id)
    except ClientError:
        return False
    configuration = found["PublicAccessBlockConfiguration"]
    return all(
        configuration.get(name) is True
        for name in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    )


@_checks("ebs-encryption-by-default")
def _ebs_encrypted_by_default(session: Any, account_id: str, region: str) -> bool:
    ec2 = session.client("ec2", region_name=region)
    return ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"] is True


@_checks("iam-password-policy")
def _strong_password_policy(session: Any, account_id: str, region: str) -> bool:
    try:
        policy = session.client("iam", region_name=region).get_account_password_policy()["PasswordPolicy"]
    except ClientError:
        return False
    return all(policy.get(name) == value for name, value in STRONG_PASSWORD_POLICY.items())


def _inventory_item(org: Organization, account_id: str) -> dict[str, Any] | None:
    table = org.session().resource("dynamodb").Table(org.physical_id("AccountInventoryTable"))
    item = table.get_item(Key={"account_id": account_id}, ConsistentRead=True).get("Item")
    return dict(item) if item else None


def verify_baseline_account(entry: LedgerEntry, org: Organization) -> bool:
    """The account reads every ledgered setting as applied in every ledgered Region, and the inventory
    holds its one record at the ledgered baseline version."""
    if entry.status not in ("done", "skipped"):
        return False
    if entry.status == "skipped" and entry.detail.get("inventory") == "stale":
        # Older than what the inventory records: nothing was applied; the inventory still holds that change.
        item = _inventory_item(org, entry.target)
        return bool(item and item.get("lifecycle_event_id") != entry.event_id)
    account_id = entry.target
    regions = entry.detail.get("regions") or []
    settings_applied = entry.detail.get("settings") or {}
    if not regions or not settings_applied or any(name not in _CHECKS for name in settings_applied):
        return False
    session = org.session(account_id)
    if not all(_CHECKS[name](session, account_id, region) for region in regions for name in settings_applied):
        return False
    item = _inventory_item(org, account_id)
    return bool(
        item
        and item.get("baseline_status") == "baselined"
        and item.get("baseline_version") == entry.detail.get("baseline_version")
    )


def verify_deregister_account(entry: LedgerEntry, org: Organization) -> bool:
    """The inventory holds the account as left for the reason the ledger names (and, for a move, the OU it
    names); or, when the event was older than what the inventory recorded (`stale`), the inventory still
    holds that newer change; or, for an account that had left already, it still holds that departure."""
    item = _inventory_item(org, entry.target)
    if item is None or entry.status not in ("done", "skipped"):
        return False
    if entry.detail.get("inventory") == "stale":
        return bool(item.get("lifecycle_event_id") != entry.event_id)
    if entry.detail.get("inventory") == "already-left":
        # The departure recorded before stays as it was.
        return bool(
            item.get("baseline_status") == "left" and item.get("lifecycle_event_id") != entry.event_id
        )
    reason = entry.detail.get("left_reason")
    return bool(
        item.get("baseline_status") == "left"
        and item.get("left_reason") == reason
        and (reason != "moved" or item.get("left_ou_id") == entry.detail["organizational_unit"]["id"])
    )


VERIFIERS: dict[str, Callable[[LedgerEntry, Organization], bool]] = {
    "baseline_account": verify_baseline_account,
    "deregister_account": verify_deregister_account,
}
