"""Bad input, property-based: the real sample events of each kind, mutated by hypothesis (fields dropped,
types changed, empty, huge and unicode strings, wrong ARNs and account ids, nested garbage), go through
the runtime by the thousand. Every one is processed, ignored or dead-lettered with a readable one-line
error, and every dead-lettered one is really kept in a dead-letter queue: nothing raises, nothing is lost."""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from collections import Counter
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from govern.emulator import EventResult, Organization
from governance.events import MalformedEvent, parse_event
from governance.events.config import ConfigComplianceChange
from governance.events.control_tower import ControlTowerLifecycle
from governance.events.organizations import OrganizationsAccountCall
from governance.events.sagemaker import ModelPackageStateChange
from tests.conftest import EVENTS_DIR

# The kinds of event, by source, and the model the backbone parses each with.
MODELS: dict[str, type[BaseModel]] = {
    "aws.sagemaker": ModelPackageStateChange,
    "aws.config": ConfigComplianceChange,
    "aws.controltower": ControlTowerLifecycle,
    "aws.organizations": OrganizationsAccountCall,
}
OUTCOMES = {"succeeded", "failed", "ignored", "dead-lettered"}
# Digits to a regular expression's \d, not to AWS: 210987654321 in full-width characters.
FULL_WIDTH_ACCOUNT = "".join(chr(0xFF10 + int(digit)) for digit in "210987654321")
EVENTS_PER_KIND = 1_000
# Events per hypothesis example: past ~150 a list overruns hypothesis' buffer and generation crawls.
BATCH = 125
BATCHES = -(-EVENTS_PER_KIND // BATCH)


@cache
def samples(source: str) -> tuple[tuple[str, str], ...]:
    """(file name, JSON text) of every sample event in events/ from `source`."""
    found = []
    for path in sorted(EVENTS_DIR.glob("*.json")):
        event = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(event, dict) and event.get("source") == source:
            found.append((path.name, json.dumps(event)))
    assert found, f"no sample event from {source} in {EVENTS_DIR}"
    return tuple(found)


# --------------------------------------------------------------------------- mutations

Path = tuple[str | int, ...]

# Fields the backbone routes on or reads: mutated more often than the rest of the event.
READ_BY_THE_BACKBONE = frozenset(
    {
        "id",
        "source",
        "detail-type",
        "account",
        "region",
        "time",
        "resources",
        "detail",
        "ModelPackageArn",
        "ModelPackageGroupName",
        "ModelPackageVersion",
        "ModelApprovalStatus",
        "ApprovalDescription",
        "CustomerMetadataProperties",
        "ModelMetrics",
        "InferenceSpecification",
        "ModelDataUrl",
        "S3Uri",
        "resourceId",
        "resourceType",
        "configRuleName",
        "configRuleARN",
        "awsAccountId",
        "awsRegion",
        "messageType",
        "newEvaluationResult",
        "complianceType",
        "evaluationResultIdentifier",
        "evaluationResultQualifier",
        "orderingTimestamp",
        "annotation",
        "eventName",
        "serviceEventDetails",
        "createManagedAccountStatus",
        "updateManagedAccountStatus",
        "accountId",
        "accountName",
        "state",
        "message",
        "organizationalUnit",
        "organizationalUnitName",
        "organizationalUnitId",
        "eventSource",
        "eventID",
        "errorCode",
        "requestParameters",
    }
)


def paths_in(value: Any, prefix: Path = ()) -> list[Path]:
    found: list[Path] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_in(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths_in(child, (*prefix, index))
    return found


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
nested_garbage = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
# Drawn cheaply (one character repeated): hypothesis would spend its whole buffer on 100,000 drawn ones.
huge_strings = st.builds(
    lambda character, length: character * length,
    st.sampled_from(["A", "é", "😀", "\x00", "\\", '"', "\n", "\u202e", "\U0001d54f", " "]),
    st.integers(min_value=1_000, max_value=120_000),
)
unicode_text = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=16)
wrong_account_ids = st.sampled_from(
    [
        "",
        "0",
        "21098765432",
        "2109876543210",
        "abcdefghijkl",
        "111111111111",
        "999999999999",
        "222222222222",
        "-10987654321",
        FULL_WIDTH_ACCOUNT,
        " 210987654321",
        "210987654321\n",
    ]
)
wrong_arns = st.sampled_from(
    [
        "arn:aws:sagemaker:us-east-1:210987654321:model-package/churn-prediction",
        "arn:aws:sagemaker:us-east-1:210987654321:model-package/churn-prediction/0",
        "arn:aws:sagemaker:us-east-1:210987654321:model-package/churn-prediction/-1",
        "arn:aws:sagemaker:us-east-1:210987654321:model-package/churn-prediction/99999999999999999999",
        "arn:aws:sagemaker:us-east-1:21098765432:model-package/churn-prediction/3",
        "arn:aws:sagemaker:us-east-1:222222222222:model-package/churn-prediction/3",
        "arn:aws:sagemaker:us-east-1:111111111111:model-package/210987654321-churn-prediction/7",
        "arn:aws-cn:sagemaker:cn-north-1:210987654321:model-package/churn-prediction/3",
        "arn:aws:sagemaker:us-east-1:210987654321:model-package//3",
        "arn:aws:sagemaker:us-east-1:210987654321:model-package/../../etc/3",
        "arn:aws:s3:::team-churn-public-data",
        "arn:aws:config:us-east-1:210987654321:config-rule/config-rule-nope",
        "arn:aws:iam::210987654321:root",
        "not an arn",
    ]
)


def replacement_for(old: Any) -> st.SearchStrategy[Any]:
    """A value that does not belong where `old` was: another type, empty, huge, odd unicode, garbage."""
    options: list[st.SearchStrategy[Any]] = [
        st.none(),
        st.just(""),
        st.integers(min_value=-10, max_value=10**13),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.lists(json_scalars, max_size=3),
        st.just({}),
        huge_strings,
        unicode_text,
        nested_garbage,
        wrong_account_ids,
        wrong_arns,
    ]
    if isinstance(old, str):
        options += [
            st.just([old]),
            st.just(old[: len(old) // 2]),
            st.just(old.upper()),
            st.just(f" {old} "),
            st.just(old + "\u0000"),
        ]
        if old.isdecimal():  # what int() reads: "¹".isdigit() is true, and int("¹") fails
            options.append(st.just(int(old)))
    elif isinstance(old, int) and not isinstance(old, bool):
        options += [st.just(str(old)), st.just(-old), st.just(old * 10**9), st.just(float(old) + 0.5)]
    return st.one_of(options)


@st.composite
def mutated_event(draw: st.DrawFn, source: str) -> tuple[Any, str]:
    """(a sample event of `source` with one to three mutations, what was done to it)."""
    name, text = draw(st.sampled_from(samples(source)))
    event: Any = json.loads(text)
    done = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if not isinstance(event, dict) or not event:
            break
        every = paths_in(event)
        read = [path for path in every if path[-1] in READ_BY_THE_BACKBONE]
        # Seven times in eight a field the backbone reads (where bad input bites), else any field at all.
        favour_read: bool = draw(st.integers(min_value=0, max_value=7)) > 0
        among = read if read and favour_read else every
        path = draw(st.sampled_from(among))
        parent = event
        for key in path[:-1]:
            parent = parent[key]
        operation = draw(st.sampled_from(["replace", "drop", "replace", "add a field"]))
        if operation == "drop":
            del parent[path[-1]]
        elif operation == "replace":
            parent[path[-1]] = draw(replacement_for(parent[path[-1]]))
        else:
            holder = parent[path[-1]] if isinstance(parent[path[-1]], dict) else parent
            if isinstance(holder, dict):
                holder[draw(unicode_text)] = draw(nested_garbage)
        done.append(f"{operation} {'.'.join(str(part) for part in path)}")
    if draw(st.integers(min_value=0, max_value=99)) == 99:
        event = draw(st.sampled_from([[event], json.dumps(event), None, 42, "", True]))
        done.append("not an object")
    return event, f"{name}: {'; '.join(done) or 'unchanged'}"


def _as_json(mutant: tuple[Any, str]) -> str:
    return json.dumps(mutant[0], sort_keys=True)


def with_unique_id(event: Any, original_ids: set[str]) -> Any:
    """Sample events share their ids across mutants; a mutant whose id was left alone gets its own (the
    runtime correlates by event id, as the ledger does); a mutated id is kept as the mutation made it."""
    if isinstance(event, dict) and isinstance(event.get("id"), str) and event["id"] in original_ids:
        event = {**event, "id": str(uuid.uuid4())}
    return event


# --------------------------------------------------------------------------- the properties


def same_json(left: Any, right: Any) -> bool:
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


def check_batch(org: Organization, events: list[tuple[Any, str]]) -> list[EventResult]:
    """Replay one batch and check every property; returns the results, in the batch's order.

    Events are replayed concurrently, except those sharing their id with another of the batch (ids mutated
    into the same "0", say): the runtime, like the ledger, tells events apart by id (EventBridge gives each
    its own), so these are replayed one at a time, where it keeps them apart."""
    ids = Counter(str(event["id"]) for event, _ in events if isinstance(event, dict) and "id" in event)
    alone = [
        not isinstance(event, dict) or "id" not in event or ids[str(event["id"])] == 1 for event, _ in events
    ]
    concurrent = [event for (event, _), own_id in zip(events, alone, strict=True) if own_id]
    one_by_one = [event for (event, _), own_id in zip(events, alone, strict=True) if not own_id]
    kept_before = {letter.message_id for letter in org.dead_letters()}

    # Neither replay may raise: an exception fails the test.
    together = org.replay(concurrent, seed=False, sequential=False)
    apart = org.replay(one_by_one, seed=False, sequential=True)

    assert (len(together), len(apart)) == (len(concurrent), len(one_by_one)), "one result per event"
    in_order = iter(together), iter(apart)
    results = [next(in_order[0] if own_id else in_order[1]) for own_id in alone]
    letters = [letter for letter in org.dead_letters() if letter.message_id not in kept_before]
    kept = Counter(json.dumps(letter.event, sort_keys=True) for letter in letters)
    for (event, how), result in zip(events, results, strict=True):
        where = f"{how} -> {result.outcome}: {result.error!r}"
        assert result.outcome in OUTCOMES, where
        if result.outcome in ("failed", "dead-lettered"):
            assert result.error and result.error.strip(), f"no error said: {where}"
            assert "\n" not in result.error and "\r" not in result.error, f"not one line: {where}"
        if result.outcome == "dead-lettered":
            key = json.dumps(event, sort_keys=True)
            assert kept[key] > 0, f"reported dead-lettered but in no dead-letter queue: {where}"
            kept[key] -= 1
    # And the queues hold nothing that is not one of this batch's dead-lettered events.
    unexplained = [
        f"{how} -> {result.outcome}: {result.error!r}"
        for (event, how), result in zip(events, results, strict=True)
        if kept[json.dumps(event, sort_keys=True)] > 0
    ]
    assert sum(kept.values()) == 0, f"kept in a DLQ but not reported dead-lettered: {unexplained}"
    return results


CLOSED_ACCOUNT = "444444444444"


def account_created(account_id: str) -> dict[str, Any]:
    """The sample CreateManagedAccount, for `account_id`."""
    event = json.loads(dict(samples("aws.controltower"))["account-created.json"])
    event["detail"]["serviceEventDetails"]["createManagedAccountStatus"]["account"]["accountId"] = account_id
    return event


@pytest.mark.parametrize("source", list(MODELS))
def test_a_thousand_mutated_events_of_each_kind_are_each_processed_ignored_or_kept(source: str) -> None:
    original_ids = {json.loads(text)["id"] for _, text in samples(source)}
    fed: list[str] = []
    outcomes: Counter[str] = Counter()
    started = time.monotonic()

    @settings(
        max_examples=BATCHES,
        deadline=None,
        database=None,
        # A failing batch is reported with each event's mutations; shrinking a batch of a hundred
        # workflows would take longer than reading that report.
        phases=[Phase.generate],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    # Distinct within a batch: hypothesis' first example, its simplest, would else be one mutant repeated.
    @given(st.lists(mutated_event(source), min_size=BATCH, max_size=BATCH, unique_by=_as_json))
    def replay_batch(batch: list[tuple[Any, str]]) -> None:
        fed.extend(json.dumps(event, sort_keys=True) for event, _ in batch)
        results = check_batch(org, [(with_unique_id(event, original_ids), how) for event, how in batch])
        outcomes.update(result.outcome for result in results)

    # One organization for every batch of the kind: what earlier batches left (ledger, replicas,
    # idempotency records, kept events) is part of what later ones meet.
    with Organization() as org:
        for _, text in samples(source):
            org.seed(json.loads(text))
        if source == "aws.organizations":
            # The sample closes an account the backbone never registered, which leaves nothing to do: the
            # account is created and baselined first, so that mutants reach the deregistration too.
            [created] = org.replay([account_created(CLOSED_ACCOUNT)])
            assert created.outcome == "succeeded", created.error
        # Seeding delivers nothing: whatever a DLQ holds from here on, a mutant put there.
        assert org.dead_letters() == []
        replay_batch()

    elapsed = time.monotonic() - started
    distinct = len(set(fed))
    print(f"\n{source}: {len(fed)} mutated events ({distinct} distinct) in {elapsed:.0f}s: {dict(outcomes)}")
    # Fed: at least a thousand, different from each other (batches are drawn apart, so a few may meet).
    assert len(fed) >= EVENTS_PER_KIND and distinct >= EVENTS_PER_KIND * 0.9, (len(fed), distinct)
    assert sum(outcomes.values()) == len(fed), "every event fed has its one result"
    # The mutants reached more than the front door: some were processed, some refused.
    assert outcomes["dead-lettered"] > 0 and outcomes["succeeded"] + outcomes["failed"] > 0, outcomes


# --------------------------------------------------------------------------- the parser alone


def field_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every dotted field path of `model` (aliases included), nested models followed."""
    found: set[str] = set()
    for name, info in model.model_fields.items():
        for label in {name, info.alias or name}:
            path = f"{prefix}{label}"
            found.add(path)
            for kind in _model_types(info.annotation):
                found |= field_paths(kind, f"{path}.")
    return found


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [kind for argument in getattr(annotation, "__args__", ()) for kind in _model_types(argument)]


@pytest.mark.parametrize("source", list(MODELS))
@settings(max_examples=2_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_parser_returns_a_model_or_one_line_naming_a_field(source: str, data: st.DataObject) -> None:
    model = MODELS[source]
    event, how = data.draw(mutated_event(source))
    untouched = copy.deepcopy(event)

    try:
        parsed = parse_event(event, model)
    except MalformedEvent as error:
        message = str(error)
        assert message.strip() and "\n" not in message and "\r" not in message, (how, message)
        if isinstance(event, dict):
            # `<Model> is malformed: <field path>: <what is wrong>[; ...]`, the first path one of the model's.
            prefix = f"{model.__name__} is malformed: "
            assert message.startswith(prefix), (how, message)
            problems = message[len(prefix) :]
            known = field_paths(model) | {"event"}
            assert any(problems.startswith((f"{path}:", f"{path}.")) for path in known), (how, message)
        else:
            assert message == f"{model.__name__}: expected a JSON object, got {type(event).__name__}", (
                how,
                message,
            )
    else:
        assert isinstance(parsed, model)
    assert event == untouched, "parsing must not change the event it was given"


def test_mutations_are_real_bad_input() -> None:
    """The strategies do produce what the properties are about (a guard against a strategy gone soft)."""
    seen: Counter[str] = Counter()

    @settings(max_examples=300, deadline=None, database=None)
    @given(mutated_event("aws.sagemaker"))
    def look(mutant: tuple[Any, str]) -> None:
        event, how = mutant
        for _, text in samples("aws.sagemaker"):
            if same_json(event, json.loads(text)):
                seen["unchanged"] += 1
        seen["drop" if "drop " in how else "other"] += 1
        try:
            parse_event(event, ModelPackageStateChange)
        except MalformedEvent:
            seen["malformed"] += 1

    look()
    # A replacement can happen to equal what it replaced ("123".upper()); that must stay rare.
    assert seen["unchanged"] < 15 and seen["drop"] > 0 and seen["malformed"] > 30, seen


# --------------------------------------------------------------------------- cases the properties found


@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("aws.config", ("detail", "awsAccountId")),
        (
            "aws.controltower",
            ("detail", "serviceEventDetails", "createManagedAccountStatus", "account", "accountId"),
        ),
    ],
)
@pytest.mark.parametrize(
    "account", [FULL_WIDTH_ACCOUNT, "21098765432", "abcdefghijkl", " 210987654321", "\x00" * 12]
)
def test_an_account_id_is_twelve_ascii_digits_or_the_event_is_malformed(
    source: str, path: tuple[str, ...], account: str
) -> None:
    text = next(text for name, text in samples(source) if name.startswith(("config-s3", "account-cr")))
    event = json.loads(text)
    parent = event
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = account

    with pytest.raises(MalformedEvent, match=path[-1]):
        parse_event(event, MODELS[source])


def test_a_model_package_arn_names_an_account_in_ascii_digits() -> None:
    event = json.loads(dict(samples("aws.sagemaker"))["model-approved-in-team-account.json"])
    event["detail"]["ModelPackageArn"] = event["detail"]["ModelPackageArn"].replace(
        "210987654321", FULL_WIDTH_ACCOUNT
    )

    with pytest.raises(MalformedEvent, match="ModelPackageArn"):
        parse_event(event, ModelPackageStateChange)


@pytest.mark.parametrize("event_id", [42, ["a"], None, "\x00" * 20, "x" * 5000])
def test_a_workflow_failure_keeps_the_event_whatever_its_id(org: Organization, event_id: Any) -> None:
    from governance.failures import record_workflow_failure

    event = json.loads(dict(samples("aws.controltower"))["account-created.json"])
    event["id"] = event_id

    decided = record_workflow_failure(
        flow="account-baseline",
        action="baseline_account",
        audience="platform",
        event=event,
        error={"Error": "MalformedEvent", "Cause": json.dumps({"errorMessage": "id: not a string"})},
    )

    assert decided["dead_lettered"] is True
    [kept] = org.dead_letters()
    assert kept.event == event and kept.error == "id: not a string"
    assert [note.attributes["kind"] for note in org.notifications("platform")] == ["account-baseline-failed"]


def test_an_event_too_big_for_eventbridge_is_refused_and_said_so(org: Organization) -> None:
    event = json.loads(dict(samples("aws.config"))["config-s3-public-read.json"])
    event["detail"]["newEvaluationResult"]["annotation"] = "é" * 140_000  # 280 KB of UTF-8

    [result] = org.replay([event])

    assert result.outcome == "failed"
    assert re.fullmatch(r"event is 27\d KB; EventBridge accepts at most 256 KB", result.error or "")
    assert org.dead_letters() == [] and org.notifications() == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda event: event.pop("account"), "not an EventBridge event: missing account"),
        (lambda event: event.update(id=""), "not an EventBridge event: id must be a non-empty string"),
        (lambda event: event.update(account="21098765432"), "not an EventBridge event: account must be"),
    ],
)
def test_what_eventbridge_could_not_have_sent_is_kept_with_its_reason(
    org: Organization, change: Any, error: str
) -> None:
    event = json.loads(dict(samples("aws.config"))["config-s3-public-read.json"])
    change(event)

    [result] = org.replay([event])

    assert result.outcome == "dead-lettered" and result.error and result.error.startswith(error)
    [kept] = org.dead_letters()
    assert kept.event == event and kept.error == result.error
