"""govern/target_input.py: what a rule target receives when it has Input, InputPath or InputTransformer,
checked on the examples and the "Common issues" of EventBridge's "Amazon EventBridge input
transformation" page."""

from __future__ import annotations

import json

import pytest

from govern.target_input import check, render, target_input, value_at
from govern.template import TemplateError

EC2_EVENT = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2015-11-11T21:29:54Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
    "detail": {"instance-id": "i-0123456789", "state": "RUNNING"},
}
PATHS = {"instance": "$.detail.instance-id", "state": "$.detail.state"}
RULE = "arn:aws:events:us-east-1:123456789012:rule/my-bus/my-rule"


def transformed(template: str, paths: dict[str, str] = PATHS) -> str:
    shaping = {"InputTransformer": {"InputPathsMap": paths, "InputTemplate": template}}
    return target_input(shaping, EC2_EVENT, RULE)


def test_without_shaping_the_target_gets_the_event() -> None:
    assert json.loads(target_input({}, EC2_EVENT, RULE)) == EC2_EVENT


def test_a_constant_input_and_an_input_path() -> None:
    assert target_input({"Input": '{"tick": 1}'}, EC2_EVENT, RULE) == '{"tick": 1}'
    assert json.loads(target_input({"InputPath": "$.detail"}, EC2_EVENT, RULE)) == EC2_EVENT["detail"]
    assert (
        json.loads(target_input({"InputPath": "$.resources[0]"}, EC2_EVENT, RULE))
        == EC2_EVENT["resources"][0]
    )


def test_a_json_template_quotes_a_value_outside_a_string_and_inserts_its_text_inside_one() -> None:
    assert json.loads(transformed('{"instance": <instance>, "state": <state>}')) == {
        "instance": "i-0123456789",
        "state": "RUNNING",
    }
    assert json.loads(transformed('{"message": "instance <instance> is in <state>"}')) == {
        "message": "instance i-0123456789 is in RUNNING"
    }
    # "EventBridge doesn't escape values extracted by Input Path": a quote in a value breaks the JSON,
    # as it would on AWS (where the target then refuses it).
    note = {"InputTransformer": {"InputPathsMap": {"n": "$.detail.note"}, "InputTemplate": '{"said": "<n>"}'}}
    assert target_input(note, {"detail": {"note": 'say "hi"'}}, RULE) == '{"said": "say "hi""}'


def test_a_plain_text_template_gets_the_values_text() -> None:
    assert transformed("<instance> is in state <state>") == "i-0123456789 is in state RUNNING"
    assert (
        json.loads(transformed('"<instance> is in state \\"<state>\\""'))
        == 'i-0123456789 is in state "RUNNING"'
    )


def test_the_predefined_variables() -> None:
    template = (
        '{"rule": "<aws.events.rule-name>", "arn": "<aws.events.rule-arn>",'
        ' "at": "<aws.events.event.ingestion-time>",'
        ' "event": <aws.events.event.json>, "envelope": <aws.events.event>}'
    )
    document = json.loads(transformed(template, {}))
    assert (document["rule"], document["arn"], document["at"]) == ("my-rule", RULE, "2015-11-11T21:29:54Z")
    assert document["event"] == EC2_EVENT
    assert "detail" not in document["envelope"] and document["envelope"]["id"] == EC2_EVENT["id"]


def test_an_object_inside_a_string_loses_its_inner_quotes() -> None:
    """The page: 'If a JSON path references a JSON object or array, but the variable is referenced in a
    string, EventBridge removes any internal quotes to ensure a valid string.'"""
    document = json.loads(transformed('{"detail": "Detail is <d>"}', {"d": "$.detail"}))
    assert document == {"detail": "Detail is {instance-id:i-0123456789,state:RUNNING}"}


def test_a_variable_whose_path_the_event_lacks_does_not_appear_and_an_unknown_placeholder_stays() -> None:
    """The page: 'If you specify a variable to match a JSON path that doesn't exist in the event, that
    variable isn't created and won't appear in the output.'"""
    assert transformed('{"state": "<state>", "zone": "<zone>"}', {**PATHS, "zone": "$.detail.zone"}) == (
        '{"state": "RUNNING", "zone": ""}'
    )
    assert transformed("<state> in <zone>", {**PATHS, "zone": "$.resources[3]"}) == "RUNNING in "
    assert target_input({"InputPath": "$.detail.zone"}, EC2_EVENT, RULE) == "null"
    assert render("<a> and <b>", {"a": 1}) == "1 and <b>"


@pytest.mark.parametrize("path", ["$.detail.*", "detail.state", "$..state", "$['detail']"])
def test_a_path_eventbridge_notation_does_not_read_offline_is_refused(path: str) -> None:
    with pytest.raises(TemplateError, match="JSON path"):
        value_at(EC2_EVENT, path)
    # When the template is loaded, not when an event first reaches the target.
    with pytest.raises(TemplateError, match="JSON path"):
        check({"InputTransformer": {"InputPathsMap": {"x": path}, "InputTemplate": "<x>"}})
    with pytest.raises(TemplateError, match="JSON path"):
        check({"InputPath": path})
