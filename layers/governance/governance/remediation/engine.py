"""Decides and carries out what happens to one NON_COMPLIANT Config evaluation, safely and exactly once."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, NoReturn

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from governance.claims import once
from governance.errors import TransientAwsError, is_transient
from governance.errors import one_line as _one_line
from governance.events.config import ConfigComplianceChange
from governance.idempotency import idempotent_on
from governance.ledger import LedgerEntry, Status, record
from governance.notifier import Severity, notify
from governance.remediation import resources
from governance.remediation.controls import (
    ACTIONS,
    NO_ACTION,
    RemediationAction,
    RemediationFailed,
    RemediationNotReady,
)
from governance.remediation.policy import Control, Policy, base_rule_names, current_policy
from governance.sessions import RoleAssumptionError, client, session_for
from governance.settings import settings

logger = Logger(child=True)

FLOW = "config-remediation"
EXEMPT_UNTIL_TAG = "governance:exempt-until"
EXEMPT_REASON_TAG = "governance:exempt-reason"
EXEMPT_OWNER_TAG = "governance:exempt-owner"
CAP_KEY_PREFIX = "remediation-cap#"
# The once-marker of an evaluation the cap held back: the security team is told once, not at every
# redelivery.
HELD_BACK_KEY_PREFIX = "remediation-held-back#"
# A held-back evaluation comes back this long after the hour turns: the hosts' clocks differ slightly, and
# one back a moment early would find the old hour's cap still full.
CAP_RETRY_MARGIN = timedelta(seconds=30)
# The one call the engine itself makes in a member account (after a verified fix).
REEVALUATION_PERMISSION = "config:StartConfigRulesEvaluation"
SUBJECT_LIMIT = 100  # what SNS (and so an e-mail subscriber) keeps of a subject

Outcome = Literal["done", "dry-run", "exempt", "notify-only", "failed", "skipped", "ignored"]

_SEVERITY_ORDER: tuple[Severity, ...] = ("INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL")
_KINDS: dict[str, str] = {
    "done": "remediation",
    "dry-run": "remediation-dry-run",
    "exempt": "exemption",
    "notify-only": "non-compliance",
    "failed": "remediation-failed",
}


class TransientRemediationError(TransientAwsError):
    """A member-account call failed in a way that retrying later can fix; the queue redelivers the record."""


class RemediationDeferred(RuntimeError):
    """The account's hourly cap refused this evaluation. Nothing was changed and nothing is stored as its
    idempotent result: the record goes back to the queue, to be acted on once the hour has turned
    (`retry_at`). The message is one line, for the dead-letter notice should every delivery be refused."""

    def __init__(self, message: str, retry_at: datetime) -> None:
        super().__init__(message)
        self.retry_at = retry_at


@dataclass(frozen=True)
class Evaluation:
    """The facts of one Config evaluation the decision depends on."""

    event_id: str
    rule: str
    account: str
    region: str
    resource_type: str
    resource_id: str
    ordering_timestamp: str
    compliance: str
    annotation: str = ""

    @classmethod
    def from_change(cls, change: ConfigComplianceChange) -> Evaluation:
        detail = change.detail
        result = detail.newEvaluationResult
        return cls(
            event_id=change.id,
            rule=detail.configRuleName,
            account=detail.awsAccountId,
            region=detail.awsRegion,
            resource_type=detail.resourceType,
            resource_id=detail.resourceId,
            ordering_timestamp=result.evaluationResultIdentifier.orderingTimestamp.isoformat(),
            compliance=result.complianceType,
            annotation=result.annotation or "",
        )

    @property
    def subject(self) -> str:
        return resources.describe(self.resource_type, self.resource_id, self.account, self.region)

    @property
    def target(self) -> str:
        return resources.target(self.resource_type, self.resource_id, self.account, self.region)

    def record_entry(self, action: str, status: Status, detail: dict[str, Any]) -> None:
        """A ledger entry about this evaluation, under the resource it concerns."""
        record(
            LedgerEntry(
                event_id=self.event_id,
                action=action,
                status=status,
                target=self.target,
                flow=FLOW,
                account=self.account,
                detail=detail,
            )
        )


@dataclass
class Decision:
    """What was decided and done; stored as the idempotent result, so a duplicate sees the first decision."""

    status: Outcome
    headline: str  # the end of the notification subject: `remediated`, `exempt until 2026-12-31`...
    reason: str
    evaluation: dict[str, Any]
    mode: str
    severity: Severity
    control: str | None = None
    action: str = NO_ACTION
    parameters: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, Any] = field(default_factory=dict)
    verified: bool | None = None
    exemption: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    reevaluation: str = "not requested"
    attempt: str = ""
    # The hour whose cap slot this decision took (`2026-11-27T04`), to give it back if nothing was fixed.
    cap_hour: str = ""
    # Set when the hourly cap held the evaluation back: when it is to be tried again (ISO 8601, UTC).
    held_until: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        return cls(**data)

    def ledger_detail(self) -> dict[str, Any]:
        """What the audit trail keeps, and what a verifier needs to read the resource back."""
        evaluation = self.evaluation
        detail: dict[str, Any] = {
            "rule": evaluation["rule"],
            "control": self.control,
            "action": self.action,
            "mode": self.mode,
            "severity": self.severity,
            "region": evaluation["region"],
            "resource_type": evaluation["resource_type"],
            "resource_id": evaluation["resource_id"],
            "ordering_timestamp": evaluation["ordering_timestamp"],
            "parameters": self.parameters,
            "changes": self.changes,
            "verified": self.verified,
            "reason": self.reason,
            "reevaluation": self.reevaluation,
        }
        if self.exemption:
            detail["exemption"] = self.exemption
        if self.held_until:
            detail["held_until"] = self.held_until
        if self.notes:
            detail["notes"] = self.notes
        if self.status == "failed":
            detail["error"] = self.reason
        return detail


# --------------------------------------------------------------------------- the entry point


def remediate_evaluation(change: ConfigComplianceChange) -> Decision:
    """Policy -> exemptions -> protected accounts -> mode -> hourly cap -> remediate -> verify -> re-evaluate
    -> ledger -> notify. The same evaluation (rule, resource, ordering timestamp) is acted on once."""
    evaluation = Evaluation.from_change(change)
    if evaluation.compliance != "NON_COMPLIANT":
        # The bus rule only routes NON_COMPLIANT; anything else reaching here is left alone, loudly.
        logger.info(
            "evaluation is not NON_COMPLIANT; nothing to do", extra={"compliance": evaluation.compliance}
        )
        return Decision(
            status="ignored",
            headline="ignored",
            reason=f"the evaluation is {evaluation.compliance}, not NON_COMPLIANT",
            evaluation=asdict(evaluation),
            mode="none",
            severity="INFO",
        )
    policy = current_policy()
    control = policy.control_for(evaluation.rule)
    attempt = uuid.uuid4().hex
    payload = {**asdict(evaluation), "mode": effective_mode(control), "attempt": attempt}
    decision = Decision.from_dict(_decide_and_act_once(evaluation=payload))
    if decision.attempt == attempt:
        return decision
    return _record_duplicate(evaluation, decision)


def effective_mode(control: Control | None) -> str:
    """`enforce`, `dry-run` or `notify-only`; DRY_RUN=true turns every enforcing control into dry-run."""
    if control is None or control.action == NO_ACTION:
        return "notify-only"
    if control.mode == "enforce" and settings().dry_run:
        return "dry-run"
    return control.mode


def _decide_and_act(evaluation: dict[str, Any]) -> dict[str, Any]:
    facts = Evaluation(**{name: evaluation[name] for name in Evaluation.__dataclass_fields__})
    decision = decide(
        facts, current_policy(), mode=str(evaluation["mode"]), attempt=str(evaluation["attempt"])
    )
    if decision.held_until:
        _hold_back(facts, decision)
    if decision.status == "done":
        try:
            decision = carry_out(facts, decision)
        except TransientRemediationError:
            # The queue redelivers and the next delivery takes its own slot. Nothing was changed, or only a
            # first step the redelivery completes (a notebook stopped before its root access is disabled).
            _give_back_action_slot(facts.account, decision.cap_hour)
            raise
    facts.record_entry("remediate", decision.status, decision.ledger_detail())  # type: ignore[arg-type]
    notify_security(facts, decision)
    return asdict(decision)


# The mode is part of the key: a dry-run decision must not stop the same evaluation from being acted on
# once dry-run is switched off and the evaluation is redelivered.
_decide_and_act_once = idempotent_on(
    "[rule, account, region, resource_type, resource_id, ordering_timestamp, mode]",
    data_keyword_argument="evaluation",
)(_decide_and_act)


# --------------------------------------------------------------------------- deciding


def decide(evaluation: Evaluation, policy: Policy, *, mode: str, attempt: str = "") -> Decision:
    """Every check before touching the resource; returns `done` when the action should be carried out."""
    control = policy.control_for(evaluation.rule)
    base = Decision(
        status="notify-only",
        headline="not remediated",
        reason="",
        evaluation=asdict(evaluation),
        mode=mode,
        severity=control.severity if control else policy.unknown_rule_severity,
        control=control.id if control else None,
        action=control.action if control else NO_ACTION,
        parameters=dict(control.parameters) if control else {},
        attempt=attempt,
    )
    today = datetime.now(UTC).date()

    exemption = policy.exemption_for(
        account=evaluation.account, resource_id=evaluation.resource_id, control_id=base.control, today=today
    )
    if exemption:
        return _exempt(base, exemption.describe())
    lapsed = [
        e
        for e in policy.exemptions
        if not e.active_on(today)
        and e.applies_to(
            account=evaluation.account, resource_id=evaluation.resource_id, control_id=base.control
        )
    ]
    notes = [
        f"policy exemption of {e.owner} expired on {e.expires.isoformat()}; it no longer counts"
        for e in lapsed
    ]

    protected = _protected_account(evaluation.account)
    if protected:
        return replace(
            base,
            headline=f"not remediated ({protected} account)",
            reason=f"the backbone never acts in the {protected} account; fix it there by hand",
            notes=notes,
        )

    tag_exemption, tag_notes, unreadable = _tag_exemption(evaluation, today)
    notes += tag_notes
    if tag_exemption:
        return _exempt(replace(base, notes=notes), tag_exemption)

    if control is None:
        return replace(
            base,
            headline="not remediated (no control in policy)",
            reason=f"no control of the remediation policy covers rule {evaluation.rule}; notify-only",
            notes=notes,
        )
    if control.resource_type != evaluation.resource_type:
        return replace(
            base,
            headline="not remediated (unexpected resource type)",
            reason=(
                f"control {control.id} acts on {control.resource_type}, but the evaluation is about "
                f"{evaluation.resource_type}; notify-only"
            ),
            notes=notes,
        )
    summary = ACTIONS[control.action].summary if control.action in ACTIONS else "nothing"
    if mode == "notify-only":
        note = " ".join(control.note.split())
        return replace(
            base, headline="not remediated (notify-only)", reason=f"notify-only: {note}", notes=notes
        )
    if unreadable is not None:
        # Fail closed: the owner may have exempted the resource with tags no one could read.
        return _exemption_unknown(replace(base, notes=notes), unreadable, mode=mode, summary=summary)
    if mode == "dry-run":
        why = (
            "DryRun is on for the whole backbone"
            if control.mode == "enforce"
            else f"control {control.id} is dry-run"
        )
        return replace(
            base,
            status="dry-run",
            headline="would be remediated (dry-run)",
            reason=f"dry-run ({why}): would {summary}; nothing was changed",
            notes=notes,
        )
    limit = settings().max_actions_per_account_per_hour
    now = datetime.now(UTC)
    cap_hour = _take_action_slot(evaluation.account, limit, now)
    if cap_hour is None:
        retry_at = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1) + CAP_RETRY_MARGIN
        return replace(
            base,
            headline="not remediated (hourly cap reached)",
            reason=(
                f"account {evaluation.account} already had {limit} remediations this hour (the cap); "
                f"would {summary}; kept on the compliance queue and tried again after "
                f"{retry_at:%H:%M} UTC"
            ),
            notes=notes,
            held_until=retry_at.isoformat(),
        )
    return replace(base, status="done", headline="remediated", reason=summary, notes=notes, cap_hour=cap_hour)


def _exempt(base: Decision, exemption: dict[str, Any]) -> Decision:
    return replace(
        base,
        status="exempt",
        headline=f"exempt until {exemption['expires']}",
        reason=f"exempt ({exemption['source']}): {exemption['reason']}",
        exemption=exemption,
    )


def _protected_account(account: str) -> str | None:
    current = settings()
    if account == current.require("management_account_id"):
        return "management"
    if account == current.require("governance_account_id"):
        return "governance"
    return None


def _tag_exemption(
    evaluation: Evaluation, today: date
) -> tuple[dict[str, Any] | None, list[str], Exception | None]:
    """The resource's own exemption tags, if in force; notes say why tags found were not honoured; and the
    error that kept the tags from being read, if one did. A transient error (throttling, a 5xx, a dropped
    connection, a throttled AssumeRole) raises TransientRemediationError instead: the queue redelivers."""
    if evaluation.resource_type not in resources.TAG_PERMISSIONS:
        return None, [], None  # account-level rules and types without tags: nothing to read
    try:
        tags = resources.resource_tags(
            session_for(evaluation.account),
            evaluation.resource_type,
            evaluation.resource_id,
            evaluation.region,
        )
    except ClientError as error:
        if is_transient(error):
            raise TransientRemediationError(f"reading the resource's tags: {_one_line(error)}") from error
        return None, [_unreadable_tags_note(error)], error
    except BotoCoreError as error:
        # As in carry_out: botocore's own errors (timeouts, connections) are worth another delivery.
        raise TransientRemediationError(f"reading the resource's tags: {_one_line(error)}") from error
    except RoleAssumptionError as error:
        if error.transient:
            raise TransientRemediationError(_one_line(error)) from error
        return None, [_unreadable_tags_note(error)], error
    until = tags.get(EXEMPT_UNTIL_TAG, "").strip()
    if not until:
        return None, [], None
    reason = tags.get(EXEMPT_REASON_TAG, "").strip()
    if not reason:
        return (
            None,
            [f"tag {EXEMPT_UNTIL_TAG} ignored: {EXEMPT_REASON_TAG} is missing (an exemption needs a reason)"],
            None,
        )
    try:
        expires = date.fromisoformat(until[:10])
    except ValueError:
        return None, [f"tag {EXEMPT_UNTIL_TAG}={until!r} ignored: not an ISO date like 2026-12-31"], None
    if today > expires:
        return None, [f"tag exemption expired on {expires.isoformat()}; it no longer counts"], None
    owner = tags.get(EXEMPT_OWNER_TAG, "").strip()
    return {"source": "tag", "reason": reason, "owner": owner, "expires": expires.isoformat()}, [], None


def _unreadable_tags_note(error: Exception) -> str:
    return f"could not read the resource's tags ({_one_line(error)}); a tag exemption may be in force"


def _exemption_unknown(base: Decision, error: Exception, *, mode: str, summary: str) -> Decision:
    """Tags that could not be read (AccessDenied, a resource gone): no action, since an exemption may be in
    force. A role that cannot be assumed is a failure: no fix can be made in that account either."""
    if isinstance(error, RoleAssumptionError) and mode == "enforce":
        return _failed(base, _one_line(error))
    return replace(
        base,
        headline="not remediated (exemption unknown)",
        reason=(
            f"exemption state unknown: could not read tags ({_one_line(error)}); would {summary}, but "
            "nothing was changed, since the owner may have exempted it: check its tags and fix it by hand, "
            "or let GovernanceExecutionRole read them"
        ),
    )


def _cap_key(account: str, hour: str) -> dict[str, Any]:
    return {"pk": {"S": f"{CAP_KEY_PREFIX}{account}"}, "sk": {"S": hour}}


def _take_action_slot(account: str, limit: int, now: datetime) -> str | None:
    """Count one action against the account's hourly cap: the hour counted in, or None when the cap is
    already reached."""
    hour = now.strftime("%Y-%m-%dT%H")
    current = settings()
    table = session_for(current.require("governance_account_id")).client("dynamodb")
    try:
        table.update_item(
            TableName=current.require("state_table"),
            Key=_cap_key(account, hour),
            # One atomic conditional ADD: concurrent functions cannot both take the last slot.
            UpdateExpression="ADD #count :one SET expires_at = :expires",
            ConditionExpression="attribute_not_exists(#count) OR #count < :limit",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":limit": {"N": str(limit)},
                ":expires": {"N": str(int((now + timedelta(days=1)).timestamp()))},
            },
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return None
        raise
    return hour


def _give_back_action_slot(account: str, hour: str) -> None:
    """Uncount an action that changed nothing (its redelivery counts itself), so a throttled account does
    not use up its cap on retries. Best effort: a slot not given back only makes the cap stricter."""
    current = settings()
    try:
        session_for(current.require("governance_account_id")).client("dynamodb").update_item(
            TableName=current.require("state_table"),
            Key=_cap_key(account, hour),
            UpdateExpression="ADD #count :minus_one",
            ConditionExpression="#count > :zero",
            ExpressionAttributeNames={"#count": "count"},
            ExpressionAttributeValues={":minus_one": {"N": "-1"}, ":zero": {"N": "0"}},
        )
    except (ClientError, BotoCoreError) as error:
        logger.warning("cap slot not given back", extra={"account": account, "error": _one_line(error)})


def _hold_back(evaluation: Evaluation, decision: Decision) -> NoReturn:
    """The hourly cap refused the evaluation: the ledger and the security team hear of it once, and the
    record goes back to the queue (RemediationDeferred), nothing stored as its idempotent result, so the
    delivery after the hour turns acts on it. The handler asks SQS to hold it until then."""
    # Told once per evaluation (the fields its idempotency key is made of), however many deliveries the cap
    # holds back.
    facts = (evaluation.rule, evaluation.account, evaluation.region, evaluation.resource_type)
    held_back = "#".join((*facts, evaluation.resource_id, evaluation.ordering_timestamp))
    if once(f"{HELD_BACK_KEY_PREFIX}{held_back}"):
        evaluation.record_entry("remediate", decision.status, decision.ledger_detail())  # type: ignore[arg-type]
        notify_security(evaluation, decision)
    else:
        logger.info("held back by the hourly cap again", extra={"held_until": decision.held_until})
    limit = settings().max_actions_per_account_per_hour
    raise RemediationDeferred(
        f"the hourly remediation cap of account {evaluation.account} ({limit}) was reached; "
        f"{decision.action} not carried out",
        datetime.fromisoformat(decision.held_until),
    )


# --------------------------------------------------------------------------- acting

# S3 bucket settings and EC2 resources are eventually consistent (both services document it): a read
# right after a change may still show the old state. The read-back is tried again after these waits
# before a fix is called failed; 7.5 seconds in all, within the function's timeout for a whole batch.
VERIFY_WAITS_S = (0.5, 1.0, 2.0, 4.0)


def _read_back(
    action: RemediationAction,
    session: Any,
    evaluation: Evaluation,
    parameters: dict[str, Any],
    changes: dict[str, Any],
) -> bool:
    """True once the resource reads as fixed: read right away, then again after each of VERIFY_WAITS_S."""
    for wait in (0.0, *VERIFY_WAITS_S):
        if wait:
            time.sleep(wait)
        if action.verify(
            session,
            evaluation.region,
            evaluation.resource_id,
            parameters,
            finding=evaluation.rule,
            changes=changes,
        ):
            return True
    return False


def carry_out(evaluation: Evaluation, decision: Decision) -> Decision:
    """Remediate through GovernanceExecutionRole, read back, ask Config to re-evaluate."""
    action = ACTIONS[decision.action]
    try:
        session = session_for(evaluation.account)
        changes = action.remediate(
            session, evaluation.region, evaluation.resource_id, decision.parameters, finding=evaluation.rule
        )
        decision = _with_action_notes(decision, changes)
        verified = _read_back(action, session, evaluation, decision.parameters, changes)
    except RemediationNotReady as error:
        raise TransientRemediationError(str(error)) from error
    except ClientError as error:
        if is_transient(error):
            raise TransientRemediationError(_one_line(error)) from error
        return _failed(decision, f"{action.name} failed: {_one_line(error)}")
    except BotoCoreError as error:
        raise TransientRemediationError(_one_line(error)) from error
    except RoleAssumptionError as error:
        if error.transient:  # STS throttled or failed: the next delivery assumes the role again
            raise TransientRemediationError(_one_line(error)) from error
        return _failed(decision, _one_line(error))
    except RemediationFailed as error:
        return _failed(decision, _one_line(error))
    if not verified:
        state = "contained" if changes.get("contained") else "fixed"
        return _failed(
            replace(decision, changes=changes),
            f"{action.name} ran but reading the resource back, {sum(VERIFY_WAITS_S):g} s later, still "
            f"shows it not {state}",
        )
    if changes.get("contained"):
        return _contained(replace(decision, changes=changes))
    if changes.get("changed") is False:
        return _already_compliant(evaluation, replace(decision, changes=changes))
    return replace(decision, changes=changes, verified=True, reevaluation=request_reevaluation(evaluation))


def _contained(decision: Decision) -> Decision:
    """The action ended the exposure (a notebook stopped) but cannot fix what the rule checks (direct internet
    access is fixed at creation): nothing is claimed remediated, the reason says what the owner must do, and
    Config is not asked to re-evaluate a rule that still fails. `verified` is about the containment. The cap
    slot stays taken: the resource was changed."""
    why = str(decision.changes.get("reason") or f"{decision.action} cannot fix this finding")
    return replace(
        decision,
        status="notify-only",
        headline="contained, not remediated",
        reason=f"contained, not remediated: {why}",
        verified=True,
    )


def _with_action_notes(decision: Decision, changes: dict[str, Any]) -> Decision:
    """What the action asks the team to read (a world-open rule it could only revoke whole) joins the
    decision's notes, which the notice and the ledger show next to the reason; `changes` keeps the rest."""
    return replace(decision, notes=[*decision.notes, *changes.pop("notes", [])])


