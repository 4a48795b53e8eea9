"""The remediation policy: schema, loading with one-line errors, matching Config rule names to controls."""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from governance.notifier import Severity
from governance.remediation.controls import ACTIONS, NO_ACTION

# Tests and the offline runtime point the backbone at another policy file with this variable; deployed
# functions use the file packaged in the layer.
POLICY_FILE_VARIABLE = "REMEDIATION_POLICY_FILE"

Mode = Literal["enforce", "dry-run", "notify-only"]

# The same control reaches us under the name of whoever deployed its Config rule. Each pattern strips one
# deployer's wrapping and leaves the managed rule's own name.
_CONTROL_TOWER = re.compile(r"^awscontroltower_aws-gr_(?P<base>.+)$", re.IGNORECASE)
_SECURITY_HUB = re.compile(r"^securityhub-(?P<base>.+)-[a-z0-9]+$", re.IGNORECASE)
_CONFORMANCE_PACK = re.compile(r"^(?P<base>.+)-conformance-pack-[a-z0-9]+$", re.IGNORECASE)
_ORGANIZATION_RULE = re.compile(r"^orgconfigrule-(?P<base>.+)-[a-z0-9]+$", re.IGNORECASE)

_ACCOUNT_PATTERN = re.compile(r"^[0-9*?]{1,12}$")
_CONTROL_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the file and the bad entry, in one line."""


def base_rule_names(rule_name: str) -> list[str]:
    """The names a Config rule may be known by, most specific first, e.g.
    `AWSControlTower_AWS-GR_S3_BUCKET_PUBLIC_READ_PROHIBITED` -> [itself, `s3-bucket-public-read-prohibited`].
    """
    names = [rule_name.lower()]
    current = rule_name
    for pattern in (_ORGANIZATION_RULE, _CONFORMANCE_PACK, _SECURITY_HUB, _CONTROL_TOWER):
        found = pattern.match(current)
        if found:
            current = found.group("base")
            if pattern is _CONTROL_TOWER:
                # Control Tower spells the managed rule's name in upper snake case.
                current = current.replace("_", "-")
            names.append(current.lower())
    return list(dict.fromkeys(names))


class _Strict(BaseModel):
    """A typo in a human-edited file must be an error, not a silently ignored key; text is stripped, so a
    reason or an owner of only spaces is as missing as an empty one."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Control(_Strict):
    """One control: the Config rules it covers and what the backbone does about a NON_COMPLIANT evaluation."""

    id: str = Field(pattern=_CONTROL_ID.pattern)
    rules: list[str] = Field(min_length=1)
    resource_type: str = Field(pattern=r"^AWS::[A-Za-z0-9]*::[A-Za-z0-9]+$")
    action: str
    mode: Mode
    severity: Severity
    note: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("rules")
    @classmethod
    def _lower_case_patterns(cls, rules: list[str]) -> list[str]:
        for rule in rules:
            if not rule.strip():
                raise ValueError("a rule pattern is empty")
        return [rule.strip().lower() for rule in rules]

    @model_validator(mode="after")
    def _action_fits(self) -> Control:
        if self.action == NO_ACTION:
            if self.mode != "notify-only":
                raise ValueError(f"action {NO_ACTION!r} changes nothing, so mode must be 'notify-only'")
            if self.parameters:
                raise ValueError(f"action {NO_ACTION!r} takes no parameters")
            return self
        action = ACTIONS.get(self.action)
        if action is None:
            known = ", ".join(sorted([*ACTIONS, NO_ACTION]))
            raise ValueError(f"unknown action {self.action!r} (known: {known})")
        if self.resource_type not in action.resource_types:
            raise ValueError(
                f"action {self.action!r} acts on {', '.join(action.resource_types)}, not {self.resource_type}"
            )
        try:
            action.parameters.model_validate(self.parameters)
        except ValidationError as error:
            problems = "; ".join(
                f"parameters.{'.'.join(str(p) for p in item['loc']) or '?'}: {item['msg']}"
                for item in error.errors()
            )
            raise ValueError(problems) from None
        return self

    def covers(self, rule_name: str) -> bool:
        return any(
            fnmatch.fnmatchcase(name, rule) for name in base_rule_names(rule_name) for rule in self.rules
        )


