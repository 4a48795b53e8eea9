"""The decision metrics: what the handlers emit (Powertools Metrics, CloudWatch EMF on stdout) is what the
dashboard plots, one count per decision the ledger records."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any, get_args

import pytest

from govern.emulator import Organization
from govern.faults import access_denied, inject_api_faults, throttling
from governance import metric_names
from governance.remediation.engine import Outcome
from tests.conftest import EVENTS_DIR, read_event

MEMBER = "210987654321"
# The runtime switches Powertools metrics off; these tests read them, as CloudWatch would.
METRICS_ON = {"POWERTOOLS_METRICS_DISABLED": "false"}


@pytest.fixture
def org() -> Iterator[Organization]:
    with Organization(env_overrides=METRICS_ON) as organization:
        yield organization


def emitted(out: str) -> Counter[str]:
    """Metric name -> total, from the EMF documents among the lines a replay printed."""
    totals: Counter[str] = Counter()
    for line in out.splitlines():
        try:
            document: Any = json.loads(line)
        except ValueError:
            continue
        if not isinstance(document, dict) or "_aws" not in document:
            continue
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "MLGovernance"
            assert directive["Dimensions"] == [["service"]]
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                totals[metric["Name"]] += int(sum(value) if isinstance(value, list) else value)
    return totals


def ledger_statuses(org: Organization, events: list[dict[str, Any]], action: str) -> Counter[str]:
    return Counter(
        entry.status for event in events for entry in org.ledger(event["id"]) if entry.action == action
    )


def test_every_sample_event_emits_the_metrics_of_its_decisions(
    org: Organization, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [
        read_event(path.name)
        for path in sorted(EVENTS_DIR.glob("*.json"))
        if path.name != "expected-outcomes.json"
    ]
    capsys.readouterr()

    org.replay(events)

    totals = emitted(capsys.readouterr().out)
    assert set(totals) <= metric_names.ALL, set(totals) - metric_names.ALL
    remediations = ledger_statuses(org, events, "remediate")
    assert remediations["done"] > 0
    for status, name in metric_names.REMEDIATION_OUTCOMES.items():
        assert totals[name] == remediations[status], (name, totals[name], remediations[status])
    ledger = Counter((entry.action, entry.status) for event in events for entry in org.ledger(event["id"]))
    assert totals[metric_names.ACCOUNTS_BASELINED] == ledger["baseline_account", "done"] == 2
    assert totals[metric_names.DEPLOYMENTS_STARTED] == ledger["start_pipeline", "done"] == 1
    assert totals[metric_names.MODELS_STOPPED_AT_GATE] == ledger["replicate_model", "notify-only"] == 1
    assert totals[metric_names.MODELS_REJECTED] == 1
    assert totals[metric_names.ACCOUNT_CREATIONS_FAILED] == 1
    # The malformed model approval ends in its workflow's catch-all.
    assert totals[metric_names.WORKFLOWS_FAILED] == 1


def test_a_replicated_version_counts_once_with_its_card(
    org: Organization, capsys: pytest.CaptureFixture[str]
) -> None:
    event = read_event("model-approved-in-team-account")
    capsys.readouterr()

    org.replay([event, event])

    totals = emitted(capsys.readouterr().out)
    ledger = Counter((entry.action, entry.status) for entry in org.ledger(event["id"]))
    assert ledger["replicate_model", "done"] == 1
    assert totals[metric_names.MODELS_REPLICATED] == 1
    assert totals[metric_names.MODEL_CARDS_WRITTEN] == 1


def test_dry_run_exemption_and_failure_each_count_as_themselves(
    org: Organization, capsys: pytest.CaptureFixture[str]
) -> None:
    exempted, dry_run, failing = (
        dict(read_event("config-s3-public-read"), id=f"00000000-0000-4000-8000-00000000000{n}")
        for n in (1, 2, 3)
    )
    for number, event in enumerate((exempted, dry_run, failing)):
        bucket = f"metrics-bucket-{number}"
        event["detail"] = json.loads(json.dumps(event["detail"]).replace("team-churn-public-data", bucket))
        org.seed(event)
    s3 = org.session(MEMBER).client("s3")
    s3.put_bucket_tagging(
        Bucket="metrics-bucket-0",
        Tagging={
            "TagSet": [
                {"Key": "governance:exempt-until", "Value": "2099-12-31"},
                {"Key": "governance:exempt-reason", "Value": "public website assets"},
            ]
        },
    )
    capsys.readouterr()

    org.replay([exempted], seed=False)
    org.configure(DRY_RUN="true")
    org.replay([dry_run], seed=False)
    org.configure(DRY_RUN="false")
    with inject_api_faults(
        org, [access_denied("s3", "PutPublicAccessBlock", request_contains="metrics-bucket-2", times=10)]
    ):
        org.replay([failing], seed=False)

    totals = emitted(capsys.readouterr().out)
    assert ledger_statuses(org, [exempted, dry_run, failing], "remediate") == Counter(
        {"exempt": 1, "dry-run": 1, "failed": 1}
    )
    assert {
        name: totals[name] for name in ("RemediationsExempted", "RemediationsDryRun", "RemediationsFailed")
    } == {
        "RemediationsExempted": 1,
        "RemediationsDryRun": 1,
        "RemediationsFailed": 1,
    }
    assert totals["Remediated"] == 0
    for bucket in ("metrics-bucket-0", "metrics-bucket-1", "metrics-bucket-2"):
        assert "PublicAccessBlockConfiguration" not in _public_access_block(s3, bucket)


def _public_access_block(s3: Any, bucket: str) -> dict[str, Any]:
    try:
        return dict(s3.get_public_access_block(Bucket=bucket))
    except s3.exceptions.ClientError:
        return {}


def test_every_remediation_outcome_has_its_metric() -> None:
    # The handler looks the metric up by outcome: a new outcome without one would fail every such record.
    assert set(metric_names.REMEDIATION_OUTCOMES) == set(get_args(Outcome))


def test_an_evaluation_dead_lettered_after_its_last_delivery_counts_as_a_failed_remediation(
    org: Organization, capsys: pytest.CaptureFixture[str]
) -> None:
    event = read_event("config-s3-public-read")
    org.seed(event)
    capsys.readouterr()

    with inject_api_faults(org, [throttling("s3", "PutPublicAccessBlock", times=99, account=MEMBER)]):
        [result] = org.replay([event], seed=False)

    assert result.outcome == "dead-lettered"
    assert ledger_statuses(org, [event], "dead_letter") == Counter({"failed": 1})
    # Counted once, at the last delivery, not at each of the three.
    assert emitted(capsys.readouterr().out)["RemediationsFailed"] == 1


def test_a_failed_account_update_is_not_counted_as_a_failed_creation(
    org: Organization, capsys: pytest.CaptureFixture[str]
) -> None:
    event = read_event("account-updated")
    status = event["detail"]["serviceEventDetails"]["updateManagedAccountStatus"]
    status.update(state="FAILED", message="AWS Control Tower could not update the enrolled account.")
    capsys.readouterr()

    [result] = org.replay([event])

    assert result.outcome == "succeeded", result.error
    assert metric_names.ACCOUNT_CREATIONS_FAILED not in emitted(capsys.readouterr().out)
    [notice] = org.notifications("platform")
    assert notice.attributes["kind"] == "account-update-failed"
    assert [(a.type, a.status, a.verified) for a in result.actions] == [("notify", "done", True)]
