"""The ML account baseline: what a new account gets per environment, applied, read back and registered."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from governance.claims import forgotten_on_failure, once
from governance.errors import MalformedEvent
from governance.ledger import Action, LedgerEntry, Status, record
from governance.notifier import Severity, notify
from governance.sessions import (
    RoleAssumptionError,
    client,
    dynamodb_table,
    forget_sessions,
    role_arn_in,
    session_for,
)
from governance.settings import comma_list, settings

# Bump on every change to what an account gets; the inventory records the version each account has,
# so accounts on an older baseline can be found and re-baselined (docs/account-baseline.md).
BASELINE_VERSION = "2026.11.1"

FLOW = "account-baseline"

# Role readiness: the member StackSet deploys GovernanceExecutionRole minutes after the account joins
# its OU. Waits double from POLL_BASE_SECONDS up to the cap; with the defaults (10 s, cap 300 s,
# 10 checks) the flow gives the StackSet about 25 minutes before it gives up.
ROLE_WAIT_MAX_ATTEMPTS = 10
ROLE_WAIT_CAP_SECONDS = 300

UNASSIGNED_TEAM = "unassigned"
ACCOUNT_NAME_PREFIX = "ml-team-"

# Control Tower states the flow acts on; anything else (IN_PROGRESS, a state added later) is ignored.
ACTIONABLE_STATES = frozenset({"SUCCEEDED", "FAILED"})

# Organizations calls that end an account's place in the organization, as the describe step's `state`
# (the state machine deregisters on these); a call Organizations refused changed nothing: REFUSED.
ORGANIZATIONS_CALL_STATES = {"CloseAccount": "CLOSED", "RemoveAccountFromOrganization": "REMOVED"}
CALL_REFUSED = "REFUSED"


class RoleNotReady(RuntimeError):
    """GovernanceExecutionRole cannot be assumed in the new account yet; the workflow waits and retries."""


class RoleNeverAppeared(RuntimeError):
    """GovernanceExecutionRole was still not assumable after every allowed check."""


class BaselineNotVerified(RuntimeError):
    """A baseline setting read back from the account differs from what was applied."""


class BaselineConfigurationError(ValueError):
    """A baseline setting of the stack (OU_ENVIRONMENT_MAP, BASELINE_REGIONS) cannot be understood."""


# --- what the event says ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountFacts:
    """What the workflow knows about the account, passed from step to step in the state machine.

    A dataclass, not a model: only the describe step reads an event, so the other steps of the workflow
    start without pydantic (`make bench` measures the cold start)."""

    event_id: str
    event_name: str
    state: str
    # CloudTrail's id of the lifecycle record: the same change delivered twice carries the same one.
    change: str
    # When Control Tower finished the operation (the event's time, UTC, ISO 8601).
    lifecycle_at: str
    account_id: str = ""
    account_name: str = ""
    ou_name: str = ""
    ou_id: str = ""
    message: str = ""
    environment: str = ""
    team: str = UNASSIGNED_TEAM

    @property
    def governed(self) -> bool:
        """Only accounts of an OU in OU_ENVIRONMENT_MAP are baselined: the member role is deployed there."""
        return bool(self.environment)

    def to_payload(self) -> dict[str, Any]:
        """The state machine's `account`: every fact, and `governed` for its Choice state."""
        return {**dataclasses.asdict(self), "governed": self.governed}

    @classmethod
    def from_payload(cls, payload: Any) -> AccountFacts:
        """The facts back from a step's input; MalformedEvent names what is missing or not a string."""
        if not isinstance(payload, dict):
            raise MalformedEvent(f"account: expected an object, got {type(payload).__name__}")
        values: dict[str, str] = {}
        for field in dataclasses.fields(cls):
            if field.name not in payload:
                if field.default is dataclasses.MISSING:
                    raise MalformedEvent(f"account.{field.name}: missing")
                continue
            value = payload[field.name]
            if not isinstance(value, str):
                raise MalformedEvent(f"account.{field.name}: expected a string, got {type(value).__name__}")
            values[field.name] = value
        return cls(**values)


def ou_environment_map() -> dict[str, str]:
    """OU name or OU id (lower case) -> environment, from OU_ENVIRONMENT_MAP (`ML-Dev=dev,ML-Prod=prod`, or
    `ou-abcd-22222222=prod`)."""
    mapping: dict[str, str] = {}
    for raw_entry in settings().ou_environment_map.split(","):
        entry = raw_entry.strip()
        if not entry:
            continue
        ou_name, separator, environment = entry.partition("=")
        if not separator or not ou_name.strip() or not environment.strip():
            raise BaselineConfigurationError(
                f"OU_ENVIRONMENT_MAP entry {entry!r} is not OU=environment, the OU by name or id (e.g. "
                "ML-Prod=prod or ou-abcd-22222222=prod)"
            )
        mapping[ou_name.strip().lower()] = environment.strip().lower()
    return mapping


