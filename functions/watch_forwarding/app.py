"""Reads the member accounts' forwarding dead-letter queues, and the events their forwarding rules lost, on a
schedule (governance/forwarding.py)."""

from __future__ import annotations

from governance.startup import init_phase

# Imports with the garbage collector paused, then frozen: governance/startup.py says why.
with init_phase():
    from typing import Any

    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from governance import metric_names
    from governance.forwarding import watch

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context(correlation_id_path="id")
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    readings = watch()
    keeping = [reading for reading in readings if reading.messages]
    unreadable = [reading for reading in readings if not reading.readable]
    for reading in keeping:
        # One line per queue, so the alarm's reader finds where the events are (docs/operations.md).
        logger.error("forwarding dead-letter queue keeps events", extra=reading.to_json())
    losing = [reading for reading in readings if reading.lost]
    for reading in losing:
        logger.error(
            "forwarding rules lost events (neither forwarded nor dead-lettered)", extra=reading.to_json()
        )
    for reading in unreadable:
        logger.warning("forwarding dead-letter queue unreadable", extra=reading.to_json())
    dead_letters = sum(reading.messages or 0 for reading in readings)
    lost = sum(reading.lost or 0 for reading in readings)
    # Levels, emitted at every run (0 included): the alarms tell "nothing kept" from "nothing measured".
    metrics.add_metric(name=metric_names.FORWARDING_DEAD_LETTERS, unit=MetricUnit.Count, value=dead_letters)
    metrics.add_metric(name=metric_names.FORWARDING_EVENTS_LOST, unit=MetricUnit.Count, value=lost)
    metrics.add_metric(
        name=metric_names.FORWARDING_QUEUES_UNREADABLE, unit=MetricUnit.Count, value=len(unreadable)
    )
    metrics.add_metric(
        name=metric_names.FORWARDING_QUEUES_WATCHED, unit=MetricUnit.Count, value=len(readings)
    )
    summary = {
        "queues": len(readings),
        "dead_letters": dead_letters,
        "events_lost": lost,
        "keeping": [reading.to_json() for reading in keeping],
        "losing": [reading.to_json() for reading in losing],
        "unreadable": [reading.to_json() for reading in unreadable],
    }
    logger.info(
        "forwarding dead-letter queues read",
        extra={k: summary[k] for k in ("queues", "dead_letters", "events_lost")},
    )
    return summary
