"""What an EventBridge rule target receives: the event, or what the target's `Input`, `InputPath` or
`InputTransformer` makes of it (docs: "Amazon EventBridge input transformation").

- `Input`: that constant JSON text, whatever the event.
- `InputPath`: the JSON of the part of the event the path names (`$.detail`).
- `InputTransformer`: `InputTemplate` with each `<name>` replaced by the value `InputPathsMap` names, or by
  a predefined variable (`aws.events.rule-arn`, `aws.events.rule-name`, `aws.events.event`,
  `aws.events.event.json`, `aws.events.event.ingestion-time`). As the page's "Common issues" says:
  - outside a string, a value goes in as JSON (a string gets its quotes);
  - inside a string, a value's text goes in unescaped (a quote in it breaks the JSON, as on AWS), and an
    object or array loses its inner quotes;
  - a variable whose path the event does not have "isn't created and won't appear in the output".
  A template that is not JSON is plain text and gets each value's text. A `<name>` neither defined nor
  predefined stays as it is.

Paths use EventBridge's dot notation with array indices (`$.detail.resources[0].id`); wildcards are
refused rather than guessed at.
"""

from __future__ import annotations

import json
import re
from typing import Any

from govern.template import TemplateError

SHAPING_KEYS = ("Input", "InputPath", "InputTransformer")
_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
_PLACEHOLDER = re.compile(r"<([^<>\s]+)>")


class _Missing:
    """The value of a path the event does not have: the variable is not created."""


_MISSING = _Missing()


def value_at(event: Any, path: str) -> Any:
    """The value `path` (`$`, `$.a.b`, `$.a[0]`) names in `event`; _MISSING when it has none."""
    if path == "$":
        return event
    if not path.startswith("$") or "*" in path:
        raise TemplateError(
            f"JSON path {path!r}: the offline runtime reads $.dotted.paths[with indices] only"
        )
    steps = list(_STEP.finditer(path, 1))
    if "".join(step.group(0) for step in steps) != path[1:]:
        raise TemplateError(f"JSON path {path!r} is not in EventBridge's dot notation")
    value = event
    for step in steps:
        key, index = step.group(1), step.group(2)
        if key is not None and isinstance(value, dict) and key in value:
            value = value[key]
        elif index is not None and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return _MISSING
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _string_spans(template: str) -> list[tuple[int, int]]:
    """Where the JSON string literals of `template` start and end (quotes included)."""
    spans, start, escaped = [], -1, False
    for position, character in enumerate(template):
        if start >= 0:
            if escaped:
                escaped = False
            elif character == "\\":
                escaped = True
            elif character == '"':
                spans.append((start, position))
                start = -1
        elif character == '"':
            start = position
    return spans


def render(template: str, values: dict[str, Any]) -> str:
    """`template` with each `<name>` of `values` replaced; other `<...>` stay as they are."""
    is_json = template.lstrip()[:1] in ("{", "[", '"')
    spans = _string_spans(template) if is_json else []

    def replace(found: re.Match[str]) -> str:
        name = found.group(1)
        if name not in values:
            return found.group(0)
        value = values[name]
        if isinstance(value, _Missing):
            return ""
        if not is_json:
            return _text(value)
        if any(start < found.start() < end for start, end in spans):
            return _text(value) if isinstance(value, str) else _text(value).replace('"', "")
        return json.dumps(value)

    return _PLACEHOLDER.sub(replace, template)


def check(shaping: dict[str, Any]) -> None:
    """Raise TemplateError, when the template is loaded, for a path the offline runtime cannot read."""
    paths = [shaping["InputPath"]] if "InputPath" in shaping else []
    paths += list(((shaping.get("InputTransformer") or {}).get("InputPathsMap") or {}).values())
    for path in paths:
        value_at({}, str(path))


def target_input(shaping: dict[str, Any], event: dict[str, Any], rule_arn: str) -> str:
    """The text EventBridge hands the target for `event`: the event itself without shaping."""
    if "Input" in shaping:
        return str(shaping["Input"])
    if "InputPath" in shaping:
        value = value_at(event, str(shaping["InputPath"]))
        return "null" if isinstance(value, _Missing) else json.dumps(value)  # AWS does not say: null here
    transformer = shaping.get("InputTransformer")
    if not transformer:
        return json.dumps(event)
    values = {
        name: value_at(event, str(path)) for name, path in (transformer.get("InputPathsMap") or {}).items()
    }
    values.update(
        {
            "aws.events.rule-arn": rule_arn,
            "aws.events.rule-name": rule_arn.rsplit("/", 1)[-1],
            "aws.events.event": {key: value for key, value in event.items() if key != "detail"},
            "aws.events.event.json": event,
            "aws.events.event.ingestion-time": event.get("time", ""),
        }
    )
    return render(str(transformer["InputTemplate"]), values)