def environment_of_ou(ou_id: str, ou_name: str, mapping: dict[str, str]) -> str:
    """The environment the map gives an OU: by its id first, then by its name; "" when neither is mapped.
    Names are neither unique (Workloads/Prod and ML/Prod) nor stable (a rename); ids are both, so a map of
    ids governs exactly the OUs the member StackSet targets."""
    return mapping.get(ou_id.strip().lower()) or mapping.get(ou_name.strip().lower(), "")


def team_from_account_name(account_name: str, environments: Iterable[str]) -> str:
    """`ml-team-churn-dev` -> `churn`: the team is between the `ml-team-` prefix and an environment suffix."""
    name = account_name.strip().lower()
    if not name.startswith(ACCOUNT_NAME_PREFIX):
        return UNASSIGNED_TEAM
    team = name[len(ACCOUNT_NAME_PREFIX) :]
    for environment in sorted(set(environments), key=len, reverse=True):
        if team.endswith(f"-{environment}"):
            team = team[: -len(environment) - 1]
            break
    return team if re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", team) else UNASSIGNED_TEAM


def _lifecycle_status(event: dict[str, Any]) -> dict[str, Any] | None:
    detail = event.get("detail")
    details = detail.get("serviceEventDetails") if isinstance(detail, dict) else None
    if not isinstance(details, dict):
        return None
    found = details.get("createManagedAccountStatus") or details.get("updateManagedAccountStatus")
    return found if isinstance(found, dict) else None


def describe_lifecycle_event(event: Any) -> AccountFacts:
    """The facts of a Control Tower lifecycle event, or of an Organizations call that closes an account or
    removes it from the organization; MalformedEvent when an actionable event is unusable."""
    if isinstance(event, dict) and event.get("source") == "aws.organizations":
        return _describe_organizations_call(event)
    raw_status = _lifecycle_status(event) if isinstance(event, dict) else None
    raw_state = raw_status.get("state") if raw_status else None
    if isinstance(raw_state, str) and raw_state not in ACTIONABLE_STATES:
        # Not an outcome yet (or a state this code does not know): nothing to do, nothing malformed.
        return AccountFacts(
            event_id=str(event.get("id", "")),
            event_name=str(event.get("detail", {}).get("eventName", "")),
            state=raw_state,
            change=str(event.get("detail", {}).get("eventID") or event.get("id", "")),
            lifecycle_at=str(event.get("time", "")),
        )
    from governance.events import parse_event  # pydantic: this step only
    from governance.events.control_tower import ControlTowerLifecycle

    lifecycle = parse_event(event, ControlTowerLifecycle)
    status = lifecycle.detail.status
    mapping = ou_environment_map()
    environment = environment_of_ou(
        status.organizationalUnit.organizationalUnitId,
        status.organizationalUnit.organizationalUnitName,
        mapping,
    )
    extra = lifecycle.detail.model_extra or {}
    return AccountFacts(
        event_id=lifecycle.id,
        event_name=lifecycle.detail.eventName,
        state=status.state,
        change=str(extra.get("eventID") or lifecycle.id),
        lifecycle_at=utc_timestamp(lifecycle.time),
        account_id=status.account.accountId or "",
        account_name=status.account.accountName,
        ou_name=status.organizationalUnit.organizationalUnitName,
        ou_id=status.organizationalUnit.organizationalUnitId,
        message=status.message,
        environment=environment,
        team=team_from_account_name(status.account.accountName, mapping.values()),
    )


def _describe_organizations_call(event: dict[str, Any]) -> AccountFacts:
    from governance.events import parse_event  # pydantic: this step only
    from governance.events.organizations import OrganizationsAccountCall

    call = parse_event(event, OrganizationsAccountCall)
    detail = call.detail
    refused = detail.errorCode is not None
    return AccountFacts(
        event_id=call.id,
        event_name=detail.eventName,
        state=CALL_REFUSED if refused else ORGANIZATIONS_CALL_STATES[detail.eventName],
        change=detail.eventID,
        lifecycle_at=utc_timestamp(call.time),
        account_id="" if refused or detail.requestParameters is None else detail.requestParameters.accountId,
    )


def region_list(text: str) -> list[str]:
    """A comma-separated list of Region names (BaselineRegions), in order, without duplicates."""
    regions = comma_list(text)
    for region in regions:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
            raise BaselineConfigurationError(f"BASELINE_REGIONS entry {region!r} is not a Region name")
    return list(dict.fromkeys(regions))


def baseline_regions() -> list[str]:
    """BASELINE_REGIONS as a list, in order, without duplicates; the function's own region when unset."""
    return region_list(settings().baseline_regions) or [settings().region]


# --- notices for events that do not lead to a baseline ---------------------------------------------


