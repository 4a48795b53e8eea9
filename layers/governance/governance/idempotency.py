"""Powertools idempotency on a DynamoDB table named by the environment, created on first use."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

from governance.sessions import session_for
from governance.settings import settings

F = TypeVar("F", bound=Callable[..., Any])

WEEK_SECONDS = 7 * 24 * 3600


@functools.cache
def persistence_store() -> DynamoDBPersistenceLayer:
    current = settings()
    return DynamoDBPersistenceLayer(
        table_name=current.require("idempotency_table"),
        boto3_client=session_for(current.require("governance_account_id")).client("dynamodb"),
    )


_configs: list[IdempotencyConfig] = []
_current_context: list[Any] = []  # the invocation's Lambda context, when the handler registered it


def register_lambda_context(context: Any) -> None:
    """Tell every idempotent function about this invocation's Lambda context, so that an in-progress
    record expires with the invocation's timeout instead of lingering (Powertools needs it for that)."""
    _current_context[:] = [context]
    for config in _configs:
        config.register_lambda_context(context)


def idempotent_on(
    key_jmespath: str, *, data_keyword_argument: str, expires_after_seconds: int = WEEK_SECONDS
) -> Callable[[F], F]:
    """Powertools' `idempotent_function`, keyed on `key_jmespath` of the keyword argument named
    `data_keyword_argument`; the table is looked up at the first call, not at import."""

    def decorate(function: F) -> F:
        guarded: dict[int, Callable[..., Any]] = {}

        def for_store(store: DynamoDBPersistenceLayer) -> Callable[..., Any]:
            # One guarded function per persistence store: a new store (new settings) gets a new one.
            if id(store) not in guarded:
                config = IdempotencyConfig(
                    event_key_jmespath=key_jmespath,
                    expires_after_seconds=expires_after_seconds,
                    raise_on_no_idempotency_key=True,
                )
                if _current_context:
                    config.register_lambda_context(_current_context[0])
                _configs.append(config)
                guarded.clear()
                guarded[id(store)] = idempotent_function(
                    data_keyword_argument=data_keyword_argument, persistence_store=store, config=config
                )(function)
            return guarded[id(store)]

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            return for_store(persistence_store())(*args, **kwargs)

        return cast(F, call)

    return decorate
