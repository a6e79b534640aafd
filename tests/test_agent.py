"""push-agent: unit tests of its parts, then the real agent process against real Redis and a
real push-stream nginx (render.py config)."""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from chalicelib import envelope, keys
from tests.agent_helpers import (
    AGENT_PYTHONPATH,
    AgentProcess,
    RestartableReplica,
    agent_env,
    has_ids,
    read_envelopes,
    wait_until,
)
from tests.servers import RedisServer

# isort: split
# push_agent is importable once tests.agent_helpers has put its container dir on sys.path.
from push_agent import streamids
from push_agent.backoff import Backoff
from push_agent.entries import plan_batch
from push_agent.http import Connection, HttpError, HttpPool
from push_agent.nchan import NchanClient, parse_stub_status
from push_agent.refill import BufferRefill, NginxBuffer
from push_agent.settings import Settings, SettingsError, redact_url
from push_agent.stream import InstanceStream, StreamInfo, retention_gap

pytestmark = pytest.mark.timeout(30)

INSTANCE = "agenttest"
AGENT = "agenttest-0"

BASE_ENV = {
    "PUSHAAS_REDIS_URL": "redis://127.0.0.1:6379/0",
    "PUSHAAS_INSTANCE": INSTANCE,
    "PUSHAAS_AGENT_ID": AGENT,
    "PUSHAAS_NGINX_URL": "http://127.0.0.1:9081",
}


# ---- settings -------------------------------------------------------------------------


