"""Refilling a restarted nginx's replay buffer from the instance stream.

The replay buffer lives in nginx's shared memory and dies with nginx. Only the agent
publishes into its nginx and Nchan keeps a message for ``buffer_seconds`` after it got it,
so an nginx holding no message while the stream has entries of the last ``buffer_seconds``
that the agent already delivered has lost its buffer: it was restarted. The agent then
delivers that window again, through its normal path, so a subscriber resuming with an id
of the dead nginx gets back what it missed, as copies carrying their original ids.

An nginx can also hold nothing because it refused (4xx) every entry of the window; the
agent then sends those again and they are refused again, which costs one window of reads.
"""

import logging
import time
from enum import Enum

from push_agent import streamids
from push_agent.http import HttpError
from push_agent.logs import describe
from push_agent.nchan import NchanClient, UnexpectedAnswer
from push_agent.stream import InstanceStream

log = logging.getLogger(__name__)


class NginxBuffer(Enum):
    """What nginx's counters say about its replay buffer."""

    KEPT = "kept"
    """It holds messages, or it answered without the counter: it cannot be told fresh."""
    LOST = "lost"
    """It holds no message: a fresh nginx."""
    UNKNOWN = "unknown"
    """nginx did not answer."""


class BufferRefill:
    """Tells a fresh nginx from one that kept its buffer, and where a refill reads from."""

    def __init__(self, nchan: NchanClient, stream: InstanceStream, instance: str,
                 buffer_seconds: float):
        self.nchan = nchan
        self.stream = stream
        self.instance = instance
        self.buffer_seconds = buffer_seconds

    async def nginx_buffer(self) -> NginxBuffer:
        """One stub-status request to the replica's nginx (on the control connections)."""
        try:
            stored = await self.nchan.stored_messages()
        except UnexpectedAnswer as exc:
            log.warning("nginx buffer check failed instance=%s error=%s",
                        self.instance, describe(exc))
            return NginxBuffer.KEPT
        except HttpError:
            return NginxBuffer.UNKNOWN
        return NginxBuffer.LOST if stored == 0 else NginxBuffer.KEPT

    async def window_start(self, cursor: str) -> str | None:
        """Where to read from to deliver the buffer window again, up to ``cursor``.

        The position is just before the window's first entry, so it is never before the
        stream's first entry even when retention is shorter than the window. None when no
        entry of the window is at or before ``cursor``: nothing delivered is in the window.
        """
        start = streamids.at_time(time.time() - self.buffer_seconds)
        first = await self.stream.first_between(start, cursor)
        return streamids.before(first) if first else None
