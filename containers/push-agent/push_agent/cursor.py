"""The agent's cursor: the last stream id whose whole batch its nginx accepted."""

import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from chalicelib import keys
from push_agent import streamids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedCursor:
    value: str
    saved: bool
    """False when there was no (valid) saved cursor and the value was synthesized."""


class CursorStore:
    """Reads and writes ``keys.cursor(instance, agent)``.

    The cursor outlives agent restarts but not forever: on ECS every new task is a new
    agent id, so each save renews a TTL (two days by default) that sweeps the cursors of
    tasks long gone. A cursor only expires after that long without a delivered batch; an
    agent starting without one begins a buffer window back.
    """

    def __init__(self, redis: aioredis.Redis, instance: str, agent_id: str, ttl: float):
        self.redis = redis
        self.instance = instance
        self.key = keys.cursor(instance, agent_id)
        self.ttl_ms = int(ttl * 1000)

    async def load(self, buffer_seconds: float) -> LoadedCursor:
        """The saved cursor, or ``now - buffer_seconds`` for a brand-new replica.

        Starting one buffer window back fills the new nginx's replay buffer, so a
        subscriber resuming with Last-Event-ID on this replica misses nothing recent.
        """
        try:
            raw = await self.redis.get(self.key)
        except aioredis.ResponseError:
            raw = b"(a key of another type)"  # the next save overwrites it
        value = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
        if value and streamids.is_valid(value):
            return LoadedCursor(value, saved=True)

        if value:
            log.warning(
                "cursor unreadable, starting one buffer back instance=%s key=%s",
                self.instance, self.key,
            )
        return self.window_back(buffer_seconds)

    @staticmethod
    def window_back(buffer_seconds: float) -> LoadedCursor:
        """A position one buffer window back: refills a new nginx's replay buffer."""
        return LoadedCursor(streamids.at_time(time.time() - buffer_seconds), saved=False)

    async def save(self, value: str) -> None:
        await self.redis.set(self.key, value, px=self.ttl_ms)
