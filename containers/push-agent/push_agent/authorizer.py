"""The replica's authorizer: nginx asks it whether a private-channel subscription may start.

    python -m push_agent.authorizer           serve until SIGTERM or SIGINT
    python -m push_agent.authorizer health    exit 0 when /healthz answers 200

nginx + Nchan cannot check an HMAC-SHA256 itself (``secure_link`` is MD5 only), so each
replica runs this small asyncio HTTP server on loopback beside its nginx. Nchan's
``nchan_authorize_request`` sends it one GET per subscription to a ``private-*`` channel,
before the subscriber is attached, with the channel list as Nchan split it
(``X-Push-Channels``) and the ``auth`` query argument (``X-Push-Token``). It answers 204
to allow and 403 to refuse; Nchan passes the 403 to the subscriber. Public subscriptions
never reach it, so they do not depend on it.

Verification is local and needs no Redis: the token format and the rule live in
``chalicelib.subscribe_tokens``, and the only secret here is the instance's subscribe key
(``PUSHAAS_SUBSCRIBE_KEY``), never the master key. Requests and tokens are never logged;
refusals are counted and summed up in one line a minute.

Settings: ``PUSHAAS_INSTANCE``, ``PUSHAAS_SUBSCRIBE_KEY``, ``PUSHAAS_AUTHORIZER_PORT``
(default 9082, always on 127.0.0.1), ``PUSHAAS_LOG_LEVEL``.
"""

import asyncio
import http.client
import logging
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from chalicelib import subscribe_tokens
from push_agent import logs

log = logging.getLogger("push_agent.authorizer")

HOST = "127.0.0.1"
DEFAULT_PORT = 9082
MAX_HEAD = 16384
"""nginx's request line (token and channels) must fit 8 KiB, so this is ample."""

READ_TIMEOUT = 75.0
"""Longer than nginx keeps an idle upstream connection (60 s), so nginx closes first."""

SUMMARY_INTERVAL = 60.0
HEALTH_TIMEOUT = 3.0
EXIT_BAD_SETTING = 2
INSTANCE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
MIN_KEY_CHARS = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

REASONS = {
    204: "No Content",
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
}


class SettingError(ValueError):
    """A bad environment value; the message names the variable, never its value."""


