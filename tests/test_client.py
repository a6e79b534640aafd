"""The Python client (``pushaas.client``) against the running local stack, and its retry
rules against a scripted loopback server (429/503 cannot be caused on demand in the stack).
"""

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from pushaas import (
    AsyncPushClient,
    BadRequest,
    BrokerClient,
    ConfigurationError,
    Conflict,
    ConnectionFailed,
    NotFound,
    PayloadTooLarge,
    PushaasError,
    PushClient,
    RateLimited,
    RetryPolicy,
    Settings,
    Subscription,
    Unauthorized,
    Unavailable,
)
from pushaas.events import EventParser
from pushaas.retry import Backoff
from tests.servers import free_port
from tests.stack import REPO, LocalStack

pytestmark = pytest.mark.timeout(60)

STREAM_ID = re.compile(r"\d+-\d+")
FAST = RetryPolicy(max_attempts=4, max_elapsed=5.0, base_delay=0.05, max_delay=0.2)


# ---- the running stack ----------------------------------------------------------------


@pytest.fixture(scope="module")
def app_env(stack: LocalStack) -> dict[str, str]:
    """A running instance bound to an app, provisioned with the broker client."""
    with BrokerClient(stack.api, stack.broker_password()) as broker:
        broker.create_instance("lib", "small", "team", "dev@example.com")
        deadline = time.monotonic() + 30
        while (state := broker.instance_status("lib").state) != "running":
            assert state == "pending" and time.monotonic() < deadline, state
            time.sleep(0.1)
        return broker.bind_app("lib", "lib-app")


@pytest.fixture
def push(app_env: dict[str, str]) -> Iterator[PushClient]:
    with PushClient.from_env(app_env) as client:
        yield client


def test_sync_client_calls_every_route(push: PushClient, app_env: dict[str, str]) -> None:
    assert push.auth() == {"authenticated": True, "instance": "lib"}

    first = push.publish(["sync"], "hello")
    assert STREAM_ID.fullmatch(first)
    assert push.publish("sync", "again", idempotency_key="k-1") == \
        push.publish(["sync"], "again", idempotency_key="k-1")

    created = push.create_channel("sync", ttl=60)
    assert (created["id"], created["ttl"]) == ("sync", 60)
    assert push.get_channel("sync") == created
    assert push.ensure_channel("sync") == created
    fresh = push.ensure_channel("fresh")
    assert (fresh["id"], fresh["ttl"]) == ("fresh", 0)
    assert sorted(c["id"] for c in push.list_channels()) == ["fresh", "sync"]
    push.delete_channel("fresh")
    assert [c["id"] for c in push.list_channels()] == ["sync"]

    assert set(push.global_stats()) == {"aggregated", "all"}
    assert set(push.channel_stats("sync")["aggregated"]) == {"subscribers",
                                                             "published_messages"}
    assert push.config()["pushStream"]["url"] == app_env["PUSHAAS_PUSH_STREAM_URL"]
    assert push.subscribe_url(["a", "b"]) == app_env["PUSHAAS_PUSH_STREAM_URL"] + "/ev/a/b"


def test_async_client_and_concurrent_ensure(app_env: dict[str, str]) -> None:
    async def scenario() -> None:
        async with AsyncPushClient.from_env(app_env) as push:
            assert (await push.auth())["instance"] == "lib"
            assert STREAM_ID.fullmatch(await push.publish(["async"], "hi"))

            # Racing creators: each either finds, creates, or loses the race with a 409.
            records = await asyncio.gather(*(push.ensure_channel("raced") for _ in range(6)))
            assert len({json.dumps(r, sort_keys=True) for r in records}) == 1
            with pytest.raises(NotFound):
                await push.get_channel("never")

            config = await push.config()
            assert push.push_stream_url == config["pushStream"]["url"]

    asyncio.run(scenario())


