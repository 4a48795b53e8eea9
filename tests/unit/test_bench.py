"""The benchmark measures what it says: distinct valid events, every function with its real environment,
and a cost model that counts index writes and prices each unit once."""

from __future__ import annotations

import importlib.util
import platform
import shutil
import subprocess
import sys
from collections import Counter
from importlib import metadata
from pathlib import Path

import pytest

from bench import cost
from bench.__main__ import main as bench_main
from bench.cold_start import (
    Deployed,
    bytecode_problems,
    deploy,
    describe_interpreter,
    functions_of_template,
    lambda_like_environment,
)
from bench.replay import config_events
from govern.template import load_template
from governance.events import parse_event
from governance.events.config import ConfigComplianceChange
from tests.conftest import EVENTS_DIR, files_under, read_event


def test_replay_events_are_distinct_valid_non_compliance_evaluations() -> None:
    events = config_events(25)
    parsed = [parse_event(event, ConfigComplianceChange) for event in events]
    assert len({event["id"] for event in events}) == 25
    assert len({change.detail.resourceId for change in parsed}) == 25
    stamps = [
        change.detail.newEvaluationResult.evaluationResultIdentifier.orderingTimestamp for change in parsed
    ]
    assert len(set(stamps)) == 25
    for event, change in zip(events, parsed, strict=True):
        qualifier = change.detail.newEvaluationResult.evaluationResultIdentifier.evaluationResultQualifier
        assert qualifier.resourceId == change.detail.resourceId
        assert change.detail.awsAccountId == event["account"]
        assert change.detail.newEvaluationResult.complianceType == "NON_COMPLIANT"
    # The sample itself is untouched, and the generated events keep its shape.
    sample = read_event("config-s3-public-read")
    assert set(events[0]) == set(sample) and set(events[0]["detail"]) == set(sample["detail"])


def test_cold_start_covers_every_function_with_its_environment(tmp_path: Path) -> None:
    template = load_template(EVENTS_DIR.parent / "template.yaml")
    expected = {lid for lid, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    functions = functions_of_template()
    assert {f.logical_id for f in functions} == expected
    deployed = Deployed(
        layer=tmp_path / "layer", task_roots={f.logical_id: tmp_path / f.logical_id for f in functions}
    )
    for function in functions:
        assert (function.code_dir / f"{function.module}.py").exists()
        environment = lambda_like_environment(function, deployed)
        assert environment["POWERTOOLS_METRICS_NAMESPACE"] == "MLGovernance"
        assert environment["LEDGER_TABLE"].startswith("bench-")
        assert environment["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == str(function.memory_mb)
        assert all(isinstance(value, str) and "Fn::" not in value for value in environment.values())


def test_cost_counts_index_writes_and_prices_each_unit() -> None:
    invocation = cost.Invocation("RemediateConfigFunction", 512)
    invocation.calls.update(
        {("dynamodb", "PutItem"): 2, ("sns", "Publish"): 1, ("s3", "PutPublicAccessBlock"): 1}
    )
    invocation.dynamodb_tables += [("PutItem", "ledger"), ("PutItem", "idempotency"), ("GetItem", "ledger")]
    profile = cost.EventProfile(
        kind="k",
        sample="s",
        outcome="succeeded",
        invocations=[invocation],
        transitions=4,
        sqs_deliveries=1,
        gsi_count={"ledger": 2, "idempotency": 0},
    )
    usage = profile.usage()
    assert usage["dynamodb_wru"] == 3 + 1
    assert usage["dynamodb_rru"] == 1
    assert usage["sns_publishes"] == 1
    assert usage["sqs_requests"] == 3
    assert usage["lambda_gb_seconds"] == pytest.approx(0.5 * (100 + 30 * 4) / 1000)
    monthly = profile.monthly_cost()
    assert monthly["step_functions"] == pytest.approx(4 * 0.025 / 1000 * 10_000)
    assert monthly["total"] == pytest.approx(sum(v for k, v in monthly.items() if k != "total"))
    assert Counter(invocation.calls)[("dynamodb", "PutItem")] == 2


def test_a_month_of_a_schedule_and_an_alarm_s_metrics() -> None:
    assert cost.runs_per_month("rate(15 minutes)") == 2920
    assert cost.runs_per_month("rate(1 hour)") == 730
    template = {
        "Resources": {
            "Plain": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "Errors"}},
            "Math": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {
                    "Metrics": [
                        {"Id": "a", "MetricStat": {}},
                        {"Id": "b", "MetricStat": {}},
                        {"Id": "sum", "Expression": "a + b"},
                    ]
                },
            },
            "Board": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {}},
        }
    }
    assert cost.standing_resources(template) == {"alarm_metrics": 3, "dashboards": 1, "kms_keys": 0}


