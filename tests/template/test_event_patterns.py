"""Every rule in template.yaml matches its intended sample events and none of the near misses."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from govern.emulator import Organization
from tests.conftest import read_event

TEAM_APPROVAL = "ModelPromotionStateMachineTeamApproval"
CENTRAL_DECISION = "ModelDeploymentStateMachineCentralDecision"
ACCOUNT_LIFECYCLE = "AccountBaselineStateMachineAccountLifecycle"
ACCOUNT_LEFT = "AccountBaselineStateMachineAccountLeftOrganization"
NON_COMPLIANCE = "ConfigNonComplianceRule"

INTENDED = {
    "model-approved-in-team-account": {TEAM_APPROVAL},
    "model-approved-missing-metadata": {TEAM_APPROVAL},
    "malformed-model-approval": {TEAM_APPROVAL},
    "model-approved-in-central-registry": {CENTRAL_DECISION},
    "model-rejected-in-central-registry": {CENTRAL_DECISION},
    "model-rejected-in-team-account": set(),
    "model-pending-in-team-account": set(),
    "account-created": {ACCOUNT_LIFECYCLE},
    "account-updated": {ACCOUNT_LIFECYCLE},
    "account-creation-failed": {ACCOUNT_LIFECYCLE},
    "account-closed": {ACCOUNT_LEFT},
    "account-removed-from-organization": {ACCOUNT_LEFT},
    "config-compliant": set(),
    "malformed-config-evaluation": {NON_COMPLIANCE},
}


@pytest.fixture(scope="module")
def deployed() -> Iterator[Organization]:
    with Organization() as organization:
        yield organization


def matched(org: Organization, event: dict[str, Any]) -> set[str]:
    return {rule.logical_id for rule in org.matching_rules(event)}


def test_the_template_defines_the_five_routing_rules(deployed: Organization) -> None:
    assert {rule.logical_id for rule in deployed.rules} == {
        TEAM_APPROVAL,
        CENTRAL_DECISION,
        ACCOUNT_LIFECYCLE,
        ACCOUNT_LEFT,
        NON_COMPLIANCE,
    }


@pytest.mark.parametrize("name", sorted(INTENDED))
def test_sample_event_reaches_exactly_its_rules(deployed: Organization, name: str) -> None:
    assert matched(deployed, read_event(name)) == INTENDED[name]


def test_every_non_compliant_config_sample_reaches_the_remediation_rule(
    deployed: Organization, events_dir
) -> None:  # type: ignore[no-untyped-def]
    names = [path.stem for path in events_dir.glob("config-*.json") if path.stem != "config-compliant"]
    assert len(names) >= 10
    for name in names:
        assert matched(deployed, read_event(name)) == {NON_COMPLIANCE}, name


def _mutate(name: str, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    event = copy.deepcopy(read_event(name))
    node = event
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return event


NEAR_MISSES = [
    # (what is different, base sample, path, value)
    ("approval from another source", "model-approved-in-team-account", ("source",), "custom.sagemaker"),
    (
        "another detail-type",
        "model-approved-in-team-account",
        ("detail-type",),
        "SageMaker Model State Change",
    ),
    (
        "pending, not approved",
        "model-approved-in-team-account",
        ("detail", "ModelApprovalStatus"),
        "PendingManualApproval",
    ),
    (
        "central registry pending",
        "model-approved-in-central-registry",
        ("detail", "ModelApprovalStatus"),
        "PendingManualApproval",
    ),
    (
        "config COMPLIANT",
        "config-s3-public-read",
        ("detail", "newEvaluationResult", "complianceType"),
        "COMPLIANT",
    ),
    (
        "config NOT_APPLICABLE",
        "config-s3-public-read",
        ("detail", "newEvaluationResult", "complianceType"),
        "NOT_APPLICABLE",
    ),
    ("config from another source", "config-s3-public-read", ("source",), "aws.securityhub"),
    (
        "config other message type",
        "config-s3-public-read",
        ("detail", "messageType"),
        "ConfigurationItemChangeNotification",
    ),
    ("control tower other API", "account-created", ("detail", "eventName"), "EnableGuardrail"),
    ("control tower other source", "account-created", ("source",), "aws.organizations"),
    ("control tower event from a member account", "account-created", ("account",), "210987654321"),
    ("organizations call refused", "account-closed", ("detail", "errorCode"), "AccessDenied"),
    ("organizations call in a member account", "account-closed", ("account",), "210987654321"),
    ("organizations other API", "account-closed", ("detail", "eventName"), "MoveAccount"),
    (
        "organizations other event source",
        "account-closed",
        ("detail", "eventSource"),
        "account.amazonaws.com",
    ),
]


@pytest.mark.parametrize(("why", "base", "path", "value"), NEAR_MISSES, ids=[m[0] for m in NEAR_MISSES])
def test_near_miss_reaches_no_rule(
    deployed: Organization, why: str, base: str, path: tuple[str, ...], value: Any
) -> None:
    assert matched(deployed, read_event(base)) != set(), (
        "the unmutated sample must match, or the test proves nothing"
    )
    assert matched(deployed, _mutate(base, path, value)) == set(), why


def test_team_approval_in_the_governance_account_is_a_central_decision_not_a_promotion(
    deployed: Organization,
) -> None:
    event = _mutate("model-approved-in-team-account", ("account",), deployed.governance_account)
    assert matched(deployed, event) == {CENTRAL_DECISION}


def test_central_decision_from_a_team_account_does_not_start_a_deployment(deployed: Organization) -> None:
    event = _mutate("model-approved-in-central-registry", ("account",), "210987654321")
    assert CENTRAL_DECISION not in matched(deployed, event)
    assert matched(deployed, event) == {TEAM_APPROVAL}


def test_rejection_in_the_central_registry_is_routed_but_not_promoted(deployed: Organization) -> None:
    assert matched(deployed, read_event("model-rejected-in-central-registry")) == {CENTRAL_DECISION}


def test_the_central_decision_archive_keeps_what_the_default_bus_rule_takes(deployed: Organization) -> None:
    """A replay from the default bus archive can only bring back what the archive's pattern kept: every
    model package change of the central registry, pending ones too, and no team account's."""
    from moto.events.models import EventPattern

    from govern.template import load_template

    properties = load_template(deployed.template_path)["Resources"]["CentralDecisionArchive"]["Properties"]
    archive = EventPattern.load(json.dumps(deployed.resolver.resolve(properties["EventPattern"])))
    [rule] = [rule for rule in deployed.rules if rule.bus == "default"]
    assert rule.logical_id == CENTRAL_DECISION
    central = [
        _mutate("model-approved-in-central-registry", ("detail", "ModelApprovalStatus"), status)
        for status in ("Approved", "Rejected", "PendingManualApproval")
    ]
    taken = [event for event in central if rule.matches(event)]
    assert len(taken) == 2  # approved and rejected: the rule's own filter
    assert all(archive.matches_event(event) for event in central)
    team = read_event("model-approved-in-team-account")
    assert not archive.matches_event(team)  # kept by the governance bus archive instead
    assert not archive.matches_event(read_event("config-s3-public-read"))
