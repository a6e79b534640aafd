"""Credentials: HTTP Basic parsing, constant-time checks and derived instance secrets.

The publisher secret and the subscribe key of an instance are derived (HMAC of the
master key, a purpose, the instance name and its random salt), so no secret is ever
stored in Redis; rotating the salt revokes both. The purposes differ, so one secret
says nothing about the other. Every comparison uses ``hmac.compare_digest`` and every
failure looks the same to the caller, so a timing or error difference reveals nothing.
"""

import base64
import hashlib
import hmac
from collections.abc import Mapping

from chalicelib.errors import Unauthorized


def parse_basic(headers: Mapping[str, str]) -> tuple[str, str]:
    """(user, password) from an Authorization header; Unauthorized if absent or malformed."""
    header = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Unauthorized()

    # ValueError, not only binascii.Error: b64decode rejects a non-ASCII str that way, and
    # HTTP servers hand header bytes over as latin-1 text.
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:
        raise Unauthorized() from None

    user, sep, password = decoded.partition(":")
    if not sep:
        raise Unauthorized()
    return user, password


def same(given: str, expected: str) -> bool:
    """Constant-time string equality."""
    return hmac.compare_digest(given.encode(), expected.encode())


def check_broker(headers: Mapping[str, str], username: str, password: str) -> None:
    """Fail closed unless the request carries the broker's user and password."""
    user, given = parse_basic(headers)
    user_ok = same(user, username)
    password_ok = same(given, password)
    if not (user_ok and password_ok):
        raise Unauthorized()


def publisher_secret(master_key: str, instance: str, salt: str) -> str:
    """The publisher password of an instance, derived and never stored."""
    message = f"publisher:{instance}:{salt}".encode()
    digest = hmac.new(master_key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def subscribe_key(master_key: str, instance: str, salt: str) -> str:
    """The key an instance's subscribe tokens are signed with, derived and never stored.

    The API derives it to issue tokens; the provisioner derives it once more to hand it
    to the instance's authorizers, which hold this key only, never the master key.
    """
    message = f"subscribe:{instance}:{salt}".encode()
    digest = hmac.new(master_key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
