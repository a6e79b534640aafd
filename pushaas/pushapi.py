"""The push-api's calls as flows, shared by ``PushClient`` and ``AsyncPushClient``.

Each method returns a flow (see ``pushaas.protocol``) that a driver runs; nothing here
does I/O. The object also remembers the push-stream URL once ``config()`` has told it,
so subscriber URLs can be built without another request.
"""

import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from pushaas.errors import ConfigurationError, Conflict, NotFound, PushaasError
from pushaas.protocol import Flow, Request, exchange
from pushaas.retry import RetryPolicy
from pushaas.settings import Settings, http_url
from pushaas.urls import channel_list, subscribe_url

API = "/api/v1"


def channel_path(channel_id: str) -> str:
    return f"{API}/channels/{quote(channel_id, safe='')}"


def new_idempotency_key() -> str:
    """A key unique to one publish call: its retries carry it, so the server stores once."""
    return uuid.uuid4().hex


class PushApi:
    def __init__(self, settings: Settings, retry: RetryPolicy):
        self.settings = settings
        self.retry = retry
        self.push_stream_url = settings.push_stream_url

    def _call(self, method: str, path: str, **request: Any) -> Flow[Any]:
        reply = yield from exchange(Request(method, path, **request), self.retry)
        return reply.json() if reply.body else None

    def auth(self) -> Flow[dict[str, Any]]:
        """``{"authenticated": true, "instance": ...}``; raises ``Unauthorized``."""
        return self._call("GET", f"{API}/auth")

    def publish(self, channels: str | Sequence[str], content: str,
                idempotency_key: str | None = None) -> Flow[str]:
        """Publish once, whatever the retries; returns the message (stream) id."""
        key = idempotency_key or new_idempotency_key()
        body = {"channels": channel_list(channels), "content": content}
        sent = yield from self._call("POST", f"{API}/messages", json=body,
                                     headers={"Idempotency-Key": key})
        return str(sent["id"])

    def subscribe_token(self, channels: str | Sequence[str],
                        ttl: int | None = None) -> Flow[dict[str, Any]]:
        """A token letting a subscriber read ``private-*`` channels until it expires.

        The API signs it (``{"token", "expires", "channels"}``): the signing key never
        leaves the service, so the token format has one implementation, the server's.
        """
        body: dict[str, Any] = {"channels": channel_list(channels)}
        if ttl is not None:
            body["ttl"] = ttl
        return self._call("POST", f"{API}/tokens", json=body)

    def create_channel(self, channel_id: str, ttl: int = 0) -> Flow[dict[str, Any]]:
        """Register a channel; ``ttl`` in seconds, 0 = persistent. ``Conflict`` if it exists."""
        return self._call("POST", f"{API}/channels", json={"id": channel_id, "ttl": ttl})

    def get_channel(self, channel_id: str) -> Flow[dict[str, Any]]:
        return self._call("GET", channel_path(channel_id))

    def ensure_channel(self, channel_id: str, ttl: int = 0) -> Flow[dict[str, Any]]:
        """The channel, created if missing; another client creating it meanwhile is fine."""
        try:
            return (yield from self.get_channel(channel_id))
        except NotFound:
            pass

        try:
            return (yield from self.create_channel(channel_id, ttl))
        except Conflict:
            return (yield from self.get_channel(channel_id))

    def list_channels(self) -> Flow[list[dict[str, Any]]]:
        return self._call("GET", f"{API}/channels")

    def delete_channel(self, channel_id: str) -> Flow[None]:
        return self._call("DELETE", channel_path(channel_id))

    def global_stats(self) -> Flow[dict[str, Any]]:
        """``{"aggregated": {...}, "all": [one report per agent]}``."""
        return self._call("GET", f"{API}/stats/global")

    def channel_stats(self, channel_id: str) -> Flow[dict[str, Any]]:
        return self._call("GET", f"{API}/stats/channels/{quote(channel_id, safe='')}")

    def config(self) -> Flow[dict[str, Any]]:
        """``{"pushStream": {"url", "hostname", "port"}}``; remembers the URL."""
        answer = yield from self._call("GET", f"{API}/config")
        push_stream = answer.get("pushStream") if isinstance(answer, dict) else None
        url = push_stream.get("url") if isinstance(push_stream, dict) else None
        if not isinstance(answer, dict) or not isinstance(url, str):
            raise PushaasError(200, "the API's config has no pushStream.url")

        self.push_stream_url = http_url(url, "the push-stream URL")
        return answer

    def subscribe_url(self, channels: str | Sequence[str], transport: str = "ev",
                      last_event_id: str | None = None, token: str | None = None) -> str:
        """A subscriber URL; needs the push-stream URL from the settings or ``config()``."""
        if not self.push_stream_url:
            raise ConfigurationError("the push-stream URL is unknown: set "
                                     "PUSHAAS_PUSH_STREAM_URL or call config() first")
        return subscribe_url(self.push_stream_url, channels, transport, last_event_id, token)