def notify_creation_failed(facts: AccountFacts) -> dict[str, Any]:
    """Tell the platform admins Control Tower could not create (or update) the account, in Control Tower's
    words. A failed UpdateManagedAccount is an account that may exist and be governed already (an OU move,
    a retried creation): it is said as an update, not as an account that never came to be."""
    if facts.event_name == "UpdateManagedAccount":
        kind = "account-update-failed"
        who = f"{facts.account_name} ({facts.account_id})" if facts.account_id else facts.account_name
        subject = f"[FAILED] Control Tower could not update account {who} in OU {facts.ou_name}"
        what_happened = (
            "No baseline was applied by this event. An account the backbone baselined before keeps that "
            "baseline and its registration; once the update succeeds in Control Tower, it is baselined "
            "for its OU as usual."
        )
    else:
        kind = "account-creation-failed"
        subject = (
            f"[FAILED] Control Tower could not create account {facts.account_name} in OU {facts.ou_name}"
        )
        what_happened = "No baseline was applied: there is no account to baseline."
    message_id = notify(
        "platform",
        subject,
        {
            "account_name": facts.account_name,
            "organizational_unit": {"name": facts.ou_name, "id": facts.ou_id},
            "control_tower_message": facts.message,
            "event_name": facts.event_name,
            "what_happened": what_happened,
        },
        severity="HIGH",
        account=facts.account_id,
        kind=kind,
        event_id=facts.event_id,
        flow=FLOW,
    )
    return {"notified": message_id, "kind": kind}


def describe_for_workflow(event: Any) -> dict[str, Any]:
    """The describe step's result, the state machine's `account`: the facts, `governed`, and what the
    inventory says of an account that succeeded:

    - `registered`: it holds the account, which is now outside the ML OUs (the workflow deregisters it; an
      unregistered one only gets the not-governed notice);
    - `stale`: the account is in an ML OU, and the inventory records a newer lifecycle change than this
      event (a late or redelivered create after an update or a departure). The workflow ends at once as
      stale: that newer change decided what the account is, and if it was a departure the StackSet has
      deleted the role a baseline would wait for."""
    facts = describe_lifecycle_event(event)
    item = inventory_item(facts.account_id) if facts.state == "SUCCEEDED" and facts.account_id else None
    registered = item is not None and not facts.governed
    stale = item is not None and facts.governed and records_newer_change(item, facts)
    return {**facts.to_payload(), "registered": registered, "stale": stale}


def records_newer_change(item: dict[str, Any], facts: AccountFacts) -> bool:
    """Whether the inventory item reflects a lifecycle change later than the event's: the same order as the
    conditional writes of register_account and deregister_account (times compare as strings)."""
    return str(item.get("lifecycle_at", "")) > facts.lifecycle_at


def skip_stale_event(facts: AccountFacts) -> dict[str, Any]:
    """A baseline event older than what the inventory records: nothing is applied, waited for or told;
    the ledger says `baseline_account` was skipped as stale, and which change the inventory holds."""
    item = inventory_item(facts.account_id) or {}
    detail = {
        "account_name": facts.account_name,
        "organizational_unit": {"name": facts.ou_name, "id": facts.ou_id},
        "lifecycle_event": facts.event_name,
        "inventory": "stale",
        "recorded": {
            "baseline_status": str(item.get("baseline_status", "")),
            "lifecycle_event": str(item.get("lifecycle_event", "")),
            "lifecycle_event_id": str(item.get("lifecycle_event_id", "")),
            "lifecycle_at": str(item.get("lifecycle_at", "")),
        },
    }
    return _ledger_account_decision(facts, "baseline_account", "skipped", detail)


def notify_not_governed(facts: AccountFacts) -> dict[str, Any]:
    """Say that an account outside the ML OUs was seen and left alone, so a typo in the map is noticed."""
    message_id = notify(
        "platform",
        f"Account {facts.account_name} ({facts.account_id}) in OU {facts.ou_name} is not baselined",
        {
            "account_name": facts.account_name,
            "organizational_unit": {"name": facts.ou_name, "id": facts.ou_id},
            "why": "The OU is not in OuEnvironmentMap; add it there if its accounts are ML accounts.",
            "ou_environment_map": settings().ou_environment_map,
        },
        severity="INFO",
        account=facts.account_id,
        kind="account-not-governed",
        event_id=facts.event_id,
        flow=FLOW,
    )
    return {"notified": message_id}


# --- waiting for GovernanceExecutionRole -----------------------------------------------------------


def role_wait_seconds(attempt: int) -> int:
    """Seconds to wait after the `attempt`-th failed check (0-based): doubling from the base, capped."""
    return int(min(settings().poll_base_seconds * 2**attempt, ROLE_WAIT_CAP_SECONDS))


# What a read refused by IAM answers: right after the StackSet creates GovernanceExecutionRole, the role
# can be assumed before its policies are in effect everywhere (IAM is eventually consistent).
PERMISSION_NOT_IN_EFFECT = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")


