"""Replay throughput: Config non-compliance events through the whole local path (rule, queue, function,
emulated AWS, notification, ledger), and the memory that takes. `python -m bench.replay --events N`."""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import resource
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "events" / "config-s3-public-read.json"
# Team accounts the events alternate between (the emulation's member accounts).
ACCOUNTS = ("210987654321", "222222222222")
RESULT_MARKER = "BENCH_RESULT "
# The per-account hourly cap would turn most of thousands of events into notify-only decisions;
# the benchmark measures the full remediation path, so the cap is lifted.
ENVIRONMENT = {"MAX_ACTIONS_PER_ACCOUNT_PER_HOUR": "1000000000"}


def config_events(count: int) -> list[dict[str, Any]]:
    """`count` distinct NON_COMPLIANT evaluations of s3-bucket-public-read-prohibited, each on its own
    bucket, with its own event id and ordering timestamp, from the sample event's shape."""
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))
    start = datetime(2026, 11, 12, 9, 0, 0)
    events = []
    for number in range(count):
        event = copy.deepcopy(sample)
        account = ACCOUNTS[number % len(ACCOUNTS)]
        bucket = f"bench-public-data-{number:05d}"
        moment = start + timedelta(seconds=number)
        event["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/config/{number}"))
        event["account"] = account
        event["time"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        detail = event["detail"]
        detail["resourceId"] = bucket
        detail["awsAccountId"] = account
        detail["configRuleARN"] = detail["configRuleARN"].replace("210987654321", account)
        result = detail["newEvaluationResult"]
        result["evaluationResultIdentifier"]["evaluationResultQualifier"]["resourceId"] = bucket
        result["evaluationResultIdentifier"]["orderingTimestamp"] = moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        detail["oldEvaluationResult"]["evaluationResultIdentifier"]["evaluationResultQualifier"][
            "resourceId"
        ] = bucket
        events.append(event)
    return events


def run_in_process(count: int) -> dict[str, Any]:
    """Seed `count` buckets, then replay the events concurrently (sequential=False) and time only that."""
    from govern.emulator import Organization

    events = config_events(count)
    with contextlib.redirect_stdout(sys.stderr), Organization(env_overrides=ENVIRONMENT) as org:
        seed_started = time.perf_counter()
        for event in events:
            org.seed(event)
        seed_seconds = time.perf_counter() - seed_started
        started = time.perf_counter()
        results = org.replay(events, seed=False, sequential=False)
        elapsed = time.perf_counter() - started
    outcomes = Counter(result.outcome for result in results)
    unverified = sum(1 for result in results for action in result.actions if not action.verified)
    return {
        "events": count,
        "seconds": elapsed,
        "events_per_s": count / elapsed,
        "seed_seconds": seed_seconds,
        "outcomes": dict(outcomes),
        "unverified_actions": unverified,
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_in_subprocess(count: int) -> dict[str, Any]:
    """One replay in a fresh interpreter, so its peak memory is its own."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.replay", "--events", str(count)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if completed.returncode != 0 or not lines:
        tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"replay of {count} events failed (exit {completed.returncode}):\n{tail}")
    measured: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARKER) :])
    # Cross-check from the parent: the largest resident set of any child waited for so far.
    measured["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args(argv)
    print(RESULT_MARKER + json.dumps(run_in_process(args.events)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
