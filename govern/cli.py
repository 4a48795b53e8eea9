"""`govern`: run the governance backbone offline on its embedded AWS emulation."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from govern.emulator import (
    DEFAULT_GOVERNANCE_ACCOUNT,
    DEFAULT_MANAGEMENT_ACCOUNT,
    PROJECT_ROOT,
    EventResult,
    Organization,
    json_kind,
)
from governance.remediation.policy import POLICY_FILE_VARIABLE, PolicyError, current_policy

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EVENTS_DIR = PROJECT_ROOT / "events"
EXPECTED_OUTCOMES = EVENTS_DIR / "expected-outcomes.json"
# The demo tells the story in the order an organization lives it.
_STORY_ORDER = (
    # An account's life: vended (or not), updated, then accounts leaving the organization.
    "account-created",
    "account-creation-failed",
    "account-updated",
    "account-",
    "model-approved-in-team",
    "model-approved-missing",
    "model-",
    "config-",
    "malformed-",
)


class UsageError(Exception):
    """The command line or an input file is wrong; exit status 2."""


STDIN = Path("-")


def read_events(path: Path) -> list[Any]:
    """A file (or `-`, standard input: a pasted event, or a pipe) holds one event, a JSON array of events,
    or JSON Lines (one event per line). UTF-8, with or without a byte-order mark (as Windows editors save
    it)."""
    try:
        if path == STDIN:
            path = Path("stdin")
            text = sys.stdin.buffer.read().decode("utf-8-sig")
        else:
            text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise UsageError(
            f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start}); "
            "save it as UTF-8"
        ) from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read ({error.strerror})") from None
    if not text.strip():
        raise UsageError(f"{path}: empty file, expected a JSON event")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as whole_error:
        lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
        if len(lines) == 1 or sum(_is_object(line) for _, line in lines) * 2 < len(lines):
            # One document spread over lines (an indented event), not JSON Lines (mostly one event per
            # line): the mistake is where the whole text stops parsing, not on its first line.
            where = f"line {whole_error.lineno}, column {whole_error.colno}: {whole_error.msg}"
            raise UsageError(f"{path}: not JSON ({where})") from None
        events = []
        for number, line in lines:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError as error:
                shown = repr(line[:40]) + ("..." if len(line) > 40 else "")
                raise UsageError(
                    f"{path}:{number}: not a JSON event ({error.msg} at column {error.colno}: {shown})"
                ) from None
        return events
    if document == []:
        raise UsageError(f"{path}: no events (an empty JSON array)")
    return document if isinstance(document, list) else [document]


def _is_object(line: str) -> bool:
    """The line alone is a JSON object: a line of JSON Lines, not a piece of an indented document."""
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def describe_event(event: Any) -> str:
    """One line a human reads: what happened, where."""
    if not isinstance(event, dict):
        return f"not an event (JSON {json_kind(event)})"
    detail: dict[str, Any] = event["detail"] if isinstance(event.get("detail"), dict) else {}
    account = event.get("account", "?")
    source = event.get("source")
    if source == "aws.sagemaker":
        return (
            f"model {detail.get('ModelPackageGroupName', '?')} v{detail.get('ModelPackageVersion', '?')} "
            f"{detail.get('ModelApprovalStatus', '?')} in {account}"
        )
    if source == "aws.config":
        result = detail.get("newEvaluationResult") or {}
        return (
            f"{detail.get('configRuleName', '?')}: {result.get('complianceType', '?')} "
            f"{detail.get('resourceType', '?')} {detail.get('resourceId', '?')} "
            f"in {detail.get('awsAccountId', account)}"
        )
    if source == "aws.controltower":
        details = detail.get("serviceEventDetails") or {}
        status = details.get("createManagedAccountStatus") or details.get("updateManagedAccountStatus") or {}
        managed = status.get("account") or {}
        unit = status.get("organizationalUnit") or {}
        return (
            f"{detail.get('eventName', '?')} {status.get('state', '?')}: account "
            f"{managed.get('accountId') or '-'} ({managed.get('accountName', '?')}) in OU "
            f"{unit.get('organizationalUnitName', '?')}"
        )
    if source == "aws.organizations":
        parameters = detail.get("requestParameters") or {}
        refused = f" refused ({detail['errorCode']})" if detail.get("errorCode") else ""
        return (
            f"{detail.get('eventName', '?')}{refused}: account {parameters.get('accountId', '?')}, "
            f"called in {account}"
        )
    return f"{source} / {event.get('detail-type')} in {account}"


def summarize(results: list[EventResult]) -> dict[str, int]:
    summary = {"events": len(results), "succeeded": 0, "failed": 0, "ignored": 0, "dead_lettered": 0}
    for result in results:
        summary[result.outcome.replace("-", "_")] += 1
    return summary


def exit_status(results: list[EventResult]) -> int:
    return EXIT_FAILED if any(r.outcome in ("failed", "dead-lettered") for r in results) else EXIT_OK


_MARKS = {"succeeded": "✓", "ignored": "·", "failed": "✗", "dead-lettered": "⚠"}


def print_story(results: list[EventResult], events: list[Any], labels: list[str], out: TextIO) -> None:
    for number, (result, event, label) in enumerate(zip(results, events, labels, strict=True), start=1):
        print(f"\n{number}. {label}: {describe_event(event)}", file=out)
        rules = ", ".join(result.rules) if result.rules else "no rule matched"
        print(f"   {_MARKS.get(result.outcome, '?')} {result.outcome}  (rules: {rules})", file=out)
        for action in result.actions:
            check = "verified" if action.verified else "NOT verified"
            print(f"     - {action.type} {action.status} -> {action.target} [{check}]", file=out)
            subject = action.detail.get("subject") if action.type == "notify" else None
            if subject:
                print(f'         "{subject}"', file=out)
        if result.error:
            print(f"   error: {result.error}", file=out)


@contextlib.contextmanager
def _handler_output(quiet: bool) -> Iterator[None]:
    """Handlers log to stdout as in Lambda; keep stdout for the report: their logs go to stderr, or
    nowhere with --quiet."""
    if not quiet:
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    with open(os.devnull, "w", encoding="utf-8") as discard, contextlib.redirect_stdout(discard):
        yield


def _progress_printer(stream: TextIO) -> Any:
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        if total >= 20 and (done == total or done % max(1, total // 100) == 0):
            stream.write(f"\rreplaying: {done}/{total} events ({done * 100 // total}%)")
            if done == total:
                stream.write("\n")
            stream.flush()

    return show


def check_policy_file() -> None:
    """A draft policy given in REMEDIATION_POLICY_FILE (docs/security-teams.md, "Previewing a policy") is
    read and validated before anything is replayed: a missing or invalid one is a usage error, not a
    dead-lettered evaluation per event."""
    if not os.environ.get(POLICY_FILE_VARIABLE):
        return
    try:
        current_policy()
    except PolicyError as error:
        raise UsageError(f"{POLICY_FILE_VARIABLE}: {error}") from None


def run_replay(args: argparse.Namespace) -> int:
    events: list[Any] = []
    labels: list[str] = []
    if args.files.count("-") > 1:
        raise UsageError("-: standard input can be read once")
    for name in args.files:
        loaded = read_events(Path(name))
        events.extend(loaded)
        labels.extend([Path(name).name if name != "-" else "stdin"] * len(loaded))
    check_policy_file()
    with _handler_output(args.quiet), Organization(args.governance_account, args.management_account) as org:
        results = org.replay(events, progress=_progress_printer(sys.stderr))
    if args.json:
        document = {"events": [result.to_json() for result in results], "summary": summarize(results)}
        print(json.dumps(document, indent=2))
    else:
        print_story(results, events, labels, sys.stdout)
        print(f"\nsummary: {json.dumps(summarize(results))}")
    return exit_status(results)


def demo_files() -> list[Path]:
    files = sorted(EVENTS_DIR.glob("*.json"))
    files = [path for path in files if path != EXPECTED_OUTCOMES]

    def story_rank(path: Path) -> tuple[int, str]:
        rank = next(
            (i for i, prefix in enumerate(_STORY_ORDER) if path.name.startswith(prefix)), len(_STORY_ORDER)
        )
        return rank, path.name

    return sorted(files, key=story_rank)


def in_organization(event: Any, governance: str, management: str) -> Any:
    """A sample event as the organization of --governance-account and --management-account would send
    it: the samples are written for the default accounts."""
    text = json.dumps(event)
    for default, chosen in (
        (DEFAULT_GOVERNANCE_ACCOUNT, governance),
        (DEFAULT_MANAGEMENT_ACCOUNT, management),
    ):
        text = text.replace(default, chosen)
    return json.loads(text)


def run_demo(args: argparse.Namespace) -> int:
    files = demo_files()
    events = [
        in_organization(event, args.governance_account, args.management_account)
        for path in files
        for event in read_events(path)[:1]
    ]
    expected: dict[str, str] = json.loads(EXPECTED_OUTCOMES.read_text()) if EXPECTED_OUTCOMES.exists() else {}
    out = sys.stdout
    print(
        "ML governance backbone - offline demo\n"
        f"Emulated organization: governance account {args.governance_account}, management account "
        f"{args.management_account}; every other account is a team account.\n"
        f"Replaying the {len(files)} sample events of events/ through the rules of template.yaml, the state "
        "machines of statemachines/ and the real Lambda handlers, on moto.",
        file=out,
    )
    with _handler_output(args.quiet), Organization(args.governance_account, args.management_account) as org:
        results = org.replay(events)
        watched = org.run_scheduled("WatchForwardingFunction")
    print_story(results, events, [path.name for path in files], out)
    summary = summarize(results)
    print(f"\nsummary: {json.dumps(summary)}", file=out)
    queues = watched["queues"]
    print(
        "\nForwarding watch (WatchForwardingFunction, every 15 minutes when deployed): read "
        f"{queues} forwarding dead-letter queue{'' if queues == 1 else 's'} of the registered accounts "
        f"through GovernanceExecutionRole; events kept: {watched['dead_letters']}, events lost (neither "
        f"forwarded nor kept): {watched['events_lost']}, queues unreadable: {len(watched['unreadable'])}.",
        file=out,
    )
    surprises = [
        f"{path.name}: expected {expected[path.name]}, got {result.outcome}"
        for path, result in zip(files, results, strict=True)
        if path.name in expected and expected[path.name] != result.outcome
    ]
    unverified = [
        f"{path.name}: {action.type} {action.status} on {action.target} not verified"
        for path, result in zip(files, results, strict=True)
        for action in result.actions
        if not action.verified
    ]
    # Offline nothing fails to reach the bus, and every baselined account has its queues.
    surprises += [
        f"forwarding watch: {json.dumps(item)}" for item in watched["keeping"] + watched["unreadable"]
    ]
    if not watched["queues"]:
        surprises.append("forwarding watch: no queue read, though accounts were baselined")
    if surprises or unverified:
        print("\nThe demo did not go as the sample events expect:", file=out)
        for line in surprises + unverified:
            print(f"  - {line}", file=out)
        return EXIT_FAILED
    print(
        "\nEvery event had its expected outcome and every action was read back from the emulated "
        "accounts. Failed and dead-lettered events above are the negative samples, handled as designed.",
        file=out,
    )
    return EXIT_OK


# ---------------------------------------------------------------- operations on the deployed backbone


def _print_ledger(entries: list[Any], out: TextIO) -> None:
    if not entries:
        print("no decisions recorded", file=out)
        return
    for entry in entries:
        print(
            f"{entry.recorded_at}  {entry.action:<16} {entry.status:<11} {entry.target}  "
            f"(event {entry.event_id}, flow {entry.flow}, account {entry.account})",
            file=out,
        )
        summary = entry.detail.get("subject") or entry.detail.get("error") or entry.detail.get("summary")
        if summary:
            print(f"    {summary}", file=out)


def _summary(total: str, results: list[Any], statuses: tuple[str, ...]) -> dict[str, int]:
    """{total: how many results, then how many have each status}; `would-move` is counted as `would_move`."""
    summary = {total: len(results)}
    summary.update(
        {status.replace("-", "_"): sum(r.status == status for r in results) for status in statuses}
    )
    return summary


def _given_or_stack_output(args: argparse.Namespace, given: str | None, output: str) -> str:
    """The value passed on the command line, else the stack's output `output` (with --stack-name), else ""."""
    from govern import operations

    if given:
        return given
    return operations.stack_output(args.stack_name, output) if args.stack_name else ""