def wait_for_role(facts: AccountFacts, attempt: int) -> dict[str, Any]:
    """Check that GovernanceExecutionRole can be assumed in the account now, and that its policies are in
    effect (a read the baseline needs succeeds); RoleNotReady if not."""
    # A session cached before the role existed (or one from a since-deleted role) must not hide the answer.
    forget_sessions()
    check = f"check {attempt + 1} of {ROLE_WAIT_MAX_ATTEMPTS}"
    try:
        session_for(facts.account_id)
    except RoleAssumptionError as error:
        raise RoleNotReady(f"{check}: {error}") from error
    try:
        client("ec2", facts.account_id, baseline_regions()[0]).get_ebs_encryption_by_default()
    except ClientError as error:
        if not _is_missing(error, *PERMISSION_NOT_IN_EFFECT):
            raise
        raise RoleNotReady(
            f"{check}: {settings().execution_role_name} can be assumed in account {facts.account_id}, but "
            f"ec2:GetEbsEncryptionByDefault is refused ({error.response['Error'].get('Code')}): its policies "
            "are not in effect yet"
        ) from error
    return {"ready": True, "checks": attempt + 1}


def schedule_role_check(facts: AccountFacts, attempt: int) -> dict[str, Any]:
    """After a failed check: the next attempt and how long to wait, or RoleNeverAppeared past the bound."""
    failed_checks = attempt + 1
    if failed_checks >= ROLE_WAIT_MAX_ATTEMPTS:
        waited = sum(role_wait_seconds(n) for n in range(ROLE_WAIT_MAX_ATTEMPTS - 1))
        role_name = settings().execution_role_name
        raise RoleNeverAppeared(
            f"{role_name} never became assumable in account {facts.account_id} ({failed_checks} checks over "
            f"{waited} s): check that the member StackSet has automatic deployment enabled for OU "
            f"{facts.ou_name} ({facts.ou_id}) and its stack instance in {facts.account_id} succeeded, "
            f"that the role is named {role_name} ({role_arn_in(facts.account_id)}), that its trust "
            f"policy admits the backbone's function roles in account {settings().governance_account_id}, "
            "and that its policies grant ec2:GetEbsEncryptionByDefault"
        )
    return {"attempt": failed_checks, "wait_seconds": role_wait_seconds(attempt)}


# --- the baseline ----------------------------------------------------------------------------------


def _is_missing(error: ClientError, *codes: str) -> bool:
    return error.response.get("Error", {}).get("Code") in codes


PUBLIC_ACCESS_BLOCK_ALL_ON = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def _put_account_public_access_block(account_id: str, region: str) -> None:
    client("s3control", account_id, region).put_public_access_block(
        AccountId=account_id, PublicAccessBlockConfiguration=dict(PUBLIC_ACCESS_BLOCK_ALL_ON)
    )


def _read_account_public_access_block(account_id: str, region: str) -> dict[str, bool]:
    try:
        found = client("s3control", account_id, region).get_public_access_block(AccountId=account_id)
    except ClientError as error:
        if _is_missing(error, "NoSuchPublicAccessBlockConfiguration"):
            return dict.fromkeys(PUBLIC_ACCESS_BLOCK_ALL_ON, False)
        raise
    configuration = found["PublicAccessBlockConfiguration"]
    return {name: bool(configuration.get(name, False)) for name in PUBLIC_ACCESS_BLOCK_ALL_ON}


def _enable_ebs_encryption_by_default(account_id: str, region: str) -> None:
    client("ec2", account_id, region).enable_ebs_encryption_by_default()


def _read_ebs_encryption_by_default(account_id: str, region: str) -> bool:
    return bool(client("ec2", account_id, region).get_ebs_encryption_by_default()["EbsEncryptionByDefault"])


# CIS AWS Foundations 1.8/1.9 and Security Hub IAM.7: in prod, any IAM user password must be strong.
STRONG_PASSWORD_POLICY: dict[str, Any] = {
    "MinimumPasswordLength": 14,
    "RequireSymbols": True,
    "RequireNumbers": True,
    "RequireUppercaseCharacters": True,
    "RequireLowercaseCharacters": True,
    "AllowUsersToChangePassword": True,
    "MaxPasswordAge": 90,
    "PasswordReusePrevention": 24,
}


def stricter_password_policy(current: dict[str, Any]) -> dict[str, Any]:
    """What UpdateAccountPasswordPolicy is given: STRONG_PASSWORD_POLICY, or the account's own value where
    that is stricter (longer, remembers more, expires sooner), so the baseline never weakens a policy the
    security team tightened. The call replaces the whole policy, a field left out going back to its
    default, so the account's HardExpiry is handed back too."""
    policy = dict(STRONG_PASSWORD_POLICY)
    for longer in ("MinimumPasswordLength", "PasswordReusePrevention"):
        policy[longer] = max(policy[longer], int(current.get(longer) or 0))
    if current.get("MaxPasswordAge"):  # absent or 0: passwords never expire
        policy["MaxPasswordAge"] = min(policy["MaxPasswordAge"], int(current["MaxPasswordAge"]))
    if current.get("HardExpiry"):
        policy["HardExpiry"] = True
    return policy


