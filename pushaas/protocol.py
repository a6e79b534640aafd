"""The API calls as I/O-free flows, so the sync and async clients share every rule.

A flow is a generator: it yields a ``Request`` to send or a ``Sleep`` to wait, and is
resumed with the ``Reply`` (or has ``ConnectionFailed`` thrown into it when no reply
came). Its return value is the call's result. Request building, error mapping and the
retry loop are written once, here; a driver only moves bytes and sleeps.
"""

import json
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pushaas.errors import PushaasError, error_for
from pushaas.retry import RetryPolicy

T = TypeVar("T")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class Request:
    """One HTTP request, relative to the API's base URL.

    ``accept`` lists statuses besides 2xx that carry an answer rather than an error
    (the broker's status route says "failed" with a 500).
    """

    method: str
    path: str
    json: Any = None
    form: Mapping[str, str] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    accept: frozenset[int] = frozenset()

    @property
    def idempotent(self) -> bool:
        """Safe to send twice: by its method, or because the server dedupes its key."""
        return self.method in IDEMPOTENT_METHODS or "Idempotency-Key" in self.headers


@dataclass(frozen=True)
class Reply:
    """What came back: status, headers with lower-case names, raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise PushaasError(self.status, "the API answered with a body that is not JSON "
                               "(is the endpoint right?)") from None


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Done(Generic[T]):
    value: T


Action = Request | Sleep
Flow = Generator[Action, Reply | None, T]


def exchange(request: Request, policy: RetryPolicy) -> Flow[Reply]:
    """Send ``request`` until it gets an answer, retrying as ``policy`` allows.

    Returns the reply for a 2xx (or an accepted status); raises the typed error of the
    last attempt otherwise.
    """
    backoff = policy.start()
    while True:
        try:
            reply = yield request
            assert reply is not None, "a driver must resume a Request with its Reply"
            if 200 <= reply.status < 300 or reply.status in request.accept:
                return reply
            raise error_for(reply.status, reply.body, reply.headers)
        except PushaasError as error:
            delay = backoff.next_delay(error, request.idempotent)
            if delay is None:
                raise

        yield Sleep(delay)


def step(flow: Flow[T], outcome: Reply | PushaasError | None) -> Action | Done[T]:
    """Resume ``flow`` with an outcome; the next action, or ``Done`` with the result."""
    try:
        if isinstance(outcome, PushaasError):
            return flow.throw(outcome)
        return flow.send(outcome)
    except StopIteration as finished:
        return Done(finished.value)
