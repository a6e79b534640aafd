"""Publishing: validate a message and append it durably to the instance's stream.

The append is one Lua script so the idempotency check, the rate limit, the XADD and
the retention trims are a single atomic step: a request either appends exactly one
entry and gets its id, or appends nothing. The publish returns only after Redis has
the entry (append-only persistence makes it durable).
"""

import json
import logging
import re
import weakref

import redis
from redis.commands.core import Script

from chalicelib import keys
from chalicelib.channels import validate_id
from chalicelib.envelope import FIELD_CHANNELS, FIELD_TEXT
from chalicelib.errors import BadRequest, PayloadTooLarge, TooManyRequests, Unavailable
from chalicelib.plans import Plan

log = logging.getLogger(__name__)

IDEMPOTENCY_SECONDS = 24 * 3600
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")

# KEYS: stream, idempotency key, rate key.
# ARGV: use idempotency (0/1), rate limit, max length, retention ms, idempotency TTL,
#       channels field, channels JSON, text field, text.
_PUBLISH = """
if ARGV[1] == '1' then
  local seen = redis.call('get', KEYS[2])
  if seen then return {'duplicate', seen} end
end
local count = redis.call('incr', KEYS[3])
if count == 1 then redis.call('pexpire', KEYS[3], 1000) end
if count > tonumber(ARGV[2]) then
  return {'limited', tostring(redis.call('pttl', KEYS[3]))}
end
local id = redis.call('xadd', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', ARGV[6], ARGV[7],
                      ARGV[8], ARGV[9])
local now = redis.call('time')
local oldest = tonumber(now[1]) * 1000 - tonumber(ARGV[4])
redis.call('xtrim', KEYS[1], 'MINID', '~', tostring(oldest))
if ARGV[1] == '1' then redis.call('set', KEYS[2], id, 'EX', ARGV[5]) end
return {'appended', id}
"""


_scripts: "weakref.WeakKeyDictionary[redis.Redis, Script]" = weakref.WeakKeyDictionary()


def _publish_script(client: redis.Redis) -> Script:
    """The publish script registered with ``client``, once per client.

    A registered script goes out as EVALSHA (40 bytes of hash instead of the script's
    source every time); redis-py loads it again by itself if Redis answers NOSCRIPT, as
    after a restart or a failover.
    """
    script = _scripts.get(client)
    if script is None:
        script = _scripts[client] = client.register_script(_PUBLISH)
    return script


def validate_message(plan: Plan, body: object) -> tuple[list[str], str]:
    """The channels and text of a publish request, or a 4xx naming what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest('request body must be a JSON object: {"channels": [...], "content": ""}')

    channels = body.get("channels")
    if not isinstance(channels, list) or not channels:
        raise BadRequest("channels must be a non-empty list of channel ids")
    if len(channels) > plan.max_channels_per_message:
        raise BadRequest(f"too many channels: at most {plan.max_channels_per_message} per message")
    unique = list(dict.fromkeys(validate_id(plan, c) for c in channels))

    content = body.get("content")
    if not isinstance(content, str) or not content:
        raise BadRequest("content must be a non-empty string")
    size = len(content.encode("utf-8"))
    if size > plan.max_content_bytes:
        raise PayloadTooLarge(
            f"content is {size} bytes; the plan allows at most {plan.max_content_bytes}")
    return unique, content


def validate_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not IDEMPOTENCY_KEY.match(value):
        raise BadRequest("Idempotency-Key must be 1-128 printable ASCII characters")
    return value


REPLICA_WAIT_MS = 500


def publish(client: redis.Redis, instance: str, plan: Plan, channels: list[str], text: str,
            idempotency_key: str | None = None, min_replicas: int = 0) -> str:
    """Append one message; returns its stream id (the same id for a repeated key).

    With ``min_replicas`` (ElastiCache, where no append-only file exists) the 2xx also
    waits until that many replicas hold the entry, so a failover cannot lose a message
    the publisher was told is stored. If they do not answer in time the publisher gets
    a 503 and should retry with the same Idempotency-Key: the entry is not appended
    twice.
    """
    idem = keys.idempotency(instance, idempotency_key or "-")
    outcome, value = _publish_script(client)(
        keys=[keys.stream(instance), idem, keys.publish_rate(instance)],
        args=["1" if idempotency_key else "0", plan.publish_rate, plan.retention_max_len,
              plan.retention_seconds * 1000, IDEMPOTENCY_SECONDS, FIELD_CHANNELS,
              json.dumps(channels, separators=(",", ":")), FIELD_TEXT, text],
    )

    if outcome == "limited":
        retry_after = max(1, -(-int(value) // 1000))
        raise TooManyRequests(
            f"publish rate limit of {plan.publish_rate}/s exceeded",
            headers={"Retry-After": str(retry_after)},
        )
    if outcome == "duplicate":
        log.info("duplicate publish instance=%s id=%s", instance, value)
    if min_replicas and client.wait(min_replicas, REPLICA_WAIT_MS) < min_replicas:
        log.warning("publish not replicated in time instance=%s id=%s", instance, value)
        raise Unavailable("the message is not replicated yet; retry with the same "
                          "Idempotency-Key")
    return value
