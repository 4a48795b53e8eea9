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


def idempotent_on(
    key_jmespath: str, *, data_keyword_argument: str, expires_after_seconds: int = WEEK_SECONDS
) -> Callable[[F], F]:
    """Powertools' `idempotent_function`, keyed on `key_jmespath` of the keyword argument named
    `data_keyword_argument`; the table is looked up at the first call, not at import."""

    def decorate(function: F) -> F:
        @functools.cache
        def guarded() -> Callable[..., Any]:
            config = IdempotencyConfig(
                event_key_jmespath=key_jmespath,
                expires_after_seconds=expires_after_seconds,
                raise_on_no_idempotency_key=True,
            )
            return cast(
                Callable[..., Any],
                idempotent_function(
                    data_keyword_argument=data_keyword_argument,
                    persistence_store=persistence_store(),
                    config=config,
                )(function),
            )

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            return guarded()(*args, **kwargs)

        return cast(F, call)

    return decorate
