"""The one way to reach AWS: boto3 sessions for the governance account or, through
GovernanceExecutionRole, for any member account, cached per account until shortly before expiry."""

from __future__ import annotations

import functools
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.config
import botocore.loaders
import botocore.session
from botocore.exceptions import BotoCoreError, ClientError

from governance.errors import is_transient, one_line
from governance.naming import partition
from governance.settings import settings

_REFRESH_MARGIN = timedelta(minutes=5)
_lock = threading.Lock()
# Keyed by account and Region: a session's Region is its clients' default (the DynamoDB tables' resource,
# say), and an operator's `govern` command can run with another Region beside the emulated functions.
_sessions: dict[tuple[str, str], tuple[boto3.Session, datetime | None]] = {}
# One loader for every session: an assumed-role session otherwise re-reads each service's model
# files from disk (tens of milliseconds a client), once per account the function touches.
_loader = botocore.loaders.create_loader()
# Calls into member accounts wait at most this long for a connection and for each read, not botocore's 60 s
# each: one unresponsive endpoint must not hold a remediation batch (RemediateConfig takes no new record
# with less than 30 s left) or a workflow step for minutes. A streamed artifact read waits per read, not
# for the whole object. botocore's retries stay as they are.
MEMBER_CLIENT_CONFIG = botocore.config.Config(connect_timeout=5, read_timeout=20)


class ClientCachingSession(boto3.Session):
    """A boto3 session that hands out one client per service and Region. Creating a client costs tens
    of milliseconds of CPU (every remediation, ledger write and notification used to make its own);
    boto3 clients are thread-safe, so the workflows' concurrent steps can share them. Calls with any
    other argument (endpoint, config, credentials) get a fresh client, as from boto3.Session."""

    def __init__(
        self, *args: Any, client_config: botocore.config.Config | None = None, **kwargs: Any
    ) -> None:
        if "botocore_session" not in kwargs:
            core = botocore.session.get_session()
            core.register_component("data_loader", _loader)
            kwargs["botocore_session"] = core
        if client_config is not None:
            kwargs["botocore_session"].set_default_client_config(client_config)
        super().__init__(*args, **kwargs)
        self._clients_lock = threading.Lock()
        self._clients: dict[tuple[str, str | None], Any] = {}

    def client(self, service_name: str, region_name: str | None = None, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if (
            args
            or any(value is not None and key != "use_ssl" for key, value in kwargs.items())
            or (kwargs.get("use_ssl", True) is not True)
        ):
            return super().client(service_name, region_name, *args, **kwargs)  # type: ignore[call-overload]
        key = (service_name, region_name or self.region_name)
        with self._clients_lock:
            cached = self._clients.get(key)
            if cached is None:
                cached = super().client(service_name, region_name=region_name)  # type: ignore[call-overload]
                self._clients[key] = cached
        return cached


class RoleAssumptionError(RuntimeError):
    """GovernanceExecutionRole could not be assumed in a member account. `code` is STS's error code (empty
    when no answer came back); `transient` says whether the same AssumeRole may succeed a minute later
    (throttling, a 5xx, a dropped connection: governance.errors.is_transient), as opposed to a refusal
    (AccessDenied: the role is missing or does not trust this function)."""

    def __init__(
        self, role_arn: str, account_id: str, reason: str, *, code: str = "", transient: bool = False
    ) -> None:
        self.role_arn = role_arn
        self.account_id = account_id
        self.code = code
        self.transient = transient
        # The StackSet hint only where it can be the cause: a throttled STS says nothing about the role.
        hint = "" if transient else " (is the member-account StackSet deployed there?)"
        super().__init__(f"cannot assume {role_arn} in account {account_id}: {reason}{hint}")


def role_arn_in(account_id: str) -> str:
    """The ARN of the only role the backbone assumes in a member account."""
    return f"arn:{partition(settings().region)}:iam::{account_id}:role/{settings().execution_role_name}"


def _assume(account_id: str) -> tuple[boto3.Session, datetime]:
    role_arn = role_arn_in(account_id)
    # STS through the function's own session, whose client is made once (with the shared loader), not
    # boto3's default session, which makes a client per call.
    sts = session_for(settings().governance_account_id).client("sts")
    try:
        response = sts.assume_role(
            RoleArn=role_arn,
            RoleSessionName=f"ml-governance-{settings().stage}"[:64],
            DurationSeconds=3600,
        )
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        raise RoleAssumptionError(
            role_arn, account_id, code, code=code, transient=is_transient(error)
        ) from error
    except BotoCoreError as error:
        raise RoleAssumptionError(
            role_arn, account_id, one_line(error), transient=is_transient(error)
        ) from error
    credentials = response["Credentials"]
    session = ClientCachingSession(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=settings().region,
        client_config=MEMBER_CLIENT_CONFIG,
    )
    expiration = credentials["Expiration"]
    if expiration.tzinfo is None:
        expiration = expiration.replace(tzinfo=UTC)
    return session, expiration


def session_for(account_id: str) -> boto3.Session:
    """A session in `account_id`: the function's own for the governance account, an assumed role elsewhere."""
    key = (account_id, settings().region)
    with _lock:
        cached = _sessions.get(key)
        if cached and (cached[1] is None or cached[1] - _REFRESH_MARGIN > datetime.now(UTC)):
            return cached[0]
    if account_id == settings().governance_account_id:
        fresh: tuple[boto3.Session, datetime | None] = (
            ClientCachingSession(region_name=settings().region),
            None,
        )
    else:
        fresh = _assume(account_id)
    with _lock:
        _sessions[key] = fresh
    return fresh[0]


def client(service: str, account_id: str | None = None, region: str | None = None) -> Any:
    """A boto3 client for `service` in `account_id` (default: the governance account) and `region`,
    made once per session and reused (see ClientCachingSession)."""
    account = account_id or settings().require("governance_account_id")
    return session_for(account).client(service, region_name=region or settings().region)  # type: ignore[call-overload]


def dynamodb_table(name: str) -> Any:
    """The governance account's DynamoDB table `name` as a boto3 resource, made once per session and
    table: a resource costs a few milliseconds to build (its own client and classes), and the ledger, the
    claims and the inventory are read and written many times a request."""
    return _table_in(session_for(settings().require("governance_account_id")), name)


@functools.lru_cache(maxsize=16)
def _table_in(session: boto3.Session, name: str) -> Any:
    return session.resource("dynamodb").Table(name)


def forget_sessions() -> None:
    """Drop every cached session (used when credentials or the emulated organization change)."""
    with _lock:
        _sessions.clear()