def _current_password_policy(account_id: str, region: str) -> dict[str, Any]:
    try:
        return dict(client("iam", account_id, region).get_account_password_policy()["PasswordPolicy"])
    except ClientError as error:
        if _is_missing(error, "NoSuchEntity"):
            return {}
        raise


def _update_password_policy(account_id: str, region: str) -> None:
    policy = stricter_password_policy(_current_password_policy(account_id, region))
    client("iam", account_id, region).update_account_password_policy(**policy)


def _read_password_policy(account_id: str, region: str) -> dict[str, Any]:
    policy = _current_password_policy(account_id, region)
    return {name: policy.get(name) for name in STRONG_PASSWORD_POLICY} if policy else {}


def _meets_password_policy(read: dict[str, Any]) -> bool:
    """At least as strict as STRONG_PASSWORD_POLICY: applying the baseline again would change nothing."""
    return bool(read) and all(
        read.get(name) == value
        for name, value in stricter_password_policy(read).items()
        if name in STRONG_PASSWORD_POLICY
    )


@dataclass(frozen=True)
class Control:
    """One account setting of the baseline: how to turn it on, how to read it back, what it must read."""

    name: str
    # "account": one setting for the whole account (applied once, read back through every Region's
    # endpoint); "region": a setting of each Region, applied and read back in every one.
    scope: Literal["account", "region"]
    expected: Any
    apply: Callable[[str, str], None]
    read: Callable[[str, str], Any]
    # What GovernanceExecutionRole must allow for apply and read (templates/member-account.yaml).
    permissions: tuple[str, ...] = ()
    # Whether what `read` returns is in place; by default, equal to `expected`. A control that keeps a
    # stricter value the account already had is met by "at least as strict".
    meets: Callable[[Any], bool] | None = None

    def met_by(self, value: Any) -> bool:
        return self.meets(value) if self.meets is not None else bool(value == self.expected)


S3_ACCOUNT_PUBLIC_ACCESS_BLOCK = Control(
    name="s3-account-public-access-block",
    scope="account",
    expected=PUBLIC_ACCESS_BLOCK_ALL_ON,
    apply=_put_account_public_access_block,
    read=_read_account_public_access_block,
    permissions=("s3:PutAccountPublicAccessBlock", "s3:GetAccountPublicAccessBlock"),
)
EBS_ENCRYPTION_BY_DEFAULT = Control(
    name="ebs-encryption-by-default",
    scope="region",
    expected=True,
    apply=_enable_ebs_encryption_by_default,
    read=_read_ebs_encryption_by_default,
    permissions=("ec2:EnableEbsEncryptionByDefault", "ec2:GetEbsEncryptionByDefault"),
)
IAM_PASSWORD_POLICY = Control(
    name="iam-password-policy",
    scope="account",
    expected=STRONG_PASSWORD_POLICY,
    apply=_update_password_policy,
    read=_read_password_policy,
    permissions=("iam:UpdateAccountPasswordPolicy", "iam:GetAccountPasswordPolicy"),
    meets=_meets_password_policy,
)

COMMON_CONTROLS: tuple[Control, ...] = (S3_ACCOUNT_PUBLIC_ACCESS_BLOCK, EBS_ENCRYPTION_BY_DEFAULT)
# An environment not listed here (one added to OU_ENVIRONMENT_MAP later) gets the common controls.
ENVIRONMENT_CONTROLS: dict[str, tuple[Control, ...]] = {
    "dev": COMMON_CONTROLS,
    "test": COMMON_CONTROLS,
    "prod": (*COMMON_CONTROLS, IAM_PASSWORD_POLICY),
}


def controls_for(environment: str) -> tuple[Control, ...]:
    """The controls an account of `environment` gets."""
    return ENVIRONMENT_CONTROLS.get(environment, COMMON_CONTROLS)


def _require_governed(facts: AccountFacts) -> None:
    if not facts.account_id or not facts.governed:
        raise MalformedEvent(
            f"account {facts.account_id or '(no id)'} in OU {facts.ou_name or '(none)'} cannot be baselined"
        )


