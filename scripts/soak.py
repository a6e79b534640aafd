#!/usr/bin/env python3
"""Soak the whole local stack: a fixed publish rate, hundreds of subscribers, for minutes.

It starts ``python -m pushaas_local.stack`` (exactly ``make run``) in a private state dir
with a soak plan whose retention is small, so trimming runs within the first minute; it
creates and binds one instance, connects the subscribers (asyncio EventSource clients on
raw loopback sockets, each on one of a few channels), publishes through the push-api at a
fixed rate and, every sample interval, records Redis memory, the agent's and nginx's RSS,
the stream length, the agent's lag and the delivered / missing counts. At the end it waits
for deliveries to drain and counts, per subscriber and with ids deduplicated, what was
lost. It writes every sample and the verdict as JSON and, with ``--doc``, a markdown table
between markers in that file.

    scripts/soak.py [--seconds 180] [--rate 200] [--subscribers 300] [--output FILE]
                    [--doc docs/reliability.md]

Defaults come from SOAK_SECONDS, SOAK_RATE, SOAK_SUBSCRIBERS, SOAK_CHANNELS and
SOAK_SAMPLE_SECONDS. Exit status: 0 when nothing was lost and memory stayed bounded, 1
when something was lost or memory grew, 2 when the stack or the instance did not come up.
"""

