"""Drivers that run flows over httpx: one blocking, one asyncio.

They are the only code that touches the network or sleeps; everything they do not do
(which request, what a status means, whether to retry) comes from the flow.
"""

import asyncio
import time
from typing import Any, Self, TypeVar

import httpx

from pushaas.errors import ConnectionFailed
from pushaas.protocol import Done, Flow, Reply, Request, Sleep, step

T = TypeVar("T")

# Failures before any byte of the request could have reached the server.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def connection_failed(exc: httpx.TransportError, request: Request) -> ConnectionFailed:
    """The typed error for a request that got no HTTP answer."""
    what = "cannot connect to" if isinstance(exc, NOT_SENT) else "no answer from"
    detail = str(exc) or type(exc).__name__
    return ConnectionFailed(f"{what} the API ({request.method} {request.path}): {detail}",
                            maybe_delivered=not isinstance(exc, NOT_SENT))


def request_arguments(request: Request) -> dict[str, Any]:
    """Keyword arguments of ``httpx.Client.request`` for one request."""
    arguments: dict[str, Any] = {"headers": dict(request.headers)}
    if request.json is not None:
        arguments["json"] = request.json
    if request.form is not None:
        arguments["data"] = dict(request.form)
    return arguments


def reply_of(response: httpx.Response) -> Reply:
    return Reply(response.status_code,
                 {name.lower(): value for name, value in response.headers.items()},
                 response.content)


class SyncDriver:
    def __init__(self, http: httpx.Client):
        self.http = http

    def run(self, flow: Flow[T]) -> T:
        outcome: Reply | ConnectionFailed | None = None
        while True:
            action = step(flow, outcome)
            if isinstance(action, Done):
                return action.value

            if isinstance(action, Sleep):
                time.sleep(action.seconds)
                outcome = None
            else:
                outcome = self._send(action)

    def _send(self, request: Request) -> Reply | ConnectionFailed:
        try:
            response = self.http.request(request.method, request.path,
                                         **request_arguments(request))
        except httpx.TransportError as exc:
            return connection_failed(exc, request)
        return reply_of(response)


class AsyncDriver:
    def __init__(self, http: httpx.AsyncClient):
        self.http = http

    async def run(self, flow: Flow[T]) -> T:
        outcome: Reply | ConnectionFailed | None = None
        while True:
            action = step(flow, outcome)
            if isinstance(action, Done):
                return action.value

            if isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
                outcome = None
            else:
                outcome = await self._send(action)

    async def _send(self, request: Request) -> Reply | ConnectionFailed:
        try:
            response = await self.http.request(request.method, request.path,
                                               **request_arguments(request))
        except httpx.TransportError as exc:
            return connection_failed(exc, request)
        return reply_of(response)


class OwnsHttpClient:
    """A blocking client that owns its ``httpx.Client``: ``close()`` and ``with`` support."""

    _http: httpx.Client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
