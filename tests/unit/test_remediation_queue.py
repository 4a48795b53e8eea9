"""The compliance queue and RemediateConfigFunction, as template.yaml wires them: every record the queue
dead-letters has had its last delivery run by the function (which ledgers and notifies it), and a record
the hourly cap holds back can wait for the hour to turn."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.template.templates import load_plain

FUNCTION = "RemediateConfigFunction"
QUEUE = "ConfigComplianceQueue"
# AWS recommends at least 5 for a queue Lambda polls (Lambda Developer Guide, "Understanding SQS retries").
MIN_RECEIVES = 5


@pytest.fixture(scope="module")
def backbone() -> dict[str, Any]:
    return load_plain()


def _sqs_event(template: dict[str, Any]) -> dict[str, Any]:
    events = template["Resources"][FUNCTION]["Properties"].get("Events", {})
    [event] = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
    return dict(event)


def wiring_problems(template: dict[str, Any]) -> list[str]:
    """What would let a compliance record reach the DLQ unseen by the function, or be refused again
    before the hour turns; empty when the wiring is sound."""
    problems = []
    function = template["Resources"][FUNCTION]["Properties"]
    queue = template["Resources"][QUEUE]["Properties"]
    event = _sqs_event(template)
    if event.get("Queue") != {"Fn::GetAtt": [QUEUE, "Arn"]}:
        problems.append(f"the SQS event of {FUNCTION} does not poll {QUEUE}")
    # The SQS poller ignores reserved concurrency: only its own maximum concurrency keeps it from invoking
    # a throttled function, each throttle using up a receive of the batch's records.
    maximum = (event.get("ScalingConfig") or {}).get("MaximumConcurrency")
    if not isinstance(maximum, int) or not 2 <= maximum <= 1000:
        problems.append("the SQS event has no ScalingConfig.MaximumConcurrency (2 to 1000)")
    reserved = function.get("ReservedConcurrentExecutions")
    if isinstance(maximum, int) and reserved is not None and reserved < maximum:
        problems.append(f"ReservedConcurrentExecutions {reserved} is below MaximumConcurrency {maximum}")
    if "ReportBatchItemFailures" not in event.get("FunctionResponseTypes", []):
        problems.append("a failed record would fail its whole batch (no ReportBatchItemFailures)")
    receives = queue["RedrivePolicy"]["maxReceiveCount"]
    if receives != {"Ref": "ComplianceMaxReceives"}:
        problems.append("the queue's maxReceiveCount is not the ComplianceMaxReceives parameter")
    elif int(template["Parameters"]["ComplianceMaxReceives"]["Default"]) < MIN_RECEIVES:
        problems.append(f"ComplianceMaxReceives defaults to fewer than {MIN_RECEIVES} receives")
    variables = function.get("Environment", {}).get("Variables", {})
    if variables.get("COMPLIANCE_MAX_RECEIVES") != {"Ref": "ComplianceMaxReceives"}:
        problems.append("the function does not know the queue's maxReceiveCount (COMPLIANCE_MAX_RECEIVES)")
    timeout = function.get("Timeout", template["Globals"]["Function"]["Timeout"])
    if int(queue["VisibilityTimeout"]) < 6 * int(timeout):
        problems.append("the queue's visibility timeout is under six times the function timeout")
    hold_back = {
        "Effect": "Allow",
        "Action": "sqs:ChangeMessageVisibility",
        "Resource": {"Fn::GetAtt": [QUEUE, "Arn"]},
    }
    statements = [
        {key: statement.get(key) for key in hold_back}
        for policy in function.get("Policies", [])
        if isinstance(policy, dict)
        for statement in policy.get("Statement", [])
    ]
    if hold_back not in statements:
        problems.append("the function may not hold back a record the hourly cap refused")
    return problems


def test_every_record_the_queue_dead_letters_had_its_last_delivery_run(backbone: dict[str, Any]) -> None:
    assert wiring_problems(backbone) == []


def _without_scaling(template: dict[str, Any]) -> None:
    events = template["Resources"][FUNCTION]["Properties"]["Events"]
    for event in events.values():
        event["Properties"].pop("ScalingConfig", None)


def _reserved_below_maximum(template: dict[str, Any]) -> None:
    template["Resources"][FUNCTION]["Properties"]["ReservedConcurrentExecutions"] = 1


def _three_receives(template: dict[str, Any]) -> None:
    template["Parameters"]["ComplianceMaxReceives"]["Default"] = 3


def _no_hold_back(template: dict[str, Any]) -> None:
    policies = template["Resources"][FUNCTION]["Properties"]["Policies"]
    policies[:] = [policy for policy in policies if not (isinstance(policy, dict) and "Statement" in policy)]


@pytest.mark.parametrize(
    ("mutate", "caught"),
    [
        (_without_scaling, "no ScalingConfig.MaximumConcurrency"),
        (_reserved_below_maximum, "ReservedConcurrentExecutions 1 is below MaximumConcurrency"),
        (_three_receives, "fewer than 5 receives"),
        (_no_hold_back, "may not hold back"),
    ],
)
def test_a_wiring_that_could_dead_letter_unseen_is_caught(
    backbone: dict[str, Any], mutate: Callable[[dict[str, Any]], None], caught: str
) -> None:
    mutated = copy.deepcopy(backbone)
    mutate(mutated)

    assert any(caught in problem for problem in wiring_problems(mutated)), wiring_problems(mutated)