def apply_baseline(facts: AccountFacts) -> dict[str, Any]:
    """Turn every control of the account's environment on, in every configured Region. A setting already
    in place is read, not written: the least change, and no refusal where an organization policy or a
    service control policy holds the setting where the baseline wants it (an organization-level S3 policy
    makes the account's Block Public Access read-only)."""
    _require_governed(facts)
    regions = baseline_regions()
    controls = controls_for(facts.environment)
    changed: list[str] = []
    for control in controls:
        for region in regions if control.scope == "region" else regions[:1]:
            if control.met_by(control.read(facts.account_id, region)):
                continue
            control.apply(facts.account_id, region)
            changed.append(control.name if control.scope == "account" else f"{control.name} in {region}")
    return {
        "baseline_version": BASELINE_VERSION,
        "environment": facts.environment,
        "regions": regions,
        "settings": {control.name: control.expected for control in controls},
        "changed": changed,
    }


def read_baseline(account_id: str, environment: str, regions: Iterable[str]) -> dict[str, dict[str, Any]]:
    """What each control of `environment` reads in the account, per Region."""
    return {
        region: {control.name: control.read(account_id, region) for control in controls_for(environment)}
        for region in regions
    }


def verify_baseline(facts: AccountFacts, applied: dict[str, Any]) -> dict[str, Any]:
    """Read every applied setting back in every Region; BaselineNotVerified names each one that differs."""
    _require_governed(facts)
    regions = list(applied["regions"])
    observed = read_baseline(facts.account_id, facts.environment, regions)
    controls = {control.name: control for control in controls_for(facts.environment)}
    differences = [
        f"{name} in {region} reads {value!r}, expected "
        f"{'at least as strict as ' if controls[name].meets else ''}{controls[name].expected!r}"
        for region, settings_read in observed.items()
        for name, value in settings_read.items()
        if not controls[name].met_by(value)
    ]
    if differences:
        raise BaselineNotVerified(f"account {facts.account_id}: " + "; ".join(differences))
    return {**applied, "verified_at": _now()}


# --- the inventory ---------------------------------------------------------------------------------

Registration = Literal["registered", "updated", "duplicate", "stale"]


def utc_timestamp(moment: datetime) -> str:
    """`2026-11-04T15:08:39Z`: how the inventory records times, so that they compare as strings."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> str:
    return utc_timestamp(datetime.now(UTC))


def _inventory() -> Any:
    return dynamodb_table(settings().require("inventory_table"))


def register_account(facts: AccountFacts, verified: dict[str, Any]) -> dict[str, Any]:
    """Write the account's one inventory item; a duplicate or an older lifecycle event leaves it as it is."""
    _require_governed(facts)
    table = _inventory()
    now = _now()
    fields: dict[str, Any] = {
        "account_name": facts.account_name,
        "ou_name": facts.ou_name,
        "ou_id": facts.ou_id,
        "environment": facts.environment,
        "team": facts.team,
        "baseline_version": verified["baseline_version"],
        "baseline_status": "baselined",
        "regions": list(verified["regions"]),
        "baseline_settings": sorted(verified["settings"]),
        "baselined_at": now,
        "lifecycle_event": facts.event_name,
        "lifecycle_event_id": facts.event_id,
        "lifecycle_change": facts.change,
        "lifecycle_at": facts.lifecycle_at,
    }
    # Names go through placeholders: several (environment, regions...) may be DynamoDB reserved words.
    assignments = ", ".join(f"#{name} = :{name}" for name in fields)
    try:
        response = table.update_item(
            Key={"account_id": facts.account_id},
            # An account back in an ML OU is no longer one that left (deregister_account).
            UpdateExpression=(
                f"SET {assignments}, #first = if_not_exists(#first, :baselined_at) "
                "REMOVE left_reason, left_ou_name, left_ou_id, left_at"
            ),
            # One item per account; only a newer (or same-time, different) lifecycle change rewrites it,
            # so a redelivered or late event cannot roll the record back.
            ConditionExpression=(
                "attribute_not_exists(#account_id) OR #lifecycle_at < :lifecycle_at "
                "OR (#lifecycle_at = :lifecycle_at AND #lifecycle_change <> :lifecycle_change)"
            ),
            ExpressionAttributeNames={
                **{f"#{name}": name for name in fields},
                "#first": "first_baselined_at",
                "#account_id": "account_id",
            },
            ExpressionAttributeValues={f":{name}": value for name, value in fields.items()},
            ReturnValues="ALL_OLD",
        )
    except ClientError as error:
        if not _is_missing(error, "ConditionalCheckFailedException"):
            raise
        existing = table.get_item(Key={"account_id": facts.account_id}, ConsistentRead=True).get("Item", {})
        outcome: Registration = "duplicate" if existing.get("lifecycle_change") == facts.change else "stale"
        return {"registration": outcome, "recorded_change": existing.get("lifecycle_change", "")}
    had_item = bool(response.get("Attributes"))
    return {"registration": "updated" if had_item else "registered", "recorded_change": facts.change}


# `already-left`: the inventory holds the account as left already (moved out earlier, then updated, closed
# or removed): its departure was recorded and told then, and stays as it was recorded.
Deregistration = Literal["left", "duplicate", "stale", "already-left"]


