"""ModelDeployment's steps: read the central decision, start the exact version's pipeline, follow it, record
the result (or the rejection) on the model card. The state machine passes `step`; the logic is in
governance.deployment."""

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

    from governance import deployment, metric_names
    from governance.errors import transient_errors_retried_by_the_workflow

logger = Logger()
metrics = Metrics()
# Most steps have no business metric to emit; Powertools documents this filter for that case.
warnings.filterwarnings("ignore", "No application metrics to publish*")

Payload = dict[str, Any]


def _event_id(payload: Payload) -> str:
    return str((payload.get("event") or {}).get("id") or "-")


def load_decision(payload: Payload) -> Payload:
    return deployment.load_decision(payload["event"])


def start_pipeline(payload: Payload) -> Payload:
    started = deployment.start_pipeline(
        payload["decision"], owner=payload["execution"], event_id=_event_id(payload)
    )
    if started["state"] == "started":
        metrics.add_metric(name=metric_names.DEPLOYMENTS_STARTED, unit=MetricUnit.Count, value=1)
    return started


def check_pipeline(payload: Payload) -> Payload:
    return deployment.check_pipeline(payload["pipeline"])


def record_deployment(payload: Payload) -> Payload:
    recorded = deployment.record_deployment(
        payload["decision"], payload["pipeline"], event_id=_event_id(payload)
    )
    metrics.add_metric(
        name=metric_names.DEPLOYMENTS_SUCCEEDED if recorded["deployed"] else metric_names.DEPLOYMENTS_FAILED,
        unit=MetricUnit.Count,
        value=1,
    )
    return recorded


def record_rejection(payload: Payload) -> Payload:
    metrics.add_metric(name=metric_names.MODELS_REJECTED, unit=MetricUnit.Count, value=1)
    return deployment.record_rejection(payload["decision"], event_id=_event_id(payload))


STEPS: dict[str, Callable[[Payload], Payload]] = {
    "load_decision": load_decision,
    "start_pipeline": start_pipeline,
    "check_pipeline": check_pipeline,
    "record_deployment": record_deployment,
    "record_rejection": record_rejection,
}


@logger.inject_lambda_context(correlation_id_path="event.id")
@metrics.log_metrics
@transient_errors_retried_by_the_workflow
def lambda_handler(event: Payload, context: LambdaContext) -> Payload:
    step = event.get("step")
    if step not in STEPS:
        raise ValueError(f"unknown ModelDeployment step {step!r}; expected one of {', '.join(STEPS)}")
    logger.append_keys(step=step)
    return STEPS[step](event)