def run_ledger(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from govern import operations

    # Said before any AWS call: without credentials, the call would hide the usage error behind its own.
    if not args.table and not args.stack_name:
        raise UsageError("no ledger table: pass --table or --stack-name")
    with operations.governance_account(region=args.region):
        table = _given_or_stack_output(args, args.table, operations.LEDGER_TABLE_OUTPUT)
    if not table:
        raise UsageError("no ledger table: pass --table or --stack-name")
    entries = operations.ledger_listing(
        subject=args.subject, account=args.account, event_id=args.event_id, table=table, region=args.region
    )
    if args.json:
        print(json.dumps({"table": table, "entries": [asdict(entry) for entry in entries]}, indent=2))
    else:
        _print_ledger(entries, sys.stdout)
    return EXIT_OK


def run_redrive(args: argparse.Namespace) -> int:
    from govern import operations

    if not args.queue_url and not args.stack_name:
        raise UsageError("no queue: pass --queue-url or --stack-name")
    with operations.governance_account(region=args.region):
        queue_url = _given_or_stack_output(args, args.queue_url, operations.QUEUE_OUTPUTS[args.queue])
        entry_points = operations.flow_entry_points(args.stack_name) if args.stack_name else {}
        ledger_table = _given_or_stack_output(args, args.table, operations.LEDGER_TABLE_OUTPUT)
    if not queue_url:
        raise UsageError("no queue: pass --queue-url or --stack-name")
    queue_session = None
    if args.queue_profile:
        import boto3

        queue_session = boto3.Session(profile_name=args.queue_profile)
    results = operations.redrive(
        queue_url,
        args.dry_run,
        entry_points=entry_points,
        region=args.region,
        queue_session=queue_session,
        ledger_table=ledger_table or None,
    )
    summary = _summary("messages", results, ("moved", "would-move", "left"))
    if args.json:
        print(
            json.dumps(
                {
                    "queue_url": queue_url,
                    "dry_run": args.dry_run,
                    "messages": [r.to_json() for r in results],
                    "summary": summary,
                },
                indent=2,
            )
        )
    else:
        for result in results:
            where = result.destination or "(unknown)"
            print(f"{result.status:<10} event {result.event_id or '?'} -> {where}", file=sys.stdout)
            if result.why_dead_lettered:
                print(f"    dead-lettered because: {result.why_dead_lettered}", file=sys.stdout)
            if result.note:
                print(f"    {result.note}", file=sys.stdout)
        print(f"summary: {json.dumps(summary)}", file=sys.stdout)
    # A dry run fails nothing; a redrive that had to leave messages behind exits 1.
    return EXIT_FAILED if not args.dry_run and summary["left"] else EXIT_OK


def run_baselines(args: argparse.Namespace) -> int:
    """govern rebaseline and govern enroll: start the AccountBaseline workflow for accounts."""
    import boto3

    from govern import operations

    if not args.stack_name and not (args.table and args.state_machine_arn):
        raise UsageError("no inventory or workflow: pass --stack-name, or --table and --state-machine-arn")
    with operations.governance_account(region=args.region):
        table = _given_or_stack_output(args, args.table, operations.INVENTORY_TABLE_OUTPUT)
        machine = args.state_machine_arn or (
            operations.flow_entry_points(args.stack_name).get("account-baseline", "")
            if args.stack_name
            else ""
        )
        ou_map = ""
        regions = getattr(args, "baseline_regions", None)
        if args.command == "rebaseline" and regions is None and args.stack_name:
            regions = operations.stack_parameter(args.stack_name, "BaselineRegions")
        if args.command == "enroll":
            ou_map = args.ou_environment_map or (
                operations.stack_parameter(args.stack_name, "OuEnvironmentMap") if args.stack_name else ""
            )
    if not table or not machine:
        raise UsageError("no inventory or workflow: pass --stack-name, or --table and --state-machine-arn")
    if args.command == "rebaseline":
        results = operations.rebaseline(
            machine, args.dry_run, inventory_table=table, region=args.region, baseline_regions=regions
        )
    else:
        if not ou_map:
            raise UsageError("no OU map: pass --stack-name or --ou-environment-map")
        results = operations.enroll(
            machine,
            args.dry_run,
            inventory_table=table,
            ou_environment_map=ou_map,
            organizations_session=boto3.Session(profile_name=args.organizations_profile),
            region=args.region,
        )
    summary = _summary("accounts", results, ("started", "would-start", "failed"))
    if args.json:
        document = {"dry_run": args.dry_run, "accounts": [r.to_json() for r in results], "summary": summary}
        print(json.dumps(document, indent=2))
    else:
        for result in results:
            where = f" ({result.ou_name})" if result.ou_name else ""
            after = result.to_version if result.change == "baseline" else f"left, {result.change}"
            print(
                f"{result.status:<11} {result.account_id} {result.account_name}{where}: "
                f"{result.from_version or 'not governed'} -> {after} {result.execution_arn}".rstrip()
            )
            if result.note:
                print(f"    {result.note}")
        print(f"summary: {json.dumps(summary)}")
    return EXIT_FAILED if summary["failed"] else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="govern", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--governance-account", default=DEFAULT_GOVERNANCE_ACCOUNT, metavar="ID")
    common.add_argument("--management-account", default=DEFAULT_MANAGEMENT_ACCOUNT, metavar="ID")
    common.add_argument(
        "--quiet", action="store_true", help="drop the handlers' JSON logs (by default printed on stderr)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", parents=[common], help="replay every event in events/ as a story")
    replay = commands.add_parser("replay", parents=[common], help="replay events from files")
    replay.add_argument("--json", action="store_true", help="print the machine-readable report")
    replay.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="one event, a JSON array, or JSON Lines; - reads standard input",
    )
    # Operations on the deployed backbone, in real AWS with the caller's credentials (governance account).
    deployed = argparse.ArgumentParser(add_help=False)
    deployed.add_argument(
        "--stack-name", metavar="NAME", help="the backbone stack: its outputs name the resources"
    )
    deployed.add_argument(
        "--region", metavar="REGION", help="the stack's Region (default: the AWS configuration's)"
    )
    deployed.add_argument("--json", action="store_true", help="print the machine-readable report")
    ledger = commands.add_parser(
        "ledger", parents=[deployed], help="list the decisions about a resource, an account or an event"
    )
    about = ledger.add_mutually_exclusive_group(required=True)
    about.add_argument("--subject", metavar="ARN_OR_ID", help="a resource, model version or account acted on")
    about.add_argument("--account", metavar="ID", help="every decision about anything in this account")
    about.add_argument("--event-id", metavar="ID", help="every decision taken because of this event")
    ledger.add_argument(
        "--table", metavar="NAME", help="the ledger table (default: the stack's LedgerTableName)"
    )
    redrive = commands.add_parser(
        "redrive", parents=[deployed], help="move dead-lettered events back to where they failed"
    )
    redrive.add_argument("--queue-url", metavar="URL", help="the dead-letter queue (default: from the stack)")
    redrive.add_argument(
        "--queue",
        choices=sorted(("events", "config-compliance")),
        default="events",
        help="with --stack-name: which of the stack's dead-letter queues (default: events)",
    )
    redrive.add_argument(
        "--queue-profile",
        metavar="PROFILE",
        help=(
            "AWS profile of the queue's account, for a member or management account's forwarding "
            "dead-letter queue (the events still go to the backbone with your governance credentials)"
        ),
    )
    redrive.add_argument(
        "--table",
        metavar="NAME",
        help="the ledger table, read for why each event was dead-lettered (default: the stack's "
        "LedgerTableName)",
    )
    redrive.add_argument("--dry-run", action="store_true", help="list what would move; move nothing")
    rebaseline = commands.add_parser(
        "rebaseline",
        parents=[deployed],
        help="apply this release's account baseline to every governed account on an older one, or baselined "
        "in other Regions than BaselineRegions",
    )
    rebaseline.add_argument(
        "--baseline-regions",
        metavar="REGIONS",
        help="the Regions the baseline covers now, comma-separated (default: the stack's BaselineRegions); "
        "accounts baselined in other Regions are re-baselined too",
    )
    enroll = commands.add_parser(
        "enroll",
        parents=[deployed],
        help="baseline and register the accounts of the ML OUs the inventory does not hold as governed, "
        "and deregister the governed accounts that are in no ML OU any more",
    )
    enroll.add_argument(
        "--organizations-profile",
        metavar="PROFILE",
        required=True,
        help="AWS profile that can list the organization (management account or delegated administrator)",
    )
    enroll.add_argument(
        "--ou-environment-map",
        metavar="MAP",
        help="OU-name=environment,... (default: the stack's OuEnvironmentMap)",
    )
    for command in (rebaseline, enroll):
        command.add_argument(
            "--table",
            metavar="NAME",
            help="the inventory table (default: the stack's AccountInventoryTableName)",
        )
        command.add_argument(
            "--state-machine-arn", metavar="ARN", help="AccountBaselineStateMachine (default: from the stack)"
        )
        command.add_argument("--dry-run", action="store_true", help="list the accounts; start nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("ledger", "redrive", "rebaseline", "enroll"):
        return _run_operation(args)
    for account in (args.governance_account, args.management_account):
        if not (account.isdigit() and len(account) == 12):
            parser.error(f"account id {account!r} is not 12 digits")
    try:
        return run_demo(args) if args.command == "demo" else run_replay(args)
    except UsageError as error:
        print(f"govern: {error}", file=sys.stderr)
        return EXIT_USAGE


def _run_operation(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from govern.operations import OperationError

    try:
        run = {"ledger": run_ledger, "redrive": run_redrive}.get(args.command, run_baselines)
        return run(args)
    except UsageError as error:
        print(f"govern: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (OperationError, ClientError, BotoCoreError) as error:
        print(f"govern {args.command}: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