class Exemption(_Strict):
    """Resources the backbone leaves alone until `expires`: an account or resource pattern, with an owner."""

    accounts: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    controls: list[str] = Field(default_factory=list)
    reason: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    expires: date

    @field_validator("accounts")
    @classmethod
    def _account_patterns(cls, accounts: list[str]) -> list[str]:
        for account in accounts:
            if not _ACCOUNT_PATTERN.match(account):
                raise ValueError(f"{account!r} is not an account id or pattern (12 digits, * and ? allowed)")
        return accounts

    @model_validator(mode="after")
    def _scoped(self) -> Exemption:
        if not self.accounts and not self.resources:
            raise ValueError("give accounts or resources (an exemption for everything is not an exemption)")
        return self

    def active_on(self, day: date) -> bool:
        return day <= self.expires

    def applies_to(self, *, account: str, resource_id: str, control_id: str | None) -> bool:
        if self.controls and control_id not in self.controls:
            return False
        if self.accounts and not any(fnmatch.fnmatchcase(account, pattern) for pattern in self.accounts):
            return False
        return not self.resources or any(
            fnmatch.fnmatchcase(resource_id, pattern) for pattern in self.resources
        )

    def describe(self) -> dict[str, Any]:
        return {
            "source": "policy",
            "reason": self.reason,
            "owner": self.owner,
            "expires": self.expires.isoformat(),
        }


class Policy(_Strict):
    """The whole file: controls, exemptions and what to do about a rule no control covers."""

    version: Literal[1]
    unknown_rule_severity: Severity = "MEDIUM"
    controls: list[Control] = Field(default_factory=list, alias="control")
    exemptions: list[Exemption] = Field(default_factory=list, alias="exemption")

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        owners: dict[str, str] = {}
        ids: set[str] = set()
        for control in self.controls:
            if control.id in ids:
                raise ValueError(f"control id {control.id!r} is used twice")
            ids.add(control.id)
            for rule in control.rules:
                if rule in owners:
                    raise ValueError(
                        f"rule {rule!r} is in control {owners[rule]!r} and in control {control.id!r}"
                    )
                owners[rule] = control.id
        for index, exemption in enumerate(self.exemptions, start=1):
            unknown = [name for name in exemption.controls if name not in ids]
            if unknown:
                raise ValueError(
                    f"exemption #{index} (owner {exemption.owner}) names unknown control(s) {unknown}"
                )
        return self

    def control_for(self, rule_name: str) -> Control | None:
        """The first control covering `rule_name` under any of its names, or None (then: notify-only)."""
        return next((control for control in self.controls if control.covers(rule_name)), None)

    def exemption_for(
        self, *, account: str, resource_id: str, control_id: str | None, today: date | None = None
    ) -> Exemption | None:
        """The first exemption in force for this resource; expired ones do not count."""
        day = today or datetime.now(UTC).date()
        return next(
            (
                exemption
                for exemption in self.exemptions
                if exemption.active_on(day)
                and exemption.applies_to(account=account, resource_id=resource_id, control_id=control_id)
            ),
            None,
        )


def _entry_name(raw: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """`control 'sg-open-ssh' (#3)` for an error located in the third [[control]] table."""
    if len(loc) >= 2 and loc[0] in ("control", "exemption") and isinstance(loc[1], int):
        entries = raw.get(loc[0]) or []
        entry = entries[loc[1]] if loc[1] < len(entries) and isinstance(entries[loc[1]], dict) else {}
        label = entry.get("id") if loc[0] == "control" else entry.get("owner")
        named = f" {label.strip()!r}" if isinstance(label, str) and label.strip() else ""
        return f"{loc[0]}{named} (#{loc[1] + 1})"
    return "policy"


def _describe(raw: dict[str, Any], error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        loc = tuple(item["loc"])
        where = _entry_name(raw, loc)
        path = loc[2:] if where != "policy" else loc
        field = ".".join(str(part) for part in path)
        message = item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {field + ': ' if field else ''}{message}")
    return "; ".join(problems)


def parse_policy(text: str, source: str = "policy.toml") -> Policy:
    """Validate the text of a policy file, or raise PolicyError naming `source` and the bad entry."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"remediation policy {source}: not valid TOML: {error}") from None
    try:
        return Policy.model_validate(raw)
    except ValidationError as error:
        raise PolicyError(f"remediation policy {source}: {_describe(raw, error)}") from None


def packaged_policy_path() -> Path:
    """The policy file shipped in the layer, next to this module."""
    return Path(str(resources.files("governance.remediation").joinpath("policy.toml")))


@dataclass(frozen=True)
class _Loaded:
    path: Path
    policy: Policy


@functools.cache
def _load(path: str) -> _Loaded:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError(f"remediation policy {file}: cannot read ({error.strerror})") from None
    return _Loaded(file, parse_policy(text, str(file)))


def current_policy() -> Policy:
    """The policy in force: read and validated on first use in this process (a bad file fails loudly here)."""
    path = os.environ.get(POLICY_FILE_VARIABLE) or str(packaged_policy_path())
    return _load(path).policy


def reset_caches_for_tests() -> None:
    """Forget loaded policies (the offline runtime calls this when it changes the environment)."""
    _load.cache_clear()
