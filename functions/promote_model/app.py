"""ModelPromotion's steps: load and gate the source version, claim it, copy its artifacts, register the
central version, write its model card, notify. The state machine passes `step`; the logic is in
governance.promotion."""

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

    from governance import metric_names, model_card, promotion
    from governance.errors import transient_errors_retried_by_the_workflow
    from governance.promotion import CentralVersion, GateResult, SourceVersion

logger = Logger()
metrics = Metrics()
# Most steps have no business metric to emit; Powertools documents this filter for that case.
warnings.filterwarnings("ignore", "No application metrics to publish*")

Payload = dict[str, Any]


def _event_id(payload: Payload) -> str:
    return str((payload.get("event") or {}).get("id") or "-")


def load(payload: Payload) -> Payload:
    source = promotion.load_source_version(payload["event"])
    gate = promotion.check_governance_gate(source)
    return {"source": source.to_payload(), "gate": gate.to_payload()}


def gate_failed(payload: Payload) -> Payload:
    gate = payload["gate"]
    metrics.add_metric(name=metric_names.MODELS_STOPPED_AT_GATE, unit=MetricUnit.Count, value=1)
    return promotion.report_gate_failure(
        SourceVersion.from_payload(payload["source"]),
        GateResult(False, gate["missing_metadata"], gate["missing_metrics"], gate["problems"]),
        event_id=_event_id(payload),
    )


def claim(payload: Payload) -> Payload:
    return promotion.claim_replication(
        SourceVersion.from_payload(payload["source"]),
        owner=payload["execution"],
        attempt=int(payload.get("attempt") or 0),
        event_id=_event_id(payload),
    )


def copy_artifacts(payload: Payload) -> Payload:
    return {"artifacts": promotion.copy_artifacts(SourceVersion.from_payload(payload["source"]))}


def register(payload: Payload) -> Payload:
    central = promotion.register_central_version(
        SourceVersion.from_payload(payload["source"]),
        payload["artifacts"],
        owner=payload["execution"],
        event_id=_event_id(payload),
    )
    metrics.add_metric(name=metric_names.MODELS_REPLICATED, unit=MetricUnit.Count, value=1)
    return {**central.to_payload(), "replicated": True}


def release_claim(payload: Payload) -> Payload:
    released = promotion.release_claim(payload["source"]["arn"], owner=payload["execution"])
    return {"released": released}


def write_card(payload: Payload) -> Payload:
    central = CentralVersion.from_payload(payload["central"])
    card = model_card.write_model_card(
        promotion.describe_central_version(central.arn),
        event_id=_event_id(payload),
        flow=promotion.FLOW,
        account=payload["source"]["account"],
    )
    if card["change"] in ("created", "updated"):
        metrics.add_metric(name=metric_names.MODEL_CARDS_WRITTEN, unit=MetricUnit.Count, value=1)
    return card


def announce(payload: Payload) -> Payload:
    return promotion.announce_replication(
        SourceVersion.from_payload(payload["source"]),
        CentralVersion.from_payload(payload["central"]),
        payload.get("card") or {},
        event_id=_event_id(payload),
    )


STEPS: dict[str, Callable[[Payload], Payload]] = {
    "load": load,
    "gate_failed": gate_failed,
    "claim": claim,
    "copy_artifacts": copy_artifacts,
    "register": register,
    "release_claim": release_claim,
    "write_card": write_card,
    "announce": announce,
}


@logger.inject_lambda_context(correlation_id_path="event.id")
@metrics.log_metrics
@transient_errors_retried_by_the_workflow
def lambda_handler(event: Payload, context: LambdaContext) -> Payload:
    step = event.get("step")
    if step not in STEPS:
        raise ValueError(f"unknown ModelPromotion step {step!r}; expected one of {', '.join(STEPS)}")
    logger.append_keys(step=step)
    return STEPS[step](event)
