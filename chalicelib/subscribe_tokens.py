"""Subscribe tokens for private channels: the one definition of their format.

A channel whose id starts with ``private-`` is served only to a subscriber that presents
a token the push-api issued to the instance's publisher app. The API signs tokens here,
the replica's authorizer verifies them here, and clients carry them opaquely: no second
implementation of the format exists. Standard library only, and no import from the rest
of ``chalicelib``, so the agent image and the Python client can carry this file alone.

    v1.<payload>.<signature>

- ``payload`` is base64url (no padding) of compact JSON ``{"c": [channels], "e": expiry}``,
  ``expiry`` in unix seconds. JSON, not a delimiter, because a plan may allow any
  character in channel ids.
- ``signature`` is base64url of HMAC-SHA256 keyed with the instance's subscribe key over
  ``v1``, the instance name and the payload exactly as transmitted. The instance is
  signed but not carried: a replica knows its instance, so a token of another instance
  fails the signature even if two instances ever shared a key.

The alphabet is URL-safe, so the token travels as ``?auth=<token>`` (EventSource cannot
set headers). The signature is checked, in constant time, before the payload is parsed.
"""

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

VERSION = "v1"
PRIVATE_PREFIX = "private-"

MAX_TTL = 86400
"""A token outlives its subscription's start by at most a day: it is a bearer credential."""

MAX_CHANNELS = 16
"""Token and channel list share one request line (nginx reads it into an 8 KiB buffer)."""

MAX_TOKEN_CHARS = 4096
"""Anything longer cannot be a token this module issued; refused before any decoding."""

_TOKEN = re.compile(r"v1\.([A-Za-z0-9_-]{1,4000})\.([A-Za-z0-9_-]{43})")


class TokenError(ValueError):
    """The token does not allow the subscription; ``reason`` is one word, safe to log."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Claims:
    """What a verified token grants: these channels until ``expires`` (unix seconds)."""

    channels: tuple[str, ...]
    expires: int


def is_private(channel: str) -> bool:
    """Whether subscribing to ``channel`` needs a token (the prefix is case-sensitive)."""
    return channel.startswith(PRIVATE_PREFIX)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: str, instance: str, payload: str) -> str:
    message = f"{VERSION}\n{instance}\n{payload}".encode()
    return _b64(hmac.new(key.encode(), message, hashlib.sha256).digest())


def issue(key: str, instance: str, channels: Sequence[str], expires: int) -> str:
    """A token granting ``channels`` of ``instance`` until ``expires``.

    The caller validates the channel ids against the instance's plan; this only refuses
    what no verifier would accept.
    """
    if not channels or len(channels) > MAX_CHANNELS:
        raise ValueError(f"a token names 1 to {MAX_CHANNELS} channels")
    if not all(isinstance(c, str) and c and "/" not in c for c in channels):
        raise ValueError("channel ids must be non-empty strings without '/'")

    claims = {"c": list(channels), "e": int(expires)}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    token = f"{VERSION}.{payload}.{_signature(key, instance, payload)}"
    if len(token) > MAX_TOKEN_CHARS:
        raise ValueError("channel ids too long for one token")
    return token


def signature_of(token: str) -> str:
    """The signature part of a token (what a leak check looks for)."""
    return token.rsplit(".", 1)[-1]


def verify(key: str, instance: str, token: str | None, now: float) -> Claims:
    """The claims of a genuine, unexpired token of ``instance``; TokenError otherwise."""
    if not token:
        raise TokenError("missing")
    match = _TOKEN.fullmatch(token) if len(token) <= MAX_TOKEN_CHARS else None
    if match is None:
        raise TokenError("malformed")

    payload, signature = match.groups()
    expected = _signature(key, instance, payload)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise TokenError("signature")

    claims = _claims(payload)
    if now >= claims.expires:
        raise TokenError("expired")
    return claims


def _claims(payload: str) -> Claims:
    """Parse a payload whose signature already checked out; still strict about its shape."""
    try:
        raw = json.loads(_unb64(payload))
    except (binascii.Error, ValueError):
        raise TokenError("malformed") from None

    if not isinstance(raw, dict) or set(raw) != {"c", "e"}:
        raise TokenError("malformed")
    channels, expires = raw["c"], raw["e"]
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise TokenError("malformed")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise TokenError("malformed")
    return Claims(tuple(channels), expires)


def authorize(key: str, instance: str, token: str | None, requested: Iterable[str],
              now: float) -> None:
    """Allow a subscription to ``requested`` channels, or raise TokenError.

    Public channels need nothing; every private one must be named by one valid token.
    A subscription without a private channel is allowed whatever the token says.
    """
    private = [channel for channel in requested if is_private(channel)]
    if not private:
        return

    claims = verify(key, instance, token, now)
    if not set(private) <= set(claims.channels):
        raise TokenError("channel")
