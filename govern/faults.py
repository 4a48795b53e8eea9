"""Fault injection for the emulated organization: chosen AWS API calls answer with real error responses.

The error is injected where moto answers botocore's HTTP request (its `before-send` stubber), so the
caller's botocore parses a genuine throttling, 5xx or access-denied response, serialised in the
service's own protocol, and its retry handler decides as it would against AWS. The faulted call never
reaches moto's backend: a failed PutPublicAccessBlock changes nothing, as in AWS.

    with inject_api_faults(org, [throttling("s3", "PutPublicAccessBlock", times=2)]) as faults:
        org.replay(events, seed=False)
    assert faults[0].hits == 2
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from unittest import mock
from xml.sax.saxutils import escape

import botocore.endpoint
import botocore.session
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import UnknownServiceError
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse

if TYPE_CHECKING:
    from govern.emulator import Organization

# botocore's backoff between retries, scaled as the runtime scales workflow time: legacy retry mode
# sleeps up to 1 + 2 + 4 + 8 s for four retries, which would make every fault test wait in real time.
DEFAULT_BACKOFF_SCALE = 0.01

_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)(?:/|%2F)")


@dataclass
class Fault:
    """The next `times` calls of `operation` on `service` (in `account`, when given) fail with `error`."""

    service: str  # the boto3 client name: "s3", "s3control", "sagemaker", "sns", "dynamodb"...
    operation: str  # the API operation as AWS spells it: "PutPublicAccessBlock"
    error: str  # the error code: "SlowDown", "ThrottlingException", "InternalError", "AccessDenied"...
    status: int  # the HTTP status that goes with it: 503, 400, 500, 403
    times: int = 1
    account: str | None = None  # only calls signed with credentials of this account
    # Only requests whose URL or body contains this text: a bucket, a pipeline, an ARN, an account id.
    request_contains: str | None = None
    message: str = ""
    # Filled in while injected: the account of every call that was answered with the error.
    hit_accounts: list[str] = field(default_factory=list)

    @property
    def hits(self) -> int:
        return len(self.hit_accounts)

    @property
    def remaining(self) -> int:
        return self.times - self.hits

    def describe(self) -> str:
        where = f" in {self.account}" if self.account else ""
        about = f" about {self.request_contains!r}" if self.request_contains else ""
        return f"{self.service}:{self.operation}{where}{about} -> {self.error} ({self.status}) x{self.times}"


# --- the usual faults, as each service family spells them ------------------------------------------


def throttling(
    service: str,
    operation: str,
    *,
    times: int = 1,
    account: str | None = None,
    request_contains: str | None = None,
) -> Fault:
    """What the service answers when it throttles: S3's SlowDown (503), EC2's RequestLimitExceeded
    (503), the query services' Throttling (400), Lambda's TooManyRequestsException (429), the JSON
    services' ThrottlingException (400)."""
    protocol = _service_model(service).resolved_protocol
    if service in ("s3", "s3control"):
        code, status = "SlowDown", 503
    elif protocol == "ec2":
        code, status = "RequestLimitExceeded", 503
    elif protocol == "query":
        code, status = "Throttling", 400
    elif protocol == "rest-json":
        code, status = "TooManyRequestsException", 429
    else:
        code, status = "ThrottlingException", 400
    return Fault(
        service, operation, code, status, times=times, account=account, request_contains=request_contains
    )


def server_error(
    service: str,
    operation: str,
    *,
    times: int = 1,
    account: str | None = None,
    request_contains: str | None = None,
) -> Fault:
    """A 500 from the service: InternalError (S3, EC2) or InternalFailure (query and JSON services)."""
    protocol = _service_model(service).resolved_protocol
    code = "InternalError" if protocol in ("rest-xml", "ec2") else "InternalFailure"
    return Fault(
        service, operation, code, 500, times=times, account=account, request_contains=request_contains
    )


def access_denied(
    service: str,
    operation: str,
    *,
    times: int = 1,
    account: str | None = None,
    request_contains: str | None = None,
) -> Fault:
    """The caller's role may not make the call: AccessDenied (403) for S3 and the query services,
    UnauthorizedOperation (403) for EC2, AccessDeniedException (400) for the JSON services."""
    protocol = _service_model(service).resolved_protocol
    if protocol in ("rest-xml", "query"):
        code, status = "AccessDenied", 403
    elif protocol == "ec2":
        code, status = "UnauthorizedOperation", 403
    else:
        code, status = "AccessDeniedException", 400
    return Fault(
        service, operation, code, status, times=times, account=account, request_contains=request_contains
    )


# --- injecting -------------------------------------------------------------------------------------