def test_settings_defaults() -> None:
    settings = Settings.from_env(BASE_ENV)

    assert (settings.batch, settings.concurrency) == (500, 16)
    assert (settings.stats_interval, settings.keepalive_interval) == (5.0, 30.0)
    assert settings.buffer_seconds == 600.0
    assert settings.nginx.url == "http://127.0.0.1:9081"
    assert AGENT in settings.heartbeat_path


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("PUSHAAS_REDIS_URL", "", "PUSHAAS_REDIS_URL is required"),
        ("PUSHAAS_REDIS_URL", "http://x", "PUSHAAS_REDIS_URL"),
        ("PUSHAAS_REDIS_URL", "redis://h:abc", "PUSHAAS_REDIS_URL needs a host and a port"),
        ("PUSHAAS_REDIS_URL", "redis://:pw@h:99999/0", "PUSHAAS_REDIS_URL needs a host"),
        ("PUSHAAS_REDIS_URL", "redis:///0", "PUSHAAS_REDIS_URL needs a host"),
        ("PUSHAAS_INSTANCE", "a b", "PUSHAAS_INSTANCE"),
        ("PUSHAAS_AGENT_ID", "{x}", "PUSHAAS_AGENT_ID"),
        ("PUSHAAS_NGINX_URL", "https://127.0.0.1:1", "PUSHAAS_NGINX_URL"),
        ("PUSHAAS_NGINX_URL", "http://127.0.0.1:99999", "PUSHAAS_NGINX_URL"),
        ("PUSHAAS_AGENT_BATCH", "many", "PUSHAAS_AGENT_BATCH"),
        ("PUSHAAS_AGENT_CONCURRENCY", "0", "PUSHAAS_AGENT_CONCURRENCY"),
        ("PUSHAAS_STATS_INTERVAL", "-1", "PUSHAAS_STATS_INTERVAL"),
        ("PUSHAAS_LOG_LEVEL", "LOUD", "PUSHAAS_LOG_LEVEL"),
    ],
    ids=lambda value: value if isinstance(value, str) and value.startswith("PUSHAAS") else "",
)
def test_settings_reject_bad_values(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        Settings.from_env({**BASE_ENV, name: value})


def test_redis_password_never_printed() -> None:
    settings = Settings.from_env({**BASE_ENV, "PUSHAAS_REDIS_URL": "redis://:s3cret@h:1/0"})

    assert "s3cret" not in repr(settings)
    assert redact_url("redis://user:s3cret@h:1/0") == "redis://user:***@h:1/0"


# ---- small parts ----------------------------------------------------------------------


def test_stub_status_parsed() -> None:
    text = (
        "total published messages: 12\nstored messages: 7\nshared memory used: 24K\n"
        "channels: 3\nsubscribers: 2\nnchan version: 1.3.6\n"
    )

    assert parse_stub_status(text) == {
        "published_messages": 12, "stored_messages": 7, "channels": 3, "subscribers": 2,
    }


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    backoff = Backoff(first=0.05, cap=5.0, jitter=0.25)
    delays = [backoff.next_delay() for _ in range(12)]

    assert 0.0375 <= delays[0] <= 0.05
    assert 0.075 <= delays[1] <= 0.1
    assert all(3.75 <= delay <= 5.0 for delay in delays[8:])


def test_plan_groups_by_channel_in_stream_order_and_skips_malformed() -> None:
    entries = [
        ("1-0", _raw(envelope.entry_fields(["a", "b"], "one"))),
        ("2-0", {b"c": b"not json", b"t": b"x"}),
        ("3-0", {b"c": b'["a"]'}),
        ("4-0", {b"c": b'["a/b"]', b"t": b"x"}),
        ("5-0", {b"c": b'["a"]', b"t": b"\xff"}),
        ("6-0", _raw(envelope.entry_fields(["a"], "two"))),
    ]

    plan = plan_batch(INSTANCE, entries)

    assert list(plan) == ["a", "b"]
    assert [d.entry_id for d in plan["a"]] == ["1-0", "6-0"]
    assert plan["b"][0].body == envelope.envelope("1-0", "b", "one")


def test_retention_gap_only_when_position_is_before_trimmed_entries() -> None:
    info = StreamInfo(length=3, entries_added=10, first_id="100-0", last_id="120-0")

    gap = retention_gap("50-0", info)
    assert gap is not None and gap.lost_at_most == 7
    assert retention_gap("100-0", info) is None
    assert retention_gap(streamids.before("100-0"), info) is None, "a refill's position"
    assert retention_gap("99-0", info) is not None
    assert retention_gap("50-0", StreamInfo(3, 3, "100-0", "120-0")) is None
    assert retention_gap("50-0", info, now_ms=105, settle_ms=10) is None


def test_stream_ids_compare_numerically() -> None:
    assert streamids.parse("10-2") > streamids.parse("9-99")
    assert streamids.at_time(1.5) == "1500-0"
    assert not streamids.is_valid("10")
    assert streamids.is_valid(f"{2**64 - 1}-{2**64 - 1}")
    assert not streamids.is_valid(f"{2**64}-0")
    assert not streamids.is_valid("1\u00b2-0")


def test_the_id_before_an_entry_is_the_greatest_one_below_it() -> None:
    assert streamids.before("10-2") == "10-1"
    assert streamids.before("10-0") == f"9-{2**64 - 1}"
    assert streamids.before("0-0") == "0-0"


def test_refill_window_starts_at_its_first_entry_up_to_the_cursor(
    redis_client: redis.Redis, redis_server: RedisServer,
) -> None:
    """Entries older than the window are not delivered again, the position is right before
    the window's first entry (never before the stream's), and a window holding nothing at
    or before the cursor needs no refill."""
    now = int(time.time() * 1000)
    old, first, second = f"{now - 700_000}-0", f"{now - 5_000}-0", f"{now - 4_000}-0"
    for entry_id in (old, first, second):
        redis_client.xadd(keys.stream(INSTANCE), {"c": '["news"]', "t": "x"}, id=entry_id)

    async def starts(cursors: list[str]) -> list[str | None]:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        nchan = NchanClient(HttpPool("127.0.0.1", 9, size=1))
        refill = BufferRefill(nchan, InstanceStream(client, INSTANCE), INSTANCE, 600)
        try:
            return [await refill.window_start(cursor) for cursor in cursors]
        finally:
            await client.aclose()

    assert asyncio.run(starts([second, first, old])) == [
        streamids.before(first), streamids.before(first), None]
    redis_client.xtrim(keys.stream(INSTANCE), minid=second, approximate=False)
    assert asyncio.run(starts([second])) == [streamids.before(second)]


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nstored messages: 0\nx\n",
         NginxBuffer.LOST),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nstored messages: 3\nx\n",
         NginxBuffer.KEPT),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nchannels: 0", NginxBuffer.KEPT),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", NginxBuffer.KEPT),
        (None, NginxBuffer.UNKNOWN),
    ],
    ids=["empty", "holding", "no-stored-line", "no-stub-status", "unreachable"],
)
def test_nginx_buffer_verdict(reply: bytes | None, verdict: NginxBuffer) -> None:
    """Only an nginx that says it stores nothing is fresh; one that cannot say is not."""

    async def scenario() -> NginxBuffer:
        server = await asyncio.start_server(_serve([reply] if reply else []), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        if reply is None:
            server.close()
            await server.wait_closed()
        pool = HttpPool("127.0.0.1", port, size=1, timeout=2)
        refill = BufferRefill(NchanClient(pool), None, INSTANCE, 600)  # type: ignore[arg-type]
        try:
            return await refill.nginx_buffer()
        finally:
            await pool.close()
            server.close()

    assert asyncio.run(scenario()) == verdict


# ---- the HTTP client, against a scripted loopback server ------------------------------


def _serve(replies: list[bytes]) -> Callable[[], object]:
    """A server answering each request with the next reply; closes when it says so."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while replies:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(line.split(b":")[1]) for line in head.split(b"\r\n")
                 if line.lower().startswith(b"content-length")), 0,
            )
            await reader.readexactly(length)
            reply = replies.pop(0)
            writer.write(reply)
            await writer.drain()
            if b"Connection: close" in reply:
                break
        writer.close()

    return handle


def test_http_client_reads_chunked_and_length_bodies_on_one_connection() -> None:
    async def scenario() -> list:
        replies = [
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n"
            b"0\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
        ]
        server = await asyncio.start_server(_serve(replies), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connection = Connection("127.0.0.1", port, timeout=5)
        results = [
            await connection.request("POST", "/pub?id=a", {}, b"{}"),
            await connection.request("GET", "/pub?id=a"),
            await connection.request("GET", "/x"),
        ]
        connection.close()
        server.close()
        return results

    first, second, third = asyncio.run(scenario())

    assert (first.status, first.body) == (202, b"hello")
    assert (second.status, second.body) == (200, b"abcde")
    assert (third.status, third.body) == (204, b"")


def test_http_pool_reconnects_after_the_server_closes() -> None:
    async def scenario() -> list[int]:
        replies = [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"] * 3
        server = await asyncio.start_server(_serve(replies), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = HttpPool("127.0.0.1", port, size=1, timeout=5)
        statuses = [(await pool.request("GET", "/")).status for _ in range(3)]
        await pool.close()
        server.close()
        return statuses

    assert asyncio.run(scenario()) == [200, 200, 200]


def test_http_client_reports_a_refused_connection() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(_serve([]), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        await Connection("127.0.0.1", port, timeout=2).request("GET", "/")

    with pytest.raises(HttpError, match="failed"):
        asyncio.run(scenario())


# ---- the agent process ----------------------------------------------------------------


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[RestartableReplica]:
    with RestartableReplica(tmp_path, buffer_length=1000) as server:
        yield server


@pytest.fixture
def start_agent(
    tmp_path: Path, redis_server: RedisServer, replica: RestartableReplica,
) -> Iterator[Callable[..., AgentProcess]]:
    """Starts agents (keyword args become PUSHAAS_ env vars); all are killed afterwards."""
    agents: list[AgentProcess] = []

    def start(redis_url: str | None = None, **extra: str) -> AgentProcess:
        extra.setdefault("agent_heartbeat", str(tmp_path / "heartbeat"))
        env = agent_env(
            redis_url or redis_server.url, INSTANCE, AGENT, replica.internal_url, **extra,
        )
        agent = AgentProcess(tmp_path / "agent.log", env).start()
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()


def publish(client: redis.Redis, channels: list[str], text: str) -> str:
    return client.xadd(keys.stream(INSTANCE), envelope.entry_fields(channels, text))


def cursor(client: redis.Redis) -> str | None:
    return client.get(keys.cursor(INSTANCE, AGENT))


def cursor_at(client: redis.Redis, entry_id: str) -> Callable[[], bool]:
    return lambda: cursor(client) == entry_id


def test_delivers_exact_envelopes_one_per_channel(
    redis_client: redis.Redis, replica: RestartableReplica, start_agent: Callable,
) -> None:
    first = publish(redis_client, ["news"], "hello")
    both = publish(redis_client, ["news", "sport"], 'both "quoted" \u00e9')

    start_agent()

    news = read_envelopes(replica, "news", has_ids([first, both]))
    sport = read_envelopes(replica, "sport", has_ids([both]))
    assert news == [
        json.loads(envelope.envelope(first, "news", "hello")),
        json.loads(envelope.envelope(both, "news", 'both "quoted" \u00e9')),
    ]
    assert sport == [json.loads(envelope.envelope(both, "sport", 'both "quoted" \u00e9'))]
    wait_until(cursor_at(redis_client, both), what="cursor at the last entry")


def test_per_channel_order_is_kept_under_concurrency(
    redis_client: redis.Redis, replica: RestartableReplica, start_agent: Callable,
) -> None:
    channels = [f"ch{n}" for n in range(5)]
    pipe = redis_client.pipeline()
    for n in range(300):
        pipe.xadd(keys.stream(INSTANCE), envelope.entry_fields([channels[n % 5]], f"m{n}"))
    ids = pipe.execute()

    start_agent(agent_batch="50", agent_concurrency="16")

    for index, channel in enumerate(channels):
        expected = ids[index::5]
        received = read_envelopes(replica, channel, has_ids(expected))
        received_ids = [item["id"] for item in received]
        assert received_ids == expected, f"{channel} out of order"


def test_cursor_advances_only_after_nginx_accepted(
    redis_client: redis.Redis, replica: RestartableReplica, start_agent: Callable,
) -> None:
    before = publish(redis_client, ["news"], "before")
    agent = start_agent()
    wait_until(cursor_at(redis_client, before), what="first cursor")

    replica.stop()
    pending = [publish(redis_client, ["news"], f"while down {n}") for n in range(3)]
    agent.wait_for_log("publish failed, retrying")
    assert cursor(redis_client) == before

    replica.start()
    wait_until(cursor_at(redis_client, pending[-1]), timeout=15, what="cursor after restart")
    received = read_envelopes(replica, "news", has_ids(pending))
    # The restarted nginx came up empty, so the agent refilled its buffer window first:
    # "before" again, as a copy with its own id, then the rest in stream order.
    assert [item["id"] for item in received] == [before, *pending]
    agent.wait_for_log("refilling nginx buffer")


def test_sigkill_midway_then_restart_loses_nothing(
    redis_client: redis.Redis, replica: RestartableReplica, start_agent: Callable,
) -> None:
    pipe = redis_client.pipeline()
    for n in range(200):
        pipe.xadd(keys.stream(INSTANCE), envelope.entry_fields(["feed"], f"m{n}"))
    ids = pipe.execute()

    agent = start_agent(agent_batch="5")
    wait_until(lambda: cursor(redis_client), what="a first saved cursor")
    agent.kill()

    ids += [publish(redis_client, ["feed"], f"after kill {n}") for n in range(50)]
    start_agent(agent_batch="5")

    wait_until(cursor_at(redis_client, ids[-1]), timeout=15, what="cursor at the end")
    received = read_envelopes(replica, "feed", has_ids(ids))
    unique = list(dict.fromkeys(item["id"] for item in received))
    assert unique == ids
    assert len(received) - len(unique) <= 5, "more duplicates than one batch"


def test_sigterm_exits_promptly_and_saves_the_cursor(
    redis_client: redis.Redis, start_agent: Callable,
) -> None:
    agent = start_agent()
    agent.wait_for_log("agent started")
    last = [publish(redis_client, ["news"], f"m{n}") for n in range(20)][-1]
    wait_until(cursor_at(redis_client, last), what="cursor at the last entry")

    code, elapsed = agent.terminate()

    assert code == 0
    assert elapsed < 6
    assert cursor(redis_client) == last
    assert f"agent stopped instance={INSTANCE} agent={AGENT} cursor={last}" in agent.logs()


def test_sigterm_with_nginx_down_gives_up_the_batch_within_the_grace(
    redis_client: redis.Redis, replica: RestartableReplica, start_agent: Callable,
) -> None:
    before = publish(redis_client, ["news"], "before")
    agent = start_agent()
    wait_until(cursor_at(redis_client, before), what="first cursor")
    replica.stop()
    publish(redis_client, ["news"], "never accepted")
    agent.wait_for_log("publish failed, retrying")

    code, elapsed = agent.terminate()

    assert code == 0
    assert elapsed < 6.5
    assert cursor(redis_client) == before
    assert "batch in flight abandoned at shutdown" in agent.logs()


def test_stats_are_reported_with_ttl(
    redis_client: redis.Redis, start_agent: Callable,
) -> None:
    redis_client.zadd(keys.channel_index(INSTANCE), {"registered": float("inf")})
    last = [publish(redis_client, ["news"], f"m{n}") for n in range(4)][-1]
    start_agent()
    wait_until(cursor_at(redis_client, last), what="delivery")

    def reported() -> dict | None:
        raw = redis_client.get(keys.global_stats(INSTANCE, AGENT))
        stats = json.loads(raw) if raw else None
        return stats if stats and stats["delivered"] == 4 else None

    stats = wait_until(reported, what="global stats after delivery")
    assert stats["agent"] == AGENT and stats["cursor"] == last and stats["lag"] == 0
    assert stats["published_messages"] >= 4 and stats["stored_messages"] >= 4
    assert stats["time"].endswith("Z") and stats["uptime"] >= 0
    assert 0 < redis_client.pttl(keys.global_stats(INSTANCE, AGENT)) <= 1500

    channel_key = keys.channel_stats(INSTANCE, AGENT)
    channels = redis_client.hgetall(channel_key)
    assert set(channels) == {"news", "registered"}
    news = json.loads(channels["news"])
    assert (news["published_messages"], news["stored_messages"]) == (4, 4)
    assert 0 < redis_client.pttl(channel_key) <= 1500
    assert redis_client.zscore(keys.agents(INSTANCE), AGENT) > time.time() - 10


def test_keepalive_touches_registered_channels_only(
    redis_client: redis.Redis, start_agent: Callable,
) -> None:
    index = keys.channel_index(INSTANCE)
    redis_client.zadd(index, {"forever": float("inf"), "later": time.time() + 600})
    redis_client.zadd(index, {"expired": time.time() - 10})

    agent = start_agent()

    agent.wait_for_log(f"keepalive touched instance={INSTANCE} registered=2")
    assert redis_client.zscore(index, "expired") is not None, "the index is not the agent's"


def test_malformed_entry_is_skipped_with_a_warning(
    redis_client: redis.Redis, replica: RestartableReplica, start_agent: Callable,
) -> None:
    bad = redis_client.xadd(keys.stream(INSTANCE), {"c": "not json", "t": "x"})
    good = publish(redis_client, ["news"], "after the bad one")

    agent = start_agent()

    received = read_envelopes(replica, "news", has_ids([good]))
    assert [item["id"] for item in received] == [good]
    logs = agent.wait_for_log(f"malformed stream entry skipped instance={INSTANCE} entry={bad}")
    assert "WARNING" in logs
    wait_until(cursor_at(redis_client, good), what="cursor past the bad entry")


def test_new_replica_starts_one_buffer_window_back(
    redis_client: redis.Redis, replica: RestartableReplica, start_agent: Callable,
) -> None:
    old = f"{int(time.time() * 1000) - 1_000_000}-0"
    redis_client.xadd(keys.stream(INSTANCE), envelope.entry_fields(["news"], "old"), id=old)
    recent = publish(redis_client, ["news"], "recent")

    start_agent(buffer_seconds="600")

    received = read_envelopes(replica, "news", has_ids([recent]))
    assert [item["id"] for item in received] == [recent]


@pytest.mark.parametrize("damage", ["ahead", "wrong type"])
def test_a_cursor_ahead_of_the_stream_or_of_another_type_starts_a_window_back(
    redis_client: redis.Redis, replica: RestartableReplica, start_agent: Callable,
    damage: str,
) -> None:
    """Redis restored from an older snapshot leaves a cursor past the stream's end; one
    that were believed would skip every entry until the stream caught up."""
    recent = publish(redis_client, ["news"], "recent")
    cursor_key = keys.cursor(INSTANCE, AGENT)
    if damage == "ahead":
        redis_client.set(cursor_key, f"{int(time.time() * 1000) + 3_600_000}-0")
    else:
        redis_client.hset(cursor_key, "not", "a cursor")

    agent = start_agent(buffer_seconds="600")

    received = read_envelopes(replica, "news", has_ids([recent]))
    assert [item["id"] for item in received] == [recent]
    agent.wait_for_log("ahead of the stream" if damage == "ahead" else "cursor unreadable")
    wait_until(cursor_at(redis_client, recent), what="cursor saved over the damage")


def test_retention_gap_is_logged_and_delivery_resumes(
    redis_client: redis.Redis, replica: RestartableReplica, start_agent: Callable,
) -> None:
    ids = [publish(redis_client, ["news"], f"m{n}") for n in range(10)]
    redis_client.set(keys.cursor(INSTANCE, AGENT), ids[2])
    redis_client.xtrim(keys.stream(INSTANCE), maxlen=3, approximate=False)

    agent = start_agent()

    agent.wait_for_log(f"retention gap instance={INSTANCE} agent={AGENT} position={ids[2]} "
                       f"first_entry={ids[7]} lost_at_most=7")
    received = read_envelopes(replica, "news", has_ids(ids[7:]))
    assert [item["id"] for item in received] == ids[7:]


def test_agent_survives_a_redis_restart(
    tmp_path: Path, replica: RestartableReplica, start_agent: Callable,
) -> None:
    private = RedisServer(tmp_path / "private-redis").start()
    try:
        client = private.client()
        first = publish(client, ["news"], "first")
        agent = start_agent(redis_url=private.url)
        wait_until(cursor_at(client, first), what="first delivery")

        private.stop()
        agent.wait_for_log("redis unavailable")
        private = RedisServer(tmp_path / "private-redis", port=private.port).start()
        client = private.client()
        second = publish(client, ["news"], "second")

        wait_until(cursor_at(client, second), timeout=15, what="delivery after restart")
        assert agent.proc is not None and agent.proc.poll() is None
        received = read_envelopes(replica, "news", has_ids([first, second]))
        assert [item["id"] for item in received] == [first, second]
    finally:
        private.stop()


def test_health_check_follows_the_heartbeat(
    tmp_path: Path, redis_client: redis.Redis, replica: RestartableReplica,
    start_agent: Callable,
) -> None:
    heartbeat = tmp_path / "heartbeat"
    env = {
        **os.environ, **BASE_ENV, "PYTHONPATH": AGENT_PYTHONPATH,
        "PUSHAAS_NGINX_URL": replica.internal_url, "PUSHAAS_AGENT_HEARTBEAT": str(heartbeat),
    }

    def health() -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "push_agent.health"]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=10)

    assert health().returncode == 1
    agent = start_agent(agent_heartbeat=str(heartbeat))
    agent.wait_for_log("agent started")
    wait_until(lambda: health().returncode == 0, what="healthy")

    agent.terminate()
    result = health()
    assert result.returncode == 1 and "heartbeat" in result.stdout


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"PUSHAAS_REDIS_URL": ""}, "PUSHAAS_REDIS_URL is required"),
        ({"PUSHAAS_AGENT_BATCH": "lots"}, "PUSHAAS_AGENT_BATCH must be an integer"),
        ({"PUSHAAS_NGINX_URL": "nginx:9081"}, "PUSHAAS_NGINX_URL"),
    ],
    ids=["missing-redis", "bad-batch", "bad-nginx-url"],
)
def test_bad_environment_exits_2_with_one_line(change: dict, fragment: str) -> None:
    env = {**os.environ, **BASE_ENV, "PYTHONPATH": AGENT_PYTHONPATH, **change}

    result = subprocess.run(
        [sys.executable, "-m", "push_agent"], env=env, capture_output=True, text=True,
        timeout=10,
    )

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]


def _raw(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {key.encode(): value.encode() for key, value in fields.items()}
