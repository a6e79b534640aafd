"""Pipelined HTTP/1.1 to the replica's own nginx: many requests in flight per connection.

A request-response round trip per message caps an agent far below what nginx accepts, and
one write system call per message costs more than building the message. Here requests
are written back to back, in one write per burst, and responses are parsed straight from
the bytes received, in order: HTTP/1.1 answers the requests of a connection in the order
they were sent, which is what ties each response to its request.

This module knows only bytes and statuses. What to send and what a status means belongs
to the publisher, which receives every response through the ``Sink`` it set on the
connection.
"""

import asyncio
import time
from collections import deque
from typing import Protocol, cast

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 1 << 20
"""Responses of the internal nginx are tiny; anything bigger is a protocol error."""

NO_BODY_STATUSES = frozenset({204, 304})
IDLE_REUSE_SECONDS = 30.0
"""Connections idle this long are replaced: nginx drops idle ones after 65 s (its
``keepalive_timeout``), and a request sent as it does so would be lost."""


class ProtocolError(Exception):
    """The server sent something this client cannot frame."""


class Sink(Protocol):
    """Receives what happens on a connection, in the order it happens."""

    def on_responses(self, connection: "PipelinedConnection", tokens: list,
                     statuses: list[int]) -> None:
        """Answers to the requests of ``tokens``, in order; a good moment to write more."""
        ...

    def on_lost(self, connection: "PipelinedConnection", unanswered: list,
                error: BaseException | None) -> None:
        ...


class PipelinedConnection(asyncio.Protocol):
    """One kept-alive connection; ``write`` sends requests, their sink hears the answers."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[object] = deque()
        self.answered = 0
        self.written = 0
        self.closing = False
        """The server said it closes after its last response (``Connection: close``)."""
        self.closed = False
        self.last_used = time.monotonic()
        self._buffer = b""
        self._abort_error: BaseException | None = None

    # ---- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        try:
            statuses, closes, consumed = split_responses(buffer)
        except ProtocolError as exc:
            self.abort(exc)
            return

        self._buffer = buffer[consumed:]
        count = len(statuses)
        if count > len(self.waiting):
            self.abort(ProtocolError("response without a request"))
            return
        if not count:
            return

        self.answered += count
        if closes:
            self.closing = True
        self.last_used = time.monotonic()
        waiting = self.waiting
        tokens = [waiting.popleft() for _ in range(count)]
        self.sink.on_responses(self, tokens, statuses)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        unanswered = list(self.waiting)
        self.waiting.clear()
        self.sink.on_lost(self, unanswered, self._abort_error or exc)

    # ---- used by the publisher --------------------------------------------------------

    @property
    def usable(self) -> bool:
        return not (self.closed or self.closing)

    def write(self, requests: list[bytes], tokens: list[object]) -> None:
        """Send requests in one write; ``tokens`` come back, in order, with their statuses."""
        assert self.transport is not None
        self.transport.writelines(requests)
        self.waiting.extend(tokens)
        self.written += len(tokens)
        self.last_used = time.monotonic()

    def abort(self, error: BaseException | None = None) -> None:
        """Drop the connection now; unanswered requests go back through ``on_lost``."""
        self._abort_error = error
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def stale(self, now: float) -> bool:
        return not self.waiting and now - self.last_used > IDLE_REUSE_SECONDS


async def open_connection(host: str, port: int, sink: Sink,
                          timeout: float) -> PipelinedConnection:
    """A connected ``PipelinedConnection`` (OSError or TimeoutError when it cannot be had)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, connection = await loop.create_connection(lambda: PipelinedConnection(sink),
                                                     host, port)
    return connection


def split_responses(buffer: bytes) -> tuple[list[int], bool, int]:
    """Complete responses at the start of ``buffer``: (statuses, closes, bytes used).

    ``closes`` says the last response reported ends the connection (``Connection: close``,
    or HTTP/1.0 without keep-alive); nothing after it is read. Informational (1xx)
    responses are consumed and not reported. A response cut short by the end of the
    buffer is left for the next call.

    This runs once per delivered message, so nginx's own spelling of the headers is looked
    for first, in place, and the general case-insensitive parse is the fallback.
    """
    statuses: list[int] = []
    position = 0
    size = len(buffer)
    # No "close" anywhere: no response in this buffer can be announcing one.
    maybe_closing = b"lose" in buffer or b"LOSE" in buffer
    while position < size:
        head_end = buffer.find(b"\r\n\r\n", position)
        if head_end < 0:
            if size - position > MAX_HEAD_BYTES:
                raise ProtocolError("response head too long")
            break

        http11 = buffer.startswith(b"HTTP/1.1 ", position)
        if not http11 and not buffer.startswith(b"HTTP/1.0 ", position):
            raise ProtocolError(f"bad status line {buffer[position:position + 40]!r}")
        try:
            status = int(buffer[position + 9:position + 12])
        except ValueError:
            raise ProtocolError(f"bad status line {buffer[position:position + 40]!r}") from None

        body_start = head_end + 4
        index = buffer.find(b"\r\nContent-Length: ", position, head_end)
        if index >= 0 and status >= 200 and status not in NO_BODY_STATUSES:
            line_end = buffer.find(b"\r\n", index + 18, body_start)
            body_end = body_start + _length(buffer[index + 18:line_end])
            if body_end > size:
                break
        else:
            body_end = _body_end(buffer, buffer[position:head_end].lower(), status, body_start)
            if body_end < 0:
                break

        closes = (maybe_closing or not http11) and _closes(buffer[position:head_end].lower())
        position = body_end
        if 100 <= status < 200:
            continue
        statuses.append(status)
        if closes:
            return statuses, True, size
    return statuses, False, position


