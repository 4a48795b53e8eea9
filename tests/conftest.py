"""Fixtures shared by every test: the emulated organization and the sample events."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from govern.emulator import PROJECT_ROOT, Organization

EVENTS_DIR = PROJECT_ROOT / "events"


def read_event(name: str) -> dict[str, Any]:
    """A sample event from events/, by file name (with or without .json); a fresh copy each call."""
    path = EVENTS_DIR / (name if name.endswith(".json") else f"{name}.json")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def files_under(*roots: Path) -> set[Path]:
    """Every file and folder under `roots`: compared before and after a step that must write nothing."""
    return {path for root in roots for path in root.rglob("*")}


@pytest.fixture
def load_event() -> Callable[[str], dict[str, Any]]:
    return read_event


@pytest.fixture
def org() -> Iterator[Organization]:
    """A freshly deployed backbone in an emulated organization (governance 111111111111)."""
    with Organization() as organization:
        yield organization


@pytest.fixture
def events_dir() -> Path:
    return EVENTS_DIR