def _already_compliant(evaluation: Evaluation, decision: Decision) -> Decision:
    """The action found nothing to change: the resource meets the control as the backbone reads it, yet
    Config says NON_COMPLIANT. Nothing was fixed, so nothing is claimed and the cap slot is given back;
    Config is asked to evaluate again (an evaluation older than a fix then turns compliant)."""
    _give_back_action_slot(evaluation.account, decision.cap_hour)
    return replace(
        decision,
        status="notify-only",
        headline="not remediated (already compliant)",
        reason=(
            f"{decision.action} found nothing to change: the resource already meets control "
            f"{decision.control} as the backbone reads it, but Config reports it NON_COMPLIANT. Either it "
            "was fixed after Config evaluated it, or the rule asks for more than the control does (a "
            "specific key, a parameter): compare the rule's parameters with the control's"
        ),
        verified=None,
        reevaluation=request_reevaluation(evaluation),
    )


def _failed(decision: Decision, reason: str) -> Decision:
    severity = max(decision.severity, "HIGH", key=_SEVERITY_ORDER.index)
    return replace(
        decision,
        status="failed",
        headline="remediation FAILED",
        reason=reason,
        verified=False,
        severity=severity,
    )


# Config accepts one StartConfigRulesEvaluation per rule a minute, and none while the rule's evaluation runs
# (LimitExceededException). A burst of findings of one rule in one account (ten buckets made public by one
# template) asks once; the others say the request is already made.
REEVALUATION_INTERVAL_SECONDS = 60.0
ALREADY_REQUESTED = "already requested for this rule within the minute (Config takes one request a minute)"
_reevaluations_requested: dict[tuple[str, str, str], float] = {}


