"""What 10,000 events of each kind cost a month in AWS: the calls each event really makes (counted while
replaying the sample event through the emulated backbone) priced at AWS list prices."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# AWS list prices, US East (N. Virginia), as found in the documentation search on 2026-11-26
# (aws.amazon.com/lambda/pricing, /step-functions/pricing, /sqs/pricing, /sns/pricing,
# /dynamodb/pricing/on-demand). Free tiers are ignored: the table shows the marginal cost.
PRICES = {
    "lambda_arm64_gb_second": 0.0000133334,  # first 7.5 billion GB-s a month
    "lambda_request": 0.20 / 1_000_000,
    "sfn_standard_transition": 0.025 / 1_000,
    "sqs_standard_request": 0.40 / 1_000_000,  # per 64 KB chunk; every event here is one chunk
    "sns_publish": 0.50 / 1_000_000,
    "dynamodb_write_request_unit": 0.625 / 1_000_000,  # on-demand, after the November 2024 price cut
    "dynamodb_read_request_unit": 0.125 / 1_000_000,
}
PRICES_AS_OF = "2026-11-26"
EVENTS_PER_MONTH = 10_000

# Billed duration of an invocation is modelled, not measured (the emulation's timings are not AWS's):
# a fixed part for the handler's own work plus a round trip per AWS call it makes.
MODEL_BASE_MS = 100
MODEL_MS_PER_AWS_CALL = 30

KINDS = {
    "config non-compliance (remediated)": "config-s3-public-read",
    "model approved in a team account (replicated)": "model-approved-in-team-account",
    "model approved in the central registry (deployed)": "model-approved-in-central-registry",
    "account created (baselined)": "account-created",
}

_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
_READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}


@dataclass
class Invocation:
    function: str
    memory_mb: int
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    dynamodb_tables: list[tuple[str, str]] = field(default_factory=list)  # (operation, table)

    @property
    def aws_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def modelled_ms(self) -> int:
        return MODEL_BASE_MS + MODEL_MS_PER_AWS_CALL * self.aws_calls


@dataclass
class EventProfile:
    kind: str
    sample: str
    outcome: str
    invocations: list[Invocation]
    transitions: int
    sqs_deliveries: int  # events EventBridge put on a queue (then received and deleted by Lambda)
    gsi_count: dict[str, int]

    def usage(self) -> dict[str, float]:
        """What one event uses of each priced unit."""
        calls: Counter[tuple[str, str]] = Counter()
        for invocation in self.invocations:
            calls.update(invocation.calls)
        writes = reads = 0.0
        for invocation in self.invocations:
            for operation, table in invocation.dynamodb_tables:
                if operation in _WRITES:
                    # A write also writes every global secondary index that projects the item.
                    writes += 1 + self.gsi_count.get(table, 0)
                elif operation in _READS:
                    reads += 1
        sqs_by_handlers = sum(n for (service, _), n in calls.items() if service == "sqs")
        return {
            "lambda_requests": len(self.invocations),
            "lambda_gb_seconds": sum(i.memory_mb / 1024 * i.modelled_ms / 1000 for i in self.invocations),
            "sfn_transitions": self.transitions,
            # EventBridge's SendMessage, the event source's ReceiveMessage and DeleteMessage: counted once
            # each per event, an upper bound (the event source receives and deletes in batches of 10).
            "sqs_requests": sqs_by_handlers + 3 * self.sqs_deliveries,
            "sns_publishes": sum(
                n for (service, op), n in calls.items() if service == "sns" and op == "Publish"
            ),
            "dynamodb_wru": writes,
            "dynamodb_rru": reads,
        }

    def monthly_cost(self) -> dict[str, float]:
        use = self.usage()
        cost = {
            "lambda": use["lambda_requests"] * PRICES["lambda_request"]
            + use["lambda_gb_seconds"] * PRICES["lambda_arm64_gb_second"],
            "step_functions": use["sfn_transitions"] * PRICES["sfn_standard_transition"],
            "sqs": use["sqs_requests"] * PRICES["sqs_standard_request"],
            "sns": use["sns_publishes"] * PRICES["sns_publish"],
            "dynamodb": use["dynamodb_wru"] * PRICES["dynamodb_write_request_unit"]
            + use["dynamodb_rru"] * PRICES["dynamodb_read_request_unit"],
        }
        monthly = {service: value * EVENTS_PER_MONTH for service, value in cost.items()}
        monthly["total"] = sum(monthly.values())
        return monthly


FORMULA = (
    f"per {EVENTS_PER_MONTH:,} events a month = {EVENTS_PER_MONTH:,} x ("
    "Lambda requests x $0.20/M + sum(MemorySize GB x modelled seconds) x $0.0000133334/GB-s"
    " + Step Functions states entered x $0.025/1000"
    " + SQS requests x $0.40/M + SNS publishes x $0.50/M"
    " + DynamoDB writes x (1 + GSIs) x $0.625/M WRU + reads x $0.125/M RRU); "
    f"modelled seconds = ({MODEL_BASE_MS} ms + {MODEL_MS_PER_AWS_CALL} ms x AWS calls of the invocation)"
    " / 1000"
)


class _Recorder:
    """Counts the AWS calls made by handler code (not by the emulation around it), per invocation."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.invocations: list[Invocation] = []

    @contextlib.contextmanager
    def installed(self, org: Any) -> Iterator[None]:
        from botocore.client import BaseClient

        recorder = self
        original_call = BaseClient._make_api_call  # type: ignore[attr-defined]
        original_invoke = type(org)._invoke

        def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            current: Invocation | None = getattr(recorder.local, "invocation", None)
            if current is not None:
                service = client.meta.service_model.service_name
                current.calls[(service, operation)] += 1
                if service == "dynamodb" and "TableName" in params:
                    current.dynamodb_tables.append((operation, str(params["TableName"])))
            return original_call(client, operation, params)

        def invoke(self: Any, function: Any, payload: Any) -> Any:
            invocation = Invocation(function.logical_id, function.memory)
            previous = getattr(recorder.local, "invocation", None)
            recorder.local.invocation = invocation
            try:
                return original_invoke(self, function, payload)
            finally:
                recorder.local.invocation = previous
                with recorder.lock:
                    recorder.invocations.append(invocation)

        BaseClient._make_api_call = make_api_call  # type: ignore[attr-defined]
        type(org)._invoke = invoke
        try:
            yield
        finally:
            BaseClient._make_api_call = original_call  # type: ignore[attr-defined]
            type(org)._invoke = original_invoke

    def take(self) -> list[Invocation]:
        with self.lock:
            taken, self.invocations = self.invocations, []
        return taken


