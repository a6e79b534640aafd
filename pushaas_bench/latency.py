"""End-to-end latency and fan-out: the full publish path beside publishing straight to nginx.

Both paths reach the same subscribers on the same nginx in one run. The direct path POSTs
an envelope-sized body to the replica's internal ``/pub``, as the agent does; the full
path POSTs to the push-api, which appends to Redis, from where the agent delivers it.
Every message carries ``seq=<n>;`` in its content and the subscriber workers timestamp
its arrival, so latency is arrival minus the moment the publisher started the request.
"""

import asyncio
import base64
import json
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from chalicelib import envelope
from pushaas_bench.fleet import Arrivals, Fleet
from pushaas_bench.procs import AGENT_DIR, cpu_seconds
from pushaas_bench.stack import Publisher

if str(AGENT_DIR) not in sys.path:
    # The agent's small keep-alive HTTP client serves as the benchmark's publisher.
    sys.path.insert(0, str(AGENT_DIR))

from push_agent.http import HttpPool  # noqa: E402

PUBLISH_CONNECTIONS = 16
SETTLE_SECONDS = 1.0
WARMUP = 0.5
"""Seconds of traffic on each path before the measurement, not measured."""
BLOCK_SECONDS = 1.0
CONTENT_BYTES = 100


@dataclass(frozen=True)
class Percentiles:
    p50: float
    p99: float
    count: int

    @classmethod
    def of(cls, values_ms: list[float]) -> "Percentiles":
        if not values_ms:
            return cls(float("nan"), float("nan"), 0)
        ordered = sorted(values_ms)
        return cls(_rank(ordered, 0.50), _rank(ordered, 0.99), len(ordered))


@dataclass(frozen=True)
class PathLatency:
    """One path's latency in ms to the first and to the last subscriber of each message."""

    first: Percentiles
    last: Percentiles
    sent: int
    complete: int
    """Messages every expected subscriber received."""
    failed_publishes: int

    def as_dict(self) -> dict:
        return asdict(self)


class Paths:
    """The two ways into nginx, sharing one event loop and keep-alive connection pools."""

    def __init__(self, publisher: Publisher, api_urls: list[str]):
        self.publisher = publisher
        internal = urllib.parse.urlsplit(publisher.internal_url)
        self.direct_pool = HttpPool(internal.hostname or "", internal.port or 80,
                                    PUBLISH_CONNECTIONS, 10.0)
        self.api_pools = [_pool(url) for url in api_urls]
        self.next_api = 0
        token = base64.b64encode(f"{publisher.username}:{publisher.password}".encode())
        self.api_headers = {"Authorization": f"Basic {token.decode()}",
                            "Content-Type": "application/json"}

    async def direct(self, channel: str, content: str) -> bool:
        body = envelope.envelope(f"{int(time.time() * 1000)}-0", channel, content)
        response = await self.direct_pool.request(
            "POST", f"/pub?id={channel}", {"Content-Type": "application/json"}, body)
        return response.ok

    async def api(self, channel: str, content: str) -> bool:
        body = json.dumps({"channels": [channel], "content": content}).encode()
        # Round-robin over the hosts, as API Gateway spreads requests over Lambda instances.
        self.next_api = (self.next_api + 1) % len(self.api_pools)
        pool = self.api_pools[self.next_api]
        response = await pool.request("POST", "/api/v1/messages", self.api_headers, body)
        return response.ok

    async def close(self) -> None:
        await self.direct_pool.close()
        for pool in self.api_pools:
            await pool.close()


def _pool(url: str) -> HttpPool:
    parts = urllib.parse.urlsplit(url)
    return HttpPool(parts.hostname or "", parts.port or 80, PUBLISH_CONNECTIONS, 30.0)


def content(seq: int, size: int = CONTENT_BYTES) -> str:
    marker = f"seq={seq};"
    return marker + "x" * max(0, size - len(marker))


async def paced(send: Callable[[str, str], Awaitable[bool]], channels: list[str],
                first_seq: int, count: int, rate: float) -> tuple[dict[int, int], int]:
    """Start ``count`` publishes at ``rate`` per second, round-robin over ``channels``.

    Returns when every publish was answered: the start time (ns) of each and how many
    failed. Requests overlap when answers take longer than the interval.
    """
    started: dict[int, int] = {}
    failures = 0

    async def one(seq: int, channel: str) -> None:
        nonlocal failures
        try:
            if not await send(channel, content(seq)):
                failures += 1
        except Exception:  # noqa: BLE001 - a failed publish is counted, not fatal
            failures += 1

    tasks = []
    origin = time.monotonic()
    for n in range(count):
        delay = origin + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        seq = first_seq + n
        started[seq] = time.monotonic_ns()
        tasks.append(asyncio.create_task(one(seq, channels[n % len(channels)])))
    await asyncio.gather(*tasks)
    return started, failures


def summarise(started: dict[int, int], arrivals: Arrivals, expected: int,
              failures: int) -> PathLatency:
    firsts, lasts, complete = [], [], 0
    for seq, start in started.items():
        record = arrivals.messages.get(seq)
        if record is None:
            continue
        count, first, last = record
        firsts.append((first - start) / 1e6)
        if count >= expected:
            complete += 1
            lasts.append((last - start) / 1e6)
    return PathLatency(Percentiles.of(firsts), Percentiles.of(lasts), len(started), complete,
                       failures)


