"""Channels of an instance: registered ids with a TTL (0 = persistent).

A channel is a string key whose Redis TTL is the channel's, plus a member of a sorted
set scored by expiry so listing and the agents' keep-alive need no key scan. Creation
is one Lua script: the count limit, the existence check and both writes happen
atomically, so a rejected request changes nothing.
"""

import json
import logging
import math
import time
from datetime import UTC, datetime

import redis

from chalicelib import keys
from chalicelib.errors import BadRequest, Conflict, NotFound
from chalicelib.plans import Plan

log = logging.getLogger(__name__)

MAX_TTL = 365 * 24 * 3600

# KEYS: channel key, index. ARGV: record, ttl, expiry score, channel id, now, max channels.
_CREATE = """
redis.call('zremrangebyscore', KEYS[2], '-inf', ARGV[5])
if redis.call('exists', KEYS[1]) == 1 then return 'exists' end
if redis.call('zcard', KEYS[2]) >= tonumber(ARGV[6]) then return 'full' end
if tonumber(ARGV[2]) > 0 then
  redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('set', KEYS[1], ARGV[1])
end
redis.call('zadd', KEYS[2], ARGV[3], ARGV[4])
return 'ok'
"""


def validate_id(plan: Plan, channel_id: object) -> str:
    if not isinstance(channel_id, str) or not plan.channel_id_regex().match(channel_id):
        raise BadRequest(
            f"invalid channel id {str(channel_id)[:64]!r}: must match {plan.channel_id_pattern}"
        )
    return channel_id


def _ttl(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest("ttl must be a number of seconds (0 = persistent)")
    if value < 0 or value > MAX_TTL or (isinstance(value, float) and not value.is_integer()):
        raise BadRequest(f"ttl must be a whole number of seconds between 0 and {MAX_TTL}")
    return int(value)


class ChannelStore:
    def __init__(self, client: redis.Redis, instance: str, plan: Plan):
        self.redis = client
        self.instance = instance
        self.plan = plan

    def create(self, body: object) -> dict:
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object with id and ttl")
        channel_id = validate_id(self.plan, body.get("id"))
        ttl = _ttl(body.get("ttl", 0))

        now = time.time()
        record = {
            "id": channel_id,
            "ttl": ttl,
            "created": datetime.fromtimestamp(now, UTC).isoformat().replace(
                "+00:00", "Z"),
        }
        expiry = now + ttl if ttl else math.inf
        outcome = self.redis.eval(
            _CREATE, 2, keys.channel(self.instance, channel_id),
            keys.channel_index(self.instance), json.dumps(record), ttl,
            "+inf" if math.isinf(expiry) else repr(expiry), channel_id, repr(now),
            self.plan.max_channels,
        )
        if outcome == "exists":
            raise Conflict(f"channel {channel_id!r} already exists")
        if outcome == "full":
            raise BadRequest(f"instance has reached its plan's {self.plan.max_channels} channels")
        return record

    def get(self, channel_id: str) -> dict:
        validate_id(self.plan, channel_id)
        raw = self.redis.get(keys.channel(self.instance, channel_id))
        record = None if raw is None else self._record(channel_id, raw)
        if record is None:
            raise NotFound(f"channel {channel_id!r} not found")
        return record

    def list(self) -> list[dict]:
        index = keys.channel_index(self.instance)
        self.redis.zremrangebyscore(index, "-inf", time.time())
        ids = self.redis.zrange(index, 0, -1)
        if not ids:
            return []

        raws = self.redis.mget([keys.channel(self.instance, i) for i in ids])
        records = (self._record(i, raw) for i, raw in zip(ids, raws, strict=True) if raw)
        return [record for record in records if record is not None]

    def _record(self, channel_id: str, raw: str) -> dict | None:
        """A stored channel, or None (logged) when the record is not what this code wrote:
        one damaged record must not take the listing, or the channel's route, down."""
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            log.error("unreadable channel record instance=%s channel=%s",
                      self.instance, channel_id)
            return None
        return record

    def delete(self, channel_id: str) -> None:
        validate_id(self.plan, channel_id)
        pipe = self.redis.pipeline()
        pipe.delete(keys.channel(self.instance, channel_id))
        pipe.zrem(keys.channel_index(self.instance), channel_id)
        deleted, _ = pipe.execute()
        if not deleted:
            raise NotFound(f"channel {channel_id!r} not found")