import argparse
import asyncio
import base64
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
for path in (REPO_ROOT, REPO_ROOT / "containers" / "push-agent"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from push_agent.http import HttpError, HttpPool  # noqa: E402

from chalicelib import keys  # noqa: E402
from pushaas_local.processes import children  # noqa: E402

log = logging.getLogger("soak")

INSTANCE = "soak"
PLAN = "soak"
READY = "PushaaS ready"
DOC_START = "<!-- soak:start -->"
DOC_END = "<!-- soak:end -->"
MIB = 1024 * 1024

STACK_START_TIMEOUT = 60.0
PROVISION_TIMEOUT = 60.0
CONNECT_TIMEOUT = 30.0
DRAIN_TIMEOUT = 30.0
SETTLE_SECONDS = 5.0
"""A message published this long ago should have reached every subscriber of its channel."""

PUBLISH_CONCURRENCY = 64
"""Requests in flight at most; past that a tick is counted as skipped, not queued."""

GROWTH_LIMIT_PER_HOUR = 64 * MIB
"""Memory is bounded when its steady-state trend adds less than this an hour (see
``memory_verdict``)."""

MIN_STEADY_SAMPLES = 4


@dataclass(frozen=True)
class Config:
    seconds: float
    rate: float
    subscribers: int
    channels: int
    sample_seconds: float
    output: Path
    doc: Path | None
    subscriber_lifetime: float = 0.0
    message_bytes: int = 100

    @property
    def retention_seconds(self) -> int:
        return 30

    @property
    def retention_max_len(self) -> int:
        """About 15 s of traffic: trimming by length starts within the first minute."""
        return max(1000, int(self.rate * 15))


@dataclass
class Sample:
    t: float
    published: int
    publish_errors: int
    delivered: int
    duplicates: int
    missing: int
    subscribers_connected: int
    stream_length: int
    entries_added: int
    agent_lag: int | None
    agent_lag_seconds: float | None
    redis_used_memory: int
    agent_rss: int | None
    nginx_rss: int | None


@dataclass
class Published:
    """What the publisher sent, by message number; the channel of ``n`` is ``n % channels``."""

    ids: list[str | None] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    skipped: int = 0

    def accepted(self) -> int:
        return sum(entry is not None for entry in self.ids)


# ---- the stack ---------------------------------------------------------------------------


class StackProcess:
    """``python -m pushaas_local.stack`` in its own session, its output kept in a file."""

    def __init__(self, work_dir: Path, plans_file: Path):
        self.work_dir = work_dir
        self.api_port = free_port()
        self.redis_port = free_port()
        self.broker_password = secrets.token_urlsafe(24)
        self.log_path = work_dir / "stack.log"
        self.state_dir = work_dir / "state"
        self.plans_file = plans_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHAAS_")}
        env.update(
            PUSHAAS_STATE_DIR=str(self.state_dir), PUSHAAS_API_PORT=str(self.api_port),
            PUSHAAS_REDIS_PORT=str(self.redis_port), PUSHAAS_PLANS_FILE=str(self.plans_file),
            PUSHAAS_BROKER_PASSWORD=self.broker_password, PUSHAAS_STATS_INTERVAL="2",
            PUSHAAS_LOG_LEVEL="INFO",
        )
        return env

    def start(self) -> None:
        with self.log_path.open("wb") as output:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pushaas_local.stack"], cwd=REPO_ROOT, env=self.env(),
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_for(lambda: READY in self.log_path.read_text(errors="replace"),
                 STACK_START_TIMEOUT, "the stack", alive=self.alive)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM as Ctrl-C would, then the whole group if it lingers; always reaped."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, decode_responses=True, socket_timeout=5)

    def pid(self, role: str) -> int | None:
        """The pid the local provisioner recorded for replica 0's ``agent`` or ``nginx``."""
        path = self.state_dir / "instances" / INSTANCE / "replica-0" / f"{role}.process"
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None


def write_plans(path: Path, config: Config) -> Path:
    plan = {
        "description": "soak: small retention so trimming runs within minutes",
        "replicas": 1, "cpu": 256, "memory": 512,
        "publish_rate": max(1000, int(config.rate * 4)),
        "max_channels": max(1000, config.channels),
        "buffer_length": 100, "buffer_seconds": config.retention_seconds,
        "retention_max_len": config.retention_max_len,
        "retention_seconds": config.retention_seconds,
    }
    path.write_text(json.dumps({PLAN: plan}, indent=2))
    return path


def provision(stack: StackProcess) -> dict[str, str]:
    """Create the instance, wait until it runs, bind an app: the app's environment."""
    with httpx.Client(base_url=stack.api, auth=("pushaas", stack.broker_password),
                      timeout=10, trust_env=False) as broker:
        created = broker.post("/resources", data={
            "name": INSTANCE, "plan": PLAN, "team": "soak", "user": "soak@example.com"})
        if created.status_code != 201:
            raise SoakError(f"instance not created: {created.status_code} {created.text}")
        wait_for(lambda: broker.get(f"/resources/{INSTANCE}/status").status_code == 204,
                 PROVISION_TIMEOUT, "the instance to run", alive=stack.alive)
        bound = broker.post(f"/resources/{INSTANCE}/bind-app", data={"app-name": "soak-app"})
        if bound.status_code != 201:
            raise SoakError(f"bind failed: {bound.status_code} {bound.text}")
        return bound.json()


class SoakError(Exception):
    """The stack or the instance did not come up; the message says what."""


def wait_for(ready: Callable[[], bool], timeout: float, what: str,
             alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if not alive():
            raise SoakError(f"the stack exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise SoakError(f"{what} not ready within {timeout:.0f}s")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- subscribers -------------------------------------------------------------------------


class Subscriber:
    """One EventSource client on a raw socket: HTTP/1.0, so the stream arrives unchunked.

    With a ``lifetime`` it closes its connection after about that long and reconnects
    with its last event id, as browsers come and go; an event cut in half is not counted
    and comes again after the id it follows.

    Messages are recognised by their number (the text starts with it) in a bitmap, so
    hundreds of subscribers over minutes cost kilobytes each; ``first_ids`` checks that a
    number always comes with the same stream id, which makes counting by number the same
    as deduplicating by envelope id.
    """

    def __init__(self, host: str, port: int, channel: int, first_ids: list[str | None],
                 lifetime: float = 0.0):
        self.host = host
        self.port = port
        self.channel = channel
        self.first_ids = first_ids
        self.lifetime = lifetime
        self.seen = bytearray()
        self.count = 0
        self.duplicates = 0
        self.mismatches = 0
        self.connections = 0
        self.connected = False
        self.last_event_id: str | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        """Read until stopped; reconnect with the last event id when nginx closes."""
        while not stopping.is_set():
            try:
                await self._connection(stopping)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                pass
            self.connected = False
            if not stopping.is_set():
                await asyncio.sleep(0.1)

    async def _connection(self, stopping: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            target = f"/ev/ch{self.channel}"
            if self.last_event_id:
                target += f"?last_event_id={self.last_event_id}"
            writer.write(f"GET {target} HTTP/1.0\r\nHost: {self.host}\r\n"
                         "Accept: text/event-stream\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                return
            self.connections += 1
            self.connected = True
            if not self.lifetime:
                await self._events(reader, stopping)
                return
            # Jittered, so the subscribers do not all reconnect in the same instant.
            try:
                await asyncio.wait_for(self._events(reader, stopping),
                                       self.lifetime * random.uniform(0.5, 1.5))
            except TimeoutError:
                pass
        finally:
            writer.close()

    async def _events(self, reader: asyncio.StreamReader, stopping: asyncio.Event) -> None:
        buffer = b""
        while not stopping.is_set():
            chunk = await reader.read(65536)
            if not chunk:
                return
            *events, buffer = (buffer + chunk).split(b"\n\n")
            for event in events:
                self._event(event)

    def _event(self, block: bytes) -> None:
        data = None
        for line in block.split(b"\n"):
            if line.startswith(b"id: "):
                self.last_event_id = line[4:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
        if data is not None:
            self._message(json.loads(data))

    def _message(self, envelope: Mapping[str, str]) -> None:
        number = int(envelope["text"].split(" ", 1)[0])
        if number >= len(self.seen):
            self.seen.extend(bytes(number + 1024 - len(self.seen)))
        if self.seen[number]:
            self.duplicates += 1
            return
        self.seen[number] = 1
        self.count += 1

        while len(self.first_ids) <= number:
            self.first_ids.append(None)
        first = self.first_ids[number]
        if first is None:
            self.first_ids[number] = envelope["id"]
        elif first != envelope["id"]:
            self.mismatches += 1

    def missing(self, published: Published, channels: int, before: float) -> int:
        """Accepted messages of this channel, sent before ``before``, not received."""
        missing = 0
        for number in range(self.channel, len(published.ids), channels):
            if published.sent_at[number] > before:
                break
            received = number < len(self.seen) and self.seen[number]
            if published.ids[number] is not None and not received:
                missing += 1
        return missing


async def connect_subscribers(subscribers: list[Subscriber], stopping: asyncio.Event,
                              tasks: list[asyncio.Task]) -> None:
    for subscriber in subscribers:
        tasks.append(asyncio.create_task(subscriber.run(stopping)))
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while not all(s.connected for s in subscribers):
        if time.monotonic() > deadline:
            connected = sum(s.connected for s in subscribers)
            raise SoakError(f"only {connected} of {len(subscribers)} subscribers connected")
        await asyncio.sleep(0.1)


# ---- publisher ---------------------------------------------------------------------------


async def publish_for(config: Config, env: Mapping[str, str], published: Published) -> None:
    """One publish every 1/rate seconds for ``config.seconds``, on a fixed schedule.

    It uses the agent's small keep-alive HTTP client: httpx costs ~2 ms of CPU a request,
    which at 200/s would take a core the stack under test needs.
    """
    endpoint = httpx.URL(env["PUSHAAS_ENDPOINT"])
    pool = HttpPool(endpoint.host, endpoint.port or 80, PUBLISH_CONCURRENCY, timeout=10)
    token = base64.b64encode(f"{env['PUSHAAS_USERNAME']}:{env['PUSHAAS_PASSWORD']}".encode())
    headers = {"Authorization": f"Basic {token.decode()}", "Content-Type": "application/json"}
    slots = asyncio.Semaphore(PUBLISH_CONCURRENCY)
    pending: set[asyncio.Task] = set()
    padding = "x" * max(0, config.message_bytes - 12)
    started = time.monotonic()
    try:
        for number in range(int(config.seconds * config.rate)):
            await asyncio.sleep(max(0.0, started + number / config.rate - time.monotonic()))
            published.ids.append(None)
            published.sent_at.append(time.monotonic())
            if slots.locked():
                published.skipped += 1
                continue

            await slots.acquire()
            body = json.dumps({"channels": [f"ch{number % config.channels}"],
                               "content": f"{number} {padding}"}).encode()
            task = asyncio.create_task(_publish_one(pool, headers, number, body, published))
            task.add_done_callback(lambda _: slots.release())
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    finally:
        await pool.close()


async def _publish_one(pool: HttpPool, headers: Mapping[str, str], number: int, body: bytes,
                       published: Published) -> None:
    started = time.monotonic()
    try:
        response = await pool.request("POST", "/api/v1/messages", headers, body)
    except HttpError as exc:
        _count(published.errors, type(exc).__name__)
        return
    published.latencies.append(time.monotonic() - started)
    if response.status == 201:
        published.ids[number] = json.loads(response.body)["id"]
    else:
        _count(published.errors, str(response.status))


def _count(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


# ---- sampling ----------------------------------------------------------------------------


def rss(pid: int | None, with_children: bool = False) -> int | None:
    """Resident memory in bytes of ``pid`` (plus its children: nginx workers)."""
    if pid is None:
        return None
    pids = [pid] + (list(children(pid)) if with_children else [])
    total = 0
    for one in pids:
        try:
            status = Path(f"/proc/{one}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total or None


def take_sample(stack: StackProcess, client: redis.Redis, config: Config, started: float,
                published: Published, subscribers: list[Subscriber]) -> Sample:
    now = time.monotonic()
    memory = client.info("memory")
    try:
        info = client.xinfo_stream(keys.stream(INSTANCE))
    except redis.ResponseError:
        info = {"length": 0, "entries-added": 0}
    raw_stats = client.get(keys.global_stats(INSTANCE, f"{INSTANCE}-0"))
    stats = json.loads(raw_stats) if raw_stats else {}
    settled = now - SETTLE_SECONDS
    return Sample(
        t=round(now - started, 1),
        published=published.accepted(),
        publish_errors=sum(published.errors.values()) + published.skipped,
        delivered=sum(s.count for s in subscribers),
        duplicates=sum(s.duplicates for s in subscribers),
        missing=sum(s.missing(published, config.channels, settled) for s in subscribers),
        subscribers_connected=sum(s.connected for s in subscribers),
        stream_length=int(info["length"]),
        entries_added=int(info.get("entries-added", 0)),
        agent_lag=stats.get("lag"),
        agent_lag_seconds=stats.get("lag_seconds"),
        redis_used_memory=int(memory["used_memory"]),
        agent_rss=rss(stack.pid("agent")),
        nginx_rss=rss(stack.pid("nginx"), with_children=True),
    )


async def sample_every(config: Config, take: Callable[[], Sample], samples: list[Sample],
                       done: asyncio.Event) -> None:
    while not done.is_set():
        samples.append(take())
        log.info("sample %s", _sample_line(samples[-1]))
        try:
            await asyncio.wait_for(done.wait(), config.sample_seconds)
        except TimeoutError:
            pass


def _sample_line(sample: Sample) -> str:
    return (f"t={sample.t}s published={sample.published} delivered={sample.delivered} "
            f"missing={sample.missing} stream={sample.stream_length} lag={sample.agent_lag} "
            f"redis={_mib(sample.redis_used_memory)}MiB agent={_mib(sample.agent_rss)}MiB "
            f"nginx={_mib(sample.nginx_rss)}MiB")


# ---- verdict -----------------------------------------------------------------------------


def memory_verdict(samples: list[Sample], seconds: float, retention_seconds: float,
                   ) -> dict[str, Any]:
    """Whether each memory series stopped growing once the run reached its steady state.

    The warm-up (a third of the run, and at least twice the retention time) lets the
    stream fill to its retention, nginx fill its replay buffers and allocators grow their
    pools; after it nothing should grow: the stream is trimmed, the buffers are full and
    the subscribers are the same. The least-squares trend of each series over the
    remaining samples, projected over an hour, must stay under GROWTH_LIMIT_PER_HOUR. A
    plateau, even with an allocator step of a few MiB, projects far below it; memory
    that grows with every message projects far above. Runs with fewer than
    MIN_STEADY_SAMPLES steady samples cannot tell and are reported as such, not failed.
    """
    warm_up = max(seconds / 3, 2 * retention_seconds)
    steady = [s for s in samples if warm_up <= s.t <= seconds + 1]
    verdict: dict[str, Any] = {"steady_from": round(warm_up), "steady_samples": len(steady),
                               "limit_mib_per_hour": GROWTH_LIMIT_PER_HOUR // MIB}
    if len(steady) < MIN_STEADY_SAMPLES:
        verdict["bounded"] = None
        verdict["reason"] = f"fewer than {MIN_STEADY_SAMPLES} steady-state samples"
        return verdict

    bounded = True
    for name in ("redis_used_memory", "agent_rss", "nginx_rss"):
        points = [(s.t, getattr(s, name)) for s in steady if getattr(s, name) is not None]
        if len(points) < MIN_STEADY_SAMPLES:
            continue
        per_hour = _slope(points) * 3600
        ok = per_hour <= GROWTH_LIMIT_PER_HOUR
        bounded = bounded and ok
        verdict[name] = {"start": points[0][1], "end": points[-1][1],
                         "mib_per_minute": round(per_hour / 60 / MIB, 2), "bounded": ok}
    verdict["bounded"] = bounded
    return verdict


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, bytes) points, in bytes per second."""
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def final_counts(subscribers: list[Subscriber], published: Published,
                 channels: int) -> dict[str, int]:
    expected = sum(sum(1 for n in range(s.channel, len(published.ids), channels)
                       if published.ids[n] is not None) for s in subscribers)
    lost = sum(s.missing(published, channels, float("inf")) for s in subscribers)
    mismatches = sum(s.mismatches for s in subscribers)
    first_ids = subscribers[0].first_ids if subscribers else []
    mismatches += sum(1 for n, entry_id in enumerate(published.ids)
                      if entry_id is not None and n < len(first_ids)
                      and first_ids[n] not in (None, entry_id))
    return {
        "expected_deliveries": expected,
        "delivered": sum(s.count for s in subscribers),
        "duplicates": sum(s.duplicates for s in subscribers),
        "lost": lost,
        "id_mismatches": mismatches,
        "reconnections": sum(max(0, s.connections - 1) for s in subscribers),
    }


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# ---- the run -----------------------------------------------------------------------------


async def soak(config: Config, stack: StackProcess, env: Mapping[str, str]) -> dict[str, Any]:
    front = httpx.URL(env["PUSHAAS_PUSH_STREAM_URL"])
    first_ids: list[str | None] = []
    subscribers = [Subscriber(front.host, front.port or 80, n % config.channels, first_ids,
                              config.subscriber_lifetime)
                   for n in range(config.subscribers)]
    stopping, sampling_done = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task] = []
    published = Published()
    samples: list[Sample] = []
    client = stack.redis()
    try:
        await connect_subscribers(subscribers, stopping, tasks)
        log.info("subscribers connected count=%d channels=%d", len(subscribers),
                 config.channels)
        started = time.monotonic()

        def take() -> Sample:
            return take_sample(stack, client, config, started, published, subscribers)

        sampler = asyncio.create_task(sample_every(config, take, samples, sampling_done))
        await publish_for(config, env, published)
        publishing = time.monotonic() - started
        await _drain(subscribers, published, config)
        sampling_done.set()
        await sampler
        samples.append(take())
    finally:
        stopping.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        client.close()

    counts = final_counts(subscribers, published, config.channels)
    memory = memory_verdict(samples, config.seconds, config.retention_seconds)
    return {
        "config": {**asdict(config), "output": str(config.output),
                   "doc": str(config.doc) if config.doc else None,
                   "retention_seconds": config.retention_seconds,
                   "retention_max_len": config.retention_max_len},
        "finished": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "samples": [asdict(sample) for sample in samples],
        "result": {
            "published": published.accepted(),
            "publish_attempts": len(published.ids),
            "publish_errors": dict(published.errors),
            "publish_skipped": published.skipped,
            "achieved_rate": round(published.accepted() / max(publishing, 1e-9), 1),
            "publish_latency_ms": {
                name: round(value * 1000, 1) if value is not None else None
                for name, value in (("p50", percentile(published.latencies, 0.5)),
                                    ("p99", percentile(published.latencies, 0.99)),
                                    ("max", max(published.latencies, default=None)))},
            **counts,
            "memory": memory,
            "passed": published.accepted() > 0 and counts["lost"] == 0
            and counts["id_mismatches"] == 0 and memory["bounded"] is not False,
        },
    }


async def _drain(subscribers: list[Subscriber], published: Published, config: Config) -> None:
    """Wait until every accepted message reached its subscribers, or DRAIN_TIMEOUT."""
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while time.monotonic() < deadline:
        if not any(s.missing(published, config.channels, float("inf")) for s in subscribers):
            return
        await asyncio.sleep(0.5)


# ---- the report --------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    config, result = report["config"], report["result"]
    memory = result["memory"]
    bounded = {True: "bounded", False: "GREW", None: "not judged (run too short)"}
    lines = [
        f"Run finished {report['finished']}: {config['seconds']:.0f} s at "
        f"{config['rate']:g} msg/s through the push-api, {config['subscribers']} EventSource "
        f"subscribers on {config['channels']} channels"
        + (f" reconnecting every ~{config['subscriber_lifetime']:g} s"
           if config["subscriber_lifetime"] else " connected throughout")
        + f", retention {config['retention_seconds']}"
        f" s / {config['retention_max_len']} entries, nginx buffer 100 messages "
        f"/ {config['retention_seconds']} s.",
        "",
        "| t (s) | published | delivered | missing | stream length | agent lag | "
        "Redis used MiB | agent RSS MiB | nginx RSS MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for sample in report["samples"]:
        lines.append(
            f"| {sample['t']:.0f} | {sample['published']} | {sample['delivered']} | "
            f"{sample['missing']} | {sample['stream_length']} | {sample['agent_lag']} | "
            f"{_mib(sample['redis_used_memory'])} | {_mib(sample['agent_rss'])} | "
            f"{_mib(sample['nginx_rss'])} |")
    latency = result["publish_latency_ms"]
    lines += [
        "",
        f"Published {result['published']} of {result['publish_attempts']} attempts "
        f"({result['achieved_rate']} msg/s achieved; errors {result['publish_errors'] or 'none'}"
        f", skipped ticks {result['publish_skipped']}); publish latency p50 {latency['p50']} ms,"
        f" p99 {latency['p99']} ms. Expected deliveries {result['expected_deliveries']}, "
        f"delivered {result['delivered']}, **lost {result['lost']}**, duplicates "
        f"{result['duplicates']}, id mismatches {result['id_mismatches']}, reconnections "
        f"{result['reconnections']}. Memory: {bounded[memory['bounded']]}"
        + _memory_detail(memory) + ".",
    ]
    return "\n".join(lines)


def _memory_detail(memory: dict[str, Any]) -> str:
    """``name start → end MiB (+x MiB/min)`` per series, after the warm-up."""
    parts = [f"{name} {_mib(item['start'])} → {_mib(item['end'])} MiB "
             f"({item['mib_per_minute']:+.2f} MiB/min)"
             for name, item in memory.items() if isinstance(item, dict)]
    if not parts:
        return ""
    return (f" after {memory['steady_from']} s: {'; '.join(parts)}; limit "
            f"{memory['limit_mib_per_hour']} MiB/hour")


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"


def update_doc(path: Path, table: str) -> None:
    """Replace what is between the soak markers (appending a section when they are absent)."""
    text = path.read_text() if path.exists() else ""
    block = f"{DOC_START}\n{table}\n{DOC_END}"
    if DOC_START in text and DOC_END in text:
        before = text.split(DOC_START, 1)[0]
        after = text.split(DOC_END, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + f"\n\n## Soak results\n\n{block}\n"
    path.write_text(text)


# ---- command line ------------------------------------------------------------------------


def parse_args(argv: list[str], env: Mapping[str, str]) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(env.get("SOAK_SECONDS", 180)))
    parser.add_argument("--rate", type=float, default=float(env.get("SOAK_RATE", 200)),
                        help="publishes per second through the push-api")
    parser.add_argument("--subscribers", type=int,
                        default=int(env.get("SOAK_SUBSCRIBERS", 300)))
    parser.add_argument("--channels", type=int, default=int(env.get("SOAK_CHANNELS", 20)))
    parser.add_argument("--sample-seconds", type=float,
                        default=float(env.get("SOAK_SAMPLE_SECONDS", 10)))
    parser.add_argument("--subscriber-lifetime", type=float,
                        default=float(env.get("SOAK_SUBSCRIBER_LIFETIME", 0)),
                        help="seconds after which a subscriber reconnects (0: never)")
    parser.add_argument("--output", type=Path, default=Path(".pushaas/soak.json"),
                        help="where the JSON of every sample and the verdict goes")
    parser.add_argument("--doc", type=Path, default=None,
                        help="markdown file whose soak section gets the table")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rate <= 0 or args.subscribers < 1 or args.channels < 1:
        parser.error("--seconds, --rate, --subscribers and --channels must be positive")

    # A short run still gets a handful of samples.
    sample_seconds = min(args.sample_seconds, max(1.0, args.seconds / 5))
    return Config(args.seconds, args.rate, args.subscribers, args.channels, sample_seconds,
                  args.output, args.doc, args.subscriber_lifetime)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s soak %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    config = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    work_dir = Path(tempfile.mkdtemp(prefix="pushaas-soak-"))
    stack = StackProcess(work_dir, write_plans(work_dir / "plans.json", config))
    log.info("starting the stack work_dir=%s seconds=%g rate=%g subscribers=%d",
             work_dir, config.seconds, config.rate, config.subscribers)
    report: dict[str, Any] | None = None
    try:
        stack.start()
        env = provision(stack)
        report = asyncio.run(soak(config, stack, env))
        log.info("soak process cpu=%.1fs", time.process_time())
    except SoakError as exc:
        log.error("soak could not run: %s\n%s", exc, stack.tail())
        return 2
    finally:
        stack.stop()
        # A failed run keeps the state dir: the nginx, agent and stack logs are in it.
        if report is not None and report["result"]["passed"]:
            shutil.rmtree(work_dir, ignore_errors=True)
        else:
            log.warning("logs of this run kept in %s", work_dir)

    config.output.parent.mkdir(parents=True, exist_ok=True)
    config.output.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    if config.doc is not None:
        update_doc(config.doc, table)
    print(table)
    result = report["result"]
    log.info("soak %s lost=%d memory_bounded=%s output=%s",
             "passed" if result["passed"] else "FAILED", result["lost"],
             result["memory"]["bounded"], config.output)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
