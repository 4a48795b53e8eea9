"""The templates under test, read as cfn-lint reads them: one loader for every template test."""

from __future__ import annotations

import json
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
