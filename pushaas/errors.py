"""Typed errors for the PushaaS APIs, mapped once from an HTTP reply.

The APIs answer every error with ``{"code": <status>, "message": "..."}``; callers catch
the subclass for the status they can handle (``NotFound``, ``Conflict``...) and let the
rest surface as ``PushaasError``. A reply without that shape did not come from PushaaS
(a proxy, a wrong URL): its body is not shown, since such bodies may echo headers back.
"""

import email.utils
import json
import time
from collections.abc import Mapping
from http import HTTPStatus


class ConfigurationError(ValueError):
    """The client was given unusable settings (missing credentials, a bad URL)."""


class PushaasError(Exception):
    """An error answered by a PushaaS API, or no answer at all (``status`` is None)."""

    def __init__(self, status: int | None, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r})"


class BadRequest(PushaasError):
    """400: the request was refused as invalid and changed nothing."""


class Unauthorized(PushaasError):
    """401: unknown user or wrong password."""


class NotFound(PushaasError):
    """404: no such instance or channel."""


class Conflict(PushaasError):
    """409: the instance or channel already exists."""


class PreconditionFailed(PushaasError):
    """412: the instance is not running yet (binding too early)."""


class PayloadTooLarge(PushaasError):
    """413: the content is over the plan's size limit."""


class RateLimited(PushaasError):
    """429: over the plan's publish rate; ``retry_after`` says when to try again."""


class Unavailable(PushaasError):
    """503: the service cannot store anything right now; safe to retry."""


class ConnectionFailed(PushaasError):
    """No HTTP answer: the endpoint is unreachable, or the connection broke.

    ``maybe_delivered`` is true when the request may have reached the server before
    the failure, so only an idempotent request may be sent again.
    """

    def __init__(self, message: str, maybe_delivered: bool = False):
        super().__init__(None, message)
        self.maybe_delivered = maybe_delivered


ERRORS_BY_STATUS: dict[int, type[PushaasError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: PayloadTooLarge,
    429: RateLimited,
    503: Unavailable,
}


def error_for(status: int, body: bytes, headers: Mapping[str, str],
              message: str | None = None) -> PushaasError:
    """The typed error for one non-success reply (``headers`` with lower-case names).

    ``message`` replaces the one read from the body, for servers other than the API.
    """
    kind = ERRORS_BY_STATUS.get(status, PushaasError)
    return kind(status, message or _message(status, body),
                parse_retry_after(headers.get("retry-after")))


def _message(status: int, body: bytes) -> str:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        payload = None

    message = payload.get("message") if isinstance(payload, dict) else None
    if isinstance(message, str) and "code" in payload:
        return message
    return f"{status_phrase(status)} (not a PushaaS error body: is the endpoint right?)"


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return f"HTTP status {status}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date."""
    if not value:
        return None

    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
