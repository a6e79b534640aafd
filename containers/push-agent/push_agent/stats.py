"""Periodic stats: what this replica's nginx holds and how far its agent is behind.

Everything written here expires after three intervals, so a replica that stops reporting
drops out of the push-api's aggregated stats on its own.
"""

import asyncio
import json
import logging
import socket
import time
from datetime import UTC, datetime

import redis.asyncio as aioredis

from chalicelib import keys
from push_agent import streamids
from push_agent.http import HttpError
from push_agent.logs import describe
from push_agent.nchan import ChannelInfo, NchanClient, publishable
from push_agent.state import AgentState
from push_agent.stream import GapReporter, InstanceStream, retention_gap

log = logging.getLogger(__name__)

INDEX_CHANNELS = 1000
"""Bound on registered channels polled per report (the recent set adds at most as many)."""

GAP_SETTLE_MS = 10_000


class StatsReporter:
    def __init__(
        self, redis: aioredis.Redis, nchan: NchanClient, stream: InstanceStream,
        state: AgentState, gaps: GapReporter, instance: str, agent_id: str, interval: float,
    ):
        self.redis = redis
        self.nchan = nchan
        self.stream = stream
        self.state = state
        self.gaps = gaps
        self.instance = instance
        self.agent_id = agent_id
        self.interval = interval
        self.hostname = socket.gethostname()
        self.ttl_ms = max(1, int(interval * 3 * 1000))

    async def run(self) -> None:
        """Report every interval until cancelled; a failed report is logged, never fatal."""
        failing = False
        while True:
            try:
                await self.report()
                if failing:
                    log.info("stats report recovered instance=%s", self.instance)
                failing = False
            except (HttpError, aioredis.RedisError, OSError) as exc:
                # The first failure of a streak is a warning; repeats would only flood the log.
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "stats report failed instance=%s agent=%s error=%s",
                    self.instance, self.agent_id, describe(exc),
                )
                failing = True
            except Exception:
                # A bug here must not take delivery down with it: log it and go on.
                log.exception("stats report crashed instance=%s", self.instance)
            await asyncio.sleep(self.interval)

    async def report(self) -> None:
        """Write the global stats, the per-channel stats and the agent's liveness."""
        counters = await self.nchan.stub_status()
        info = await self.stream.info()
        cursor = self.state.cursor
        lag = await self.stream.lag(cursor, info)
        self.gaps.report(
            retention_gap(self.state.read_position, info, _now_ms(), GAP_SETTLE_MS)
        )

        channels = await self._channel_stats()
        global_stats = self._global(counters, cursor, lag, info.last_id if info else None)
        await self._write(global_stats, channels)
        log.debug(
            "stats reported instance=%s agent=%s channels=%d lag=%d",
            self.instance, self.agent_id, len(channels), lag,
        )

    def _global(
        self, counters: dict[str, int], cursor: str, lag: int, last_id: str | None,
    ) -> dict:
        lag_seconds = 0.0
        if lag and last_id:
            lag_seconds = max(0, streamids.millis(last_id) - streamids.millis(cursor)) / 1000
        return {
            "hostname": self.hostname,
            "agent": self.agent_id,
            "time": datetime.now(UTC).isoformat(timespec="seconds").replace(
                "+00:00", "Z"
            ),
            "channels": counters["channels"],
            "subscribers": counters["subscribers"],
            "published_messages": counters["published_messages"],
            "stored_messages": counters["stored_messages"],
            "uptime": int(self.state.uptime),
            "cursor": cursor,
            "lag": lag,
            "lag_seconds": lag_seconds,
            "delivered": self.state.delivered,
            "refills": self.state.refills,
        }

    async def _channel_stats(self) -> dict[str, str]:
        """Per-channel JSON for registered (unexpired) and recently published channels."""
        registered = await self.redis.zrangebyscore(
            keys.channel_index(self.instance), f"({time.time()}", "+inf",
            start=0, num=INDEX_CHANNELS,
        )
        names = [_text(name) for name in registered if publishable(_text(name))]
        seen = set(names)
        names += [name for name in self.state.recent.channels() if name not in seen]

        infos = await asyncio.gather(*(self._info(name) for name in names))
        return {
            name: json.dumps(self._channel(name, info), separators=(",", ":"))
            for name, info in zip(names, infos, strict=True)
        }

    async def _info(self, channel: str) -> ChannelInfo | None:
        try:
            return await self.nchan.channel_info(channel)
        except HttpError as exc:
            log.debug("channel info failed channel=%s error=%s", channel, exc)
            return None

    def _channel(self, channel: str, info: ChannelInfo | None) -> dict:
        return {
            "channel": channel,
            "published_messages": self.state.recent.published(channel),
            "stored_messages": info.messages if info else 0,
            "subscribers": info.subscribers if info else 0,
            "hostname": self.hostname,
            "agent": self.agent_id,
        }

    async def _write(self, global_stats: dict, channels: dict[str, str]) -> None:
        """One MULTI so readers never see the channel hash half rewritten."""
        channels_key = keys.channel_stats(self.instance, self.agent_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(
                keys.global_stats(self.instance, self.agent_id),
                json.dumps(global_stats, separators=(",", ":")), px=self.ttl_ms,
            )
            pipe.delete(channels_key)
            if channels:
                pipe.hset(channels_key, mapping=channels)
                pipe.pexpire(channels_key, self.ttl_ms)
            pipe.zadd(keys.agents(self.instance), {self.agent_id: time.time()})
            await pipe.execute()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
