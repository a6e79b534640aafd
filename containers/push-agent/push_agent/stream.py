"""Reading the instance stream and describing how far behind the agent is."""

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from chalicelib import keys
from push_agent import streamids

log = logging.getLogger(__name__)

RawEntry = tuple[str, dict[bytes, bytes]]

LAG_COUNT_CAP = 1000
"""Counting undelivered entries walks them inside Redis; past this we report the cap."""

COUNT_AFTER = """
return #redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
"""


@dataclass(frozen=True)
class StreamInfo:
    length: int
    entries_added: int
    first_id: str | None
    last_id: str


@dataclass(frozen=True)
class RetentionGap:
    """Entries after the agent's position were trimmed before it read them."""

    position: str
    first_id: str
    lost_at_most: int


class InstanceStream:
    """The one stream of an instance, read with a bytes client (entries may be malformed)."""

    def __init__(self, redis: aioredis.Redis, instance: str):
        self.redis = redis
        self.key = keys.stream(instance)
        self._count_after = redis.register_script(COUNT_AFTER)
        # The agent's client reads streams here only: its XREAD replies come back as Redis
        # sent them and ``read`` shapes them in one pass, instead of redis-py's two with a
        # function call per entry, on the path every message takes.
        redis.set_response_callback("XREAD", _as_sent)

    async def read(self, after: str, count: int, block_ms: int) -> list[RawEntry]:
        """Up to ``count`` entries after ``after``, waiting up to ``block_ms`` for the first."""
        reply = await self.redis.xread({self.key: after}, count=count, block=block_ms)
        if not reply:
            return []
        # RESP3 maps the stream key to its entries; RESP2 gives [[key, entries]].
        entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
        return [
            (_text(entry_id), {f[0]: f[1], f[2]: f[3]} if f and len(f) == 4 else _pairs(f))
            for entry_id, f in entries
        ]

    async def first_between(self, start: str, end: str) -> str | None:
        """The id of the first entry from ``start`` to ``end`` (both included), if any."""
        entries = await self.redis.xrange(self.key, min=start, max=end, count=1)
        return _text(entries[0][0]) if entries else None

    async def info(self) -> StreamInfo | None:
        """Length and bounds of the stream, or None while it does not exist yet."""
        try:
            raw = await self.redis.xinfo_stream(self.key)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None
            raise

        first = raw.get("first-entry")
        return StreamInfo(
            length=int(raw["length"]),
            entries_added=int(raw.get("entries-added", raw["length"])),
            first_id=_text(first[0]) if first else None,
            last_id=_text(raw["last-generated-id"]),
        )

    async def lag(self, cursor: str, info: StreamInfo | None) -> int:
        """Entries after ``cursor`` not delivered yet (counted up to LAG_COUNT_CAP)."""
        if info is None or info.length == 0:
            return 0
        if streamids.parse(cursor) >= streamids.parse(info.last_id):
            return 0
        if info.first_id and streamids.parse(cursor) < streamids.parse(info.first_id):
            return info.length
        return int(await self._count_after(keys=[self.key], args=[cursor, LAG_COUNT_CAP]))


def retention_gap(
    position: str, info: StreamInfo | None, now_ms: int | None = None, settle_ms: int = 0,
) -> RetentionGap | None:
    """A gap: the agent's position is older than the first entry and retention trimmed some.

    Trimming (XTRIM/XADD MAXLEN or MINID) does not move max-deleted-entry-id, so XINFO
    cannot say whether the trimmed entries were before or after ``position``;
    ``entries-added - length`` (all entries ever trimmed) bounds the loss from above.
    ``settle_ms`` ignores a first entry younger than that: a caught-up agent whose last
    entry was just trimmed by the arrival of a new one is about to read that new one.
    """
    if info is None or info.first_id is None:
        return None
    # Right before the first entry (where a refill rewinds to) nothing can be missing.
    if streamids.parse(position) >= streamids.parse(streamids.before(info.first_id)):
        return None

    trimmed = info.entries_added - info.length
    if trimmed <= 0:
        return None
    if now_ms is not None and streamids.millis(info.first_id) > now_ms - settle_ms:
        return None
    return RetentionGap(position, info.first_id, trimmed)


class GapReporter:
    """Logs each retention gap once (the same gap is seen again until the agent passes it)."""

    def __init__(self, instance: str, agent_id: str):
        self.instance = instance
        self.agent_id = agent_id
        self._reported: str | None = None

    def report(self, gap: RetentionGap | None) -> None:
        if gap is None or gap.first_id == self._reported:
            return

        self._reported = gap.first_id
        log.warning(
            "retention gap instance=%s agent=%s position=%s first_entry=%s lost_at_most=%d "
            "(entries trimmed before delivery; delivery resumes at the first entry)",
            self.instance, self.agent_id, gap.position, gap.first_id, gap.lost_at_most,
        )


def _as_sent(response: object, **options: object) -> object:
    return response


def _pairs(flat: list | None) -> dict:
    """Field/value pairs of an entry of any size (none for an entry Redis reports empty)."""
    if not flat:
        return {}
    values = iter(flat)
    return dict(zip(values, values, strict=True))


def _text(value: bytes | str) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value
