"""Catch handler of every state machine: record the failure, notify, keep a malformed event."""

from __future__ import annotations

from governance.startup import init_phase

# Imports with the garbage collector paused, then frozen: governance/startup.py says why.
with init_phase():
    from typing import Any

    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from governance import metric_names
    from governance.errors import transient_errors_retried_by_the_workflow
    from governance.failures import record_workflow_failure

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path="event.id")
@metrics.log_metrics
@transient_errors_retried_by_the_workflow
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    decided = record_workflow_failure(
        flow=event["flow"],
        action=event["action"],
        audience=event["audience"],
        event=event.get("event"),
        error=event.get("error") or {},
        acted_on=event.get("account"),
    )
    metrics.add_metric(name=metric_names.WORKFLOWS_FAILED, unit=MetricUnit.Count, value=1)
    logger.warning("workflow failed", extra=decided)
    return decided
