"""A parser of EventSource (``text/event-stream``) streams, fed one line at a time.

It follows the WHATWG rules that matter for push-stream: ``field: value`` lines (one
space after the colon is dropped), several ``data`` lines joined by newlines, comments
(Nchan's pings) ignored, an event dispatched at the blank line that ends it. The last
``id`` seen persists across events, as a browser keeps it for ``Last-Event-ID``.
"""

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    """One dispatched event; ``id`` is the Nchan message id (``<seconds>:<counter>``)."""

    id: str
    data: str
    event: str = "message"

    def json(self) -> Any:
        """The data decoded as JSON: push-stream's envelope ``{"id","channel","text","time"}``."""
        return json.loads(self.data)


class EventParser:
    def __init__(self, last_event_id: str = ""):
        self.last_event_id = last_event_id
        self._data: list[str] = []
        self._event = ""

    def feed(self, line: str) -> Event | None:
        """Take one line (without its line break); returns an event when one is complete."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None

        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        return None

    def _dispatch(self) -> Event | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return Event(self.last_event_id, "\n".join(data), event or "message")
