"""What 10,000 events of each kind cost a month in AWS: the calls each event really makes (counted while
replaying the sample event through the emulated backbone) priced at AWS list prices."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
    # aws.amazon.com/cloudwatch/pricing: API requests (GetMetricStatistics among them), first 1M free.
    "cloudwatch_api_request": 0.01 / 1_000,
}
# What the backbone costs a month whatever the traffic (aws.amazon.com/cloudwatch/pricing, /kms/pricing;
# first tiers, standard-resolution alarms). A custom metric is billed by the hour in which it gets data.
FIXED_PRICES = {
    "cloudwatch_alarm_metric_month": 0.10,
    "cloudwatch_dashboard_month": 3.00,
    "cloudwatch_custom_metric_month": 0.30,
    "kms_key_month": 1.00,
}
HOURS_PER_MONTH = 730
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
            "cloudwatch_requests": sum(n for (service, _), n in calls.items() if service == "cloudwatch"),
        }

    def monthly_cost(self) -> dict[str, float]:
        monthly = {service: value * EVENTS_PER_MONTH for service, value in priced(self.usage()).items()}
        monthly["total"] = sum(monthly.values())
        return monthly


def priced(use: dict[str, float]) -> dict[str, float]:
    """What `use` (EventProfile.usage's units) costs, per service, at PRICES."""
    return {
        "lambda": use["lambda_requests"] * PRICES["lambda_request"]
        + use["lambda_gb_seconds"] * PRICES["lambda_arm64_gb_second"],
        "step_functions": use["sfn_transitions"] * PRICES["sfn_standard_transition"],
        "sqs": use["sqs_requests"] * PRICES["sqs_standard_request"],
        "sns": use["sns_publishes"] * PRICES["sns_publish"],
        "dynamodb": use["dynamodb_wru"] * PRICES["dynamodb_write_request_unit"]
        + use["dynamodb_rru"] * PRICES["dynamodb_read_request_unit"],
        "cloudwatch": use.get("cloudwatch_requests", 0) * PRICES["cloudwatch_api_request"],
    }


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
        original_submit = ThreadPoolExecutor.submit

        def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            current: Invocation | None = getattr(recorder.local, "invocation", None)
            if current is not None:
                service = client.meta.service_model.service_name
                with recorder.lock:
                    current.calls[(service, operation)] += 1
                    if service == "dynamodb" and "TableName" in params:
                        current.dynamodb_tables.append((operation, str(params["TableName"])))
            return original_call(client, operation, params)

        def submit(executor: Any, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            # A handler's own worker threads (the forwarding watch reads accounts side by side) work for
            # the invocation that started them.
            invocation: Invocation | None = getattr(recorder.local, "invocation", None)
            if invocation is None:
                return original_submit(executor, fn, *args, **kwargs)

            def on_behalf(*inner_args: Any, **inner_kwargs: Any) -> Any:
                recorder.local.invocation = invocation
                try:
                    return fn(*inner_args, **inner_kwargs)
                finally:
                    recorder.local.invocation = None

            return original_submit(executor, on_behalf, *args, **kwargs)

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
        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
        try:
            yield
        finally:
            BaseClient._make_api_call = original_call  # type: ignore[attr-defined]
            type(org)._invoke = original_invoke
            ThreadPoolExecutor.submit = original_submit  # type: ignore[method-assign]

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


# ------------------------------------------------------------------------------- fixed monthly costs
TEMPLATES = {
    "governance account": ROOT / "template.yaml",
    "management account, per Region": ROOT / "templates" / "management-account.yaml",
    "member account, per Region": ROOT / "templates" / "member-account.yaml",
}
WATCHER = "WatchForwardingFunction"
_RATE_MINUTES = {"minute": 1, "minutes": 1, "hour": 60, "hours": 60, "day": 1440, "days": 1440}


def _alarm_metrics(properties: dict[str, Any]) -> int:
    """An alarm is billed per metric it watches: one, or each MetricStat of a metric-math alarm."""
    metrics = properties.get("Metrics")
    return sum(1 for query in metrics if "MetricStat" in query) if metrics else 1


def standing_resources(template: dict[str, Any]) -> dict[str, int]:
    resources = template.get("Resources") or {}
    by_type = Counter(resource["Type"] for resource in resources.values())
    return {
        "alarm_metrics": sum(
            _alarm_metrics(resource.get("Properties") or {})
            for resource in resources.values()
            if resource["Type"] == "AWS::CloudWatch::Alarm"
        ),
        "dashboards": by_type["AWS::CloudWatch::Dashboard"],
        "kms_keys": by_type["AWS::KMS::Key"],
    }


def _standing_monthly(counts: dict[str, int]) -> float:
    return (
        counts["alarm_metrics"] * FIXED_PRICES["cloudwatch_alarm_metric_month"]
        + counts["dashboards"] * FIXED_PRICES["cloudwatch_dashboard_month"]
        + counts["kms_keys"] * FIXED_PRICES["kms_key_month"]
        + counts.get("custom_metrics", 0) * FIXED_PRICES["cloudwatch_custom_metric_month"]
    )


def runs_per_month(schedule: str) -> int:
    """`rate(15 minutes)` -> 2,920 runs in a 730-hour month."""
    amount, unit = schedule.removeprefix("rate(").removesuffix(")").split()
    return int(HOURS_PER_MONTH * 60 / (int(amount) * _RATE_MINUTES[unit]))


def _watch_run(org: Any, recorder: _Recorder) -> tuple[int, dict[str, float]]:
    """One scheduled run of the forwarding watch: the queues it read, and what the run used."""
    recorder.take()
    summary = org.run_scheduled(WATCHER)
    [invocation] = recorder.take()
    profile = EventProfile(WATCHER, "schedule", "succeeded", [invocation], 0, 0, {})
    return int(summary["queues"]), profile.usage()


def fixed_costs() -> dict[str, Any]:
    """The standing resources of the three templates, and the forwarding watch's schedule, measured on
    the emulation with one governed account and with two: its cost per run and per account-Region."""
    from govern.emulator import Organization
    from govern.template import load_template
    from governance import metric_names

    rows: dict[str, dict[str, Any]] = {}
    for name, path in TEMPLATES.items():
        counts = standing_resources(load_template(path))
        if name == "governance account":
            # One metric per name: Powertools' only dimension is the service.
            counts["custom_metrics"] = len(metric_names.ALL | metric_names.FORWARDING)
        rows[name] = {**counts, "monthly_usd": round(_standing_monthly(counts), 2)}

    created = json.loads((ROOT / "events" / "account-created.json").read_text(encoding="utf-8"))
    second = json.loads(
        json.dumps(created)
        .replace("333333333333", "555555555555")
        .replace("ml-team-churn-dev", "ml-team-fraud-dev")
        .replace(created["id"], "8f1c2f0e-54b7-4f11-9a57-0b2b7f5a1d55")
    )
    recorder = _Recorder()
    with contextlib.redirect_stdout(sys.stderr), Organization() as org, recorder.installed(org):
        [(_, schedule)] = org.function_spec(WATCHER).schedules
        readings = []
        for event in (created, second):
            [result] = org.replay([event])
            if result.outcome != "succeeded":
                raise RuntimeError(f"cost: the account to watch was not baselined: {result.outcome}")
            readings.append(_watch_run(org, recorder))
    (queues_1, use_1), (queues_2, use_2) = readings
    if (queues_1, queues_2) != (1, 2):
        raise RuntimeError(f"cost: the watch read {queues_1} then {queues_2} queues, not 1 then 2")
    per_queue = {unit: use_2[unit] - use_1[unit] for unit in use_1}
    base = {unit: use_1[unit] - per_queue[unit] for unit in use_1}
    runs = runs_per_month(schedule)

    def monthly(use: dict[str, float]) -> float:
        return runs * sum(priced(use).values())

    rows["forwarding watch"] = {
        "schedule": schedule,
        "runs_per_month": runs,
        "per_run": {key: round(value, 6) for key, value in base.items()},
        "per_account_region_per_run": {key: round(value, 6) for key, value in per_queue.items()},
        "monthly_usd": round(monthly(base), 4),
        "monthly_usd_per_account_region": round(monthly(per_queue), 4),
    }
    return rows


FIXED_FORMULA = (
    "a month = alarm metrics x $0.10 + dashboards x $3.00 + KMS keys x $1.00 + custom metrics x $0.30"
    f" (each billed only in hours it gets data); forwarding watch = runs a month ({HOURS_PER_MONTH} h /"
    " its rate) x (Lambda request + GB-s + SQS requests + DynamoDB reads + CloudWatch GetMetricStatistics"
    " requests x $0.01/1000 of one run, priced as above),"
    " measured with one governed account and with two"
)
