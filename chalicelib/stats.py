"""Stats as agents report them, aggregated for the push-api and the broker's info.

Each agent writes its own stats keys with a TTL; an agent that stops reporting simply
vanishes from the aggregate after a few intervals. Reading never trusts those values:
a malformed report is skipped, not turned into a 500.
"""

import json
import logging
import time
from dataclasses import dataclass

import redis

from chalicelib import keys

log = logging.getLogger(__name__)

GLOBAL_COUNTERS = ("channels", "subscribers", "published_messages", "stored_messages",
                   "delivered", "lag", "refills")


@dataclass(frozen=True)
class Summary:
    channels: int
    subscribers: int
    messages: int
    agents: int


def _live_agents(client: redis.Redis, instance: str) -> list[str]:
    """Agents that reported recently; older members are dropped from the index."""
    stale_before = time.time() - 120
    client.zremrangebyscore(keys.agents(instance), "-inf", stale_before)
    return client.zrange(keys.agents(instance), 0, -1)


def _parse(raw: str | None, instance: str, what: str) -> dict | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        log.warning("skipping malformed stats instance=%s what=%s", instance, what)
        return None
    return value


def _number(report: dict, name: str) -> int:
    value = report.get(name, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def global_stats(client: redis.Redis, instance: str) -> dict:
    agents = _live_agents(client, instance)
    raws = client.mget([keys.global_stats(instance, a) for a in agents]) if agents else []
    reports = [r for r in (_parse(raw, instance, "global") for raw in raws) if r]

    aggregated: dict[str, object] = {c: sum(_number(r, c) for r in reports)
                                     for c in GLOBAL_COUNTERS}
    times = [r["time"] for r in reports if isinstance(r.get("time"), str)]
    aggregated["time"] = min(times) if times else ""
    aggregated["agents"] = len(reports)
    return {"aggregated": aggregated, "all": reports}


def channel_stats(client: redis.Redis, instance: str, channel: str) -> dict:
    agents = _live_agents(client, instance)
    pipe = client.pipeline(transaction=False)
    for agent in agents:
        pipe.hget(keys.channel_stats(instance, agent), channel)
    # An agent's key of another type answers an error: skipped like a malformed report.
    replies = pipe.execute(raise_on_error=False) if agents else []
    raws = [None if isinstance(reply, Exception) else reply for reply in replies]
    reports = [r for r in (_parse(raw, instance, "channel") for raw in raws) if r]

    aggregated = {"subscribers": sum(_number(r, "subscribers") for r in reports),
                  "published_messages": max((_number(r, "published_messages")
                                             for r in reports), default=0)}
    return {"aggregated": aggregated, "all": reports}


def instance_summary(client: redis.Redis, instance: str) -> Summary:
    """Figures for ``GET /resources/{name}``: cheap reads only."""
    pipe = client.pipeline(transaction=False)
    pipe.zcount(keys.channel_index(instance), time.time(), "+inf")
    pipe.xlen(keys.stream(instance))
    channels, messages = pipe.execute()
    report = global_stats(client, instance)
    return Summary(
        channels=channels,
        subscribers=int(report["aggregated"]["subscribers"]),
        messages=messages,
        agents=len(report["all"]),
    )
