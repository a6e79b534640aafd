"""The replica's internal Nchan endpoints, as the agent uses them.

Measured on Nchan 1.3.6: POST and PUT on the publisher location both publish a message (PUT
with an empty body stores an empty message, and push-stream answers PUT with 405), GET
returns channel info (404 when the channel does not exist in this nginx) and DELETE removes
it. There is no "create without a message"; subscribing never needs the channel to exist.

Channel ids go into ``?id=`` as they are: nginx does not percent-decode ``$arg_id`` while
it does decode subscriber paths, so only ids made of URL-safe characters are publishable.
"""

import json
import re
from dataclasses import dataclass

from push_agent.http import HttpError, HttpPool

JSON_HEADERS = {"Accept": "application/json"}
PUBLISH_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
CHANNEL_ID = re.compile(r"[A-Za-z0-9_.:@~-]{1,512}")

STUB_FIELDS = {
    "total published messages": "published_messages",
    "stored messages": "stored_messages",
    "channels": "channels",
    "subscribers": "subscribers",
}


class UnexpectedAnswer(HttpError):
    """nginx answered, but not with what was asked (a status or body the agent cannot use)."""


@dataclass(frozen=True)
class ChannelInfo:
    """What nginx knows about one channel right now."""

    messages: int
    subscribers: int
    last_message_id: str


class NchanClient:
    """Control calls to one nginx internal server, over a connection pool (publishing goes
    through the pipelined publisher and ``PublishRequests``)."""

    def __init__(self, pool: HttpPool, base_path: str = ""):
        self.pool = pool
        self.base_path = base_path

    async def channel_info(self, channel: str) -> ChannelInfo | None:
        """Channel info, or None when this nginx has no such channel."""
        response = await self.pool.request("GET", self._pub(channel), JSON_HEADERS)
        if response.status == 404:
            return None
        if response.status != 200:
            raise HttpError(f"channel info answered {response.status}")
        return parse_channel_info(response.body)

    async def stub_status(self) -> dict[str, int]:
        """Server-wide counters from ``nchan_stub_status``."""
        return parse_stub_status(await self._stub_text())

    async def stored_messages(self) -> int:
        """Messages this nginx holds in its replay buffers right now.

        Unlike the stats counters, a missing line is an error here, not a 0: a 0 makes the
        agent refill the buffer.
        """
        stored = stub_counters(await self._stub_text()).get("stored_messages")
        if stored is None:
            raise UnexpectedAnswer("nchan_stub_status has no stored messages line")
        return stored

    async def _stub_text(self) -> str:
        response = await self.pool.request("GET", f"{self.base_path}/nchan_stub_status")
        if response.status != 200:
            raise UnexpectedAnswer(f"nchan_stub_status answered {response.status}")
        return response.body.decode("utf-8", "replace")

    def _pub(self, channel: str) -> str:
        return f"{self.base_path}/pub?id={channel}"


class PublishRequests:
    """The raw HTTP/1.1 bytes of one publish, for the pipelined publisher.

    Everything before the body length depends only on the channel, so it is formatted once
    per channel and kept (up to ``HEAD_CACHE`` channels).
    """

    HEAD_CACHE = 10_000

    def __init__(self, host: str, port: int, base_path: str = ""):
        self.base_path = base_path
        headers = "".join(f"{name}: {value}\r\n" for name, value in PUBLISH_HEADERS.items())
        self._headers = f"Host: {host}:{port}\r\n{headers}Content-Length: "
        self._heads: dict[str, bytes] = {}

    def build(self, channel: str, body: bytes) -> bytes:
        head = self._heads.get(channel)
        if head is None:
            head = self._head(channel)
        return b"%s%d\r\n\r\n%s" % (head, len(body), body)

    def target(self, channel: str) -> str:
        return f"{self.base_path}/pub?id={channel}"

    def _head(self, channel: str) -> bytes:
        if len(self._heads) >= self.HEAD_CACHE:
            self._heads.clear()
        head = f"POST {self.target(channel)} HTTP/1.1\r\n{self._headers}".encode("latin-1")
        self._heads[channel] = head
        return head


def publishable(channel: str) -> bool:
    """Whether ``channel`` can travel in ``?id=`` unencoded (see the module docstring)."""
    return CHANNEL_ID.fullmatch(channel) is not None


def parse_stub_status(text: str) -> dict[str, int]:
    """The counters the agent reports, keyed by the stats JSON names (missing ones are 0)."""
    return dict.fromkeys(STUB_FIELDS.values(), 0) | stub_counters(text)


def stub_counters(text: str) -> dict[str, int]:
    """The counters present in ``nchan_stub_status`` output, keyed by the stats JSON names."""
    counters: dict[str, int] = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        name = STUB_FIELDS.get(label.strip())
        if sep and name and value.strip().lstrip("-").isdigit():
            counters[name] = int(value.strip())
    return counters


def parse_channel_info(body: bytes) -> ChannelInfo:
    """Nchan's JSON channel info (``{"messages", "requested", "subscribers", ...}``)."""
    try:
        data = json.loads(body)
        return ChannelInfo(
            messages=int(data.get("messages", 0)),
            subscribers=int(data.get("subscribers", 0)),
            last_message_id=str(data.get("last_message_id", "")),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise HttpError(f"unreadable channel info: {exc!r}") from None
