"""Steps of the AccountBaseline state machine: one Lambda, dispatched on the payload's `step`."""

from __future__ import annotations

from governance.startup import init_phase

# Imports with the garbage collector paused, then frozen: governance/startup.py says why.
with init_phase():
    import warnings
    from collections.abc import Callable
    from typing import Any

    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from governance import metric_names
    from governance.baseline import (
        AccountFacts,
        apply_baseline,
        deregister_departed_account,
        describe_for_workflow,
        notify_creation_failed,
        notify_not_governed,
        register_account,
        report_baseline,
        schedule_role_check,
        skip_stale_event,
        verify_baseline,
        wait_for_role,
    )
    from governance.errors import MalformedEvent, transient_errors_retried_by_the_workflow

logger = Logger()
metrics = Metrics()
# Most steps have no business metric to emit; Powertools documents this filter for that case.
warnings.filterwarnings("ignore", "No application metrics to publish*")


def _facts(payload: dict[str, Any]) -> AccountFacts:
    return AccountFacts.from_payload(payload.get("account"))


STEPS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "describe": lambda payload: describe_for_workflow(payload["event"]),
    "notify_creation_failed": lambda payload: notify_creation_failed(_facts(payload)),
    "notify_not_governed": lambda payload: notify_not_governed(_facts(payload)),
    "deregister": lambda payload: deregister_departed_account(_facts(payload)),
    "skip_stale": lambda payload: skip_stale_event(_facts(payload)),
    "wait_for_role": lambda payload: wait_for_role(_facts(payload), int(payload["attempt"])),
    "schedule_role_check": lambda payload: schedule_role_check(_facts(payload), int(payload["attempt"])),
    "apply_baseline": lambda payload: apply_baseline(_facts(payload)),
    "verify_baseline": lambda payload: verify_baseline(_facts(payload), payload["applied"]),
    "register_account": lambda payload: register_account(_facts(payload), payload["verified"]),
    "report_baseline": lambda payload: report_baseline(
        _facts(payload), payload["verified"], payload["registration"]
    ),
}


@logger.inject_lambda_context(correlation_id_path="event.id || account.event_id")
@metrics.log_metrics
@transient_errors_retried_by_the_workflow
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    step = event.get("step") if isinstance(event, dict) else None
    run = STEPS.get(str(step))
    if run is None:
        raise MalformedEvent(f"step {step!r} is not one of {', '.join(STEPS)}")
    result = run(event)
    if step == "report_baseline" and result.get("status") == "done":
        metrics.add_metric(name=metric_names.ACCOUNTS_BASELINED, unit=MetricUnit.Count, value=1)
    elif step == "notify_creation_failed" and result.get("kind") == "account-creation-failed":
        metrics.add_metric(name=metric_names.ACCOUNT_CREATIONS_FAILED, unit=MetricUnit.Count, value=1)
    return result
