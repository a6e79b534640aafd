"""What the delivery loop knows and the stats reporter shows: cursor, counts, channels."""

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

RECENT_CHANNELS = 1000
"""Bound on the channels remembered for per-channel stats (least recently used go first)."""


class RecentChannels:
    """Channels this agent published to lately, with how many messages each got."""

    def __init__(self, limit: int = RECENT_CHANNELS):
        self.limit = limit
        self._published: OrderedDict[str, int] = OrderedDict()

    def record(self, channel: str, count: int = 1) -> None:
        self._published[channel] = self._published.pop(channel, 0) + count
        if len(self._published) > self.limit:
            self._published.popitem(last=False)

    def published(self, channel: str) -> int:
        return self._published.get(channel, 0)

    def channels(self) -> list[str]:
        return list(self._published)


@dataclass
class AgentState:
    """Shared between the delivery loop (writer) and the reporters (readers)."""

    cursor: str
    """Where the next read starts: the saved cursor, or where a refill rewound to."""
    read_position: str = ""
    delivered: int = 0
    refills: int = 0
    """Times this agent found its nginx without its buffer and delivered the window again."""
    started: float = field(default_factory=time.monotonic)
    recent: RecentChannels = field(default_factory=RecentChannels)

    def __post_init__(self) -> None:
        self.read_position = self.read_position or self.cursor

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started

    def record_deliveries(self, accepted: Mapping[str, int]) -> None:
        """Count a whole batch at once, when its cursor is saved, so the stats never show
        deliveries ahead of the cursor."""
        for channel, count in accepted.items():
            if count:
                self.delivered += count
                self.recent.record(channel, count)

    def rewind(self, position: str) -> None:
        """Read again from ``position`` (a refill); the saved cursor is left as it is."""
        self.cursor = position
        self.count_refill()

    def count_refill(self) -> None:
        self.refills += 1