def test_real_errors_map_to_typed_exceptions(push: PushClient,
                                             app_env: dict[str, str]) -> None:
    with pytest.raises(BadRequest, match="invalid channel id"):
        push.publish(["no spaces"], "x")
    with pytest.raises(PayloadTooLarge, match="at most 32768") as too_large:
        push.publish(["big"], "x" * 40_000)
    assert too_large.value.status == 413
    with pytest.raises(NotFound):
        push.get_channel("missing")

    push.create_channel("twice")
    with pytest.raises(Conflict) as conflict:
        push.create_channel("twice")
    assert (conflict.value.status, conflict.value.message) == (
        409, "channel 'twice' already exists")

    with PushClient(app_env["PUSHAAS_ENDPOINT"], "lib", "wrong") as stranger:
        with pytest.raises(Unauthorized) as denied:
            stranger.auth()
    assert denied.value.status == 401


def test_subscription_receives_what_is_published(push: PushClient) -> None:
    push.config()
    subscription = Subscription(push.subscribe_url(["live"]), retry=FAST)
    received: list[dict] = []
    reader = threading.Thread(target=lambda: received.append(next(iter(subscription)).json()),
                              daemon=True)
    reader.start()

    # A new subscriber only gets what is published after it connected: publish until
    # it has one, rather than guessing when it is connected.
    sent = []
    deadline = time.monotonic() + 15
    while reader.is_alive() and time.monotonic() < deadline:
        sent.append(push.publish(["live"], f"n{len(sent)}"))
        reader.join(0.2)
    subscription.close()

    assert received and received[0]["id"] in sent
    assert received[0]["text"] == f"n{sent.index(received[0]['id'])}"


def test_private_channel_with_a_token_from_the_client(push: PushClient) -> None:
    push.config()
    issued = push.subscribe_token(["private-orders"], ttl=60)
    assert issued["channels"] == ["private-orders"]
    url = push.subscribe_url(["private-orders"], token=issued["token"])
    assert "auth=" in url

    with httpx.Client(timeout=5, trust_env=False) as http:
        refused = http.get(push.subscribe_url(["private-orders"]),
                           headers={"Accept": "text/event-stream"})
    assert refused.status_code == 403

    subscription = Subscription(url, retry=FAST)
    received: list[dict] = []
    reader = threading.Thread(target=lambda: received.append(next(iter(subscription)).json()),
                              daemon=True)
    reader.start()
    sent = []
    deadline = time.monotonic() + 15
    while reader.is_alive() and time.monotonic() < deadline:
        sent.append(push.publish(["private-orders"], f"p{len(sent)}"))
        reader.join(0.2)
    subscription.close()

    assert received and received[0]["id"] in sent


def test_example_publishes(app_env: dict[str, str]) -> None:
    run = subprocess.run([sys.executable, "examples/publish.py", "example", "from the docs"],
                         cwd=REPO, env={"PATH": "/usr/bin:/bin", **app_env},
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert STREAM_ID.search(run.stdout), run.stdout
    assert f"{app_env['PUSHAAS_PUSH_STREAM_URL']}/ev/example" in run.stdout


# ---- retries against a scripted server -------------------------------------------------

@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class ScriptedServer:
    """A loopback HTTP server answering from a script (the last reply repeats)."""

    def __init__(self, *replies: tuple[int, dict[str, str], object]):
        self.replies = list(replies)
        self.seen: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                server.seen.append(Seen(self.command, self.path, dict(self.headers), body,
                                        time.monotonic()))
                status, headers, payload = server.replies[min(len(server.seen),
                                                              len(server.replies)) - 1]
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "ScriptedServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def unavailable(retry_after: str | None = None) -> tuple[int, dict[str, str], object]:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return 503, headers, {"code": 503, "message": "storage unavailable, try again"}


def rate_limited(retry_after: str) -> tuple[int, dict[str, str], object]:
    return 429, {"Retry-After": retry_after}, {"code": 429, "message": "limit of 100/s"}


PUBLISHED = (201, {}, {"id": "1-0", "channels": ["c"]})


def test_publish_retried_after_503_keeps_its_idempotency_key() -> None:
    with ScriptedServer(unavailable(), unavailable(), PUBLISHED) as server, \
            PushClient(server.url, "u", "p", retry=FAST) as push:
        assert push.publish(["c"], "text") == "1-0"

    keys = [seen.headers["Idempotency-Key"] for seen in server.seen]
    assert len(keys) == 3 and len(set(keys)) == 1 and len(keys[0]) >= 16
    assert all(json.loads(s.body) == {"channels": ["c"], "content": "text"}
               for s in server.seen)

    # Exponential, jittered: each wait is at least half its step (0.05 s, then 0.1 s).
    gaps = [b.at - a.at for a, b in zip(server.seen, server.seen[1:], strict=False)]
    assert gaps[0] >= 0.025 and gaps[1] >= 0.05
    assert all(gap < 1.0 for gap in gaps)


def test_every_publish_call_gets_its_own_key_and_a_given_one_is_kept() -> None:
    with ScriptedServer(PUBLISHED) as server, PushClient(server.url, "u", "p") as push:
        push.publish(["c"], "one")
        push.publish(["c"], "two")
        push.publish(["c"], "three", idempotency_key="mine")

    keys = [seen.headers["Idempotency-Key"] for seen in server.seen]
    assert keys[0] != keys[1] and keys[2] == "mine"


def test_429_honours_retry_after() -> None:
    with ScriptedServer(rate_limited("1"), PUBLISHED) as server, \
            PushClient(server.url, "u", "p", retry=FAST) as push:
        assert push.publish(["c"], "text", idempotency_key="k") == "1-0"

    first, second = server.seen
    assert second.at - first.at >= 1.0
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == "k"


def test_retries_stop_at_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, max_elapsed=10, base_delay=0.01, max_delay=0.02)
    with ScriptedServer(unavailable()) as server, \
            PushClient(server.url, "u", "p", retry=policy) as push:
        with pytest.raises(Unavailable) as failure:
            push.global_stats()
    assert len(server.seen) == 3
    assert (failure.value.status, failure.value.message) == (503, "storage unavailable, "
                                                                   "try again")


