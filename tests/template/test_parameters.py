"""A backbone deployed with the placeholder organization or management account would accept no forwarded
event and see no Control Tower event, without a word: the template's Rules make CloudFormation refuse it
before creating anything, with a message that says what to pass. Evaluated here as CloudFormation does
(each assertion a condition over the parameters)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from tests.template.templates import ROOT, load_plain

REAL = {"OrganizationId": "o-a1b2c3d4e5", "ManagementAccountId": "123456789012"}


def evaluate(node: Any, parameters: dict[str, str]) -> Any:
    """The Rules functions the template uses: Fn::Not, Fn::Equals, Ref."""
    if isinstance(node, dict):
        ((function, argument),) = node.items()
        if function == "Ref":
            return parameters[argument]
        if function == "Fn::Not":
            return not evaluate(argument[0], parameters)
        if function == "Fn::Equals":
            left, right = (evaluate(item, parameters) for item in argument)
            return left == right
        raise AssertionError(f"a Rules function this test does not evaluate: {function}")
    return node


def refusals(template: dict[str, Any], overrides: dict[str, str]) -> list[str]:
    """The AssertDescription of each assertion CloudFormation would fail, for these parameter values."""
    parameters = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    parameters.update(overrides)
    return [
        " ".join(assertion["AssertDescription"].split())
        for rule in template.get("Rules", {}).values()
        for assertion in rule["Assertions"]
        if not evaluate(assertion["Assert"], parameters)
    ]


@pytest.fixture(scope="module")
def backbone() -> dict[str, Any]:
    return load_plain()


def test_the_placeholders_are_refused_each_with_what_to_pass(backbone: dict[str, Any]) -> None:
    organization, management = refusals(backbone, {})
    assert organization.startswith("OrganizationId is the placeholder o-exampleorgid: pass your organization")
    assert management.startswith(
        "ManagementAccountId is the placeholder 999999999999: pass your Control Tower"
    )
    assert refusals(backbone, {"ManagementAccountId": REAL["ManagementAccountId"]}) == [organization]
    assert refusals(backbone, REAL) == []


def test_every_samconfig_section_must_be_given_real_values(backbone: dict[str, Any]) -> None:
    """samconfig.toml's sections carry the placeholders on purpose (docs/rollout.md, step 1, passes real
    values on the command line): deployed as they are, they are refused, not deployed inert."""
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for section, commands in config.items():
        if not isinstance(commands, dict) or "deploy" not in commands:
            continue
        text = commands["deploy"]["parameters"].get("parameter_overrides", "")
        overrides = dict(item.split("=", 1) for item in text.split())
        assert len(refusals(backbone, overrides)) == 2, section
