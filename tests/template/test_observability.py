"""Nothing fails unseen: every dead-letter queue, state machine and function of template.yaml has its
alarm, so does every rule whose events could be lost beyond its dead-letter queue, every alarm notifies
the platform topic, and the dashboard shows them all."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from governance import metric_names
from tests.template.templates import (
    alarms_on,
    load_plain,
    of_type,
    rules_losing_events_unseen,
    rules_with_dead_letter_queues,
)

PLATFORM_TOPIC = {"Ref": "PlatformTopic"}
# The Powertools metrics (namespace MLGovernance) the handlers emit for their decisions; that they are
# really emitted, one per decision, is tests/flows/test_metrics.py's part.
DECISION_METRICS = sorted(metric_names.ALL)
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
STATE_MACHINE_TYPES = ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")


@pytest.fixture(scope="module")
def backbone() -> dict[str, Any]:
    return load_plain()


def referenced_queues(node: Any) -> set[str]:
    """Logical ids of queues used as a dead-letter target anywhere (rule targets, SAM events, redrive)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("DeadLetterConfig", "DeadLetterQueue", "RedrivePolicy") and isinstance(value, dict):
                for arn in (value.get("Arn"), value.get("TargetArn"), value.get("deadLetterTargetArn")):
                    if isinstance(arn, dict) and "Fn::GetAtt" in arn:
                        found.add(arn["Fn::GetAtt"][0])
            found |= referenced_queues(value)
    elif isinstance(node, list):
        for item in node:
            found |= referenced_queues(item)
    return found


def dead_letter_queues(template: dict[str, Any]) -> set[str]:
    queues = set(of_type(template, "AWS::SQS::Queue"))
    return referenced_queues(template["Resources"]) & queues


def missing_alarms(template: dict[str, Any]) -> list[str]:
    missing = [
        f"dead-letter queue {queue}"
        for queue in sorted(dead_letter_queues(template))
        if not alarms_on(
            template,
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            {"Fn::GetAtt": [queue, "QueueName"]},
        )
    ]
    # A failed execution was caught and recorded by its RecordFailure step; a stopped (aborted) one ran no
    # step to say so. Both must reach the platform topic.
    missing += [
        f"state machine {machine} ({metric})"
        for machine in sorted(of_type(template, *STATE_MACHINE_TYPES))
        for metric in ("ExecutionsFailed", "ExecutionsAborted")
        if not alarms_on(template, "AWS/States", metric, "StateMachineArn", {"Ref": machine})
    ]
    missing += [
        f"function {function}"
        for function in sorted(of_type(template, *FUNCTION_TYPES))
        if not alarms_on(template, "AWS/Lambda", "Errors", "FunctionName", {"Ref": function})
    ]
    return missing


