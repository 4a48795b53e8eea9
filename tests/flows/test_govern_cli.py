"""`govern replay` and `govern demo` honour the contract: JSON report, outcomes, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from govern.cli import main
from tests.conftest import EVENTS_DIR, read_event


def replay_json(capsys: pytest.CaptureFixture[str], *files: Path | str) -> tuple[int, dict[str, Any]]:
    status = main(["replay", "--json", *map(str, files)])
    return status, json.loads(capsys.readouterr().out)


def test_a_compliant_evaluation_is_ignored_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    status, report = replay_json(capsys, EVENTS_DIR / "config-compliant.json")
    assert status == 0
    [event] = report["events"]
    assert event["outcome"] == "ignored"
    assert event["rules"] == []
    assert event["actions"] == []
    assert report["summary"] == {"events": 1, "succeeded": 0, "failed": 0, "ignored": 1, "dead_lettered": 0}


@pytest.mark.parametrize("name", ["malformed-model-approval.json", "malformed-config-evaluation.json"])
def test_a_malformed_event_is_dead_lettered_with_a_one_line_reason_and_exits_1(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    status, report = replay_json(capsys, EVENTS_DIR / name)
    assert status == 1
    [event] = report["events"]
    assert event["outcome"] == "dead-lettered"
    assert event["error"] and "\n" not in event["error"]
    # The reason names the field that is wrong.
    missing = "ModelPackageArn" if "model" in name else "resourceId"
    assert missing in event["error"]
    assert report["summary"]["dead_lettered"] == 1


def test_a_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["replay", "--json", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_file_that_is_not_json_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "notes.json"
    path.write_text("this is not an event\n")
    assert main(["replay", str(path)]) == 2
    assert "not JSON" in capsys.readouterr().err


def test_an_array_and_json_lines_are_replayed_in_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    compliant, unknown = read_event("config-compliant"), read_event("model-rejected-in-team-account")
    array = tmp_path / "array.json"
    array.write_text(json.dumps([compliant, unknown]))
    lines = tmp_path / "export.jsonl"
    lines.write_text(json.dumps(unknown) + "\n\n" + json.dumps(compliant) + "\n")
    status, report = replay_json(capsys, array, lines)
    assert status == 0
    assert [event["id"] for event in report["events"]] == [
        compliant["id"],
        unknown["id"],
        unknown["id"],
        compliant["id"],
    ]
    assert report["summary"]["events"] == 4


def test_every_event_in_the_report_has_the_contract_fields(capsys: pytest.CaptureFixture[str]) -> None:
    _, report = replay_json(capsys, EVENTS_DIR / "config-s3-public-read.json")
    [event] = report["events"]
    assert set(event) == {"id", "detail_type", "rules", "outcome", "actions", "error"}
    assert event["detail_type"] == "Config Rules Compliance Change"
    for action in event["actions"]:
        assert set(action) == {"type", "status", "target", "verified", "detail"}
        assert action["type"] in {
            "replicate_model",
            "write_model_card",
            "start_pipeline",
            "baseline_account",
            "remediate",
            "notify",
        }
        assert action["status"] in {"done", "skipped", "dry-run", "exempt", "notify-only", "failed"}


def test_bad_account_ids_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", "--governance-account", "12", str(EVENTS_DIR / "config-compliant.json")])
    assert exit_info.value.code == 2


def test_the_demo_tells_every_sample_event_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["demo"])
    out = capsys.readouterr().out
    assert status == 0, out[-4000:]
    for path in EVENTS_DIR.glob("*.json"):
        if path.name != "expected-outcomes.json":
            assert path.name in out
    assert "summary:" in out
    # The baselined account's forwarding queue, read after the story; nothing kept, nothing unreadable.
    assert "read 1 forwarding dead-letter queue of the registered accounts" in out
    assert "events kept: 0, queues unreadable: 0." in out


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_drops_the_handlers_logs_and_keeps_the_report(quiet: bool) -> None:
    # A process of its own: Powertools binds a logger to the stdout of the moment it is first made.
    # The runtime logs at ERROR: a malformed record is what a handler logs about.
    arguments = [
        "replay",
        *(["--quiet"] if quiet else []),
        str(EVENTS_DIR / "malformed-config-evaluation.json"),
    ]
    completed = subprocess.run(
        [sys.executable, "-c", f"from govern.cli import main; raise SystemExit(main({arguments!r}))"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert completed.returncode == 1, completed.stderr[-2000:]  # 1: an event was dead-lettered
    assert "malformed-config-evaluation.json" in completed.stdout and "summary:" in completed.stdout
    handler_logs = [line for line in completed.stderr.splitlines() if line.startswith('{"level":')]
    assert bool(handler_logs) is not quiet, completed.stderr[-2000:]
