"""Errors every flow raises, importable without pydantic: the event models (governance.events) are loaded
only by the steps that parse an event, so the other steps of a workflow start without them."""

from __future__ import annotations


class MalformedEvent(ValueError):
    """The event cannot be acted on; the message says which fields are wrong, in one line."""