def dashboard_body(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (dashboard,) = of_type(template, "AWS::CloudWatch::Dashboard").values()
    text = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    # Placeholders keep their name so the test can tell which resource a metric points at.
    parsed = json.loads(re.sub(r"\$\{([^}]+)\}", r"<\1>", text))
    return text, parsed


def dashboard_metrics(template: dict[str, Any]) -> set[tuple[str, ...]]:
    _, body = dashboard_body(template)
    return {
        # A trailing object holds the metric's rendering options (its axis), not part of what it is.
        tuple(metric[:-1] if isinstance(metric[-1], dict) else metric)
        for widget in body["widgets"]
        for metric in widget.get("properties", {}).get("metrics", [])
        if not isinstance(metric[0], dict)  # a metric math expression, not one metric
    }


def dashboard_expressions(template: dict[str, Any]) -> list[str]:
    _, body = dashboard_body(template)
    return [
        metric[0]["expression"]
        for widget in body["widgets"]
        for metric in widget.get("properties", {}).get("metrics", [])
        if isinstance(metric[0], dict)
    ]


# ---------------------------------------------------------------- alarms


def test_the_template_has_what_must_be_watched(backbone: dict[str, Any]) -> None:
    # If these were empty the checks below would pass vacuously.
    assert dead_letter_queues(backbone) >= {"EventsDeadLetterQueue", "ConfigComplianceDeadLetterQueue"}
    assert set(of_type(backbone, *STATE_MACHINE_TYPES)) >= {
        "ModelPromotionStateMachine",
        "ModelDeploymentStateMachine",
        "AccountBaselineStateMachine",
    }
    assert len(of_type(backbone, *FUNCTION_TYPES)) >= 5


def test_every_dead_letter_queue_state_machine_and_function_has_its_alarm(backbone: dict[str, Any]) -> None:
    assert missing_alarms(backbone) == []


def queues_read_by_functions(template: dict[str, Any]) -> dict[str, int]:
    """Queues a function's SQS event source reads, with how long each keeps a message (seconds)."""
    queues: dict[str, int] = {}
    for resource in of_type(template, *FUNCTION_TYPES).values():
        for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
            if event["Type"] == "SQS":
                (queue, _) = event["Properties"]["Queue"]["Fn::GetAtt"]
                retention = template["Resources"][queue]["Properties"].get("MessageRetentionPeriod", 345600)
                queues[queue] = int(retention)
    return queues


def unwatched_queue_ages(template: dict[str, Any]) -> list[str]:
    """A message no function receives is never dead-lettered, only deleted when its retention ends: each
    queue a function reads alarms on its oldest message's age, above the longest legitimate wait (the
    hourly cap holds an evaluation back an hour per delivery) and well before the retention ends."""
    longest_wait = int(template["Parameters"]["ComplianceMaxReceives"]["MaxValue"]) * 3600
    problems = []
    for queue, retention in sorted(queues_read_by_functions(template).items()):
        watching = [
            alarm["Properties"]
            for alarm in of_type(template, "AWS::CloudWatch::Alarm").values()
            if alarm["Properties"].get("MetricName") == "ApproximateAgeOfOldestMessage"
            and alarm["Properties"].get("Dimensions")
            == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
        ]
        if not any(
            # The age itself must pass the longest legitimate wait; more periods only make it fire later.
            longest_wait < p["Threshold"]
            and p["Threshold"] + p["Period"] * (p["EvaluationPeriods"] - 1) <= retention / 2
            and p["Statistic"] == "Maximum"
            and p["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
            and p.get("TreatMissingData") == "notBreaching"
            for p in watching
        ):
            problems.append(f"queue {queue}: no alarm on a message left unreceived")
    return problems


def test_a_queue_no_function_reads_any_more_raises_an_alarm_before_its_messages_expire(
    backbone: dict[str, Any],
) -> None:
    assert set(queues_read_by_functions(backbone)) == {"ConfigComplianceQueue"}
    assert unwatched_queue_ages(backbone) == []
    for queue in queues_read_by_functions(backbone):  # and the dashboard shows what the alarm watches
        assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", f"<{queue}.QueueName>") in (
            dashboard_metrics(backbone)
        )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda alarm: alarm.update(Threshold=4 * 86400),  # after SQS deleted the messages
        lambda alarm: alarm.update(Threshold=3600),  # fires on an evaluation the cap holds back
        lambda alarm: alarm.update(Dimensions=[{"Name": "QueueName", "Value": "another-queue"}]),
        lambda alarm: alarm.update(Threshold=3600, EvaluationPeriods=12),  # an hour old, twelve times over
        lambda alarm: alarm.update(EvaluationPeriods=500),  # 12 h, then 500 periods of 5 minutes more
    ],
    ids=["too-late", "too-early", "other-queue", "early-over-many-periods", "late-over-many-periods"],
)
def test_a_weakened_queue_age_alarm_is_caught(backbone: dict[str, Any], mutate: Any) -> None:
    template = copy.deepcopy(backbone)
    mutate(template["Resources"]["ConfigComplianceQueueAgeAlarm"]["Properties"])
    assert unwatched_queue_ages(template) == [
        "queue ConfigComplianceQueue: no alarm on a message left unreceived"
    ]


def test_every_alarm_notifies_the_platform_topic(backbone: dict[str, Any]) -> None:
    alarms = of_type(backbone, "AWS::CloudWatch::Alarm")
    assert alarms
    for name, alarm in alarms.items():
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == [PLATFORM_TOPIC], name
        assert properties.get("OKActions", [PLATFORM_TOPIC]) == [PLATFORM_TOPIC], name
        assert properties.get("ActionsEnabled", True) is True, name
        assert properties.get("AlarmDescription"), f"{name}: say what to do when it fires"


