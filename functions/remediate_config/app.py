"""Remediates NON_COMPLIANT AWS Config evaluations from the compliance queue, one SQS record at a time."""

from __future__ import annotations

from governance.startup import init_phase

# Imports with the garbage collector paused, then frozen: governance/startup.py says why.
with init_phase():
    import json
    import warnings
    from datetime import UTC, datetime
    from typing import Any

    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from botocore.exceptions import BotoCoreError, ClientError

    from governance import metric_names
    from governance.errors import one_line
    from governance.events import MalformedEvent, parse_event
    from governance.events.config import ConfigComplianceChange
    from governance.idempotency import register_lambda_context
    from governance.remediation.engine import (
        RemediationDeferred,
        record_dead_letter,
        record_rejection,
        remediate_evaluation,
    )
    from governance.remediation.policy import PolicyError
    from governance.sessions import client
    from governance.settings import settings

logger = Logger()
metrics = Metrics()
# A batch of only rejected records has no metric to emit; Powertools documents this filter for that case.
warnings.filterwarnings("ignore", "No application metrics to publish*")
# A failed record goes back to the queue alone (ReportBatchItemFailures) and, after its last receive,
# to the queue's DLQ. A batch whose every record failed is answered the same way rather than with an
# exception, so the response always names exactly the records to retry.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
MAX_VISIBILITY_SECONDS = 43_200  # what SQS accepts for a message's visibility timeout (12 hours)
# What one record may take at worst: an AssumeRole, the action, the read-back (7.5 s of waits), a Config
# re-evaluation, the ledger and a notice, each call with botocore's retries. A batch (up to 10 records)
# takes no new record once less than this is left of the function's timeout.
RECORD_TIME_BUDGET_MS = 30_000


class OutOfTime(RuntimeError):
    """Less than one record's time is left in this invocation: the record goes back to the queue as it
    came, untouched, rather than time out the whole batch. A timeout would hand back every record of
    the batch, done or not, and those on their last delivery would reach the DLQ with no ledger entry
    and no notice. One on its last delivery is dead-lettered at once instead, ledgered and notified like
    any last failed delivery (records handed back together come back together, so taking them all
    would time out the batch), and `govern redrive` puts it back."""


def _take_record(context: LambdaContext | None) -> None:
    """Raise OutOfTime when this record should wait for another invocation. The first record of a batch
    is always taken, so that every invocation makes progress."""
    if context is None or not (processor.success_messages or processor.fail_messages):
        return
    remaining = context.get_remaining_time_in_millis()
    if remaining < RECORD_TIME_BUDGET_MS:
        raise OutOfTime(
            f"out of time in its batch: {remaining} ms left of the invocation, less than one record's "
            f"{RECORD_TIME_BUDGET_MS} ms"
        )


def _event_in(record: SQSRecord) -> Any:
    try:
        return json.loads(record.body)
    except json.JSONDecodeError as error:
        raise MalformedEvent(
            f"SQS message body is not a JSON event: {error.msg} at column {error.colno}"
        ) from None


def remediate_record(record: SQSRecord, lambda_context: LambdaContext | None = None) -> str:
    """One record: its body is the EventBridge event the governance bus rule put on the queue.
    Powertools passes `lambda_context` because the signature names it."""
    body: Any = record.body
    change: ConfigComplianceChange | None = None
    receive_count = int(record.attributes.get("ApproximateReceiveCount") or 1)
    logger.set_correlation_id(record.message_id)  # until the event's own id is known
    try:
        body = _event_in(record)
        change = parse_event(body, ConfigComplianceChange)
        # In a batch each record is its own event: the correlation id follows the record.
        logger.set_correlation_id(change.id)
        _take_record(lambda_context)
        decision = remediate_evaluation(change)
    except (MalformedEvent, PolicyError) as error:
        # Retrying cannot fix these; raising still hands the record back to SQS, so it ends in the DLQ.
        logger.error("record rejected", extra={"message_id": record.message_id, "error": str(error)})
        record_rejection(body, error, receive_count=receive_count)
        raise
    except Exception as error:
        # A transient AWS error, the hourly cap (or a defect): the queue redelivers the record. After the
        # last delivery SQS moves it to the DLQ, so that delivery first tells the ledger and the security
        # team.
        if change is not None and receive_count >= settings().compliance_max_receives:
            logger.error("last delivery failed; dead-lettering", extra={"error": str(error)})
            record_dead_letter(change, error, deliveries=receive_count)
            metrics.add_metric(
                name=metric_names.REMEDIATION_OUTCOMES["failed"], unit=MetricUnit.Count, value=1
            )
        elif isinstance(error, RemediationDeferred):
            redeliver_at(record, error.retry_at)
        elif isinstance(error, OutOfTime):
            logger.info("record left for the next invocation", extra={"reason": str(error)})
        raise
    metrics.add_metric(
        name=metric_names.REMEDIATION_OUTCOMES[decision.status], unit=MetricUnit.Count, value=1
    )
    logger.info(
        "evaluation handled",
        extra={
            "rule": change.detail.configRuleName,
            "account": change.detail.awsAccountId,
            "resource": change.detail.resourceId,
            "status": decision.status,
            "reason": decision.reason,
        },
    )
    return decision.status


def redeliver_at(record: SQSRecord, when: datetime) -> None:
    """Keep a record the hourly cap held back out of sight until `when` (the hour has turned), rather than
    the queue's visibility timeout: a redelivery within the hour would only be refused again, using up a
    receive. Best effort: if SQS refuses, the record comes back after the visibility timeout instead."""
    seconds = int((when - datetime.now(UTC)).total_seconds()) + 1
    seconds = min(max(seconds, 0), MAX_VISIBILITY_SECONDS)
    try:
        client("sqs").change_message_visibility(
            QueueUrl=record.queue_url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=seconds
        )
    except (ClientError, BotoCoreError) as error:
        logger.warning("held-back record not delayed", extra={"error": one_line(error)})
        return
    logger.info("held back by the hourly cap", extra={"redelivery_in_seconds": seconds})


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # An in-progress idempotency record then expires with this invocation, so a retry after a timeout
    # is not locked out.
    register_lambda_context(context)
    return dict(
        process_partial_response(
            event=event, record_handler=remediate_record, processor=processor, context=context
        )
    )
