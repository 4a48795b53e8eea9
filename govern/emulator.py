"""The emulated organization: the backbone from template.yaml running offline on moto, in one process.

Rules, targets and state machines come from the template and `statemachines/`; the handlers are the
real ones, run in process; AWS is moto, several accounts at once. Tests and `govern` share this path.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import re
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.events.models import EventPattern

from govern import flows
from govern.lambda_context import LambdaContext
from govern.target_input import SHAPING_KEYS, target_input
from govern.target_input import check as check_target_input
from govern.template import Resolver, TemplateError, Unresolved, load_template

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GOVERNANCE_ACCOUNT = "111111111111"
DEFAULT_MANAGEMENT_ACCOUNT = "999999999999"
REGION = "us-east-1"
STACK_NAME = "ml-governance"
EXECUTION_ROLE = "GovernanceExecutionRole"
# AWS Organizations creates this role in every account it creates: the emulation's admin door.
ADMIN_ROLE = "OrganizationAccountAccessRole"
WORKFLOW_TIMEOUT_SECONDS = 300.0
# Workflow time runs faster offline: Retry intervals and Wait states last this fraction of their
# declared seconds, so a backoff of minutes replays in a blink while keeping its order and shape.
WORKFLOW_TIME_SCALE = 0.01
MAX_SQS_ROUNDS = 10_000
# A concurrent replay delivers its events this many at a time and lets each batch settle before the next.
# moto's SQS scans a whole queue on every send and receive, so thousands of events queued at once made a
# replay quadratic; batches of a few hundred keep it linear and still queue events together, as a burst of
# Config evaluations arrives.
CONCURRENT_BATCH = 100
# EventBridge's PutEvents limit (measured here on the event's UTF-8 JSON, a little stricter than AWS).
MAX_EVENT_BYTES = 256 * 1024
MAX_EVENT_ID_LENGTH = 256  # EventBridge's own ids are 36-character UUIDs

# What the runtime sets for the functions, besides the template's own environment.
RUNTIME_ENVIRONMENT = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
    # Polling waits double from 1 s (10 s deployed), then WORKFLOW_TIME_SCALE compresses them. They must
    # not be 0: a workflow waiting on another (a duplicate on the owner's claim) then spent its attempts
    # at CPU speed, and a busy machine ran them out before the owner finished (a flaky failure in CI).
    "POLL_BASE_SECONDS": "1",
}
_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
}


@dataclass
class ActionResult:
    type: str
    status: str
    target: str
    verified: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "target": self.target,
            "verified": self.verified,
            "detail": self.detail,
        }


@dataclass
class EventResult:
    id: str
    detail_type: str
    rules: list[str]
    outcome: str = "ignored"
    actions: list[ActionResult] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "detail_type": self.detail_type,
            "rules": self.rules,
            "outcome": self.outcome,
            "actions": [action.to_json() for action in self.actions],
            "error": self.error,
        }


@dataclass(frozen=True)
class Notification:
    topic_arn: str
    subject: str
    message: dict[str, Any]
    attributes: dict[str, str]
    message_id: str


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    event: Any
    error: str | None
    message_id: str


def _shaping(properties: dict[str, Any]) -> dict[str, Any]:
    """A target's Input, InputPath or InputTransformer (of a rule target, or of a SAM event)."""
    return {key: properties[key] for key in SHAPING_KEYS if key in properties}


def _enabled(properties: dict[str, Any]) -> bool:
    """A rule's State (ENABLED, the default; DISABLED), or a SAM Schedule's `Enabled: false`."""
    return properties.get("State", "ENABLED") != "DISABLED" and properties.get("Enabled", True) is not False


@dataclass(frozen=True)
class Target:
    kind: str  # "sqs" | "statemachine" | "lambda"
    logical_id: str
    arn: str
    # The target's Input, InputPath or InputTransformer (govern/target_input.py), as JSON; "{}": none.
    shaping: str = "{}"

    def input_for(self, event: dict[str, Any], rule_arn: str) -> str:
        return target_input(json.loads(self.shaping), event, rule_arn)


@dataclass(frozen=True)
class Rule:
    logical_id: str
    bus: str  # "default" or the governance bus name
    pattern: dict[str, Any]
    targets: tuple[Target, ...]
    enabled: bool = True  # a DISABLED rule is created, as CloudFormation does, and routes nothing

    def matches(self, event: dict[str, Any]) -> bool:
        return bool(EventPattern.load(json.dumps(self.pattern)).matches_event(event))  # type: ignore[arg-type]


