"""Delivery under faults: processes killed mid-burst, Redis restarted, publishers retrying.

Every test counts what subscribers received with ids deduplicated (the envelope ``id``)
and asserts that nothing published was lost. Bursts go straight into the instance stream
with XADD (the fields the push-api's script writes) because the agent and nginx are what
is under test and the local API serves a few hundred requests a second at best; the Redis
and idempotency tests go through the push-api. The stack is ``make run``'s, on a Redis
this module owns, so a test can kill and restart it.
"""

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from chalicelib import keys
from tests.agent_helpers import (
    REPLAY_ALL,
    AgentProcess,
    RestartableReplica,
    agent_env,
    has_ids,
    read_envelopes,
    wait_until,
)
from tests.faults import (
    FaultStack,
    Subscriber,
    cursor,
    duplicates,
    id_key,
    provision,
    publisher,
    write_plans,
    xadd_burst,
)
from tests.servers import RedisServer

pytestmark = pytest.mark.timeout(60)

AGENT_BATCH = 500
"""The agent's default batch (the local provisioner does not change it)."""

OUTAGE_REQUEST_LIMIT = 3.0
"""A publish during a Redis outage must be answered 503 within this many seconds."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    base = tmp_path_factory.mktemp("faults")
    redis_server = RedisServer(base / "redis").start()
    running = FaultStack(base / "state", redis_server, write_plans(base / "plans.json"))
    try:
        yield running.start()
    finally:
        code = running.stop()
        running.redis_server.stop()
    assert code == 0, "\n".join(running.output[-30:])


@pytest.fixture(scope="module")
def broker(stack: FaultStack) -> Iterator[httpx.Client]:
    with stack.broker() as client:
        yield client


def assert_no_loss(published: list[str], received: list[dict]) -> None:
    """Every published id arrived, and first arrivals kept the stream order."""
    unique = list(dict.fromkeys(item["id"] for item in received))
    wanted = set(published)
    lost = wanted - set(unique)
    assert not lost, f"lost {len(lost)} of {len(published)}, first {sorted(lost, key=id_key)[:3]}"
    assert [entry_id for entry_id in unique if entry_id in wanted] == published


def assert_duplicates_are_copies(received: list[dict]) -> None:
    """A redelivered message is the same envelope: same id, channel, text and time."""
    by_id: dict[str, dict] = {}
    for item in received:
        assert by_id.setdefault(item["id"], item) == item, f"{item['id']} changed on redelivery"


# ---- 1. agent killed mid-burst ---------------------------------------------------------


def test_agent_sigkill_mid_burst_loses_nothing_and_repeats_at_most_one_batch(
    stack: FaultStack, broker: httpx.Client,
) -> None:
    name = "agentkill"
    env = provision(stack, broker, name)
    client = stack.redis()
    subscriber = Subscriber(env["PUSHAAS_PUSH_STREAM_URL"], "burst").start()
    try:
        stack.wait_for_subscribers(name, "burst")
        agent = stack.pid(name, "agent")
        ids = xadd_burst(client, name, "burst", (f"m{n}" for n in range(5000)))

        wait_until(lambda: cursor(client, name) not in (None, ids[-1]), 10,
                   "the agent's first saved cursor of the burst")
        os.kill(agent, signal.SIGKILL)
        at_kill = cursor(client, name)
        assert at_kill is not None and id_key(at_kill) < id_key(ids[-1]), "not mid-burst"

        restarted = stack.wait_for_restart(name, "agent", agent)
        subscriber.wait_for(ids)
        wait_until(lambda: cursor(client, name) == ids[-1], 10, "cursor at the end")
    finally:
        subscriber.stop()

    received = subscriber.received()
    assert_no_loss(ids, received)
    extra = duplicates(received)
    assert sum(extra.values()) <= AGENT_BATCH, f"{sum(extra.values())} duplicates"
    unacknowledged = set(ids[ids.index(at_kill) + 1:][:AGENT_BATCH])
    assert set(extra) <= unacknowledged, "a duplicate from before the saved cursor"
    assert_duplicates_are_copies(received)
    assert restarted != agent and subscriber.dropped == 0


# ---- 2. nginx killed mid-burst ---------------------------------------------------------


def test_nginx_sigkill_mid_burst_redelivers_into_the_new_nginx(
    stack: FaultStack, broker: httpx.Client,
) -> None:
    """What a subscriber gets back after its nginx died, case by case.

    The agent finds the new nginx empty before resending its failed batch and delivers
    the whole buffer window again (every message here is inside it), so:

    - ``steady`` is connected when nginx dies and reconnects with its last event id: the
      new nginx does not know that id and replays its whole buffer. It loses nothing.
    - ``late`` connects after the restart asking for everything: it gets the whole window,
      in stream order.
    - ``away`` left before the crash and comes back with its last id: it gets the same
      buffer, so it misses nothing the dead nginx had accepted after it left; what it had
      already comes again as copies with the same ids.
    """
    name = "nginxkill"
    env = provision(stack, broker, name)
    url = env["PUSHAAS_PUSH_STREAM_URL"]
    client = stack.redis()
    steady = Subscriber(url, "burst").start()
    away = Subscriber(url, "burst", reconnect=False).start()
    late = back = None
    try:
        stack.wait_for_subscribers(name, "burst", 2)
        before = xadd_burst(client, name, "burst", (f"before {n}" for n in range(200)))
        away.wait_for(before)
        away.stop()

        nginx = stack.pid(name, "nginx")
        burst = xadd_burst(client, name, "burst", (f"burst {n}" for n in range(3000)))
        wait_until(lambda: id_key(cursor(client, name) or "0-0") > id_key(burst[0]), 10,
                   "the agent mid-burst")
        os.killpg(nginx, signal.SIGKILL)
        during = xadd_burst(client, name, "burst", (f"during {n}" for n in range(1000)))

        stack.wait_for_restart(name, "nginx", nginx)
        ids = before + burst + during
        wait_until(lambda: cursor(client, name) == ids[-1], 20, "cursor at the end")
        steady.wait_for(ids)

        late = Subscriber(url, "burst", last_event_id=REPLAY_ALL).start()
        back = Subscriber(url, "burst", last_event_id=away.last_event_id).start()
        late.wait_for(during)
        back.wait_for(during)
    finally:
        for subscriber in (steady, away, late, back):
            if subscriber is not None:
                subscriber.stop()

    assert steady.dropped >= 1, "the subscriber never saw its nginx die"
    assert_no_loss(ids, steady.received())
    assert_duplicates_are_copies(steady.received())
    assert _seconds(steady.event_ids, old=True) < _seconds(steady.event_ids, old=False), (
        "the new nginx reused a second of the dead one's event ids: a resume from the old "
        "id would skip its first messages")

    assert_no_loss(ids, late.received())
    assert_duplicates_are_copies(late.received())

    returned = away.received() + back.received()
    assert_no_loss(ids, returned)
    assert_duplicates_are_copies(returned)
    assert [item["id"] for item in back.received()] == [item["id"] for item in late.received()]


def _seconds(event_ids: list[tuple[int, str]], old: bool) -> int:
    """Latest second of the ids of the first connection, or earliest of the later ones."""
    seconds = [int(nchan_id.split(":")[0]) for connection, nchan_id in event_ids
               if (connection == 1) == old]
    return max(seconds) if old else min(seconds)


# ---- 3. Redis restarted ----------------------------------------------------------------


def test_redis_restart_keeps_everything_and_publishes_fail_fast_meanwhile(
    stack: FaultStack, broker: httpx.Client,
) -> None:
    name = "redisfault"
    env = provision(stack, broker, name)
    client = stack.redis()
    subscriber = Subscriber(env["PUSHAAS_PUSH_STREAM_URL"], "news").start()
    try:
        with publisher(env) as api:
            assert api.post("/api/v1/channels", json={"id": "news", "ttl": 0}).status_code == 201
            stack.wait_for_subscribers(name, "news")
            sent = [api.post("/api/v1/messages", json={"channels": ["news"], "content": f"m{n}"})
                    for n in range(5)]
            ids = [response.json()["id"] for response in sent]
            wait_until(lambda: cursor(client, name) == ids[-1], 10, "cursor before the outage")
            stream_before = client.xrange(keys.stream(name))
            agent = stack.pid(name, "agent")

            stack.redis_server.proc.kill()
            stack.redis_server.proc.wait(10)
            outage = [_timed_publish(api, f"during outage {n}") for n in range(4)]
            health = api.get("/api/healthcheck")

            stack.restart_redis()
            client = stack.redis()
            wait_until(lambda: api.get("/api/healthcheck").status_code == 200, 10, "API up")
            after = api.post("/api/v1/messages", json={"channels": ["news"], "content": "after"})
            channels = api.get("/api/v1/channels").json()

        assert health.status_code == 503
        for status, body, elapsed in outage:
            assert status == 503 and body["code"] == 503 and body["message"], body
            assert elapsed < OUTAGE_REQUEST_LIMIT, f"a publish took {elapsed:.1f}s to fail"

        assert client.xrange(keys.stream(name))[:len(stream_before)] == stream_before
        assert client.get(keys.cursor(name, f"{name}-0")) in (ids[-1], after.json()["id"])
        assert [channel["id"] for channel in channels] == ["news"]

        assert after.status_code == 201, after.text
        ids.append(after.json()["id"])
        subscriber.wait_for(ids, timeout=20)
        wait_until(lambda: cursor(client, name) == ids[-1], 10, "cursor after the outage")
    finally:
        subscriber.stop()

    texts = [fields["t"] for _, fields in client.xrange(keys.stream(name))]
    assert texts == [f"m{n}" for n in range(5)] + ["after"], "half-written outage publish"
    assert_no_loss(ids, subscriber.received())
    assert stack.pid(name, "agent") == agent, "the agent was restarted"
    assert stack.proc is not None and stack.proc.poll() is None


def _timed_publish(api: httpx.Client, text: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = api.post("/api/v1/messages", json={"channels": ["news"], "content": text})
    return response.status_code, response.json(), time.monotonic() - started


# ---- 4. idempotent retries ---------------------------------------------------------------


def test_retries_with_one_idempotency_key_deliver_once(
    stack: FaultStack, broker: httpx.Client,
) -> None:
    """The retry that matters follows an ambiguous failure: Redis hung, the API gave up
    after its socket timeout and answered 503, and Redis may still run the publish when it
    resumes. Retrying with the same key must give one message whichever way that went."""
    name = "idempotent"
    env = provision(stack, broker, name)
    client = stack.redis()
    subscriber = Subscriber(env["PUSHAAS_PUSH_STREAM_URL"], "orders").start()
    body = {"channels": ["orders"], "content": "order 42 paid"}
    headers = {"Idempotency-Key": "order-42-paid"}
    redis_pid = stack.redis_server.proc.pid
    try:
        stack.wait_for_subscribers(name, "orders")
        with publisher(env) as api:
            api.get("/api/v1/auth").raise_for_status()
            os.kill(redis_pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                hung = api.post("/api/v1/messages", json=body, headers=headers)
                hung_for = time.monotonic() - started
            finally:
                os.kill(redis_pid, signal.SIGCONT)

            first = wait_until(lambda: _accepted(api, body, headers), 10, "a 201 after Redis")
            with ThreadPoolExecutor(4) as pool:
                retries = list(pool.map(
                    lambda _: api.post("/api/v1/messages", json=body, headers=headers),
                    range(4)))
            sentinel = api.post("/api/v1/messages",
                                json={"channels": ["orders"], "content": "next"})
        subscriber.wait_for([sentinel.json()["id"]])
    finally:
        subscriber.stop()

    assert hung.status_code == 503 and hung.json()["code"] == 503
    assert hung_for < OUTAGE_REQUEST_LIMIT, f"the publish hung {hung_for:.1f}s"
    assert {(r.status_code, r.json()["id"]) for r in retries} == {(201, first["id"])}
    texts = [fields["t"] for _, fields in client.xrange(keys.stream(name))]
    assert texts == ["order 42 paid", "next"]
    assert [item["id"] for item in subscriber.received()] == [
        first["id"], sentinel.json()["id"]]


def _accepted(api: httpx.Client, body: dict, headers: dict) -> dict | None:
    response = api.post("/api/v1/messages", json=body, headers=headers)
    return response.json() if response.status_code == 201 else None


# ---- 5. retention gap while running ----------------------------------------------------


INSTANCE = "gaptest"
AGENT = "gaptest-0"


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[RestartableReplica]:
    with RestartableReplica(tmp_path, buffer_length=1000) as server:
        yield server


def test_running_agent_logs_a_retention_gap_and_continues(
    tmp_path: Path, redis_client: redis.Redis, redis_server: RedisServer,
    replica: RestartableReplica,
) -> None:
    """The cursor falls behind retention while nginx is down; tests/test_agent.py covers a
    cursor that was already behind when the agent started."""
    stream = keys.stream(INSTANCE)
    base = int(time.time() * 1000) - 120_000
    redis_client.xadd(stream, {"c": '["news"]', "t": "m1"}, id=f"{base}-1")
    env = agent_env(redis_server.url, INSTANCE, AGENT, replica.internal_url,
                    agent_batch="1", agent_heartbeat=str(tmp_path / "heartbeat"))
    agent = AgentProcess(tmp_path / "agent.log", env).start()
    try:
        wait_until(lambda: redis_client.get(keys.cursor(INSTANCE, AGENT)) == f"{base}-1",
                   10, "first delivery")
        replica.stop()
        for n in range(2, 12):
            redis_client.xadd(stream, {"c": '["news"]', "t": f"m{n}"}, id=f"{base}-{n}")
        agent.wait_for_log("publish failed, retrying")
        redis_client.xtrim(stream, maxlen=3, approximate=False)

        replica.start()
        agent.wait_for_log(f"retention gap instance={INSTANCE} agent={AGENT} "
                           f"position={base}-2 first_entry={base}-9 lost_at_most=8")
        fresh = redis_client.xadd(stream, {"c": '["news"]', "t": "fresh"})
        expected = [f"{base}-{n}" for n in (2, 9, 10, 11)] + [fresh]
        received = read_envelopes(replica, "news", has_ids(expected))
    finally:
        agent.stop()

    assert [item["id"] for item in received] == expected
