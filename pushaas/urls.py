"""Subscriber URLs on an instance's push-stream, as browsers and other clients use them.

The locations mirror the nginx push-stream module: ``/ev/`` EventSource, ``/ws/``
WebSocket, ``/lp/`` long-polling, ``/sub/`` HTTP streaming; several channels share one
connection as ``/ev/a/b``.
"""

from collections.abc import Sequence
from urllib.parse import quote, urlencode

TRANSPORTS = ("ev", "ws", "lp", "sub")


def channel_list(channels: str | Sequence[str]) -> list[str]:
    """One channel or several, as a non-empty list (a bare string is one channel)."""
    listed = [channels] if isinstance(channels, str) else list(channels)
    if not listed:
        raise ValueError("at least one channel is required")
    return listed


def subscribe_url(push_stream_url: str, channels: str | Sequence[str], transport: str = "ev",
                  last_event_id: str | None = None, token: str | None = None) -> str:
    """The URL a subscriber opens for ``channels``.

    ``ws`` gets a ``ws://``/``wss://`` scheme, what a WebSocket client expects.
    ``last_event_id`` (an id a previous subscription received) becomes
    ``?last_event_id=``, which browsers' EventSource cannot send as a header; ``token``
    (from ``subscribe_token``, needed for ``private-*`` channels) becomes ``?auth=``.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")

    listed = channel_list(channels)
    if any(not channel or "/" in channel for channel in listed):
        raise ValueError("channel ids must be non-empty and may not contain '/'")

    base = push_stream_url.rstrip("/")
    if transport == "ws":
        base = "ws" + base.removeprefix("http")
    path = "/".join(quote(channel, safe=":@-._~") for channel in listed)
    params = {"last_event_id": last_event_id, "auth": token}
    query = urlencode({name: value for name, value in params.items() if value})
    return f"{base}/{transport}/{path}" + (f"?{query}" if query else "")