@dataclass
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    sqs_sources: list[tuple[str, int]] = field(default_factory=list)  # (queue URL, batch size)
    schedules: list[tuple[str, str]] = field(default_factory=list)  # (rule name, schedule expression)
    schedule_shaping: dict[str, str] = field(default_factory=dict)  # rule name -> its Target.shaping
    _module: ModuleType | None = None

    def entrypoint(self) -> Callable[[Any, Any], Any]:
        module_name, _, attribute = self.handler.rpartition(".")
        if self._module is None:
            path = self.code_dir / f"{module_name.replace('.', '/')}.py"
            if not path.exists():
                raise TemplateError(f"{self.logical_id}: handler file {path} does not exist")
            spec = importlib.util.spec_from_file_location(f"backbone_functions.{self.logical_id}", path)
            if spec is None or spec.loader is None:
                raise TemplateError(f"{self.logical_id}: cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            self._module = module
        return getattr(self._module, attribute)  # type: ignore[no-any-return]


@dataclass
class _Delivery:
    event: dict[str, Any]
    result: EventResult
    executions: list[str] = field(default_factory=list)
    ledger_before: int = 0
    # Dead-letter queue messages kept before this delivery began: they are not this delivery's doing.
    kept_before: frozenset[str] = frozenset()


class Organization:
    """The backbone deployed in an emulated AWS Organization. Use as a context manager."""

    def __init__(
        self,
        governance_account: str = DEFAULT_GOVERNANCE_ACCOUNT,
        management_account: str = DEFAULT_MANAGEMENT_ACCOUNT,
        *,
        env_overrides: dict[str, str] | None = None,
        template_path: Path | None = None,
        parameter_overrides: dict[str, str] | None = None,
    ) -> None:
        self.governance_account = governance_account
        self.management_account = management_account
        self.region = REGION
        self.template_path = template_path or PROJECT_ROOT / "template.yaml"
        self._parameter_overrides = parameter_overrides or {}
        self._env_overrides = dict(env_overrides or {})
        self._mock: Any = None
        self._saved_environ: dict[str, str] | None = None
        self._patches: contextlib.ExitStack | None = None
        self.resolver: Resolver | None = None
        self.functions: dict[str, FunctionSpec] = {}  # by function name
        self.rules: list[Rule] = []
        self.state_machines: dict[str, str] = {}  # logical id -> ARN
        self._topics: dict[str, int] = {}  # topic ARN -> how many of its messages were collected
        self._outbox: dict[str, list[str]] = {}  # queue URL -> events delivered to it, not yet sent
        self._dead_letter_queues: list[str] = []
        self.config_evaluations: list[tuple[str, str, list[str]]] = []
        self.assume_role_attempts: dict[str, int] = {}
        # Called with (account, role name) before AssumeRole is answered: scenarios hook in here.
        self.assume_role_hooks: list[Callable[[str, str], None]] = []
        self._members: set[str] = set()
        self._without_role: set[str] = set()
        self._lock = threading.RLock()
        self.function_environment: dict[str, str] = {}
        self._admin_sessions: dict[tuple[str, str], boto3.Session] = {}
        self._captured: list[Notification] = []
        self._captured_ids: set[str] = set()  # SNS message ids of self._captured
        # function name -> Lambda service error codes the next invocations fail with (fault injection)
        self._invoke_faults: dict[str, list[str]] = {}

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Organization:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._saved_environ = dict(os.environ)
        os.environ.update(_FAKE_CREDENTIALS)
        os.environ["AWS_DEFAULT_REGION"] = self.region
        os.environ["AWS_REGION"] = self.region
        # Not MOTO_ACCOUNT_ID: it would override the account of assumed-role credentials too.
        os.environ.pop("MOTO_ACCOUNT_ID", None)
        # moto loads its catalogue of public AMIs into every account's EC2 backend it creates: 0.1 s an
        # account, under a lock that stops every other thread's call. Nothing the backbone does reads an AMI.
        os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
        # moto warns about error shapes it serialises and logs every failed workflow state at ERROR;
        # the runtime reports outcomes itself.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"moto\..*")
        logging.getLogger("moto").setLevel(logging.CRITICAL)
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        self._patches = contextlib.ExitStack()
        self._install_patches(self._patches)
        self._provision()
        self._reset_function_caches()

    def stop(self) -> None:
        if self._patches is not None:
            self._patches.close()
        if self._mock is not None:
            self._mock.stop()
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
        self._reset_function_caches()

    def configure(self, **environment: str) -> None:
        """Change the functions' environment (e.g. DRY_RUN="true") and forget cached settings."""
        self._env_overrides.update(environment)
        os.environ.update(environment)
        self.function_environment.update(environment)
        self._reset_function_caches()

    @staticmethod
    def _reset_function_caches() -> None:
        for module_name, attribute in (
            ("governance.settings", "settings"),
            ("governance.idempotency", "persistence_store"),
        ):
            module = sys.modules.get(module_name)
            cached = getattr(module, attribute, None) if module else None
            if cached is not None and hasattr(cached, "cache_clear"):
                cached.cache_clear()
        sessions = sys.modules.get("governance.sessions")
        if sessions is not None:
            sessions.forget_sessions()
        _drop_unflushed_metrics()
        for module in list(sys.modules.values()):
            reset = getattr(module, "reset_caches_for_tests", None)
            if callable(reset) and getattr(module, "__name__", "").startswith("governance"):
                reset()

    def _aws(self, service: str) -> Any:
        """A client in the governance account (default credentials), made once per service."""
        return self.session().client(service)  # type: ignore[call-overload]

    # ------------------------------------------------------------------ accounts
    def session(self, account_id: str | None = None, region: str | None = None) -> boto3.Session:
        """An administrator session in any emulated account (for seeding and for checking state);
        one per account and region, handing out one client per service."""
        from governance.sessions import ClientCachingSession

        account, region = account_id or self.governance_account, region or self.region
        with self._lock:
            cached = self._admin_sessions.get((account, region))
        if cached is not None:
            return cached
        if account == self.governance_account:
            session = ClientCachingSession(region_name=region)
        else:
            credentials = self._aws("sts").assume_role(
                RoleArn=f"arn:aws:iam::{account}:role/{ADMIN_ROLE}", RoleSessionName="govern-admin"
            )["Credentials"]
            session = ClientCachingSession(
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
                region_name=region,
            )
        with self._lock:
            self._admin_sessions[(account, region)] = session
        return session

    def ensure_member(self, account_id: str) -> None:
        """Deploy what the member template gives `account_id` (idempotent): GovernanceExecutionRole, and the
        forwarding dead-letter queue in each of member_regions()."""
        if account_id in (self.governance_account,):
            return
        with self._lock:
            self._without_role.discard(account_id)
            if account_id in self._members:
                return
            iam = self.session(account_id).client("iam")
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{self.governance_account}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
            with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
                iam.create_role(RoleName=EXECUTION_ROLE, AssumeRolePolicyDocument=json.dumps(trust))
            # The member StackSet's forwarding dead-letter queue, in each Region the account is governed in.
            from governance.forwarding import FORWARDING_DEAD_LETTER_QUEUE

            for region in self.member_regions():
                self.session(account_id, region).client("sqs").create_queue(
                    QueueName=FORWARDING_DEAD_LETTER_QUEUE
                )
            self._members.add(account_id)

    def member_regions(self) -> list[str]:
        """The Regions of the member StackSet offline: those the backbone baselines (BASELINE_REGIONS)."""
        from governance.baseline import baseline_regions

        return baseline_regions()

    def remove_execution_role(self, account_id: str) -> None:
        """Scenario: the member StackSet has not (yet) deployed GovernanceExecutionRole there."""
        with self._lock:
            iam = self.session(account_id).client("iam")
            with contextlib.suppress(iam.exceptions.NoSuchEntityException):
                iam.delete_role(RoleName=EXECUTION_ROLE)
            self._members.discard(account_id)
            self._without_role.add(account_id)

    def role_withheld(self, account_id: str) -> bool:
        """True when a scenario removed GovernanceExecutionRole there: seeding must not restore it."""
        return account_id in self._without_role

    def has_execution_role(self, account_id: str) -> bool:
        from moto.iam.models import iam_backends

        backend = iam_backends[account_id]["global"]
        return any(role.name == EXECUTION_ROLE for role in backend.roles.values())

    # ------------------------------------------------------------------ template resources
    def physical_id(self, logical_id: str) -> str:
        assert self.resolver is not None
        return str(self.resolver.resources[logical_id]["Ref"])

    def arn(self, logical_id: str) -> str:
        assert self.resolver is not None
        return str(self.resolver.resources[logical_id]["Arn"])

    # ------------------------------------------------------------------ reading state back
    def notifications(self, audience: str | None = None) -> list[Notification]:
        """Every message published to the backbone's topics (or one audience's topic), oldest first."""
        self._collect_notifications()
        if audience is None:
            return list(self._captured)
        topic_arn = self.physical_id(_AUDIENCE_TOPICS[audience])
        return [notification for notification in self._captured if notification.topic_arn == topic_arn]

    def _collect_notifications(self) -> None:
        """Move what was published to the backbone's topics since the last call into memory. Read from moto's
        own record of each topic's messages, as `_peek` reads a queue: a subscriber queue per topic made every
        publish a queue write and every read a queue scan, for the same messages."""
        from moto.sns.models import sns_backends

        with self._lock:
            for topic_arn in self._topics:
                _, _, _, region, account, _ = topic_arn.split(":", 5)
                sent = sns_backends[account][region].topics[topic_arn].sent_notifications
                for message_id, message, subject, attributes, _group in sent[self._topics[topic_arn] :]:
                    notification = _notification_from(
                        topic_arn,
                        {
                            "MessageId": message_id,
                            "Message": message,
                            "Subject": subject or "",
                            "MessageAttributes": attributes or {},
                        },
                    )
                    self._captured.append(notification)
                    self._captured_ids.add(notification.message_id)
                self._topics[topic_arn] = len(sent)

    def ledger(self, event_id: str) -> list[Any]:
        from governance.ledger import entries_for_event

        return entries_for_event(event_id)

    def dead_letters(self) -> list[DeadLetter]:
        """Everything kept in the backbone's dead-letter queues (left there, as AWS would keep it)."""
        kept: list[DeadLetter] = []
        for queue_url in self._dead_letter_queues:
            for message in self._peek(queue_url):
                try:
                    event: Any = json.loads(message["Body"])
                except json.JSONDecodeError:
                    event = message["Body"]
                attributes = message.get("MessageAttributes") or {}
                error = attributes.get("error", {}).get("StringValue")
                kept.append(
                    DeadLetter(
                        queue=queue_url.rsplit("/", 1)[-1],
                        event=event,
                        error=error,
                        message_id=message["MessageId"],
                    )
                )
        return kept

    def _kept_message_ids(self) -> frozenset[str]:
        """The ids of the messages in the dead-letter queues now (bodies left unread: this runs per event)."""
        return frozenset(
            message["MessageId"] for url in self._dead_letter_queues for message in self._peek(url)
        )

    def executions(self, state_machine_logical_id: str) -> list[dict[str, Any]]:
        sfn = self._aws("stepfunctions")
        arns = [
            item["executionArn"]
            for page in sfn.get_paginator("list_executions").paginate(
                stateMachineArn=self.state_machines[state_machine_logical_id]
            )
            for item in page["executions"]
        ]
        return [sfn.describe_execution(executionArn=arn) for arn in arns]

    def _peek(self, queue_url: str) -> list[dict[str, Any]]:
        """Read a backbone queue without consuming it (as the console's "poll for messages" would not
        either): straight from moto's queue, in flight or not, oldest first."""
        from moto.sqs.models import sqs_backends

        _, _, _, _, account, name = self._queue_arn_from_url(queue_url).split(":", 5)
        queue = sqs_backends[account][self.region].queues[name]
        with queue._messages_lock:
            messages = list(queue._messages)
        return [
            {
                "MessageId": message.id,
                "Body": message.body,
                "MessageAttributes": dict(message.message_attributes),
                "SentTimestamp": message.sent_timestamp or 0,
            }
            for message in sorted(messages, key=lambda m: m.sent_timestamp or 0)
        ]

    def _queue_arn_from_url(self, queue_url: str) -> str:
        account, name = queue_url.rstrip("/").split("/")[-2:]
        return f"arn:aws:sqs:{self.region}:{account}:{name}"

    # ------------------------------------------------------------------ events
    def seed(self, event: dict[str, Any]) -> None:
        """Create in the emulated organization what `event` refers to (its accounts, its resource)."""
        account = event.get("account")
        outside_org_roles = (self.governance_account, self.management_account, *self._without_role)
        if isinstance(account, str) and account not in outside_org_roles:
            self.ensure_member(account)
        for support in flows.supports_for(event):
            support.seed(event, self)

    def replay(
        self,
        events: list[Any],
        *,
        seed: bool = True,
        sequential: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[EventResult]:
        """Deliver `events` in order as EventBridge would, let every workflow finish, verify each action."""
        deliveries: list[_Delivery] = []
        total = len(events)
        # Concurrent replays read the whole ledger once before and once after, not twice per event.
        before = None if sequential else self._ledger_by_event()
        kept_before = None if sequential else self._kept_message_ids()
        pending: list[_Delivery] = []
        for index, event in enumerate(events, start=1):
            kept = self._kept_message_ids() if kept_before is None else kept_before
            delivery = self._start_delivery(event, seed=seed, ledger_before=before)
            delivery.kept_before = kept
            deliveries.append(delivery)
            if sequential:
                self._settle([delivery])
                self._collect_notifications()
                self._conclude(delivery, self._ledger_entries(delivery.result.id))
            else:
                pending.append(delivery)
                if len(pending) >= CONCURRENT_BATCH:
                    self._settle(pending)
                    pending = []
            if progress:
                progress(index, total)
        if not sequential:
            self._settle(pending)  # also drains what tests put on the queues directly, with no events
            self._collect_notifications()
            after = self._ledger_by_event()
            letters = self.dead_letters()
            for delivery in deliveries:
                self._conclude(delivery, after.get(delivery.result.id, []), letters)
        return [delivery.result for delivery in deliveries]

    def _ledger_by_event(self) -> dict[str, list[Any]]:
        """Every ledger entry, by event id, oldest first. Read from moto's table, as `_peek` reads a queue:
        moto's Scan walks past every earlier page to serve the next, so paging through the ledger grew with
        the square of its size (20 s of a 5,000-event replay)."""
        from boto3.dynamodb.types import TypeDeserializer
        from moto.dynamodb.models import dynamodb_backends

        from governance.ledger import LedgerEntry

        table = dynamodb_backends[self.governance_account][self.region].get_table(
            self.physical_id("LedgerTable")
        )
        deserialize = TypeDeserializer().deserialize
        by_event: dict[str, list[Any]] = {}
        for item in table.all_items():
            plain = {name: deserialize(value) for name, value in item.to_json()["Attributes"].items()}
            by_event.setdefault(str(plain["event_id"]), []).append(LedgerEntry.from_item(plain))
        for entries in by_event.values():
            entries.sort(key=lambda entry: entry.recorded_at)
        return by_event

    def _start_delivery(
        self, event: Any, *, seed: bool, ledger_before: dict[str, list[Any]] | None = None
    ) -> _Delivery:
        size = len(json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if size > MAX_EVENT_BYTES:
            # PutEvents refuses it: the event never reaches a rule, a queue or a dead-letter queue.
            result = EventResult(
                id=str(event.get("id", "")) if isinstance(event, dict) else "",
                detail_type=str(event.get("detail-type", "")) if isinstance(event, dict) else "",
                rules=[],
                outcome="failed",
                error=f"event is {size // 1024} KB; EventBridge accepts at most {MAX_EVENT_BYTES // 1024} KB",
            )
            return _Delivery(event=event if isinstance(event, dict) else {}, result=result)
        if not isinstance(event, dict):
            result = EventResult(
                id="",
                detail_type="",
                rules=[],
                outcome="dead-lettered",
                error=f"event is a JSON {json_kind(event)}, not an object",
            )
            self._keep_undeliverable(event, result.error or "")
            return _Delivery(event={}, result=result)
        result = EventResult(
            id=str(event.get("id", "")), detail_type=str(event.get("detail-type", "")), rules=[]
        )
        delivery = _Delivery(event=event, result=result)
        problem = _envelope_problem(event)
        if problem:
            result.outcome = "dead-lettered"
            result.error = f"not an EventBridge event: {problem}"
            self._keep_undeliverable(event, result.error)
            return delivery
        if seed:
            try:
                self.seed(event)
            except Exception as error:  # seeding is the emulation's, not the backbone's: say so plainly
                result.outcome = "failed"
                result.error = f"could not seed the emulated organization: {_one_line(error)}"
                return delivery
        known = self._ledger_entries(result.id) if ledger_before is None else ledger_before.get(result.id, [])
        delivery.ledger_before = len(known)
        for rule in self.matching_rules(event):
            result.rules.append(rule.logical_id)
            for target in rule.targets:
                self._deliver_to(target, target.input_for(event, self._rule_arn(rule)), delivery)
        return delivery

    def _keep_undeliverable(self, event: Any, reason: str) -> None:
        """EventBridge would have refused this at PutEvents; offline it came from a file, so it is kept where
        dead-lettered events are kept, with the reason, rather than reported dead-lettered and dropped."""
        self._aws("sqs").send_message(
            QueueUrl=self.physical_id("EventsDeadLetterQueue"),
            MessageBody=json.dumps(event),
            MessageAttributes={
                "error": {"DataType": "String", "StringValue": reason[:1024]},
                "source": {"DataType": "String", "StringValue": "govern-runtime"},
            },
        )

    def bus_for(self, event: dict[str, Any]) -> str:
        """Where an event arrives: the governance account's own events on its default bus; every
        other account's (member and management) forwarded to the governance bus."""
        if event.get("account") == self.governance_account:
            return "default"
        return self.physical_id("GovernanceEventBus")

    def matching_rules(self, event: dict[str, Any]) -> list[Rule]:
        """The template's rules on the event's bus whose pattern matches it (moto's pattern engine)."""
        bus = self.bus_for(event)
        return [rule for rule in self.rules if rule.enabled and rule.bus == bus and rule.matches(event)]

    def _rule_arn(self, rule: Rule) -> str:
        qualified = rule.logical_id[:64] if rule.bus == "default" else f"{rule.bus}/{rule.logical_id[:64]}"
        return f"arn:aws:events:{self.region}:{self.governance_account}:rule/{qualified}"

    def _deliver_to(self, target: Target, text: str, delivery: _Delivery) -> None:
        """Hand a target what its rule gives it: the event, or what the target's input makes of it."""
        if target.kind == "sqs":
            # Sent when the deliveries settle, ten to a request: the queue ends up holding the same messages
            # EventBridge's one-by-one delivery would put there, at a tenth of the emulated API calls.
            self._outbox.setdefault(self._queue_url_from_arn(target.arn), []).append(text)
        elif target.kind == "statemachine":
            # EventBridge names executions at random; moto needs a name, and a random one keeps
            # every delivery (duplicates included) its own execution, as in AWS.
            try:
                response = self._aws("stepfunctions").start_execution(
                    stateMachineArn=target.arn, name=uuid.uuid4().hex, input=text
                )
            except ClientError as error:  # input that is not JSON, say (what a target's shaping made)
                delivery.result.error = _one_line(error)
                return
            delivery.executions.append(response["executionArn"])
        elif target.kind == "lambda":
            function = self._function_by_arn(target.arn)
            try:
                self._invoke(function, json.loads(text))
            except Exception as error:
                delivery.result.error = _one_line(error)
        else:  # pragma: no cover - the template loader only produces the kinds above
            raise TemplateError(f"unsupported target kind {target.kind}")

    def _settle(self, deliveries: list[_Delivery]) -> None:
        """Run SQS event sources and wait for executions until nothing is left in flight."""
        self._send_outbox()
        for _ in range(MAX_SQS_ROUNDS):
            consumed = self._poll_event_sources()
            running = self._wait_for_executions(deliveries)
            if not consumed and not running:
                return

    def _send_outbox(self) -> None:
        """Put the events delivered to queue targets on their queues: batches of at most ten messages and
        SQS's request size limit (an event near the limit goes alone)."""
        outbox, self._outbox = self._outbox, {}
        for queue_url, bodies in outbox.items():
            batch: list[str] = []
            size = 0
            for body in bodies:
                length = len(body.encode("utf-8", "surrogatepass"))
                if batch and (len(batch) == 10 or size + length > MAX_EVENT_BYTES):
                    self._send_batch(queue_url, batch)
                    batch, size = [], 0
                batch.append(body)
                size += length
            if batch:
                self._send_batch(queue_url, batch)

    def _send_batch(self, queue_url: str, bodies: list[str]) -> None:
        response = self._aws("sqs").send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(index), "MessageBody": body} for index, body in enumerate(bodies)],
        )
        if response.get("Failed"):
            raise RuntimeError(f"could not queue events on {queue_url}: {response['Failed'][0]}")

    def wait_for_execution(self, execution_arn: str) -> str:
        """The status of an execution started outside a replay (`govern redrive`, `govern rebaseline`), once
        it has finished or WORKFLOW_TIMEOUT_SECONDS have passed."""
        deadline = time.monotonic() + WORKFLOW_TIMEOUT_SECONDS
        while (status := _execution_status(execution_arn)) == "RUNNING":
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        return str(status)

    def _wait_for_executions(self, deliveries: list[_Delivery]) -> bool:
        waited = False
        for delivery in deliveries:
            for execution_arn in delivery.executions:
                deadline = time.monotonic() + WORKFLOW_TIMEOUT_SECONDS
                while _execution_status(execution_arn) == "RUNNING":
                    waited = True
                    if time.monotonic() > deadline:
                        delivery.result.error = (
                            f"workflow {execution_arn} still running after {WORKFLOW_TIMEOUT_SECONDS:.0f}s"
                        )
                        break
                    time.sleep(0.01)
        return waited

    def _poll_event_sources(self) -> bool:
        sqs = self._aws("sqs")
        consumed = False
        for function in self.functions.values():
            for queue_url, batch_size in function.sqs_sources:
                while True:
                    messages = sqs.receive_message(
                        QueueUrl=queue_url,
                        MaxNumberOfMessages=min(batch_size, 10),
                        VisibilityTimeout=60,
                        AttributeNames=["All"],
                        MessageAttributeNames=["All"],
                    ).get("Messages", [])
                    if not messages:
                        break
                    consumed = True
                    self._run_sqs_batch(function, queue_url, messages)
        return consumed

    def _run_sqs_batch(self, function: FunctionSpec, queue_url: str, messages: list[dict[str, Any]]) -> None:
        sqs = self._aws("sqs")
        queue_arn = self._queue_arn_from_url(queue_url)
        records = [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "dataType": value.get("DataType", "String"),
                        "stringListValues": [],
                        "binaryListValues": [],
                    }
                    for name, value in (message.get("MessageAttributes") or {}).items()
                },
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": self.region,
            }
            for message in messages
        ]
        failed_ids: set[str]
        try:
            response = self._invoke(function, {"Records": records})
            failed_ids = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
        except Exception:
            failed_ids = {message["MessageId"] for message in messages}
        done: list[dict[str, str]] = []
        for message in messages:
            if message["MessageId"] in failed_ids:
                # Visible again at once: the emulation does not wait out the visibility timeout.
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
        if done:  # as Lambda's event source mapping does: one DeleteMessageBatch per batch
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=done)

    # ------------------------------------------------------------------ outcomes
    def _ledger_entries(self, event_id: str) -> list[Any]:
        if not event_id:
            return []
        return self.ledger(event_id)

    def _conclude(
        self, delivery: _Delivery, ledger_entries: list[Any], letters: list[DeadLetter] | None = None
    ) -> None:
        """Outcome and verified actions of one delivery, from the entries the ledger holds for its event."""
        result = delivery.result
        if result.outcome in ("dead-lettered", "failed") and result.error:
            return
        entries = ledger_entries[delivery.ledger_before :]
        for entry in entries:
            if entry.action == "dead_letter":
                continue
            result.actions.append(
                ActionResult(
                    type=entry.action,
                    status=entry.status,
                    target=entry.target,
                    verified=self._verify(entry),
                    detail=entry.detail,
                )
            )
        # This delivery's own letters: the same event, kept since it began. Matching on the id alone
        # blamed an event for another one sharing its id, or for an earlier delivery of itself.
        dead = [
            letter
            for letter in (self.dead_letters() if letters is None else letters)
            if letter.message_id not in delivery.kept_before and letter.event == delivery.event
        ]
        failed_executions = self._failed_executions(delivery)
        failed_entries = [entry for entry in entries if entry.status == "failed"]
        if dead:
            result.outcome = "dead-lettered"
            reasons = [letter.error for letter in dead if letter.error]
            reasons += [entry.detail.get("error") for entry in failed_entries if entry.detail.get("error")]
            result.error = reasons[-1] if reasons else "kept in the dead-letter queue after repeated failures"
        elif failed_executions or failed_entries or result.error:
            result.outcome = "failed"
            reasons = [entry.detail.get("error") for entry in failed_entries if entry.detail.get("error")]
            if not result.error:
                failed_actions = ", ".join(sorted({entry.action for entry in failed_entries}))
                result.error = (
                    reasons[-1]
                    if reasons
                    else failed_executions[0]
                    if failed_executions
                    else f"{failed_actions} failed without a recorded reason"
                )
        elif not result.rules or not result.actions:
            # No rule matched, or one matched and policy decided there was nothing to do.
            result.outcome = "ignored"
        else:
            result.outcome = "succeeded"

    def _failed_executions(self, delivery: _Delivery) -> list[str]:
        sfn = self._aws("stepfunctions")
        failed = []
        for execution_arn in delivery.executions:
            described = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] not in ("SUCCEEDED", "RUNNING"):
                cause = described.get("cause") or described.get("error") or described["status"]
                failed.append(f"workflow {described['status'].lower()}: {_one_line(cause)}")
        return failed

    def _verify(self, entry: Any) -> bool:
        try:
            if entry.action == "notify":  # notifications were collected when the delivery concluded
                return entry.detail.get("message_id") in self._captured_ids
            verifier = flows.verifier_for(entry.action)
            return bool(verifier(entry, self)) if verifier else False
        except Exception:
            return False

    # ------------------------------------------------------------------ scheduled functions
    def run_scheduled(self, logical_id: str) -> Any:
        """One tick of the Schedule event of function `logical_id` (template.yaml), delivered as EventBridge
        delivers it: a `Scheduled Event`, through the Lambda API. Returns the function's response; a
        function error raises RuntimeError with its one-line message."""
        function = self.function_spec(logical_id)
        if not function.schedules:
            raise TemplateError(f"{logical_id} is not a function with a Schedule event in the template")
        rule_name, _ = function.schedules[0]
        rule_arn = f"arn:aws:events:{self.region}:{self.governance_account}:rule/{rule_name}"
        tick: dict[str, Any] = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": self.governance_account,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.region,
            "resources": [rule_arn],
            "detail": {},
        }
        payload_text = target_input(
            json.loads(function.schedule_shaping.get(rule_name, "{}")), tick, rule_arn
        )
        response = self._aws("lambda").invoke(FunctionName=function.name, Payload=payload_text)
        payload = json.loads(response["Payload"].read())
        if "FunctionError" in response:
            raise RuntimeError(f"{logical_id} failed: {payload.get('errorMessage', payload)}")
        return payload

    # ------------------------------------------------------------------ fault injection
    def fail_next_invocations(self, function_logical_id: str, error_code: str, times: int = 1) -> None:
        """The next `times` invocations of the function fail in the Lambda service itself (before the
        handler runs), e.g. `TooManyRequestsException`: what a workflow's Retry is for."""
        name = self.function_spec(function_logical_id).name
        with self._lock:
            self._invoke_faults.setdefault(name, []).extend([error_code] * times)

    def _take_invoke_fault(self, function_name: str) -> str | None:
        with self._lock:
            queued = self._invoke_faults.get(function_name)
            return queued.pop(0) if queued else None

    # ------------------------------------------------------------------ in-process Lambda
    def function_spec(self, logical_id: str) -> FunctionSpec:
        """The function whose logical id in template.yaml is `logical_id`; TemplateError if none is."""
        function = next((spec for spec in self.functions.values() if spec.logical_id == logical_id), None)
        if function is None:
            raise TemplateError(f"{logical_id} is not a function of the template")
        return function

    def _function_by_arn(self, arn: str) -> FunctionSpec:
        name = arn.split(":function:", 1)[-1].split(":", 1)[0]
        return self.functions[name]

    def _invoke(self, function: FunctionSpec, payload: Any) -> Any:
        context = LambdaContext.for_function(function.name, function.arn, function.memory, function.timeout)
        handler = function.entrypoint()
        try:
            return handler(payload, context)
        finally:
            if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
                _drop_unflushed_metrics()

    def _install_patches(self, stack: contextlib.ExitStack) -> None:
        from moto.awslambda.models import LambdaFunction
        from moto.config.responses import ConfigResponse
        from moto.core.exceptions import JsonRESTError
        from moto.events.responses import EventsHandler
        from moto.sts.exceptions import STSClientError
        from moto.sts.models import STSBackend

        organization = self

        def invoke_in_process(self: Any, body: str, request_headers: Any, response_headers: Any) -> bytes:
            fault = organization._take_invoke_fault(self.function_name)
            if fault:
                raise JsonRESTError(fault, f"injected fault: {fault} for {self.function_name}")
            payload = json.loads(body) if body else {}
            function = organization.functions[self.function_name]
            try:
                result = organization._invoke(function, payload)
            except Exception as error:
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps(
                    {
                        "errorType": type(error).__name__,
                        "errorMessage": _one_line(error),
                        "stackTrace": traceback.format_exception(error)[-3:],
                    }
                ).encode()
            return json.dumps(result, default=str).encode()

        original_assume_role = STSBackend.assume_role

        def assume_role_if_it_exists(self: Any, **kwargs: Any) -> Any:
            role_arn = kwargs["role_arn"]
            account, role_name = role_arn.split(":")[4], role_arn.rsplit("/", 1)[-1]
            if role_name != ADMIN_ROLE:
                with organization._lock:
                    organization.assume_role_attempts[account] = (
                        organization.assume_role_attempts.get(account, 0) + 1
                    )
                for hook in list(organization.assume_role_hooks):
                    hook(account, role_name)
                from moto.iam.models import iam_backends

                if not any(role.name == role_name for role in iam_backends[account]["global"].roles.values()):
                    raise STSClientError(
                        "AccessDenied",
                        f"User is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                    )
            return original_assume_role(self, **kwargs)

        def start_config_rules_evaluation(self: Any) -> str:
            rules = json.loads(self.body).get("ConfigRuleNames", [])
            with organization._lock:
                organization.config_evaluations.append((self.current_account, self.region, list(rules)))
            return "{}"

        def test_event_pattern(self: Any) -> str:
            pattern = EventPattern.load(self._get_param("EventPattern"))
            event = json.loads(self._get_param("Event"))
            return json.dumps({"Result": bool(pattern.matches_event(event))})

        import moto.core
        import moto.core.models
        import moto.iam.models
        import moto.sns.models

        # Requests signed with the default credentials belong to the governance account.
        for module in (moto.core, moto.core.models, moto.iam.models, moto.sns.models):
            stack.enter_context(_patched(module, "DEFAULT_ACCOUNT_ID", self.governance_account))
        stack.enter_context(_patched(LambdaFunction, "invoke", invoke_in_process))
        self._compress_workflow_time(stack)
        self._parse_each_definition_once(stack)
        self._make_symmetric_keys_without_a_key_pair(stack)
        self._reuse_the_workflows_lambda_clients(stack)
        self._check_retention_without_scanning(stack)
        self._write_atomically(stack)
        stack.enter_context(model_cards_updated_as_sagemaker_does())
        stack.enter_context(notebook_instances_updated_as_sagemaker_does())
        stack.enter_context(model_package_group_policies_as_sagemaker_keeps_them())
        stack.enter_context(messages_checked_as_sqs_and_sns_do())
        stack.enter_context(_patched(STSBackend, "assume_role", assume_role_if_it_exists))
        # moto does not implement TestEventPattern; its pattern engine (the one routing here) answers it.
        stack.enter_context(_patched(EventsHandler, "test_event_pattern", test_event_pattern))
        stack.enter_context(
            _patched(ConfigResponse, "start_config_rules_evaluation", start_config_rules_evaluation)
        )

    @staticmethod
    def _compress_workflow_time(stack: contextlib.ExitStack) -> None:
        import types

        from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
        from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
            WaitFunction,
        )

        def scaled_sleep(seconds: float) -> None:
            time.sleep(seconds * WORKFLOW_TIME_SCALE)

        def scaled_wait(self: Any, env: Any, wait_seconds: int) -> None:
            if wait_seconds > 0 and env.is_running():
                env.program_state_event.wait(wait_seconds * WORKFLOW_TIME_SCALE)

        fast_time = types.SimpleNamespace(**{**vars(time), "sleep": scaled_sleep})
        stack.enter_context(_patched(retrier_decl, "time", fast_time))
        stack.enter_context(_patched(WaitFunction, "_wait_interval", scaled_wait))

    @staticmethod
    def _parse_each_definition_once(stack: contextlib.ExitStack) -> None:
        """moto parses a state machine's definition with ANTLR when the machine is created and again at every
        execution start: about two thirds of an execution's CPU offline, and half of what deploying the
        backbone costs. Each definition is parsed once per process instead, and the parsed program reused.
        Safe for the backbone's state types (Task, Choice, Wait, Pass, Succeed, Fail): their components keep
        an execution's state (retry attempts, say) in the execution's environment, not in themselves."""
        from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

        stack.enter_context(_patched(AmazonStateLanguageParser, "parse", staticmethod(_parse_definition())))

    @staticmethod
    def _make_symmetric_keys_without_a_key_pair(stack: contextlib.ExitStack) -> None:
        """moto makes a 2,048-bit RSA key pair for every KMS key it creates, a symmetric one included, where
        only an asymmetric key signs with it: 30 to 150 ms per key, the most expensive step of deploying the
        backbone offline. A symmetric key shares one pair, made once per process; asymmetric keys keep
        their own."""
        from moto.kms import models
        from moto.kms.utils import generate_private_key

        def key_pair(key_spec: str) -> Any:
            if key_spec == "SYMMETRIC_DEFAULT":
                return _key_pair_of_symmetric_keys()
            return generate_private_key(key_spec)

        stack.enter_context(_patched(models, "generate_private_key", key_pair))

    @staticmethod
    def _reuse_the_workflows_lambda_clients(stack: contextlib.ExitStack) -> None:
        """moto's Step Functions makes a new boto3 client for every Lambda task it runs: 30 to 50 ms each,
        a quarter of a workflow's time offline. Its clients are all alike (fixed fake keys, no retries; the
        state's credentials are not used) and boto3 clients are thread-safe, so one per Region serves every
        task of the process."""
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils

        def lambda_client(region: str, service: str, state_credentials: Any = None) -> Any:
            return _workflow_client(region, service)

        stack.enter_context(_patched(lambda_eval_utils, "boto_client_for", lambda_client))

    @staticmethod
    def _write_atomically(stack: contextlib.ExitStack) -> None:
        """What AWS does atomically, moto does in steps, and two threads (the workflows' executions) can
        interleave them. One lock per service over the steps gives back AWS's guarantee:

        - DynamoDB applies a conditional write atomically. moto reads the item, evaluates the condition and
          writes, so two threads could both pass `attribute_not_exists(pk)`: 10 keys in 150 had two winners
          with six concurrent writers. Claims, once-markers and the inventory's lifecycle condition rest on
          that atomicity, and concurrent duplicates then started a second pipeline now and then.
        - SageMaker numbers a group's versions one after the other. moto counts the group's packages and
          adds one, so two replications into one central group could take the same number (46 distinct
          versions of 60 with six threads), the second package replacing the first; and a listing could meet
          a package being added ("dictionary changed size during iteration")."""
        from moto.dynamodb.models import DynamoDBBackend
        from moto.sagemaker.models import SageMakerModelBackend

        def atomic(lock: threading.RLock, step: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(step)
            def locked(*args: Any, **kwargs: Any) -> Any:
                with lock:
                    return step(*args, **kwargs)

            return locked

        serialized: list[tuple[type, tuple[str, ...]]] = [
            (DynamoDBBackend, ("put_item", "update_item", "delete_item", "transact_write_items")),
            (SageMakerModelBackend, ("create_model_package", "update_model_package", "list_model_packages")),
        ]
        for backend, names in serialized:
            lock = threading.RLock()
            for name in names:
                stack.enter_context(_patched(backend, name, atomic(lock, getattr(backend, name))))

    @staticmethod
    def _check_retention_without_scanning(stack: contextlib.ExitStack) -> None:
        """moto checks each received message against the queue's retention period by building every queue
        attribute, approximate message counts included: a scan of the queue per message received. The same
        check, reading the one attribute it needs."""
        from moto.core.utils import unix_time
        from moto.sqs.models import Message, SQSBackend

        def within_retention(self: SQSBackend, queue_name: str, message: Message) -> bool:
            retention_period = int(self.get_queue(queue_name).message_retention_period)  # type: ignore[attr-defined]
            return bool(retention_period + (message.sent_timestamp or 0) / 1000 > unix_time())

        stack.enter_context(
            _patched(SQSBackend, "is_message_valid_based_on_retention_period", within_retention)
        )

    # ------------------------------------------------------------------ provisioning
    def _provision(self) -> None:
        template = load_template(self.template_path)
        parameters = {
            name: str(spec.get("Default", "")) for name, spec in (template.get("Parameters") or {}).items()
        }
        parameters["ManagementAccountId"] = self.management_account
        parameters.update(self._parameter_overrides)
        resolver = Resolver(
            parameters=parameters,
            pseudo={
                "AWS::AccountId": self.governance_account,
                "AWS::Region": self.region,
                "AWS::Partition": "aws",
                "AWS::StackName": STACK_NAME,
                "AWS::URLSuffix": "amazonaws.com",
            },
            conditions=template.get("Conditions") or {},
        )
        self.resolver = resolver
        pending = dict(template["Resources"])
        while pending:
            progressed = False
            for logical_id, resource in list(pending.items()):
                condition = resource.get("Condition")
                if condition and not resolver.condition(condition):
                    del pending[logical_id]
                    progressed = True
                    continue
                try:
                    resolver.resources[logical_id] = self._create(logical_id, resource, template)
                except Unresolved:
                    continue
                del pending[logical_id]
                progressed = True
            if not progressed:
                raise TemplateError(f"cannot resolve references among: {', '.join(sorted(pending))}")
        self._wire(template)

    def _create(self, logical_id: str, resource: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
        assert self.resolver is not None
        kind = resource["Type"]
        account, region = self.governance_account, self.region
        creators: dict[str, Callable[[str, dict[str, Any]], dict[str, Any]]] = {
            "AWS::KMS::Key": self._create_key,
            "AWS::Events::EventBus": self._create_bus,
            "AWS::Events::Archive": self._create_archive,
            "AWS::SQS::Queue": self._create_queue,
            "AWS::SNS::Topic": self._create_topic,
            "AWS::DynamoDB::Table": self._create_table,
            "AWS::S3::Bucket": self._create_bucket,
            "AWS::Serverless::Function": lambda lid, props: self._create_function(lid, props, template),
            "AWS::Serverless::StateMachine": self._create_state_machine,
        }
        if kind in creators:
            properties = self.resolver.resolve(
                {key: value for key, value in (resource.get("Properties") or {}).items() if key != "Events"}
            )
            return creators[kind](logical_id, properties)
        # Everything else (policies, aliases, log groups, subscriptions...) has no behaviour offline;
        # it still gets a stable name and ARN so references to it resolve.
        return {
            "Ref": f"{STACK_NAME}-{logical_id}",
            "Arn": f"arn:aws:{kind.split('::')[1].lower()}:{region}:{account}:{logical_id}",
        }

    def _create_key(self, logical_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        key = self._aws("kms").create_key(Description=properties.get("Description", ""))
        return {"Ref": key["KeyMetadata"]["KeyId"], "Arn": key["KeyMetadata"]["Arn"]}

    def _create_bus(self, logical_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        name = properties["Name"]
        arn = self._aws("events").create_event_bus(Name=name)["EventBusArn"]
        return {"Ref": name, "Arn": arn, "Name": name}

    def _create_archive(self, logical_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        """As in AWS, the archive brings its own rule on its bus (`Events-Archive-<name>`, managed by
        EventBridge, matching what it keeps): what reads a bus's rules meets it offline too."""
        name = properties["ArchiveName"]
        pattern = properties.get("EventPattern")
        arn = self._aws("events").create_archive(
            ArchiveName=name,
            EventSourceArn=properties["SourceArn"],
            **({"EventPattern": json.dumps(pattern)} if pattern else {}),
            RetentionDays=int(properties.get("RetentionDays") or 0),
        )["ArchiveArn"]
        return {"Ref": name, "Arn": arn}

    def _create_queue(self, logical_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        sqs = self._aws("sqs")
        name = properties.get("QueueName") or f"{STACK_NAME}-{logical_id}"
        attributes = {
            key: json.dumps(value) if isinstance(value, dict) else str(value)
            for key, value in properties.items()
            if key in ("VisibilityTimeout", "MessageRetentionPeriod", "RedrivePolicy", "KmsMasterKeyId")
        }
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        if name.endswith("-dlq"):
            self._dead_letter_queues.append(url)
        return {"Ref": url, "Arn": arn, "QueueName": name, "QueueUrl": url}

    def _create_topic(self, logical_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        name = properties.get("TopicName") or f"{STACK_NAME}-{logical_id}"
        arn = self._aws("sns").create_topic(Name=name)["TopicArn"]
        self._topics[arn] = 0
        return {"Ref": arn, "Arn": arn, "TopicArn": arn, "TopicName": name}

    def _create_table(self, logical_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        name = properties.get("TableName") or f"{STACK_NAME}-{logical_id}"
        arguments: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": properties["AttributeDefinitions"],
            "KeySchema": properties["KeySchema"],
            "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if properties.get("GlobalSecondaryIndexes"):
            arguments["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
        dynamodb = self._aws("dynamodb")
        arn = dynamodb.create_table(**arguments)["TableDescription"]["TableArn"]
        ttl = properties.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        return {"Ref": name, "Arn": arn}

    def _create_bucket(self, logical_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        s3 = self._aws("s3")
        name = properties.get("BucketName") or f"{STACK_NAME}-{logical_id}".lower()
        s3.create_bucket(Bucket=name)
        encryption = properties.get("BucketEncryption")
        if encryption:
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {
                            "ApplyServerSideEncryptionByDefault": {
                                "SSEAlgorithm": rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
                                "KMSMasterKeyID": rule["ServerSideEncryptionByDefault"].get(
                                    "KMSMasterKeyID", ""
                                ),
                            },
                            "BucketKeyEnabled": bool(rule.get("BucketKeyEnabled")),
                        }
                        for rule in encryption["ServerSideEncryptionConfiguration"]
                    ]
                },
            )
        if properties.get("PublicAccessBlockConfiguration"):
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"]
            )
        if properties.get("VersioningConfiguration"):
            s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration=properties["VersioningConfiguration"]
            )
        return {"Ref": name, "Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}

    def _create_function(
        self, logical_id: str, properties: dict[str, Any], template: dict[str, Any]
    ) -> dict[str, Any]:
        assert self.resolver is not None
        defaults = (template.get("Globals") or {}).get("Function") or {}
        # Globals are resolved here, as SAM merges them into each function.
        merged = {
            **self.resolver.resolve({k: v for k, v in defaults.items() if k != "Environment"}),
            **properties,
        }
        environment = dict(self.resolver.resolve(defaults.get("Environment", {})).get("Variables", {}))
        environment.update((properties.get("Environment") or {}).get("Variables", {}))
        name = merged.get("FunctionName") or f"{STACK_NAME}-{logical_id}"
        iam = self._aws("iam")
        role_arn = iam.create_role(
            RoleName=f"{STACK_NAME}-{logical_id}-role"[:64],
            Path=merged.get("RolePath", "/"),
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        arn = self._aws("lambda").create_function(
            FunctionName=name,
            Runtime=merged.get("Runtime", "python3.13"),
            Role=role_arn,
            Handler=merged["Handler"],
            Code={"ZipFile": b"in-process"},
            Timeout=int(merged.get("Timeout", 3)),
            MemorySize=int(merged.get("MemorySize", 128)),
            Environment={"Variables": {key: str(value) for key, value in environment.items()}},
        )["FunctionArn"]
        self.functions[name] = FunctionSpec(
            logical_id=logical_id,
            name=name,
            arn=arn,
            code_dir=self.template_path.parent / str(merged["CodeUri"]),
            handler=merged["Handler"],
            timeout=int(merged.get("Timeout", 3)),
            memory=int(merged.get("MemorySize", 128)),
        )
        for key, value in environment.items():
            known = self.function_environment.get(key)
            if known is not None and known != str(value):
                raise TemplateError(
                    f"{logical_id} sets {key}={value} but another function sets {known}: functions share one "
                    "process offline, so one variable must mean one thing"
                )
            self.function_environment[key] = str(value)
        os.environ.update(self.function_environment)
        os.environ.update(RUNTIME_ENVIRONMENT)
        os.environ.update(self._env_overrides)
        return {"Ref": name, "Arn": arn}

    def _create_state_machine(self, logical_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        definition = (self.template_path.parent / properties["DefinitionUri"]).read_text(encoding="utf-8")
        for key, value in (properties.get("DefinitionSubstitutions") or {}).items():
            definition = definition.replace("${" + key + "}", str(value))
        name = properties.get("Name") or f"{STACK_NAME}-{logical_id}"
        role_arn = f"arn:aws:iam::{self.governance_account}:role/{STACK_NAME}-{logical_id}-role"
        arn = self._aws("stepfunctions").create_state_machine(
            name=name, definition=definition, roleArn=role_arn, type=properties.get("Type", "STANDARD")
        )["stateMachineArn"]
        self.state_machines[logical_id] = arn
        return {"Ref": arn, "Arn": arn, "Name": name}

    def _wire(self, template: dict[str, Any]) -> None:
        """Rules and event source mappings, once every resource they point at exists."""
        assert self.resolver is not None
        for logical_id, resource in template["Resources"].items():
            if logical_id not in self.resolver.resources:
                continue
            kind = resource["Type"]
            if kind == "AWS::Events::Rule":
                properties = self.resolver.resolve(resource["Properties"])
                targets = tuple(
                    self._target(str(t["Arn"]), _shaping(t)) for t in properties.get("Targets", [])
                )
                self._add_rule(
                    Rule(
                        logical_id,
                        properties.get("EventBusName", "default"),
                        properties["EventPattern"],
                        targets,
                        enabled=_enabled(properties),
                    )
                )
            for event_name, event in ((resource.get("Properties") or {}).get("Events") or {}).items():
                properties = self.resolver.resolve(event.get("Properties") or {})
                own_arn = str(self.resolver.resources[logical_id]["Arn"])
                if event["Type"] == "EventBridgeRule":
                    # SAM puts the target's input on the event, and names the rule <resource><event name>.
                    target = self._target(own_arn, _shaping(properties))
                    self._add_rule(
                        Rule(
                            f"{logical_id}{event_name}",
                            properties.get("EventBusName", "default"),
                            properties["Pattern"],
                            (target,),
                            enabled=_enabled(properties),
                        )
                    )
                elif event["Type"] == "Schedule" and _enabled(properties):
                    # Nothing ticks offline by itself: run_scheduled() delivers one tick when asked.
                    function = self._function_by_arn(own_arn)
                    function.schedules.append((f"{logical_id}{event_name}", str(properties["Schedule"])))
                    function.schedule_shaping[f"{logical_id}{event_name}"] = json.dumps(_shaping(properties))
                elif event["Type"] == "SQS":
                    function = self._function_by_arn(own_arn)
                    function.sqs_sources.append(
                        (
                            self._queue_url_from_arn(str(properties["Queue"])),
                            int(properties.get("BatchSize", 10)),
                        )
                    )

    def _add_rule(self, rule: Rule) -> None:
        """A rule of the template: routed offline by matching_rules(), and put in the emulated EventBridge
        too, for what reads rules through the API (`govern redrive` of a forwarding dead-letter queue)."""
        self.rules.append(rule)
        events = self._aws("events")
        name = rule.logical_id[:64]
        state = "ENABLED" if rule.enabled else "DISABLED"
        events.put_rule(Name=name, EventBusName=rule.bus, EventPattern=json.dumps(rule.pattern), State=state)
        events.put_targets(
            Rule=name,
            EventBusName=rule.bus,
            Targets=[
                {"Id": target.logical_id[:64], "Arn": target.arn, **json.loads(target.shaping)}
                for target in rule.targets
            ],
        )

    def _target(self, arn: str, shaping: dict[str, Any]) -> Target:
        assert self.resolver is not None
        check_target_input(shaping)
        logical_id = next(
            (lid for lid, attrs in self.resolver.resources.items() if attrs.get("Arn") == arn), arn
        )
        if ":sqs:" in arn:
            return Target("sqs", logical_id, arn, json.dumps(shaping))
        if ":states:" in arn:
            return Target("statemachine", logical_id, arn, json.dumps(shaping))
        if ":lambda:" in arn:
            return Target("lambda", logical_id, arn, json.dumps(shaping))
        raise TemplateError(f"target {arn} is of a kind the offline runtime does not deliver to")

    def _queue_url_from_arn(self, arn: str) -> str:
        _, _, _, region, account, name = arn.split(":", 5)
        return f"https://sqs.{region}.amazonaws.com/{account}/{name}"


_AUDIENCE_TOPICS = {
    "security": "SecurityTopic",
    "platform": "PlatformTopic",
    "ml-governance": "MlGovernanceTopic",
}


def _notification_from(topic_arn: str, envelope: dict[str, Any]) -> Notification:
    """A notification from the fields an SNS envelope carries (attributes as {"Type", "Value"})."""
    try:
        body = json.loads(envelope.get("Message", "{}"))
    except json.JSONDecodeError:
        body = {"text": envelope.get("Message")}
    return Notification(
        topic_arn=topic_arn,
        subject=envelope.get("Subject", ""),
        message=body if isinstance(body, dict) else {"text": body},
        attributes={
            name: value.get("Value", "") for name, value in (envelope.get("MessageAttributes") or {}).items()
        },
        message_id=envelope.get("MessageId", ""),
    )


def model_cards_updated_as_sagemaker_does() -> contextlib.AbstractContextManager[None]:
    """SageMaker's UpdateModelCard "cannot update both model card content and model card status in a
    single call" (API reference), and what a call leaves out stays as it was. moto takes both at once and
    blanks what is left out, so a card update that real SageMaker refuses passed offline. The emulated
    organization applies this; so can a test on plain moto."""
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.models import SageMakerModelBackend

    original = SageMakerModelBackend.update_model_card

    def update_model_card(
        self: SageMakerModelBackend, model_card_name: str, content: str | None, model_card_status: str | None
    ) -> str:
        if content is not None and model_card_status is not None:
            raise ValidationError(
                "You cannot update both model card content and model card status in a single call."
            )
        if versions := self.model_cards.get(model_card_name):
            latest = versions[-1]
            content = latest.content if content is None else content
            model_card_status = latest.model_card_status if model_card_status is None else model_card_status
        return original(self, model_card_name, content, model_card_status)  # type: ignore[arg-type]

    return _patched(SageMakerModelBackend, "update_model_card", update_model_card)


def notebook_instances_updated_as_sagemaker_does() -> contextlib.AbstractContextManager[None]:
    """moto does not implement UpdateNotebookInstance (it raises NotImplementedError). SageMaker updates a
    notebook instance only when it is Stopped, and refuses otherwise. The emulation does the same and applies
    RootAccess, the one setting the backbone changes, at once, as moto stops an instance at once; any other
    setting is refused by name rather than silently ignored. The emulated organization applies this; so can a
    test on plain moto."""
    from moto.core.responses import EmptyResult
    from moto.core.utils import utcnow
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.responses import SageMakerResponse

    def update_notebook_instance(self: SageMakerResponse) -> EmptyResult:
        unsupported = sorted(set(json.loads(self.body or "{}")) - {"NotebookInstanceName", "RootAccess"})
        if unsupported:
            raise NotImplementedError(
                f"the emulated UpdateNotebookInstance changes only RootAccess, not {', '.join(unsupported)}"
            )
        notebook = self.sagemaker_backend.get_notebook_instance(self._get_param("NotebookInstanceName"))
        root_access = self._get_param("RootAccess")
        if root_access is not None and root_access not in ("Enabled", "Disabled"):
            raise ValidationError(f"Value '{root_access}' at 'rootAccess' must be Enabled or Disabled")
        if notebook.status != "Stopped":
            raise ValidationError(
                f"Status ({notebook.status}) not in ([Stopped]). Unable to transition to (Updating) for "
                f"Notebook Instance ({notebook.arn})"
            )
        if root_access is not None:
            notebook.root_access = root_access
        notebook.last_modified_time = utcnow()
        return EmptyResult()

    return _patched(SageMakerResponse, "update_notebook_instance", update_notebook_instance)


@contextlib.contextmanager
def model_package_group_policies_as_sagemaker_keeps_them() -> Iterator[None]:
    """moto does not implement PutModelPackageGroupPolicy or GetModelPackageGroupPolicy. The emulation keeps
    the policy on the group, as SageMaker does, and answers a group without one as SageMaker does: a
    ValidationException. The emulated organization applies this; so can a test on plain moto."""
    from moto.sagemaker.exceptions import ValidationError
    from moto.sagemaker.responses import SageMakerResponse

    def group(self: SageMakerResponse) -> Any:
        name = self._get_param("ModelPackageGroupName")
        found = self.sagemaker_backend.model_package_groups.get(name)
        if found is None:
            raise ValidationError(f"Model Package Group {name} does not exist.")
        return found

    def put_model_package_group_policy(self: SageMakerResponse) -> str:
        found = group(self)
        json.loads(self._get_param("ResourcePolicy"))  # SageMaker refuses a policy that is not JSON
        found.resource_policy = self._get_param("ResourcePolicy")
        return json.dumps({"ModelPackageGroupArn": found.arn})

    def get_model_package_group_policy(self: SageMakerResponse) -> str:
        found = group(self)
        policy = getattr(found, "resource_policy", None)
        if policy is None:
            raise ValidationError(f"Cannot find resource policy for ModelPackageGroup {found.arn}")
        return json.dumps({"ResourcePolicy": policy})

    with (
        _patched(SageMakerResponse, "put_model_package_group_policy", put_model_package_group_policy),
        _patched(SageMakerResponse, "get_model_package_group_policy", get_model_package_group_policy),
    ):
        yield


# What SQS accepts in a message body and in a String attribute value (the W3C XML character set), as the
# SendMessage API reference lists it.
_SQS_TEXT = re.compile("^[\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")


# What SNS refuses in a subject besides its length, which moto checks (Publish API reference: "UTF-8 text with
# no line breaks or control characters"): Unicode's control characters and line and paragraph separators.
_SNS_SUBJECT_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@contextlib.contextmanager
def messages_checked_as_sqs_and_sns_do() -> Iterator[None]:
    """moto takes any character in an SQS message body or String attribute value, and in an SNS subject.
    SQS refuses what is outside the XML character set (InvalidMessageContents; the API reference gives
    attribute values the same rule as the body) and SNS a subject with a control character or a line break:
    a catch-all that put an event's raw id in an attribute, or an error message in a subject, passed offline
    and failed on the very event it was catching on AWS. The emulated organization applies this; so can a
    test on plain moto."""
    import moto.sqs.responses
    from moto.sns.models import SNSBackend
    from moto.sqs.exceptions import SQSException
    from moto.sqs.models import SQSBackend

    original_attributes = moto.sqs.responses.validate_message_attributes
    original_message = SQSBackend._validate_message
    original_publish = SNSBackend.publish

    def refused(where: str) -> SQSException:
        return SQSException("InvalidMessageContents", f"Invalid characters found in {where}")

    def validate_message_attributes(message_attributes: dict[str, Any]) -> None:
        original_attributes(message_attributes)
        for name, value in (message_attributes or {}).items():
            if isinstance(value.get("StringValue"), str) and not _SQS_TEXT.match(value["StringValue"]):
                raise refused(f"the value of message attribute {name}")

    def validate_message(self: SQSBackend, queue: Any, message_body: str, *args: Any, **kwargs: Any) -> None:
        if isinstance(message_body, str) and not _SQS_TEXT.match(message_body):
            raise refused("the message body")
        original_message(self, queue, message_body, *args, **kwargs)

    def publish(self: SNSBackend, message: str, arn: str | None, *args: Any, **kwargs: Any) -> str:
        subject = kwargs.get("subject")
        if isinstance(subject, str) and _SNS_SUBJECT_REFUSED.search(subject):
            raise ValueError("Invalid parameter: Subject")  # moto answers InvalidParameter, as for its length
        return str(original_publish(self, message, arn, *args, **kwargs))

    with (
        _patched(moto.sqs.responses, "validate_message_attributes", validate_message_attributes),
        _patched(SQSBackend, "_validate_message", validate_message),
        _patched(SNSBackend, "publish", publish),
    ):
        yield


@contextlib.contextmanager
def _patched(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    had = name in owner.__dict__
    original = owner.__dict__.get(name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        if had:
            setattr(owner, name, original)
        else:
            delattr(owner, name)


@functools.cache
def _parse_definition() -> Callable[[str], Any]:
    """moto's ASL parser, remembering its last 64 definitions for the whole process (a definition it
    refuses raises each time, as moto's does)."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    return functools.lru_cache(maxsize=64)(AmazonStateLanguageParser.parse)


@functools.cache
def _key_pair_of_symmetric_keys() -> Any:
    from moto.kms.utils import generate_private_key

    return generate_private_key("SYMMETRIC_DEFAULT")


@functools.cache
def _workflow_client(region: str, service: str) -> Any:
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

    return boto_client_for(region=region, service=service)


def _execution_status(execution_arn: str) -> str:
    """What DescribeExecution would answer as `execution_arn`'s status, read from moto's backend. Waiting
    for a workflow polls it every 10 ms, and through the API each poll took a few milliseconds of the CPU
    the workflow's own thread was waiting for."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    region, account = execution_arn.split(":")[3:5]
    return str(stepfunctions_parser_backends[account][region].describe_execution(execution_arn).status)


def _drop_unflushed_metrics() -> None:
    """Powertools keeps the metrics of every Metrics instance in one shared set and, when metrics are
    disabled (as the runtime runs them), never clears it. Cleared after each invocation and at each new
    deployment, as a fresh execution environment would be: else a later run with metrics on (a test
    reading EMF) prints every count since the process started."""
    module = sys.modules.get("aws_lambda_powertools.metrics")
    if module is not None:
        module.Metrics().clear_metrics()


def json_kind(value: Any) -> str:
    """What a JSON document is, in JSON's words (a person wrote it, not Python)."""
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _envelope_problem(event: dict[str, Any]) -> str | None:
    """What makes `event` one EventBridge could not have delivered, or None. EventBridge gives every event
    a UUID and the 12-digit account it came from; the backbone keys its ledger on both, so a file's event
    with another kind of id or account is kept aside here rather than fed to the backbone."""
    missing = [key for key in ("id", "source", "detail-type", "account", "detail") if key not in event]
    if missing:
        return f"missing {', '.join(missing)}"
    event_id, account = event["id"], event["account"]
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID_LENGTH:
        return f"id must be a non-empty string of at most {MAX_EVENT_ID_LENGTH} characters"
    if not isinstance(account, str) or not re.fullmatch(r"[0-9]{12}", account):
        return "account must be a 12-digit AWS account id"
    return None


def _one_line(error: object) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())
