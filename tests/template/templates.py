"""The templates under test, read as cfn-lint reads them: one loader for every template test."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
BACKBONE = ROOT / "template.yaml"
TEMPLATES = [BACKBONE, *sorted((ROOT / "templates").glob("*.yaml"))]


def decoded(path: Path) -> Any:
    """`path` decoded by cfn-lint (short-form intrinsics expanded); its nodes keep their line numbers."""
    template, problems = decode(str(path))
    assert not problems, [str(p) for p in problems]
    assert template is not None
    return template


def plain(node: Any) -> Any:
    """cfn-lint's position-carrying nodes as plain dicts, lists and strings."""
    return json.loads(json.dumps(node))


def load_plain(path: Path = BACKBONE) -> dict[str, Any]:
    """`path` (the backbone by default) decoded, as plain data: what a test mutates and compares."""
    return plain(decoded(path))  # type: ignore[no-any-return]


def of_type(template: dict[str, Any], *types: str) -> dict[str, dict[str, Any]]:
    """The resources of `template` whose Type is one of `types`, by logical id."""
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] in types}


def alarms_on(template: dict[str, Any], namespace: str, metric: str, dimension: str, value: Any) -> list[str]:
    """Alarms that fire when the metric of the resource reaches 1 (one message, one failure)."""
    return [
        lid
        for lid, alarm in of_type(template, "AWS::CloudWatch::Alarm").items()
        if (p := alarm["Properties"]).get("Namespace") == namespace
        and p.get("MetricName") == metric
        and p.get("Dimensions") == [{"Name": dimension, "Value": value}]
        and p["Threshold"] == 1
        and p["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        and p["EvaluationPeriods"] == 1
        and p.get("TreatMissingData") == "notBreaching"
    ]


def rules_with_dead_letter_queues(template: dict[str, Any]) -> dict[str, Any]:
    """Every rule of the template that has a dead-letter queue, by the logical id CloudFormation knows it
    under (SAM names an event's rule <resource><event>), with its bus (None: the default bus)."""
    rules: dict[str, Any] = {}
    for logical_id, rule in of_type(template, "AWS::Events::Rule").items():
        if any("DeadLetterConfig" in target for target in rule["Properties"].get("Targets", [])):
            rules[logical_id] = rule["Properties"].get("EventBusName")
    for logical_id, resource in template["Resources"].items():
        for event_name, event in ((resource.get("Properties") or {}).get("Events") or {}).items():
            if event["Type"] == "EventBridgeRule" and "DeadLetterConfig" in event["Properties"]:
                rules[f"{logical_id}{event_name}"] = event["Properties"].get("EventBusName")
    return rules


def lost_event_dimensions(rule: str, bus: Any) -> list[dict[str, Any]]:
    """The dimensions of a rule's InvocationsFailedToBeSentToDlq: RuleName alone on the default bus, and
    EventBusName too on a custom one, where CloudFormation's Ref of the rule is "<bus>|<rule>"."""
    if bus in (None, "default"):
        return [{"Name": "RuleName", "Value": {"Ref": rule}}]
    return [
        {"Name": "EventBusName", "Value": bus},
        {"Name": "RuleName", "Value": {"Fn::Select": [1, {"Fn::Split": ["|", {"Ref": rule}]}]}},
    ]


def rules_losing_events_unseen(template: dict[str, Any]) -> list[str]:
    """Rules whose lost events (InvocationsFailedToBeSentToDlq: neither the target nor the dead-letter
    queue took them) no alarm counts: an alarm must return a sum that includes the rule's metric and fire
    at the first one."""
    watched: set[str] = set()
    for alarm in of_type(template, "AWS::CloudWatch::Alarm").values():
        p = alarm["Properties"]
        if not (
            p.get("Threshold") == 1
            and p.get("ComparisonOperator") == "GreaterThanOrEqualToThreshold"
            and p.get("EvaluationPeriods") == 1
            and p.get("TreatMissingData") == "notBreaching"
        ):
            continue
        queries = p.get("Metrics", [])
        returned = " ".join(q["Expression"] for q in queries if q.get("ReturnData") and "Expression" in q)
        for query in queries:
            stat = query.get("MetricStat", {})
            metric = stat.get("Metric", {})
            if (
                (metric.get("Namespace"), metric.get("MetricName"))
                == ("AWS/Events", "InvocationsFailedToBeSentToDlq")
                and stat.get("Stat") == "Sum"
                and re.search(rf"\bFILL\({re.escape(query['Id'])}, 0\)", returned)
            ):
                watched |= {
                    rule
                    for rule, bus in rules_with_dead_letter_queues(template).items()
                    if metric.get("Dimensions") == lost_event_dimensions(rule, bus)
                }
    return sorted(set(rules_with_dead_letter_queues(template)) - watched)
