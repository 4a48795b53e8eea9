"""Settings read lazily from the function's environment, once per cold start. A `govern` command pins its own
for its context instead (settings.pinned), leaving the process's as they are."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, fields


class SettingMissing(RuntimeError):
    """A setting the code needs is not in the environment."""


@dataclass(frozen=True)
class Settings:
    """Every environment variable a backbone function may read; each function sets only its own."""

    stage: str = "dev"
    region: str = "us-east-1"
    governance_account_id: str = ""
    management_account_id: str = ""
    execution_role_name: str = "GovernanceExecutionRole"
    event_bus_name: str = ""
    ledger_table: str = ""
    state_table: str = ""
    inventory_table: str = ""
    idempotency_table: str = ""
    security_topic_arn: str = ""
    platform_topic_arn: str = ""
    ml_governance_topic_arn: str = ""
    dead_letter_queue_url: str = ""
    artifact_bucket: str = ""
    kms_key_arn: str = ""
    dry_run: bool = False
    # Comma-separated lists are kept as text here and split by the code that owns them.
    baseline_regions: str = ""
    ou_environment_map: str = ""
    required_model_metadata: str = "owner,use-case,risk-rating"
    deployment_pipeline_map: str = ""
    deployment_account_ids: str = ""
    max_actions_per_account_per_hour: int = 20
    # The compliance queue's maxReceiveCount: the delivery after which a failed record is dead-lettered.
    compliance_max_receives: int = 5
    # Base delay of the workflows' bounded polling (role readiness, pipeline progress); the
    # offline runtime sets 0 so emulated workflows do not sleep.
    poll_base_seconds: int = 10

    @classmethod
    def from_environment(cls, environment: Mapping[str, str]) -> Settings:
        """The settings an environment names: each field from its upper-case variable, the Region from
        AWS_REGION (else AWS_DEFAULT_REGION), blank variables as unset."""
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environment.get(field.name.upper())
            if raw is not None and raw != "":
                values[field.name] = _coerce(raw, field.default)
        if "region" not in values:
            region = environment.get("AWS_REGION") or environment.get("AWS_DEFAULT_REGION")
            values["region"] = region or "us-east-1"
        return cls(**values)  # type: ignore[arg-type]

    def require(self, name: str) -> str:
        """Return a text setting, or fail with the environment variable that is missing."""
        value = getattr(self, name)
        if not value:
            raise SettingMissing(f"environment variable {name.upper()} is not set")
        return str(value)


def comma_list(text: str) -> list[str]:
    """The entries of a comma-separated setting (`a, b,,c` -> a, b, c), in order, blanks dropped."""
    return [entry.strip() for entry in text.split(",") if entry.strip()]


def _coerce(raw: str, default: object) -> object:
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        return int(raw)
    return raw


# Settings that hold for one context (a thread, and what it calls) instead of the process: the `govern`
# operations' (govern.operations.governance_account), so that an operator's Region and tables never
# become those of code running beside it, as the emulated functions do in the same process. Like any
# ContextVar, it does not follow into threads the code starts itself (forwarding.watch's readers): those
# read the process's settings.
_pinned: ContextVar[Settings | None] = ContextVar("governance_settings", default=None)


@functools.cache
def _from_process_environment() -> Settings:
    return Settings.from_environment(os.environ)


class _SettingsReader:
    """`settings()`: the settings pinned in this context, else the process's, read from the environment on
    first use (not at import) and kept until `settings.cache_clear()`."""

    def __call__(self) -> Settings:
        return _pinned.get() or _from_process_environment()

    @staticmethod
    def cache_clear() -> None:
        _from_process_environment.cache_clear()

    @staticmethod
    @contextlib.contextmanager
    def pinned(values: Settings) -> Iterator[None]:
        """Within the block, and only in this context, `settings()` is `values`."""
        token = _pinned.set(values)
        try:
            yield
        finally:
            _pinned.reset(token)


settings = _SettingsReader()
