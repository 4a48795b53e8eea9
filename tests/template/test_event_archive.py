"""Nothing lost past the bus: every event the governance bus receives is archived, and so are the central
registry's decisions that reach the default bus, encrypted with the governance key, so a window of them can
be replayed through the rules (docs/operations.md)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.template.templates import load_plain, of_type

DATA_KEY_ACTIONS = {"kms:GenerateDataKey", "kms:Decrypt", "kms:ReEncrypt*"}
BUS_CONTEXT = "kms:EncryptionContext:aws:events:event-bus:arn"
BUS_ARN = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/"
ARCHIVED_BUSES = [{"Fn::Sub": BUS_ARN + "${EventBusName}"}, {"Fn::Sub": BUS_ARN + "default"}]
DEFAULT_BUS = ARCHIVED_BUSES[1]


@pytest.fixture(scope="module")
def backbone() -> dict[str, Any]:
    return load_plain()


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def archive_findings(template: dict[str, Any]) -> list[str]:
    """What keeps the archive from holding every event of the bus, readable only through the key."""
    findings = []
    archives = of_type(template, "AWS::Events::Archive")
    on_bus = [
        properties
        for properties in (archive["Properties"] for archive in archives.values())
        if properties.get("SourceArn") == {"Fn::GetAtt": ["GovernanceEventBus", "Arn"]}
    ]
    on_default = [
        properties
        for properties in (archive["Properties"] for archive in archives.values())
        if properties.get("SourceArn") == DEFAULT_BUS
    ]
    if len(on_bus) != 1:
        return [f"{len(on_bus)} archives of the governance bus"]
    if len(on_default) != 1:
        return [f"{len(on_default)} archives of the central decisions on the default bus"]
    if "EventPattern" in on_bus[0]:
        findings.append("the bus archive filters events: a replay could not bring back the others")
    if not on_default[0].get("EventPattern"):
        findings.append("the default bus archive keeps every AWS event of the account, not the decisions")
    for name, archive in (("bus", on_bus[0]), ("central decisions", on_default[0])):
        if archive.get("KmsKeyIdentifier") != {"Fn::GetAtt": ["GovernanceKey", "Arn"]}:
            findings.append(f"the {name} archive is not encrypted with the governance key")
        retention = archive.get("RetentionDays")
        if retention != {"Ref": "EventArchiveRetentionDays"}:
            findings.append(f"the {name} archive's retention {retention!r} is not the stack parameter")
    default = template["Parameters"]["EventArchiveRetentionDays"]["Default"]
    if default != 0 and default < 90:
        findings.append(f"events are kept {default} days by default, less than a quarter")
    statements = template["Resources"]["GovernanceKey"]["Properties"]["KeyPolicy"]["Statement"]
    for statement in statements:
        principals = as_list((statement.get("Principal") or {}).get("Service", []))
        if "events.amazonaws.com" not in principals or statement["Effect"] != "Allow":
            continue
        data_key = DATA_KEY_ACTIONS & set(as_list(statement["Action"]))
        condition = statement.get("Condition") or {}
        if data_key and not condition:
            findings.append(f"{statement.get('Sid')}: EventBridge gets {sorted(data_key)} with no condition")
        if "kms:ReEncrypt*" in data_key:
            context = as_list((condition.get("StringEquals") or {}).get(BUS_CONTEXT, []))
            if sorted(map(str, context)) != sorted(map(str, ARCHIVED_BUSES)):
                findings.append(f"{statement.get('Sid')}: re-encryption not bound to the two archived buses")
    granted = {
        action
        for statement in statements
        if "events.amazonaws.com" in as_list((statement.get("Principal") or {}).get("Service", []))
        for action in as_list(statement["Action"])
    }
    if not DATA_KEY_ACTIONS | {"kms:DescribeKey"} <= granted:
        findings.append(f"EventBridge lacks {sorted(DATA_KEY_ACTIONS | {'kms:DescribeKey'} - granted)}")
    for output in ("EventArchiveArn", "CentralDecisionArchiveArn"):
        if output not in template["Outputs"]:
            findings.append(f"no {output} output")
    return findings


def test_both_buses_are_archived_under_the_governance_key(backbone: dict[str, Any]) -> None:
    assert archive_findings(backbone) == []


def _archive(document: dict[str, Any]) -> dict[str, Any]:
    return document["Resources"]["GovernanceEventArchive"]["Properties"]  # type: ignore[no-any-return]


def _central_archive(document: dict[str, Any]) -> dict[str, Any]:
    return document["Resources"]["CentralDecisionArchive"]["Properties"]  # type: ignore[no-any-return]


def _archive_statement(document: dict[str, Any]) -> dict[str, Any]:
    statements = document["Resources"]["GovernanceKey"]["Properties"]["KeyPolicy"]["Statement"]
    return next(s for s in statements if s.get("Sid") == "EventBridgeArchivesGovernanceBus")  # type: ignore[no-any-return]


MUTATIONS = {
    "no archive": lambda d: d["Resources"].pop("GovernanceEventArchive"),
    "a filtering archive": lambda d: _archive(d).update(EventPattern={"source": ["aws.config"]}),
    "the AWS owned key": lambda d: _archive(d).pop("KmsKeyIdentifier"),
    "a week by default": lambda d: d["Parameters"]["EventArchiveRetentionDays"].update(Default=7),
    "an unconditioned grant": lambda d: _archive_statement(d).pop("Condition"),
    "any bus's context": lambda d: _archive_statement(d)["Condition"]["StringEquals"].update(
        {BUS_CONTEXT: {"Fn::Sub": BUS_ARN + "*"}}
    ),
    "only the governance bus's context": lambda d: _archive_statement(d)["Condition"]["StringEquals"].update(
        {BUS_CONTEXT: ARCHIVED_BUSES[0]}
    ),
    "no central decisions archive": lambda d: d["Resources"].pop("CentralDecisionArchive"),
    "an unfiltered default bus archive": lambda d: _central_archive(d).pop("EventPattern"),
    "central decisions under the AWS owned key": lambda d: _central_archive(d).pop("KmsKeyIdentifier"),
    "central decisions kept a fixed week": lambda d: _central_archive(d).update(RetentionDays=7),
    "no data keys for EventBridge": lambda d: _archive_statement(d).update(Action=["kms:Decrypt"]),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_archive_check_catches(backbone: dict[str, Any], mutation: str) -> None:
    mutated = copy.deepcopy(backbone)
    MUTATIONS[mutation](mutated)
    assert archive_findings(mutated) != [], mutation