def test_cloudwatch_may_publish_to_the_encrypted_platform_topic(backbone: dict[str, Any]) -> None:
    topic = backbone["Resources"]["PlatformTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "GovernanceKey"}
    key_policy = backbone["Resources"]["GovernanceKey"]["Properties"]["KeyPolicy"]["Statement"]
    assert any(
        "cloudwatch.amazonaws.com" in statement.get("Principal", {}).get("Service", [])
        and {"kms:GenerateDataKey", "kms:Decrypt"} <= set(statement["Action"])
        for statement in key_policy
    )
    # A topic policy replaces SNS's default one, which let this account's alarms publish: it must name them.
    topic_policies = [
        policy["Properties"]
        for policy in of_type(backbone, "AWS::SNS::TopicPolicy").values()
        if PLATFORM_TOPIC in policy["Properties"]["Topics"]
    ]
    assert topic_policies, "the platform topic has no topic policy"
    assert any(
        statement["Effect"] == "Allow"
        and statement.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
        and statement["Action"] in ("sns:Publish", ["sns:Publish"])
        and statement["Resource"] == PLATFORM_TOPIC
        and statement.get("Condition") == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
        for policy in topic_policies
        for statement in policy["PolicyDocument"]["Statement"]
    ), "CloudWatch alarms of this account may not publish to the platform topic"


@pytest.mark.parametrize(
    "removed",
    [
        "EventsDeadLetterQueueAlarm",
        "ModelPromotionStateMachineFailedAlarm",
        "AccountBaselineStateMachineAbortedAlarm",
        "RecordFailureFunctionErrorsAlarm",
    ],
)
def test_a_missing_alarm_is_caught(backbone: dict[str, Any], removed: str) -> None:
    mutated = copy.deepcopy(backbone)
    del mutated["Resources"][removed]
    assert len(missing_alarms(mutated)) == 1


def test_an_alarm_that_needs_more_than_one_message_is_caught(backbone: dict[str, Any]) -> None:
    mutated = copy.deepcopy(backbone)
    mutated["Resources"]["EventsDeadLetterQueueAlarm"]["Properties"]["Threshold"] = 5
    assert missing_alarms(mutated) == ["dead-letter queue EventsDeadLetterQueue"]


def test_a_new_function_without_an_alarm_is_caught(backbone: dict[str, Any]) -> None:
    mutated = copy.deepcopy(backbone)
    mutated["Resources"]["AnotherFunction"] = copy.deepcopy(mutated["Resources"]["RecordFailureFunction"])
    assert missing_alarms(mutated) == ["function AnotherFunction"]


def test_an_event_eventbridge_could_not_even_dead_letter_raises_an_alarm(backbone: dict[str, Any]) -> None:
    bus = {"Ref": "GovernanceEventBus"}
    assert rules_with_dead_letter_queues(backbone) == {
        "ConfigNonComplianceRule": bus,
        "ModelPromotionStateMachineTeamApproval": bus,
        "ModelDeploymentStateMachineCentralDecision": None,
        "AccountBaselineStateMachineAccountLifecycle": bus,
        "AccountBaselineStateMachineAccountLeftOrganization": bus,
    }
    assert rules_losing_events_unseen(backbone) == []


def _lost_query(template: dict[str, Any], query_id: str) -> dict[str, Any]:
    metrics = template["Resources"]["EventsLostAlarm"]["Properties"]["Metrics"]
    return next(q for q in metrics if q["Id"] == query_id)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("mutate", "caught"),
    [
        (
            lambda t: t["Resources"]["EventsLostAlarm"]["Properties"]["Metrics"].remove(
                _lost_query(t, "teamApproval")
            ),
            ["ModelPromotionStateMachineTeamApproval"],
        ),
        (
            lambda t: _lost_query(t, "lost").update(
                Expression=_lost_query(t, "lost")["Expression"].replace(", FILL(accountLeft, 0)", "")
            ),
            ["AccountBaselineStateMachineAccountLeftOrganization"],
        ),
        (
            # On the default bus the metric has no EventBusName dimension: this one would never match.
            lambda t: _lost_query(t, "centralDecision")["MetricStat"]["Metric"]["Dimensions"].insert(
                0, {"Name": "EventBusName", "Value": "default"}
            ),
            ["ModelDeploymentStateMachineCentralDecision"],
        ),
        (
            # The whole "<bus>|<rule>" Ref is no rule name.
            lambda t: _lost_query(t, "configNonCompliance")["MetricStat"]["Metric"]["Dimensions"][1].update(
                Value={"Ref": "ConfigNonComplianceRule"}
            ),
            ["ConfigNonComplianceRule"],
        ),
        (
            lambda t: t["Resources"]["EventsLostAlarm"]["Properties"].update(Threshold=5),
            sorted(
                [
                    "ConfigNonComplianceRule",
                    "ModelPromotionStateMachineTeamApproval",
                    "ModelDeploymentStateMachineCentralDecision",
                    "AccountBaselineStateMachineAccountLifecycle",
                    "AccountBaselineStateMachineAccountLeftOrganization",
                ]
            ),
        ),
        (
            lambda t: t["Resources"]["AccountBaselineStateMachine"]["Properties"]["Events"].update(
                AnotherLifecycle=t["Resources"]["AccountBaselineStateMachine"]["Properties"]["Events"][
                    "AccountLifecycle"
                ]
            ),
            ["AccountBaselineStateMachineAnotherLifecycle"],
        ),
    ],
    ids=[
        "metric-removed",
        "left-out-of-the-sum",
        "default-bus-dimensions",
        "unsplit-ref",
        "five",
        "new-rule",
    ],
)
def test_a_rule_losing_events_unseen_is_caught(
    backbone: dict[str, Any], mutate: Any, caught: list[str]
) -> None:
    mutated = copy.deepcopy(backbone)
    mutate(mutated)
    assert rules_losing_events_unseen(mutated) == caught


