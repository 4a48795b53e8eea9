"""`govern replay` and `govern demo` honour the contract: JSON report, outcomes, exit codes."""

from __future__ import annotations

import io
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


@pytest.mark.parametrize(
    ("content", "said"),
    [
        # Latin-1 and UTF-16 (what Windows PowerShell's `>` writes) are not UTF-8.
        (
            '{"detail": "caf\u00e9"}'.encode("latin-1"),
            "not UTF-8 text (byte 0xe9 at offset 15); save it as UTF-8",
        ),
        ('{"id": "x"}'.encode("utf-16"), "not UTF-8 text (byte 0xff at offset 0); save it as UTF-8"),
        (b"[]", "no events (an empty JSON array)"),
        (
            b'{"id": "a"\n{"id": "b"}\n',
            ":1: not a JSON event (Expecting ',' delimiter at column 11: '{\"id\": \"a\"')",
        ),
        # An indented event with a trailing comma: where it is, not "line 1".
        (
            b'{\n  "id": "a",\n  "detail": {\n    "x": 1,\n  }\n}\n',
            "not JSON (line 5, column 3: Expecting property name enclosed in double quotes)",
        ),
    ],
    ids=["latin-1", "utf-16", "empty-array", "json-lines-first-line", "indented-trailing-comma"],
)
def test_an_input_file_that_cannot_be_replayed_is_a_one_line_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, said: str
) -> None:
    path = tmp_path / "events.json"
    path.write_bytes(content)

    assert main(["replay", str(path)]) == 2

    error = capsys.readouterr().err.strip()
    assert error.endswith(f"{path}{said}" if said.startswith(":") else f"{path}: {said}"), error
    assert "\n" not in error and "Traceback" not in error


def test_a_utf8_file_with_a_byte_order_mark_is_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "compliant.json"
    path.write_bytes(b"\xef\xbb\xbf" + (EVENTS_DIR / "config-compliant.json").read_bytes())

    status, report = replay_json(capsys, path)

    assert status == 0 and report["summary"]["ignored"] == 1


def test_a_json_value_that_is_not_an_event_is_named_in_json_terms(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "values.json"
    path.write_text("[42, null]")

    status, report = replay_json(capsys, path)

    assert status == 1
    assert [event["error"] for event in report["events"]] == [
        "event is a JSON number, not an object",
        "event is a JSON null, not an object",
    ]


def test_a_draft_policy_that_cannot_be_read_is_a_usage_error_before_anything_is_replayed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMEDIATION_POLICY_FILE", str(tmp_path / "draft.toml"))

    assert main(["replay", "--json", str(EVENTS_DIR / "config-s3-public-read.json")]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""  # nothing was replayed
    assert (
        f"REMEDIATION_POLICY_FILE: remediation policy {tmp_path / 'draft.toml'}: cannot read" in captured.err
    )


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
    assert "events kept: 0, events lost (neither forwarded nor kept): 0, queues unreadable: 0." in out


def test_the_demo_runs_in_an_organization_of_other_account_ids(capsys: pytest.CaptureFixture[str]) -> None:
    # The samples name the default governance and management accounts; the demo moves them over.
    status = main(
        ["demo", "--quiet", "--governance-account", "555555555555", "--management-account", "888888888888"]
    )
    out = capsys.readouterr().out
    assert status == 0, out[-4000:]
    assert "governance account 555555555555, management account 888888888888" in out
    assert "Every event had its expected outcome" in out
    assert "111111111111" not in out and "999999999999" not in out


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


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["ledger", "--subject", "x"], "no ledger table: pass --table or --stack-name"),
        (["redrive", "--dry-run"], "no queue: pass --queue-url or --stack-name"),
        (
            ["rebaseline", "--dry-run"],
            "no inventory or workflow: pass --stack-name, or --table and --state-machine-arn",
        ),
        (
            ["enroll", "--organizations-profile", "management", "--dry-run"],
            "no inventory or workflow: pass --stack-name, or --table and --state-machine-arn",
        ),
    ],
    ids=["ledger", "redrive", "rebaseline", "enroll"],
)
def test_an_operator_command_without_its_target_is_a_usage_error_even_without_credentials(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    said: str,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))

    assert main(command) == 2
    assert capsys.readouterr().err.strip() == f"govern: {said}"


def paste(monkeypatch: pytest.MonkeyPatch, text: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text), encoding="utf-8"))


def test_an_event_pasted_on_standard_input_is_replayed_with_the_files_in_order(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pasted = read_event("config-s3-public-read")
    paste(monkeypatch, b"\xef\xbb\xbf" + json.dumps(pasted, indent=2).encode())

    status = main(["replay", str(EVENTS_DIR / "config-compliant.json"), "-"])

    out = capsys.readouterr().out
    assert status == 0
    assert out.index("1. config-compliant.json:") < out.index("2. stdin: s3-bucket-public-read-prohibited")
    assert "remediate done -> arn:aws:s3:::team-churn-public-data [verified]" in out


@pytest.mark.parametrize(
    ("arguments", "text", "said"),
    [
        (["-"], b"", "stdin: empty file, expected a JSON event"),
        (["-"], b'{"id":', "stdin: not JSON (line 1, column 7: Expecting value)"),
        (["-", "-"], b"{}", "-: standard input can be read once"),
    ],
    ids=["empty", "not-json", "twice"],
)
def test_standard_input_that_cannot_be_replayed_is_a_one_line_usage_error(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    text: bytes,
    said: str,
) -> None:
    paste(monkeypatch, text)
    assert main(["replay", *arguments]) == 2
    assert capsys.readouterr().err == f"govern: {said}\n"