def test_retries_stop_before_max_elapsed() -> None:
    """A Retry-After beyond the time budget is not waited for: the caller decides."""
    policy = RetryPolicy(max_attempts=10, max_elapsed=2.0, base_delay=0.01)
    with ScriptedServer(rate_limited("30")) as server, \
            PushClient(server.url, "u", "p", retry=policy) as push:
        started = time.monotonic()
        with pytest.raises(RateLimited) as limited:
            push.publish(["c"], "text")
    assert time.monotonic() - started < 1.0
    assert len(server.seen) == 1 and limited.value.retry_after == 30.0


def test_client_errors_are_not_retried_and_foreign_bodies_not_shown() -> None:
    with ScriptedServer((400, {}, {"code": 400, "message": "content must be a string"}),
                        (403, {}, {"message": "Authorization=Basic c2VjcmV0"})) as server, \
            PushClient(server.url, "u", "p", retry=FAST) as push:
        with pytest.raises(BadRequest, match="content must be a string"):
            push.publish(["c"], "x")
        with pytest.raises(PushaasError) as foreign:
            push.list_channels()

    assert len(server.seen) == 2
    assert foreign.value.status == 403 and "c2VjcmV0" not in foreign.value.message


def test_ensure_channel_tolerates_a_concurrent_create() -> None:
    record = {"id": "news", "ttl": 0, "created": "2026-01-01T00:00:00Z"}
    with ScriptedServer((404, {}, {"code": 404, "message": "channel 'news' not found"}),
                        (409, {}, {"code": 409, "message": "channel 'news' already exists"}),
                        (200, {}, record)) as server, \
            PushClient(server.url, "u", "p") as push:
        assert push.ensure_channel("news") == record
    assert [(s.method, s.path) for s in server.seen] == [
        ("GET", "/api/v1/channels/news"), ("POST", "/api/v1/channels"),
        ("GET", "/api/v1/channels/news")]


def test_async_client_shares_the_retry_rules() -> None:
    async def publish(url: str) -> str:
        async with AsyncPushClient(url, "u", "p", retry=FAST) as push:
            return await push.publish(["c"], "text")

    with ScriptedServer(unavailable("0"), PUBLISHED) as server:
        assert asyncio.run(publish(server.url)) == "1-0"
    keys = {seen.headers["Idempotency-Key"] for seen in server.seen}
    assert len(server.seen) == 2 and len(keys) == 1