@dataclass(frozen=True)
class Departure:
    """How an account stopped being governed, and what the platform admins are told about it."""

    kind: str
    severity: Severity
    # str.format with name, account and ou.
    subject: str
    what_changes: str


_NO_LONGER_WATCHED = (
    "The inventory marks the account as left, and the backbone no longer reads its forwarding dead-letter "
    "queues or rolls new baselines out to it. "
)
DEPARTURES: dict[str, Departure] = {
    "moved": Departure(
        kind="account-left-ml-ous",
        severity="MEDIUM",
        subject="Account {name} ({account}) left the ML OUs: moved to {ou}",
        what_changes=_NO_LONGER_WATCHED
        + "The member StackSet removes its forwarding rules and GovernanceExecutionRole; the baseline "
        "settings applied to it stay as they are.",
    ),
    "closed": Departure(
        kind="account-closed",
        severity="MEDIUM",
        subject="Account {name} ({account}) was closed",
        what_changes=_NO_LONGER_WATCHED
        + "AWS suspends a closed account for 90 days, then deletes it with its resources. If AWS Support "
        "reopens it, its next Control Tower update into an ML OU baselines it again.",
    ),
    "removed": Departure(
        kind="account-removed-from-organization",
        severity="HIGH",
        subject="Account {name} ({account}) was removed from the organization",
        what_changes=_NO_LONGER_WATCHED
        + "The account is now outside the organization's SCPs, Control Tower's controls and this backbone. "
        "The baseline settings applied to it stay as they are; the member stack's resources stay only if "
        "the StackSet retains stacks on account removal.",
    ),
}


def left_reason(facts: AccountFacts) -> str:
    """`closed` or `removed` after an Organizations call (its state); else `moved`, by Control Tower."""
    return facts.state.lower() if facts.state in ORGANIZATIONS_CALL_STATES.values() else "moved"


def deregister_departed_account(facts: AccountFacts) -> dict[str, Any]:
    """An account moved out of the ML OUs, closed or removed from the organization: deregister_account if
    the inventory holds it. An account the backbone never registered is none of its business: no ledger
    entry, no notice."""
    item = inventory_item(facts.account_id)
    if item is None:
        return {"status": "ignored", "account_id": facts.account_id, "inventory": "absent"}
    return deregister_account(dataclasses.replace(facts, account_name=str(item.get("account_name", ""))))


def deregister_account(facts: AccountFacts) -> dict[str, Any]:
    """A registered account was moved to an OU outside the ML OUs, closed, or removed from the
    organization: its inventory item says it left and why (the forwarding watch stops reading its queues),
    the platform admins are told once, and the ledger records `deregister_account`. Its baseline settings
    stay as they are. A redelivered or older event changes nothing, and neither does a later departure of an
    account that has left already (moved out, then updated or closed): no second notice, and the inventory
    keeps the departure it recorded."""
    reason = left_reason(facts)
    departure = DEPARTURES[reason]
    table = _inventory()
    fields: dict[str, Any] = {
        "baseline_status": "left",
        "left_reason": reason,
        **({"left_ou_name": facts.ou_name, "left_ou_id": facts.ou_id} if reason == "moved" else {}),
        "left_at": _now(),
        "lifecycle_event": facts.event_name,
        "lifecycle_event_id": facts.event_id,
        "lifecycle_change": facts.change,
        "lifecycle_at": facts.lifecycle_at,
    }
    outcome: Deregistration = "left"
    try:
        table.update_item(
            Key={"account_id": facts.account_id},
            UpdateExpression="SET " + ", ".join(f"#{name} = :{name}" for name in fields),
            # Only a governed account leaves, and only once. As for registrations, only a newer (or
            # same-time, different) lifecycle change rewrites the item.
            ConditionExpression=(
                "attribute_exists(#account_id) AND #baseline_status = :governed "
                "AND (#lifecycle_at < :lifecycle_at "
                "OR (#lifecycle_at = :lifecycle_at AND #lifecycle_change <> :lifecycle_change))"
            ),
            ExpressionAttributeNames={**{f"#{name}": name for name in fields}, "#account_id": "account_id"},
            ExpressionAttributeValues={
                **{f":{name}": value for name, value in fields.items()},
                ":governed": "baselined",
            },
        )
    except ClientError as error:
        if not _is_missing(error, "ConditionalCheckFailedException"):
            raise
        existing = inventory_item(facts.account_id) or {}
        if existing.get("lifecycle_change") == facts.change:
            outcome = "duplicate"
        elif existing.get("baseline_status") == "left" and not records_newer_change(existing, facts):
            outcome = "already-left"
        else:
            outcome = "stale"
    detail: dict[str, Any] = {
        "account_name": facts.account_name,
        "left_reason": reason,
        **({"organizational_unit": {"name": facts.ou_name, "id": facts.ou_id}} if reason == "moved" else {}),
        "lifecycle_event": facts.event_name,
        "inventory": outcome,
    }
    # Told once per change: a retry after the item was written but before the notice went out (SNS
    # throttled past its retries, say) finds a duplicate and still tells; a redelivery does not.
    marker = f"account-departure#{facts.account_id}#{facts.change}"
    told = outcome in ("left", "duplicate") and once(marker)
    if told:
        with forgotten_on_failure(marker):
            notify(
                "platform",
                departure.subject.format(name=facts.account_name, account=facts.account_id, ou=facts.ou_name),
                {**detail, "what_changes": departure.what_changes},
                severity=departure.severity,
                account=facts.account_id,
                kind=departure.kind,
                event_id=facts.event_id,
                flow=FLOW,
            )
    status: Status = "done" if outcome == "left" or told else "skipped"
    return _ledger_account_decision(facts, "deregister_account", status, detail)


