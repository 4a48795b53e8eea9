"""Reads template.yaml as CloudFormation would: short-form intrinsics, parameters, conditions, Globals."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class TemplateError(RuntimeError):
    """The template uses something the offline runtime cannot resolve."""


class Unresolved(LookupError):
    """A reference to a resource that has not been provisioned yet."""


def _tag(name: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    return construct


# libyaml's parser where PyYAML was built with it: a tenth of the pure-Python one's time, and every test's
# emulated organization reads the template.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CloudFormationLoader(_SafeLoader):
    """YAML with CloudFormation's `!Ref`, `!GetAtt`, `!Sub`... turned into their long forms."""


for _short in ("Ref", "Condition"):
    _CloudFormationLoader.add_constructor(f"!{_short}", _tag(_short))
for _short in (
    "GetAtt", "Sub", "Join", "If", "Not", "Equals", "And", "Or", "Select", "Split",
    "FindInMap", "GetAZs", "Base64", "ImportValue", "Cidr", "ToJsonString",
):  # fmt: skip
    _CloudFormationLoader.add_constructor(f"!{_short}", _tag(f"Fn::{_short}"))


def load_template(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        loaded = yaml.load(handle, Loader=_CloudFormationLoader)
    if not isinstance(loaded, dict) or "Resources" not in loaded:
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return loaded


_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


@dataclass
class Resolver:
    """Resolves intrinsic functions against parameters, pseudo parameters and provisioned resources."""

    parameters: dict[str, Any]
    pseudo: dict[str, str]
    conditions: dict[str, Any] = field(default_factory=dict)
    # logical id -> {"Ref": ..., "Arn": ..., other attributes}
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            raise TemplateError(f"unknown condition {name}")
        return bool(self.resolve(self.conditions[name]))

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.resources[name]["Ref"]
        raise Unresolved(name)

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if logical_id not in self.resources:
            raise Unresolved(logical_id)
        attributes = self.resources[logical_id]
        if attribute not in attributes:
            raise TemplateError(f"{logical_id} has no attribute {attribute} in the emulation")
        return attributes[attribute]

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and name.split(".", 1)[0] not in self.parameters:
                logical_id, attribute = name.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            resolved = [self.resolve(item) for item in node]
            return [item for item in resolved if item is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, value),) = node.items()
            if key == "Ref":
                return _NO_VALUE if value == "AWS::NoValue" else self.ref(value)
            if key == "Fn::GetAtt":
                return self.get_att(value[0], value[1])
            if key == "Fn::Sub":
                if isinstance(value, list):
                    return self._sub(value[0], value[1])
                return self._sub(value, {})
            if key == "Fn::Join":
                return str(value[0]).join(str(part) for part in self.resolve(value[1]))
            if key == "Fn::Select":
                return self.resolve(value[1])[int(self.resolve(value[0]))]
            if key == "Fn::Split":
                return str(self.resolve(value[1])).split(value[0])
            if key == "Fn::If":
                return self.resolve(value[1] if self.condition(value[0]) else value[2])
            if key == "Fn::Equals":
                return self.resolve(value[0]) == self.resolve(value[1])
            if key == "Fn::Not":
                return not self.resolve(value[0])
            if key == "Fn::And":
                return all(self.resolve(item) for item in value)
            if key == "Fn::Or":
                return any(self.resolve(item) for item in value)
            if key == "Condition":
                return self.condition(value)
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not supported by the offline runtime")
        resolved_map = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved_map.items() if value is not _NO_VALUE}


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()