@dataclass(frozen=True)
class AuthorizerSettings:
    instance: str
    port: int
    key: str = field(repr=False)
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "AuthorizerSettings":
        instance = env.get("PUSHAAS_INSTANCE", "").strip()
        if not INSTANCE.match(instance):
            raise SettingError("PUSHAAS_INSTANCE must be an instance name")

        key = env.get("PUSHAAS_SUBSCRIBE_KEY", "").strip()
        if len(key) < MIN_KEY_CHARS:
            raise SettingError(f"PUSHAAS_SUBSCRIBE_KEY must be set (at least "
                               f"{MIN_KEY_CHARS} characters)")
        level = env.get("PUSHAAS_LOG_LEVEL", "").strip().upper() or "INFO"
        if level not in LOG_LEVELS:
            raise SettingError(f"PUSHAAS_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        return cls(instance=instance, port=_port(env), key=key, log_level=level)


def _port(env: Mapping[str, str]) -> int:
    raw = env.get("PUSHAAS_AUTHORIZER_PORT", "").strip() or str(DEFAULT_PORT)
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SettingError(f"PUSHAAS_AUTHORIZER_PORT must be a TCP port, not {raw[:16]!r}")
    return int(raw)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


def parse_head(head: bytes) -> Request:
    """Request line and headers; ValueError when it is not HTTP/1.x without a body."""
    lines = head.decode("latin-1").split("\r\n")
    method, path, version = lines[0].split(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError("not HTTP/1.x")

    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError("bad header line")
        headers[name.strip().lower()] = value.strip()

    body = headers.get("content-length", "0") not in ("", "0")
    if body or "transfer-encoding" in headers:
        raise ValueError("requests to the authorizer carry no body")
    if version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
        headers["connection"] = "close"
    return Request(method, path.split("?", 1)[0], headers)


class Authorizer:
    """Decides subscriptions and counts the decisions for the periodic summary."""

    def __init__(self, settings: AuthorizerSettings):
        self.settings = settings
        self.decisions: Counter[str] = Counter()

    def answer(self, request: Request, now: float) -> int:
        if request.path == "/healthz":
            return 200 if request.method in ("GET", "HEAD") else 405
        if request.path != "/authorize":
            return 404
        if request.method != "GET":
            return 405

        channels = request.headers.get("x-push-channels", "")
        if not channels:
            self.decisions["no_channels"] += 1
            return 403

        token = request.headers.get("x-push-token") or None
        try:
            subscribe_tokens.authorize(self.settings.key, self.settings.instance, token,
                                       channels.split("/"), now)
        except subscribe_tokens.TokenError as exc:
            self.decisions[exc.reason] += 1
            log.debug("subscription refused instance=%s reason=%s",
                      self.settings.instance, exc.reason)
            return 403

        self.decisions["allowed"] += 1
        return 204

    def summary(self) -> str | None:
        """One line of what was decided since the last summary; None when idle."""
        if not self.decisions:
            return None
        fields = " ".join(f"{reason}={count}" for reason, count in sorted(self.decisions.items()))
        self.decisions.clear()
        return fields


def _response(status: int, keep_alive: bool) -> bytes:
    body = b"ok" if status == 200 else b""
    connection = "keep-alive" if keep_alive else "close"
    head = (f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: text/plain\r\nConnection: {connection}\r\n\r\n")
    return head.encode() + body


async def _serve_connection(authorizer: Authorizer, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
    """Answer requests on one (usually kept-alive) nginx connection until it closes."""
    try:
        while True:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            try:
                request = parse_head(head)
            except ValueError:
                writer.write(_response(400, keep_alive=False))
                await writer.drain()
                return

            keep_alive = request.headers.get("connection", "").lower() != "close"
            writer.write(_response(authorizer.answer(request, time.time()), keep_alive))
            await writer.drain()
            if not keep_alive:
                return
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
            ConnectionError):
        return
    finally:
        writer.close()


async def _summarize(authorizer: Authorizer) -> None:
    while True:
        await asyncio.sleep(SUMMARY_INTERVAL)
        fields = authorizer.summary()
        if fields:
            log.info("subscriptions decided instance=%s seconds=%.0f %s",
                     authorizer.settings.instance, SUMMARY_INTERVAL, fields)


async def serve(settings: AuthorizerSettings) -> int:
    """Listen on loopback until SIGTERM or SIGINT; 0 on a clean stop."""
    authorizer = Authorizer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_connection(authorizer, reader, writer)

    server = await asyncio.start_server(handle, HOST, settings.port, limit=MAX_HEAD)
    summaries = asyncio.create_task(_summarize(authorizer))
    log.info("authorizer listening instance=%s address=%s:%d",
             settings.instance, HOST, settings.port)

    await stop.wait()
    summaries.cancel()
    server.close()
    fields = authorizer.summary()
    log.info("authorizer stopped instance=%s %s", settings.instance, fields or "idle")
    return 0


def healthy(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection(HOST, port, timeout=HEALTH_TIMEOUT)
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
        connection.close()
    except OSError:
        return False
    return status == 200


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["health"]):
        print("usage: python -m push_agent.authorizer [health]", file=sys.stderr)
        return EXIT_BAD_SETTING

    if args == ["health"]:
        try:
            port = _port(os.environ)
        except SettingError as exc:
            print(f"unhealthy: {exc}", file=sys.stderr)
            return 1
        return 0 if healthy(port) else 1

    try:
        settings = AuthorizerSettings.from_env(os.environ)
    except SettingError as exc:
        print(f"push-authorizer: configuration error: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTING

    logs.configure(settings.log_level)
    try:
        return asyncio.run(serve(settings))
    except OSError as exc:
        log.error("cannot listen address=%s:%d error=%s", HOST, settings.port, exc.strerror)
        return 1


if __name__ == "__main__":
    sys.exit(main())
