"""Keeping an eye on the registered channels in this replica's nginx.

Channels registered through the push-api live in ``keys.channel_index`` (scored by expiry
time, +inf when persistent). Nchan needs no "create": a subscriber may attach to a channel
that has never seen a message, and the only way to create one (PUT) stores an empty message
that every subscriber would receive, which push-stream refuses with 405. So each round
touches every unexpired registered channel read-only (GET channel info) and reports how
many this nginx holds; it never publishes and never writes the index, whose expired members
the push-api removes itself.
"""

import asyncio
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from chalicelib import keys
from push_agent.http import HttpError
from push_agent.logs import describe
from push_agent.nchan import NchanClient, publishable

log = logging.getLogger(__name__)

PAGE = 500
MAX_PAGES = 400
"""Bounds one round to 200,000 channels, above the largest plan's channel limit."""


@dataclass(frozen=True)
class KeepaliveRound:
    registered: int
    present: int
    """Registered channels this nginx currently holds (has messages or subscribers for)."""


class ChannelKeeper:
    def __init__(
        self, redis: aioredis.Redis, nchan: NchanClient, instance: str, interval: float,
    ):
        self.redis = redis
        self.nchan = nchan
        self.instance = instance
        self.interval = interval

    async def run(self) -> None:
        """Touch the registered channels every interval until cancelled; never fatal."""
        failing = False
        while True:
            try:
                await self.touch_all()
                failing = False
            except (HttpError, aioredis.RedisError, OSError) as exc:
                # The first failure of a streak is a warning; repeats would only flood the log.
                log.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "keepalive failed instance=%s error=%s", self.instance, describe(exc),
                )
                failing = True
            except Exception:
                # A bug here must not take delivery down with it: log it and go on.
                log.exception("keepalive crashed instance=%s", self.instance)
            await asyncio.sleep(self.interval)

    async def touch_all(self) -> KeepaliveRound:
        """GET every unexpired registered channel from nginx, a page at a time."""
        now = time.time()
        index = keys.channel_index(self.instance)
        registered = present = 0
        for page in range(MAX_PAGES):
            names = await self.redis.zrangebyscore(
                index, f"({now}", "+inf", start=page * PAGE, num=PAGE,
            )
            channels = [_text(name) for name in names]
            infos = await asyncio.gather(
                *(self.nchan.channel_info(name) for name in channels if publishable(name))
            )
            registered += len(channels)
            present += sum(info is not None for info in infos)
            if len(names) < PAGE:
                break

        log.debug(
            "keepalive touched instance=%s registered=%d present=%d",
            self.instance, registered, present,
        )
        return KeepaliveRound(registered, present)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