def test_the_fixed_costs_count_the_templates_and_the_watch_s_calls_in_every_thread() -> None:
    """The watch reads accounts in worker threads: their SQS calls are its own, or the cost is zero."""
    from tests.template.templates import load_plain, of_type

    fixed = cost.fixed_costs()
    governance = fixed["governance account"]
    # One metric per alarm, but EventsLostAlarm sums the metrics of five rules and is billed for each.
    assert governance["alarm_metrics"] == len(of_type(load_plain(), "AWS::CloudWatch::Alarm")) + 4
    assert governance["kms_keys"] == governance["dashboards"] == 1
    watch = fixed["forwarding watch"]
    assert watch["runs_per_month"] == 2920
    # GetQueueUrl and GetQueueAttributes in each account and Region, and GetMetricStatistics of its two
    # forwarding rules; the inventory read once per run.
    assert watch["per_account_region_per_run"]["sqs_requests"] == 2
    assert watch["per_account_region_per_run"]["cloudwatch_requests"] == 2
    assert watch["per_run"]["sqs_requests"] == watch["per_run"]["cloudwatch_requests"] == 0
    assert watch["per_run"]["dynamodb_rru"] == 1
    assert watch["monthly_usd_per_account_region"] == pytest.approx(
        2920
        * (
            2 * cost.PRICES["sqs_standard_request"]
            + 2 * cost.PRICES["cloudwatch_api_request"]
            + watch["per_account_region_per_run"]["lambda_gb_seconds"] * cost.PRICES["lambda_arm64_gb_second"]
        ),
        abs=1e-4,
    )


def test_the_cold_start_records_the_interpreter_it_measured(tmp_path: Path) -> None:
    # An empty layer: the versions are this interpreter's own.
    described = describe_interpreter(sys.executable, tmp_path)
    assert described["interpreter"] == sys.executable
    assert described["python"] == platform.python_version()
    assert described["pydantic"] == metadata.version("pydantic")
    assert described["awscrt"] == (importlib.util.find_spec("awscrt") is not None)
    with pytest.raises(RuntimeError, match=r"no-such-python cannot be run: No such file or directory$"):
        describe_interpreter(str(EVENTS_DIR / "no-such-python"), tmp_path)


def test_the_lambda_like_environment_is_the_runtime_sdk_alone() -> None:
    # The layer's packages come from the layer the bench builds, as on Lambda, not from this environment.
    requirements = (EVENTS_DIR.parent / "bench" / "lambda-runtime.txt").read_text(encoding="utf-8")
    lines = [line for line in requirements.splitlines() if line and not line.startswith("#")]
    assert {line.split("==")[0] for line in lines} == {"boto3", "botocore"}
    assert not any("awscrt" in line or "[crt]" in line for line in lines)


def test_an_interpreter_without_the_layers_packages_is_refused_in_one_line(tmp_path: Path) -> None:
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n', encoding="utf-8")
    bare.chmod(0o755)
    with pytest.raises(RuntimeError, match=r"bare-python cannot import the layer's packages: .*boto3"):
        describe_interpreter(str(bare), tmp_path)


@pytest.mark.parametrize("bytecode", [True, False], ids=["as-built", "without-bytecode"])
def test_the_cold_start_imports_the_code_as_lambda_loads_it(tmp_path: Path, bytecode: bool) -> None:
    if not shutil.which("python3.13"):
        pytest.fail(
            "the layer is built with python3.13: run the suite through `make test`, which provides it"
        )
    functions = functions_of_template()
    deployed = deploy(functions, "python3.13", tmp_path, bytecode=bytecode)

    modules, problems = bytecode_problems(deployed.layer, "python3.13")
    assert modules > 300
    if bytecode:
        assert problems == {}
    else:  # the layer as SAM's python3.13 build method shipped it
        assert len(problems) == modules and set(problems.values()) == {"no .pyc"}
    for function in functions:
        task_root = deployed.task_roots[function.logical_id]
        assert (task_root / f"{function.module}.py").exists()
        assert not list(task_root.rglob("*.pyc")), "the dev tree's bytecode was copied"

    # The layer comes first on the path, after the task root, and importing from it writes nothing
    # (Lambda's /opt and /var/task are read-only).
    function = functions[0]
    environment = lambda_like_environment(function, deployed)
    task_root = deployed.task_roots[function.logical_id]
    assert environment["PYTHONPATH"].split(":") == [str(task_root), str(deployed.layer)]
    before = files_under(deployed.layer, task_root)
    imported = subprocess.run(
        ["python3.13", "-c", "import pydantic, governance.startup; print(pydantic.__file__)"],
        env=environment,
        cwd=task_root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == str(deployed.layer / "pydantic" / "__init__.py")
    assert files_under(deployed.layer, task_root) == before


def test_a_bench_that_cannot_build_the_layer_says_why_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "latest.json"
    arguments = [
        "--interpreter",
        str(tmp_path / "no-python"),
        "--rounds",
        "1",
        "--skip-replay",
        "--skip-cost",
    ]
    assert bench_main([*arguments, "--output", str(output)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        "error: building the layer for the cold start failed: the layer is built with python3.13 "
        f"(the Lambda runtime); {tmp_path / 'no-python'} is not it"
    )
    assert not output.exists()
