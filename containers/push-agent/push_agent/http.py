"""A small HTTP/1.1 client on asyncio streams, made for talking to the replica's own nginx.

The agent's occasional calls (stats, channel info) use it; delivery, where the per-message
cost counts, pipelines through ``push_agent.pipeline`` instead. It keeps connections alive
(one request at a time per connection), understands Content-Length, chunked and
read-until-close bodies, and reconnects when nginx closed an idle connection. It
deliberately knows nothing else: no TLS, no redirects, no cookies.
"""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_HEADER_LINES = 100
MAX_BODY_BYTES = 1 << 20
"""Responses from the internal nginx are tiny; anything bigger is a protocol error."""

NO_BODY_STATUSES = frozenset({204, 304})


class HttpError(Exception):
    """The request got no usable response: refused, reset, timed out or malformed."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _StaleConnection(Exception):
    """A reused connection closed before sending a byte back: safe to retry once."""


class Connection:
    """One keep-alive connection; not safe for concurrent use (the pool serialises it)."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.reusable = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._used = False

    async def request(
        self, method: str, target: str, headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> Response:
        """Send one request and read the whole response, within ``timeout`` seconds."""
        payload = self._encode(method, target, headers or {}, body)
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    return await self._exchange(method, payload)
                except _StaleConnection:
                    self.close()
                    return await self._exchange(method, payload)
        except TimeoutError:
            self.close()
            raise HttpError(f"{method} {self._where(target)} timed out") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError, _StaleConnection) as exc:
            self.close()
            raise HttpError(f"{method} {self._where(target)} failed: {exc!r}") from None

    def close(self) -> None:
        """Drop the socket; the next request opens a new one."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        self.reusable = False
        self._used = False

    async def _exchange(self, method: str, payload: bytes) -> Response:
        reused = self._writer is not None and self._used
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None and self._writer is not None

        try:
            self._writer.write(payload)
            await self._writer.drain()
            status_line = await self._reader.readuntil(b"\r\n")
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            if reused and not getattr(exc, "partial", b""):
                raise _StaleConnection(repr(exc)) from None
            raise

        self._used = True
        response = await self._read_response(method, status_line)
        if not self.reusable:
            self.close()
        return response

    async def _read_response(self, method: str, status_line: bytes) -> Response:
        while True:
            version, status = _parse_status_line(status_line)
            headers = await self._read_headers()
            if not 100 <= status < 200:
                break
            status_line = await self._read_line()

        keep_alive = _keeps_alive(version, headers)
        if method == "HEAD" or status in NO_BODY_STATUSES:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked()
        elif "content-length" in headers:
            body = await self._read_exactly(_content_length(headers["content-length"]))
        else:
            body = await self._read_to_eof()
            keep_alive = False

        self.reusable = keep_alive
        return Response(status, headers, body)

    async def _read_line(self) -> bytes:
        assert self._reader is not None
        return await self._reader.readuntil(b"\r\n")

    async def _read_headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = await self._read_line()
            if line == b"\r\n":
                return headers

            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ValueError(f"bad header line {line[:80]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        raise ValueError("too many header lines")

    async def _read_exactly(self, size: int, total: int | None = None) -> bytes:
        assert self._reader is not None
        if (size if total is None else total) > MAX_BODY_BYTES:
            raise ValueError(f"response body of {size} bytes is too large")
        return await self._reader.readexactly(size)

    async def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = await self._read_line()
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break

            total += size
            chunks.append(await self._read_exactly(size, total))
            if await self._read_line() != b"\r\n":
                raise ValueError("chunk not followed by CRLF")

        await self._read_headers()
        return b"".join(chunks)

    async def _read_to_eof(self) -> bytes:
        assert self._reader is not None
        chunks: list[bytes] = []
        total = 0
        while chunk := await self._reader.read(65536):
            total += len(chunk)
            if total > MAX_BODY_BYTES:
                raise ValueError("response body is too large")
            chunks.append(chunk)
        return b"".join(chunks)

    def _encode(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes,
    ) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _where(self, target: str) -> str:
        return f"http://{self.host}:{self.port}{target.split('?', 1)[0]}"


class HttpPool:
    """Up to ``size`` keep-alive connections to one server; callers wait for a free one."""

    def __init__(self, host: str, port: int, size: int, timeout: float = 10.0):
        self.host = host
        self.port = port
        self.size = size
        self.timeout = timeout
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Connection] = []

    async def request(
        self, method: str, target: str, headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> Response:
        """One request on an idle connection (or a new one); raises HttpError on failure."""
        async with self._slots:
            connection = self._idle.pop() if self._idle else self._connect()
            try:
                response = await connection.request(method, target, headers, body)
            except BaseException:
                connection.close()
                raise

            if connection.reusable:
                self._idle.append(connection)
            return response

    async def close(self) -> None:
        """Close idle connections; busy ones are closed by their cancelled requests."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        await asyncio.sleep(0)

    def _connect(self) -> Connection:
        return Connection(self.host, self.port, self.timeout)


def _parse_status_line(line: bytes) -> tuple[str, int]:
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"bad status line {line[:80]!r}")
    return parts[0], int(parts[1])


def _keeps_alive(version: str, headers: Mapping[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


def _content_length(raw: str) -> int:
    value = int(raw.split(",", 1)[0].strip())
    if value < 0:
        raise ValueError(f"negative Content-Length {raw!r}")
    return value
