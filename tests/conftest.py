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


AwsProfile = Callable[[Organization, str, str], None]


@pytest.fixture
def aws_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AwsProfile:
    """Adds a named AWS profile with an emulated account's credentials to this test's own AWS config file,
    as an operator's profile for that account: what `govern ... --*-profile NAME` reads."""
    config = tmp_path / "aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))

    def add(org: Organization, account: str, name: str) -> None:
        credentials = org.session(account).get_credentials().get_frozen_credentials()
        with config.open("a") as written:
            written.write(
                f"[profile {name}]\n"
                f"aws_access_key_id = {credentials.access_key}\n"
                f"aws_secret_access_key = {credentials.secret_key}\n"
                f"aws_session_token = {credentials.token}\n"
            )

    return add
