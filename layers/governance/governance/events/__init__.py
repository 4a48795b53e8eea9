"""Pydantic models of the governance events, on Powertools' EventBridge model: one module per source,
so a function loads only the models of the events it parses (RemediateConfig: governance.events.config).

This package holds what they share: the open base model, and parse_event with its one-line errors."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from governance.errors import MalformedEvent as MalformedEvent  # re-exported: raised by parse_event


class OpenModel(BaseModel):
    """AWS adds fields over time: keep what we do not model instead of rejecting it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


Model = TypeVar("Model", bound=BaseModel)


def describe_validation_error(error: ValidationError) -> str:
    """One line naming every field that is wrong: `detail.ModelPackageArn: Field required; ...`."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        if not where and item["type"] == "value_error":
            # A whole-event check (model_post_init) already names its field: no `event: Value error, `.
            problems.append(str(item.get("ctx", {}).get("error", item["msg"])))
            continue
        problems.append(f"{where or 'event'}: {item['msg']}")
    return "; ".join(problems)


def parse_event(event: Any, model: type[Model]) -> Model:
    """Validate `event` against `model`, or raise MalformedEvent with a one-line reason."""
    if not isinstance(event, dict):
        raise MalformedEvent(f"{model.__name__}: expected a JSON object, got {type(event).__name__}")
    try:
        return model.model_validate(event)
    except ValidationError as error:
        raise MalformedEvent(f"{model.__name__} is malformed: {describe_validation_error(error)}") from None
