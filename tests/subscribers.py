"""Subscriber clients for tests: read what a browser would receive from push-stream."""

import httpx

EVENT_STREAM = {"Accept": "text/event-stream"}


class EventReader:
    """Reads EventSource events off an open streaming response."""

    def __init__(self, response: httpx.Response) -> None:
        self.chunks = response.iter_raw()
        self.buffer = b""

    def next(self) -> tuple[str, bytes]:
        """The next event carrying data, as (id, data); comments (pings) are skipped."""
        while True:
            block, sep, rest = self.buffer.partition(b"\n\n")
            if not sep:
                self.buffer += next(self.chunks)
                continue

            self.buffer = rest
            fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
            if b"data" in fields:
                return fields.get(b"id", b"").decode(), fields[b"data"]