@dataclass(frozen=True)
class LatencyPoint:
    subscribers: int
    channels: int
    rate: float
    seconds: float
    direct: PathLatency
    full: PathLatency
    cpu: dict[str, float]

    @property
    def extra_ms(self) -> dict[str, float]:
        """The full path's latency minus the direct one, for the first and last subscriber."""
        return {
            "first_p50": self.full.first.p50 - self.direct.first.p50,
            "first_p99": self.full.first.p99 - self.direct.first.p99,
            "last_p50": self.full.last.p50 - self.direct.last.p50,
            "last_p99": self.full.last.p99 - self.direct.last.p99,
        }

    def as_dict(self) -> dict:
        data = asdict(self)
        data["extra_ms"] = self.extra_ms
        return data


def latency_point(publisher: Publisher, api_urls: list[str], fleet: Fleet,
                  pids: dict[str, list[int]], subscribers: int, channels: int, rate: float,
                  seconds: float, wait_subscribed: Callable[[int], None]) -> LatencyPoint:
    """One point: ``subscribers`` spread over ``channels``, each path for ``seconds``."""
    names = [f"lat{subscribers}-{n}" for n in range(channels)]
    held = fleet.connect([f"/ev/{names[n % channels]}" for n in range(subscribers)])
    if held < subscribers:
        raise RuntimeError(f"only {held} of {subscribers} subscribers connected")
    wait_subscribed(subscribers)

    count = max(1, int(rate * seconds))
    per_message = subscribers // channels
    pids = {**pids, "subscribers": fleet.pids}
    before = {role: cpu_seconds(group) for role, group in pids.items()}
    direct, full = asyncio.run(
        _both_paths(Paths(publisher, api_urls), fleet, names, count, rate, per_message))
    cpu = {role: cpu_seconds(group) - before[role] for role, group in pids.items()}
    fleet.stop()
    return LatencyPoint(subscribers, channels, rate, seconds, direct, full, cpu)


async def _both_paths(paths: Paths, fleet: Fleet, names: list[str], count: int,
                      rate: float, expected: int) -> tuple[PathLatency, PathLatency]:
    """The paths take turns in blocks of BLOCK_SECONDS, so both see the same background."""
    try:
        for offset, send in ((5_000_000, paths.direct), (15_000_000, paths.api)):
            # An unmeasured warm-up: first connections, new channels in nginx.
            await paced(send, names, offset, min(count, int(rate * WARMUP)), rate)
        await asyncio.sleep(SETTLE_SECONDS / 2)
        fleet.collect()

        block = max(1, int(rate * BLOCK_SECONDS))
        started: list[dict[int, int]] = [{}, {}]
        failures = [0, 0]
        for first in range(0, count, block):
            size = min(block, count - first)
            for index, (offset, send) in enumerate(((0, paths.direct), (10_000_000, paths.api))):
                times, failed = await paced(send, names, offset + first, size, rate)
                started[index].update(times)
                failures[index] += failed
        return await _settled(fleet, started, expected, failures)
    finally:
        await paths.close()


@dataclass(frozen=True)
class FanoutResult:
    subscribers: int
    messages: int
    direct_last_ms: Percentiles
    full_last_ms: Percentiles
    direct_first_ms: Percentiles
    full_first_ms: Percentiles
    cpu: dict[str, float]

    @property
    def ratio(self) -> float:
        return self.full_last_ms.p50 / self.direct_last_ms.p50

    def as_dict(self) -> dict:
        data = asdict(self)
        data["ratio"] = self.ratio
        return data


def fanout(publisher: Publisher, api_urls: list[str], fleet: Fleet, pids: dict[str, list[int]],
           subscribers: int, messages: int, gap: float,
           wait_subscribed: Callable[[int], None]) -> FanoutResult:
    """``subscribers`` on one channel; ``messages`` publishes per path, ``gap`` s apart."""
    held = fleet.connect(["/ev/fanout"] * subscribers)
    if held < subscribers:
        raise RuntimeError(f"only {held} of {subscribers} subscribers connected")
    wait_subscribed(subscribers)

    pids = {**pids, "subscribers": fleet.pids}
    before = {role: cpu_seconds(group) for role, group in pids.items()}
    direct, full = asyncio.run(
        _fan_both(Paths(publisher, api_urls), fleet, messages, gap, subscribers))
    cpu = {role: cpu_seconds(group) - before[role] for role, group in pids.items()}
    fleet.stop()
    return FanoutResult(subscribers, messages, direct.last, full.last, direct.first,
                        full.first, cpu)


async def _fan_both(paths: Paths, fleet: Fleet, messages: int, gap: float,
                    expected: int) -> tuple[PathLatency, PathLatency]:
    """One message at a time, the paths taking turns, ``gap`` seconds apart."""
    try:
        started: list[dict[int, int]] = [{}, {}]
        failures = [0, 0]
        for n in range(messages):
            for index, (offset, send) in enumerate(((20_000_000, paths.direct),
                                                    (30_000_000, paths.api))):
                times, failed = await paced(send, ["fanout"], offset + n, 1, 1.0)
                started[index].update(times)
                failures[index] += failed
                await asyncio.sleep(gap)
        return await _settled(fleet, started, expected, failures)
    finally:
        await paths.close()


async def _settled(fleet: Fleet, started: list[dict[int, int]], expected: int,
                   failures: list[int]) -> tuple[PathLatency, PathLatency]:
    """Direct and full-path summaries, once the last messages had time to arrive."""
    await asyncio.sleep(SETTLE_SECONDS)
    arrivals = fleet.collect()
    return (summarise(started[0], arrivals, expected, failures[0]),
            summarise(started[1], arrivals, expected, failures[1]))


def _rank(ordered: list[float], quantile: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    index = min(len(ordered) - 1, max(0, round(quantile * len(ordered) + 0.5) - 1))
    return ordered[index]
