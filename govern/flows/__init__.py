"""Per-flow support of the offline runtime: what to seed for an event, how to verify each action."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

# One module per flow; each defines handles(event), seed(event, org) and VERIFIERS.
_FLOW_MODULES = ("govern.flows.models", "govern.flows.accounts", "govern.flows.config_remediation")


def _modules() -> list[ModuleType]:
    loaded = []
    for name in _FLOW_MODULES:
        try:
            loaded.append(importlib.import_module(name))
        except ModuleNotFoundError as error:
            if error.name != name:  # a flow module that exists but fails to import is a real error
                raise
    return loaded


def supports_for(event: dict[str, Any]) -> list[ModuleType]:
    return [module for module in _modules() if module.handles(event)]


def verifier_for(action: str) -> Callable[[Any, Any], bool] | None:
    for module in _modules():
        verifier = getattr(module, "VERIFIERS", {}).get(action)
        if verifier is not None:
            return verifier  # type: ignore[no-any-return]
    return None
