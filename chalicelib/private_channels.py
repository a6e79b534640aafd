"""Private channels on the API side: which token requests are granted, and the token.

The token format lives in ``subscribe_tokens`` (shared with the replicas' authorizer);
this module holds what only the API decides: a request names valid ``private-`` channel
ids of the instance's plan and a bounded lifetime, and the token is signed with the
instance's derived subscribe key, which is never stored.
"""

import time
from datetime import UTC, datetime

from chalicelib import subscribe_tokens
from chalicelib.channels import validate_id
from chalicelib.credentials import subscribe_key
from chalicelib.errors import BadRequest
from chalicelib.instances import Instance
from chalicelib.plans import Plan

DEFAULT_TTL = 3600
MAX_TTL = subscribe_tokens.MAX_TTL


def validate_request(plan: Plan, body: object) -> tuple[list[str], int]:
    """The channels (in order, without repeats) and the lifetime of a token request."""
    if not isinstance(body, dict):
        raise BadRequest('request body must be a JSON object: {"channels": [...], "ttl": 3600}')

    channels = body.get("channels")
    if not isinstance(channels, list) or not channels:
        raise BadRequest("channels must be a non-empty list of private channel ids")
    unique = list(dict.fromkeys(validate_id(plan, c) for c in channels))
    if len(unique) > subscribe_tokens.MAX_CHANNELS:
        raise BadRequest(f"too many channels: at most {subscribe_tokens.MAX_CHANNELS} per token")

    # Public channels need no token; granting one "for" them would suggest it restricts them.
    public = [c for c in unique if not subscribe_tokens.is_private(c) or "/" in c]
    if public:
        raise BadRequest(f"channel {public[0][:64]!r} is not private: only channels named "
                         f"{subscribe_tokens.PRIVATE_PREFIX}* take a token")
    return unique, _ttl(body.get("ttl", DEFAULT_TTL))


def _ttl(value: object) -> int:
    message = f"ttl must be a whole number of seconds from 1 to {MAX_TTL}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(message)
    if isinstance(value, float) and not value.is_integer():
        raise BadRequest(message)
    if not 1 <= value <= MAX_TTL:
        raise BadRequest(message)
    return int(value)


def grant(master_key: str, instance: Instance, channels: list[str], ttl: int,
          now: float | None = None) -> dict:
    """The token answer: the token, its expiry (ISO 8601 UTC) and the channels it covers."""
    expires = int(time.time() if now is None else now) + ttl
    key = subscribe_key(master_key, instance.name, instance.salt)
    token = subscribe_tokens.issue(key, instance.name, channels, expires)

    stamp = datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
    return {"token": token, "expires": stamp, "channels": channels}