def _ledger_account_decision(
    facts: AccountFacts, action: Action, status: Status, detail: dict[str, Any]
) -> dict[str, Any]:
    """Record the flow's decision about the account; the step's result for the state machine."""
    record(
        LedgerEntry(
            event_id=facts.event_id,
            action=action,
            status=status,
            target=facts.account_id,
            flow=FLOW,
            account=facts.account_id,
            detail=detail,
        )
    )
    return {"status": status, "account_id": facts.account_id, "inventory": detail["inventory"]}


def inventory_item(account_id: str) -> dict[str, Any] | None:
    """The account's inventory item, or None."""
    item = _inventory().get_item(Key={"account_id": account_id}, ConsistentRead=True).get("Item")
    return dict(item) if item else None


def version_key(version: str) -> tuple[int, ...]:
    """`2026.11.1` -> (2026, 11, 1), so versions compare as numbers."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def inventory_items() -> list[dict[str, Any]]:
    """Every inventory item (one per registered account), read page by page."""
    table = _inventory()
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def governed_accounts() -> list[dict[str, Any]]:
    """Inventory items of the accounts the backbone governs now: baselined, not left the ML OUs
    (deregister_account)."""
    return [item for item in inventory_items() if item.get("baseline_status") == "baselined"]


def accounts_on_older_baseline(
    current: str = BASELINE_VERSION, regions: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """Governed accounts whose baseline is older than `current` (to roll a new one out), and, given the
    Regions the baseline covers now (BaselineRegions), those baselined in other Regions: a Region added
    later has none of the Regional settings in the accounts baselined before it, and a Region removed is
    still read by the forwarding watch. Each item comes with a `note` that says why."""
    wanted = sorted(regions) if regions is not None else None
    found = []
    for item in governed_accounts():
        version = str(item.get("baseline_version", ""))
        recorded = sorted(str(region) for region in item.get("regions") or ())
        if version_key(version) < version_key(current):
            found.append({**item, "note": f"baseline {version or 'unknown'} is older than {current}"})
        elif wanted is not None and recorded != wanted:
            found.append(
                {
                    **item,
                    "note": f"baselined in {', '.join(recorded) or 'no Region'}; "
                    f"BaselineRegions is {', '.join(wanted)}",
                }
            )
    return sorted(found, key=lambda item: str(item["account_id"]))


# --- the summary -----------------------------------------------------------------------------------


def report_baseline(
    facts: AccountFacts, verified: dict[str, Any], registration: dict[str, Any]
) -> dict[str, Any]:
    """Notify the platform admins (once per lifecycle change) and ledger `baseline_account`."""
    _require_governed(facts)
    outcome: Registration = registration["registration"]
    duplicate = outcome == "duplicate"
    detail = {
        "baseline_version": verified["baseline_version"],
        "environment": facts.environment,
        "team": facts.team,
        "account_name": facts.account_name,
        "organizational_unit": {"name": facts.ou_name, "id": facts.ou_id},
        "regions": list(verified["regions"]),
        "settings": verified["settings"],
        "lifecycle_event": facts.event_name,
        "inventory": outcome,
    }
    if not duplicate:
        regions = ", ".join(verified["regions"])
        notify(
            "platform",
            f"Account {facts.account_name} ({facts.account_id}) baselined: {facts.environment}, "
            f"baseline {verified['baseline_version']}",
            {
                **detail,
                "summary": (
                    f"{len(verified['settings'])} settings applied and read back in {regions}; "
                    f"inventory {outcome}"
                    + (" (a newer lifecycle event was already recorded)" if outcome == "stale" else "")
                ),
            },
            severity="INFO",
            account=facts.account_id,
            kind="account-baselined",
            event_id=facts.event_id,
            flow=FLOW,
        )
    # A redelivered event re-applies harmlessly; the ledger says it had already been done.
    status: Status = "skipped" if duplicate else "done"
    return _ledger_account_decision(facts, "baseline_account", status, detail)