def request_reevaluation(evaluation: Evaluation) -> str:
    """Ask Config to evaluate the rule again, so compliance turns green without waiting for its schedule.
    Best effort: the fix is already verified, so a refused request is reported, not treated as a failure."""
    key = (evaluation.account, evaluation.region, evaluation.rule)
    now = time.monotonic()
    last = _reevaluations_requested.get(key)
    if last is not None and now - last < REEVALUATION_INTERVAL_SECONDS:
        return ALREADY_REQUESTED
    try:
        client("config", evaluation.account, evaluation.region).start_config_rules_evaluation(
            ConfigRuleNames=[evaluation.rule]
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "LimitExceededException":
            # Another function asked (or the evaluation is running): the rule is being evaluated again.
            _reevaluations_requested[key] = now
            return ALREADY_REQUESTED
        return _not_requested(evaluation, error)
    except (BotoCoreError, RoleAssumptionError) as error:
        return _not_requested(evaluation, error)
    _reevaluations_requested[key] = now
    return "requested"


def _not_requested(evaluation: Evaluation, error: Exception) -> str:
    logger.warning("re-evaluation not requested", extra={"rule": evaluation.rule, "error": _one_line(error)})
    return f"not requested: {_one_line(error)}"


def reset_caches_for_tests() -> None:
    """A new execution environment (the offline runtime's fresh deployment) remembers no requests."""
    _reevaluations_requested.clear()


def _record_duplicate(evaluation: Evaluation, first: Decision) -> Decision:
    """A redelivery of an evaluation already decided: nothing is done again, the ledger says so."""
    duplicate = replace(first, status="skipped", headline="already handled")
    detail = {
        **first.ledger_detail(),
        "first_status": first.status,
        "first_event_id": first.evaluation.get("event_id"),
        "reason": f"duplicate delivery of an evaluation already handled ({first.status})",
    }
    detail.pop("error", None)
    evaluation.record_entry("remediate", "skipped", detail)
    return duplicate


def record_rejection(body: Any, error: Exception, *, receive_count: int) -> None:
    """Keep why a record cannot be processed (malformed event, unusable policy file) in the ledger, once:
    the queue retries the record and then moves it to its DLQ, which keeps the event but not the reason."""
    if receive_count > 1:
        return
    event_id = str(body.get("id") or "-") if isinstance(body, dict) else "-"
    account = body.get("account") if isinstance(body, dict) else None
    record(
        LedgerEntry(
            event_id=event_id,
            action="dead_letter",
            status="failed",
            target=event_id,
            flow=FLOW,
            account=account if isinstance(account, str) else "",
            detail={"error_type": type(error).__name__, "error": _one_line(error)},
        )
    )


def record_dead_letter(change: ConfigComplianceChange, error: Exception, *, deliveries: int) -> Decision:
    """The last delivery of an evaluation failed too (a member-account API kept refusing, or a defect), and
    the queue now moves it to its DLQ: the ledger and the security team learn that the violation stands and
    why, under the resource, not only the platform team through the DLQ alarm."""
    evaluation = Evaluation.from_change(change)
    control = current_policy().control_for(evaluation.rule)
    attempted = Decision(
        status="done",
        headline="",
        reason="",
        evaluation=asdict(evaluation),
        mode=effective_mode(control),
        severity=control.severity if control else "HIGH",
        control=control.id if control else None,
        action=control.action if control else NO_ACTION,
        parameters=dict(control.parameters) if control else {},
    )
    reason = (
        f"gave up after {deliveries} deliveries: {_one_line(error)}; the event is kept in the compliance "
        "DLQ, to redrive (govern redrive) once the cause is fixed"
    )
    decision = replace(_failed(attempted, reason), headline="NOT remediated, dead-lettered")
    evaluation.record_entry(
        "dead_letter",
        "failed",
        {**decision.ledger_detail(), "error_type": type(error).__name__, "deliveries": deliveries},
    )
    notify_security(evaluation, decision)
    return decision


# --------------------------------------------------------------------------- telling the security team


def subject_for(evaluation: Evaluation, decision: Decision) -> str:
    """`[HIGH] s3-bucket-public-read-prohibited: bucket my-bucket in 210987654321 remediated`, at most
    SUBJECT_LIMIT characters. When too long, the rule name gives way first (the body keeps it whole), down to
    its first 8 characters; then the resource's name, cut in its middle (its start and its end stay, the body
    keeps it whole). Never the account or the outcome a human scans for."""
    severity, rest = f"[{decision.severity}] ", f": {evaluation.subject} {decision.headline}"
    rule = evaluation.rule
    if len(severity) + len(rule) + len(rest) > SUBJECT_LIMIT:
        rule = base_rule_names(rule)[-1]  # e.g. Control Tower's long name -> the managed rule's own
    room = SUBJECT_LIMIT - len(severity) - len(rest)
    if len(rule) > room:
        rule = rule[: max(room - 1, 8)] + "…"
    excess = len(severity) + len(rule) + len(rest) - SUBJECT_LIMIT
    if excess > 0 and evaluation.resource_type != resources.ACCOUNT:  # an account's id is the account
        name = _cut_in_the_middle(evaluation.resource_id, len(evaluation.resource_id) - excess)
        shown = resources.describe(evaluation.resource_type, name, evaluation.account, evaluation.region)
        rest = f": {shown} {decision.headline}"
    return f"{severity}{rule}{rest}"


def _cut_in_the_middle(text: str, length: int) -> str:
    """`text` in `length` characters, its middle replaced by "…": names of one team's resources tend to
    share their start and differ at their end, so both stay (at least one character of each)."""
    if len(text) <= length:
        return text
    kept = max(length - 1, 2)
    head = (kept + 1) // 2
    return f"{text[:head]}…{text[len(text) - (kept - head) :]}"


def notify_security(evaluation: Evaluation, decision: Decision) -> str:
    body = {
        "account": evaluation.account,
        "region": evaluation.region,
        "resource": evaluation.resource_id,
        "resource_type": evaluation.resource_type,
        "rule": evaluation.rule,
        "control": decision.control,
        "action": decision.action,
        "action_summary": ACTIONS[decision.action].summary if decision.action in ACTIONS else "none",
        "mode": decision.mode,
        "outcome": decision.status,
        "reason": decision.reason,
        "event_id": evaluation.event_id,
        "ordering_timestamp": evaluation.ordering_timestamp,
        "console_link": resources.console_link(
            evaluation.resource_type, evaluation.resource_id, evaluation.region, evaluation.rule
        ),
        "config_rule_link": resources.config_rule_link(evaluation.region, evaluation.rule),
        "annotation": evaluation.annotation or None,
        "changes": decision.changes,
        "verified": decision.verified,
        "exemption": decision.exemption,
        "notes": decision.notes,
        "reevaluation": decision.reevaluation,
    }
    return notify(
        "security",
        subject_for(evaluation, decision),
        body,
        severity=decision.severity,
        account=evaluation.account,
        kind=_KINDS[decision.status],
        event_id=evaluation.event_id,
        flow=FLOW,
    )