def _table_gsi_counts(org: Any) -> dict[str, int]:
    dynamodb = org.session().client("dynamodb")
    counts = {}
    for name in dynamodb.list_tables()["TableNames"]:
        described = dynamodb.describe_table(TableName=name)["Table"]
        counts[name] = len(described.get("GlobalSecondaryIndexes", []))
    return counts


def _states_entered(org: Any, execution_arns: list[str]) -> int:
    sfn = org.session().client("stepfunctions")
    entered = 0
    for arn in execution_arns:
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
            entered += sum(1 for event in page["events"] if event["type"].endswith("StateEntered"))
    return entered


def profile_events() -> list[EventProfile]:
    """Replay each sample kind once, sequentially, recording what its handlers call."""
    from govern.emulator import Organization

    profiles = []
    recorder = _Recorder()
    with contextlib.redirect_stdout(sys.stderr), Organization() as org, recorder.installed(org):
        gsi_counts = _table_gsi_counts(org)
        for kind, sample in KINDS.items():
            event = json.loads((ROOT / "events" / f"{sample}.json").read_text(encoding="utf-8"))
            machines = list(org.state_machines)
            before = {m: {e["executionArn"] for e in org.executions(m)} for m in machines}
            recorder.take()
            [result] = org.replay([event])
            executions = [
                e["executionArn"]
                for m in machines
                for e in org.executions(m)
                if e["executionArn"] not in before[m]
            ]
            sqs_targets = sum(
                1 for rule in org.matching_rules(event) for target in rule.targets if target.kind == "sqs"
            )
            profiles.append(
                EventProfile(
                    kind=kind,
                    sample=sample,
                    outcome=result.outcome,
                    invocations=recorder.take(),
                    transitions=_states_entered(org, executions),
                    sqs_deliveries=sqs_targets,
                    gsi_count=gsi_counts,
                )
            )
    return profiles


def cost_table(profiles: list[EventProfile]) -> list[dict[str, Any]]:
    rows = []
    for profile in profiles:
        rows.append(
            {
                "kind": profile.kind,
                "sample": profile.sample,
                "outcome_offline": profile.outcome,
                "per_event": {key: round(value, 6) for key, value in profile.usage().items()},
                "monthly_usd_per_10k_events": {k: round(v, 4) for k, v in profile.monthly_cost().items()},
            }
        )
    return rows