def test_dashboard_shows_lost_events_of_every_bus_by_rule(backbone: dict[str, Any]) -> None:
    searches = dashboard_expressions(backbone)
    for schema in ("{AWS/Events,EventBusName,RuleName}", "{AWS/Events,RuleName}"):
        assert f"SEARCH('{schema} MetricName=\"InvocationsFailedToBeSentToDlq\"', 'Sum', 60)" in searches


def forwarding_alarm_problems(template: dict[str, Any]) -> list[str]:
    """The member accounts' forwarding dead-letter queues are read by WatchForwardingFunction, which emits
    their depth as a Powertools metric: one event kept, or one queue that cannot be read, must alarm."""
    service = {"Fn::Sub": "ml-governance-${Stage}"}
    problems = []
    for metric in (metric_names.FORWARDING_DEAD_LETTERS, metric_names.FORWARDING_QUEUES_UNREADABLE):
        alarms = alarms_on(template, "MLGovernance", metric, "service", service)
        # The watcher runs every 15 minutes: a shorter period would fall between two readings.
        if not any(
            template["Resources"][alarm]["Properties"]["Period"] >= 900
            and template["Resources"][alarm]["Properties"]["Statistic"] == "Maximum"
            for alarm in alarms
        ):
            problems.append(metric)
    return problems


def silent_watch_alarms(template: dict[str, Any]) -> list[str]:
    """Alarms that fire when the watcher reported nothing for at most an hour: missing data must count."""
    return [
        lid
        for lid, alarm in of_type(template, "AWS::CloudWatch::Alarm").items()
        if (p := alarm["Properties"]).get("Namespace") == "MLGovernance"
        and p.get("MetricName") == metric_names.FORWARDING_QUEUES_WATCHED
        and p["Statistic"] == "SampleCount"
        and p["Period"] * p["EvaluationPeriods"] <= 3600
        and (p["ComparisonOperator"], p["Threshold"]) == ("LessThanThreshold", 1)
        and p.get("TreatMissingData") == "breaching"
    ]


def test_events_kept_in_member_accounts_raise_an_alarm(backbone: dict[str, Any]) -> None:
    assert forwarding_alarm_problems(backbone) == []
    assert silent_watch_alarms(backbone) == ["ForwardingWatchSilentAlarm"]
    schedule = backbone["Resources"]["WatchForwardingFunction"]["Properties"]["Events"]["Every15Minutes"]
    assert schedule["Type"] == "Schedule"
    assert schedule["Properties"]["Schedule"] == "rate(15 minutes)"


@pytest.mark.parametrize(
    ("mutate", "caught"),
    [
        (lambda r: r.pop("ForwardingDeadLettersAlarm"), ["ForwardingDeadLetters"]),
        (
            lambda r: r["ForwardingQueuesUnreadableAlarm"]["Properties"].update(Period=300),
            ["ForwardingQueuesUnreadable"],
        ),
        (
            lambda r: r["ForwardingDeadLettersAlarm"]["Properties"].update(Statistic="Minimum"),
            ["ForwardingDeadLetters"],
        ),
    ],
    ids=["removed", "shorter-than-the-schedule", "minimum"],
)
def test_a_weakened_forwarding_alarm_is_caught(
    backbone: dict[str, Any], mutate: Any, caught: list[str]
) -> None:
    mutated = copy.deepcopy(backbone)
    mutate(mutated["Resources"])
    assert forwarding_alarm_problems(mutated) == caught


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p.update(TreatMissingData="notBreaching"),
        lambda p: p.update(Period=86400),
        lambda p: p.update(Statistic="Sum"),
    ],
    ids=["missing-data-is-fine", "a-day", "sum-of-zero-readings"],
)
def test_a_watch_that_could_stop_unseen_is_caught(backbone: dict[str, Any], mutate: Any) -> None:
    mutated = copy.deepcopy(backbone)
    mutate(mutated["Resources"]["ForwardingWatchSilentAlarm"]["Properties"])
    assert silent_watch_alarms(mutated) == []


# ---------------------------------------------------------------- logs


