"""Python clients of the push-api for publisher apps: ``PushClient`` and ``AsyncPushClient``.

Both are thin: every method hands a flow from ``pushaas.pushapi`` to a driver from
``pushaas.transport``. So requests, error mapping, retries and idempotency keys behave
the same in both, because they are the same code.

    with PushClient.from_env() as push:
        message_id = push.publish(["news"], "hello")
"""

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from pushaas.pushapi import PushApi
from pushaas.retry import RetryPolicy
from pushaas.settings import Settings
from pushaas.transport import AsyncDriver, OwnsHttpClient, SyncDriver
from pushaas.version import USER_AGENT

DEFAULT_TIMEOUT = 10.0


def http_options(settings: Settings, timeout: float) -> dict[str, Any]:
    """What both httpx clients are built with."""
    return {
        "base_url": settings.endpoint,
        "auth": (settings.username, settings.password),
        "timeout": timeout,
        "headers": {"User-Agent": USER_AGENT, "Accept": "application/json"},
    }


class _Base:
    def __init__(self, settings: Settings, retry: RetryPolicy | None):
        self.settings = settings
        self._api = PushApi(settings, retry or RetryPolicy())

    @property
    def push_stream_url(self) -> str | None:
        """Where subscribers connect: from the settings, or learnt by ``config()``."""
        return self._api.push_stream_url

    def subscribe_url(self, channels: str | Sequence[str], transport: str = "ev",
                      last_event_id: str | None = None, token: str | None = None) -> str:
        """The URL a subscriber opens: ``ev`` EventSource, ``ws``, ``lp`` or ``sub``."""
        return self._api.subscribe_url(channels, transport, last_event_id, token)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.settings.endpoint!r}, " \
               f"username={self.settings.username!r})"


class PushClient(_Base, OwnsHttpClient):
    """Blocking client (``httpx.Client``); safe to share between threads."""

    def __init__(self, endpoint: str, username: str, password: str, *,
                 push_stream_url: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None):
        super().__init__(Settings(endpoint, username, password, push_stream_url), retry)
        self._http = httpx.Client(**http_options(self.settings, timeout), transport=transport)
        self._driver = SyncDriver(self._http)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> Self:
        """A client configured by the ``PUSHAAS_*`` variables a bound app receives."""
        found = Settings.from_env(env)
        return cls(found.endpoint, found.username, found.password,
                   push_stream_url=found.push_stream_url, **options)

    def auth(self) -> dict[str, Any]:
        return self._driver.run(self._api.auth())

    def publish(self, channels: str | Sequence[str], content: str,
                idempotency_key: str | None = None) -> str:
        return self._driver.run(self._api.publish(channels, content, idempotency_key))

    def subscribe_token(self, channels: str | Sequence[str],
                        ttl: int | None = None) -> dict[str, Any]:
        """``{"token", "expires", "channels"}`` for subscribing to ``private-*`` channels."""
        return self._driver.run(self._api.subscribe_token(channels, ttl))

    def create_channel(self, channel_id: str, ttl: int = 0) -> dict[str, Any]:
        return self._driver.run(self._api.create_channel(channel_id, ttl))

    def ensure_channel(self, channel_id: str, ttl: int = 0) -> dict[str, Any]:
        return self._driver.run(self._api.ensure_channel(channel_id, ttl))

    def get_channel(self, channel_id: str) -> dict[str, Any]:
        return self._driver.run(self._api.get_channel(channel_id))

    def list_channels(self) -> list[dict[str, Any]]:
        return self._driver.run(self._api.list_channels())

    def delete_channel(self, channel_id: str) -> None:
        self._driver.run(self._api.delete_channel(channel_id))

    def global_stats(self) -> dict[str, Any]:
        return self._driver.run(self._api.global_stats())

    def channel_stats(self, channel_id: str) -> dict[str, Any]:
        return self._driver.run(self._api.channel_stats(channel_id))

    def config(self) -> dict[str, Any]:
        return self._driver.run(self._api.config())



class AsyncPushClient(_Base):
    """asyncio client (``httpx.AsyncClient``); the same methods, awaited."""

    def __init__(self, endpoint: str, username: str, password: str, *,
                 push_stream_url: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None):
        super().__init__(Settings(endpoint, username, password, push_stream_url), retry)
        self._http = httpx.AsyncClient(**http_options(self.settings, timeout),
                                       transport=transport)
        self._driver = AsyncDriver(self._http)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> Self:
        found = Settings.from_env(env)
        return cls(found.endpoint, found.username, found.password,
                   push_stream_url=found.push_stream_url, **options)

    async def auth(self) -> dict[str, Any]:
        return await self._driver.run(self._api.auth())

    async def publish(self, channels: str | Sequence[str], content: str,
                      idempotency_key: str | None = None) -> str:
        return await self._driver.run(self._api.publish(channels, content, idempotency_key))

    async def subscribe_token(self, channels: str | Sequence[str],
                              ttl: int | None = None) -> dict[str, Any]:
        return await self._driver.run(self._api.subscribe_token(channels, ttl))

    async def create_channel(self, channel_id: str, ttl: int = 0) -> dict[str, Any]:
        return await self._driver.run(self._api.create_channel(channel_id, ttl))

    async def ensure_channel(self, channel_id: str, ttl: int = 0) -> dict[str, Any]:
        return await self._driver.run(self._api.ensure_channel(channel_id, ttl))

    async def get_channel(self, channel_id: str) -> dict[str, Any]:
        return await self._driver.run(self._api.get_channel(channel_id))

    async def list_channels(self) -> list[dict[str, Any]]:
        return await self._driver.run(self._api.list_channels())

    async def delete_channel(self, channel_id: str) -> None:
        await self._driver.run(self._api.delete_channel(channel_id))

    async def global_stats(self) -> dict[str, Any]:
        return await self._driver.run(self._api.global_stats())

    async def channel_stats(self, channel_id: str) -> dict[str, Any]:
        return await self._driver.run(self._api.channel_stats(channel_id))

    async def config(self) -> dict[str, Any]:
        return await self._driver.run(self._api.config())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.aclose()