@dataclass
class FaultPlan:
    """The faults of one `inject_api_faults` block and what botocore did about them."""

    faults: list[Fault]
    # Every backoff botocore asked for while the block was active (unscaled seconds, in order).
    backoffs: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _targets: dict[int, tuple[str, str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for fault in self.faults:
            model = _service_model(fault.service)
            if fault.operation not in model.operation_names:
                raise ValueError(f"{fault.service} has no operation {fault.operation!r} (botocore's model)")
            if fault.times < 0:
                raise ValueError(f"{fault.describe()}: times must be 0 or more")
            self._targets[id(fault)] = (model.service_id.hyphenize(), fault.operation)

    def __iter__(self) -> Iterator[Fault]:
        return iter(self.faults)

    def __getitem__(self, index: int) -> Fault:
        return self.faults[index]

    def __len__(self) -> int:
        return len(self.faults)

    def take(self, event_name: str, request: AWSPreparedRequest) -> Fault | None:
        """The fault this request is answered with (counted as a hit), or None to let it through."""
        _, _, target = event_name.partition(".")
        service_id, _, operation = target.partition(".")
        candidates = [f for f in self.faults if self._targets[id(f)] == (service_id, operation)]
        if not candidates:
            return None
        candidates = [
            fault
            for fault in candidates
            if fault.request_contains is None or fault.request_contains in _request_text(request)
        ]
        if not candidates:
            return None
        account = _caller_account(request)
        with self._lock:
            for fault in candidates:
                if fault.remaining > 0 and (fault.account is None or fault.account == account):
                    fault.hit_accounts.append(account)
                    return fault
        return None


@contextlib.contextmanager
def inject_api_faults(
    org: Organization, faults: Sequence[Fault], *, backoff_scale: float = DEFAULT_BACKOFF_SCALE
) -> Iterator[FaultPlan]:
    """While the block runs, moto answers the calls each fault matches with its error, `times` times per
    fault (faults on the same operation are used in order). Blocks nest; everything is restored on exit."""
    if org.resolver is None:
        raise RuntimeError(
            "inject_api_faults needs a started Organization (use it inside `with Organization()`)"
        )
    plan = FaultPlan(list(faults))
    # The stubber in force now (moto's, or an enclosing block's): whatever this block lets through.
    let_through = BotocoreStubber.__dict__["__call__"]

    def answer_or_fail(
        stubber: BotocoreStubber, event_name: str, request: AWSPreparedRequest, **kwargs: Any
    ) -> AWSResponse | None:
        if stubber.enabled:
            fault = plan.take(event_name, request)
            if fault is not None:
                status, headers, body = error_response(fault)
                return AWSResponse(request.url, status, headers, MockRawResponse(body))  # type: ignore[arg-type]
        return let_through(stubber, event_name, request, **kwargs)  # type: ignore[no-any-return]

    def backoff(seconds: float) -> None:
        with plan._lock:
            plan.backoffs.append(seconds)
        time.sleep(seconds * backoff_scale)

    with contextlib.ExitStack() as patches:
        patches.enter_context(mock.patch.object(BotocoreStubber, "__call__", answer_or_fail))
        # botocore.endpoint sleeps between retries through its module-level `time`.
        scaled_time = types.SimpleNamespace(**{**vars(time), "sleep": backoff})
        patches.enter_context(mock.patch.object(botocore.endpoint, "time", scaled_time))
        yield plan


# --- the error response, in the service's protocol ------------------------------------------------


def error_response(fault: Fault) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the error as the service would send it."""
    request_id = uuid.uuid4().hex.upper()[:20]
    message = fault.message or f"injected fault: {fault.error} on {fault.operation}"
    protocol = _service_model(fault.service).resolved_protocol
    serialise = _SERIALISERS.get(protocol)
    if serialise is None:
        raise NotImplementedError(f"{fault.service}: cannot serialise an error in the {protocol} protocol")
    headers, body = serialise(fault.error, message, request_id, fault.status)
    headers.setdefault("x-amzn-RequestId", request_id)
    return fault.status, headers, body


def _json(code: str, message: str, request_id: str, status: int) -> tuple[dict[str, str], bytes]:
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        # SQS (awsQueryCompatible) reads the query-style code from here; the others ignore it.
        "x-amzn-query-error": f"{code};{'Receiver' if status >= 500 else 'Sender'}",
    }
    return headers, json.dumps({"__type": code, "message": message}).encode()


def _rest_json(code: str, message: str, request_id: str, status: int) -> tuple[dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code}
    return headers, json.dumps({"message": message}).encode()


def _query(code: str, message: str, request_id: str, status: int) -> tuple[dict[str, str], bytes]:
    kind = "Receiver" if status >= 500 else "Sender"
    body = (
        "<ErrorResponse><Error>"
        f"<Type>{kind}</Type><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return {"Content-Type": "text/xml"}, body.encode()


def _ec2(code: str, message: str, request_id: str, status: int) -> tuple[dict[str, str], bytes]:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
    )
    return {"Content-Type": "text/xml;charset=UTF-8"}, body.encode()


def _rest_xml(code: str, message: str, request_id: str, status: int) -> tuple[dict[str, str], bytes]:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><Error>'
        f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>emulated</HostId></Error>"
    )
    return {"Content-Type": "application/xml", "x-amz-request-id": request_id}, body.encode()


_SERIALISERS: dict[str, Callable[[str, str, str, int], tuple[dict[str, str], bytes]]] = {
    "json": _json,
    "rest-json": _rest_json,
    "query": _query,
    "ec2": _ec2,
    "rest-xml": _rest_xml,
}


# --- helpers -------------------------------------------------------------------------------------


@functools.cache
def _service_model(service: str) -> Any:
    try:
        return botocore.session.get_session().get_service_model(service)
    except UnknownServiceError:
        raise ValueError(f"{service!r} is not a boto3 client name botocore knows") from None


def _caller_account(request: AWSPreparedRequest) -> str:
    """The emulated account whose credentials signed the request (as moto itself decides it)."""
    from moto.iam.models import get_account_id_from

    authorization = request.headers.get("Authorization") or b""
    if isinstance(authorization, bytes):
        authorization = authorization.decode("utf-8", "replace")
    found = _CREDENTIAL.search(authorization) or _CREDENTIAL.search(
        str(request.url).replace("X-Amz-Credential=", "Credential=")
    )
    return get_account_id_from(found.group(1)) if found else get_account_id_from("")


def _request_text(request: AWSPreparedRequest) -> str:
    """The URL and, when it is in memory, the body: what `request_contains` is looked for in."""
    body = request.body
    text = (
        body.decode("utf-8", "replace") if isinstance(body, bytes) else body if isinstance(body, str) else ""
    )
    return f"{request.url}\n{text}"