def log_problems(template: dict[str, Any]) -> list[str]:
    """Log groups not encrypted with the backbone's key or kept less than a year, and functions that do not
    log to a group of their own in the template (Lambda's default one is unencrypted and never expires)."""
    groups = of_type(template, "AWS::Logs::LogGroup")
    problems = [
        f"log group {name}"
        for name, group in sorted(groups.items())
        if group["Properties"].get("KmsKeyId") != {"Fn::GetAtt": ["GovernanceKey", "Arn"]}
        or group["Properties"].get("RetentionInDays", 0) < 365
    ]
    used: dict[str, str] = {}
    for name, function in sorted(of_type(template, *FUNCTION_TYPES).items()):
        target = (function["Properties"].get("LoggingConfig") or {}).get("LogGroup")
        group = target.get("Ref") if isinstance(target, dict) else None
        if group not in groups or group in used:
            problems.append(f"function {name}")
        used[str(group)] = name
    return problems


def test_every_function_logs_to_its_own_encrypted_log_group_kept_a_year(backbone: dict[str, Any]) -> None:
    assert len(of_type(backbone, "AWS::Logs::LogGroup")) > len(of_type(backbone, *FUNCTION_TYPES))
    assert log_problems(backbone) == []


@pytest.mark.parametrize(
    ("mutate", "caught"),
    [
        (
            lambda r: r["RemediateConfigFunction"]["Properties"].pop("LoggingConfig"),
            "function RemediateConfigFunction",
        ),
        (
            lambda r: r["RemediateConfigFunctionLogGroup"]["Properties"].pop("KmsKeyId"),
            "log group RemediateConfigFunctionLogGroup",
        ),
        (
            lambda r: r["RemediateConfigFunctionLogGroup"]["Properties"].update(RetentionInDays=30),
            "log group RemediateConfigFunctionLogGroup",
        ),
        (
            lambda r: r["RemediateConfigFunction"]["Properties"].update(
                LoggingConfig=r["RecordFailureFunction"]["Properties"]["LoggingConfig"]
            ),
            "function RemediateConfigFunction",
        ),
    ],
    ids=["default-group", "unencrypted", "kept-a-month", "shared"],
)
def test_a_function_log_problem_is_caught(backbone: dict[str, Any], mutate: Any, caught: str) -> None:
    mutated = copy.deepcopy(backbone)
    mutate(mutated["Resources"])
    assert log_problems(mutated) == [caught]


# ---------------------------------------------------------------- dashboard


def test_dashboard_shows_queues_workflows_functions_and_decisions(backbone: dict[str, Any]) -> None:
    metrics = dashboard_metrics(backbone)
    for queue in dead_letter_queues(backbone):
        assert (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "QueueName",
            f"<{queue}.QueueName>",
        ) in metrics
    for machine in of_type(backbone, *STATE_MACHINE_TYPES):
        for metric in ("ExecutionsFailed", "ExecutionsSucceeded", "ExecutionsAborted"):
            assert ("AWS/States", metric, "StateMachineArn", f"<{machine}>") in metrics
    for function in of_type(backbone, *FUNCTION_TYPES):
        for metric in ("Errors", "Throttles", "Duration"):
            assert ("AWS/Lambda", metric, "FunctionName", f"<{function}>") in metrics
    for name in DECISION_METRICS + sorted(metric_names.FORWARDING):
        # Powertools Metrics adds the `service` dimension from POWERTOOLS_SERVICE_NAME.
        assert ("MLGovernance", name, "service", "ml-governance-<Stage>") in metrics
    plotted = {metric[1] for metric in metrics if metric[0] == "MLGovernance"}
    emitted = metric_names.ALL | metric_names.FORWARDING
    assert plotted <= emitted, f"the dashboard plots metrics nothing emits: {plotted - emitted}"


def test_dashboard_uses_the_powertools_namespace_and_service_of_the_functions(
    backbone: dict[str, Any],
) -> None:
    variables = backbone["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "MLGovernance"
    assert variables["POWERTOOLS_SERVICE_NAME"] == {"Fn::Sub": "ml-governance-${Stage}"}


def test_dashboard_references_only_what_the_template_defines(backbone: dict[str, Any]) -> None:
    text, _ = dashboard_body(backbone)
    names = {match.split(".")[0] for match in re.findall(r"\$\{([^}]+)\}", text)}
    known = set(backbone["Resources"]) | set(backbone["Parameters"]) | {"AWS::Region"}
    assert names and names <= known, names - known


def test_dashboard_url_is_an_output(backbone: dict[str, Any]) -> None:
    url = backbone["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    assert "#dashboards:name=${GovernanceDashboard}" in url