def _closes(head: bytes) -> bool:
    """Whether the server closes after this response (HTTP/1.0 unless asked to keep alive)."""
    if head.startswith(b"http/1.0"):
        return b"\r\nconnection: keep-alive" not in head
    return b"\r\nconnection: close" in head


def _length(raw: bytes) -> int:
    try:
        length = int(raw)
    except ValueError:
        raise ProtocolError("bad Content-Length") from None
    if not 0 <= length <= MAX_BODY_BYTES:
        raise ProtocolError(f"unacceptable Content-Length {length}")
    return length


def _body_end(buffer: bytes, head: bytes, status: int, body_start: int) -> int:
    """Where the response's body ends in ``buffer``, or -1 when it is not all there yet."""
    if status in NO_BODY_STATUSES or 100 <= status < 200:
        return body_start

    index = head.find(b"\r\ncontent-length:")
    if index >= 0:
        line_end = head.find(b"\r\n", index + 2)
        end = body_start + _length(head[index + 17:line_end if line_end >= 0 else None])
        return end if end <= len(buffer) else -1

    if b"\r\ntransfer-encoding:" in head and b"chunked" in head:
        return _chunked_end(buffer, body_start)
    raise ProtocolError("response without a length cannot be pipelined")


def _chunked_end(buffer: bytes, position: int) -> int:
    """End of a chunked body (after its trailers), or -1 when incomplete."""
    total = 0
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return -1
        try:
            chunk = int(buffer[position:line_end].split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError("bad chunk size") from None

        total += chunk
        if total > MAX_BODY_BYTES:
            raise ProtocolError("chunked body too large")
        if chunk == 0:
            trailers_end = buffer.find(b"\r\n\r\n", line_end)
            if buffer.startswith(b"\r\n", line_end + 2):
                return line_end + 4
            return trailers_end + 4 if trailers_end >= 0 else -1

        position = line_end + 2 + chunk + 2
        if position > len(buffer):
            return -1
        if buffer[position - 2:position] != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")


NGINX_KEEPALIVE_REQUESTS = 1000
"""nginx closes a kept-alive connection after this many requests (its default
``keepalive_requests``); writing more would only have them dropped and sent again."""


class PipelinePool:
    """Up to ``size`` pipelined connections to one server, kept from one batch to the next."""

    def __init__(self, host: str, port: int, size: int, timeout: float,
                 requests_per_connection: int = NGINX_KEEPALIVE_REQUESTS):
        self.host = host
        self.port = port
        self.size = size
        self.timeout = timeout
        self.requests_per_connection = requests_per_connection
        self.connections: list[PipelinedConnection] = []

    def usable(self) -> list[PipelinedConnection]:
        """Open connections that take more requests; closed and long-idle ones are dropped."""
        now = time.monotonic()
        kept = []
        for connection in self.connections:
            if connection.closed:
                continue
            if connection.stale(now):
                connection.abort()
                continue
            kept.append(connection)
        self.connections = kept
        return [c for c in kept if c.usable and c.written < self.requests_per_connection]

    def room(self, connection: PipelinedConnection, depth: int) -> int:
        """How many more requests ``connection`` may carry now."""
        return min(depth - len(connection.waiting),
                   self.requests_per_connection - connection.written)

    def can_grow(self) -> bool:
        """Whether another connection may open; one that has used up its requests is only
        waiting for its last answers and does not count."""
        limit = self.requests_per_connection
        open_ones = [c for c in self.connections if c.usable and c.written < limit]
        return len(open_ones) < self.size

    async def connect(self, sink: Sink) -> PipelinedConnection:
        connection = await open_connection(self.host, self.port, sink, self.timeout)
        self.connections.append(connection)
        return connection

    def abort_busy(self, error: BaseException) -> None:
        """Drop every connection with unanswered requests (their answers are overdue)."""
        for connection in self.connections:
            if connection.waiting:
                connection.abort(error)

    async def close(self) -> None:
        connections, self.connections = self.connections, []
        for connection in connections:
            connection.abort()
        await asyncio.sleep(0)

    def where(self) -> str:
        return f"http://{self.host}:{self.port}"