def test_unreachable_endpoint_is_connection_failed() -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)
    started = time.monotonic()
    with PushClient(f"http://127.0.0.1:{free_port()}", "u", "p", retry=policy) as push:
        with pytest.raises(ConnectionFailed, match="cannot connect") as failure:
            push.auth()
    assert failure.value.status is None and not failure.value.maybe_delivered
    assert time.monotonic() - started < 5


# ---- pure rules ----------------------------------------------------------------------

def test_backoff_grows_jittered_and_capped() -> None:
    now = [0.0]
    policy = RetryPolicy(max_attempts=8, max_elapsed=100, base_delay=1.0, max_delay=4.0,
                         clock=lambda: now[0])
    backoff = Backoff(policy)
    delays = [backoff.next_delay(Unavailable(503, "x"), idempotent=False) for _ in range(7)]
    steps = [1, 2, 4, 4, 4, 4, 4]
    assert all(step / 2 <= d <= step for d, step in zip(delays, steps, strict=True))
    assert backoff.next_delay(Unavailable(503, "x"), idempotent=False) is None

    # A connection that broke after sending is retried only when the request is idempotent.
    broken = ConnectionFailed("reset", maybe_delivered=True)
    assert Backoff(policy).next_delay(broken, idempotent=False) is None
    assert Backoff(policy).next_delay(broken, idempotent=True) is not None


def test_settings_from_env() -> None:
    with pytest.raises(ConfigurationError, match="PUSHAAS_ENDPOINT, PUSHAAS_PASSWORD"):
        Settings.from_env({"PUSHAAS_USERNAME": "u"})
    with pytest.raises(ConfigurationError, match="http"):
        Settings("ftp://x", "u", "p")

    settings = Settings.from_env({"PUSHAAS_ENDPOINT": "http://api/", "PUSHAAS_USERNAME": "u",
                                  "PUSHAAS_PASSWORD": "s3cret"})
    assert settings.endpoint == "http://api" and "s3cret" not in repr(settings)
    with pytest.raises(ConfigurationError, match="config"):
        PushClient(settings.endpoint, "u", "p").subscribe_url("news")


def test_event_parser_follows_eventsource_rules() -> None:
    parser = EventParser()
    lines = [": ping", "id: 17:0", "data: {\"a\":", "data:1}", "", "data: second", ""]
    events = [e for e in map(parser.feed, lines) if e is not None]
    assert [(e.id, e.data) for e in events] == [("17:0", '{"a":\n1}'), ("17:0", "second")]


def test_subscribe_urls() -> None:
    with PushClient("http://api", "u", "p", push_stream_url="https://push.example.com") as push:
        assert push.subscribe_url("a") == "https://push.example.com/ev/a"
        assert push.subscribe_url(["a", "b"], "ws") == "wss://push.example.com/ws/a/b"
        assert push.subscribe_url("a", "lp", last_event_id="17:0") == \
            "https://push.example.com/lp/a?last_event_id=17%3A0"
        with pytest.raises(ValueError):
            push.subscribe_url("a/b")
        with pytest.raises(ValueError):
            push.subscribe_url("a", "sse")


class QuietStream:
    """An EventSource server whose first stream carries one event and whose next
    ``quiet`` streams carry nothing until the client gives up on them; then one more event.
    It records the Last-Event-ID of every request."""

    def __init__(self, quiet: int):
        self.quiet = quiet
        self.last_ids: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.last_ids.append(self.headers.get("Last-Event-ID"))
                number = len(server.last_ids)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                if number == 1 or number == server.quiet + 2:
                    self.wfile.write(f"id: {number}:0\ndata: event {number}\n\n".encode())
                    self.wfile.flush()
                time.sleep(1.0)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "QuietStream":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_quiet_stream_is_reopened_without_spending_the_retries() -> None:
    """More silent streams in a row than the policy's attempts: each is reopened with the
    last id, and the event after them still arrives."""
    with QuietStream(quiet=FAST.max_attempts + 2) as server:
        url = f"http://127.0.0.1:{server.httpd.server_address[1]}/ev/quiet"
        with Subscription(url, retry=FAST, read_timeout=0.2) as subscription:
            events = iter(subscription)
            first, second = next(events), next(events)

    assert (first.data, second.data) == ("event 1", f"event {FAST.max_attempts + 4}")
    assert server.last_ids[0] is None
    assert set(server.last_ids[1:]) == {"1:0"}
