"""Receive messages as a browser does: EventSource on the instance's push-stream.

A dropped connection is reopened with the last event id, as EventSource does, so
nothing within the replay buffer is missed; the reconnects follow the same retry
policy as API calls and give up with ``ConnectionFailed`` when it is spent.
"""

import logging
import time
from collections.abc import Callable, Iterator

import httpx

from pushaas.errors import ConnectionFailed, PushaasError, error_for, status_phrase
from pushaas.events import Event, EventParser
from pushaas.retry import RetryPolicy
from pushaas.transport import OwnsHttpClient
from pushaas.version import USER_AGENT

log = logging.getLogger(__name__)

# push-stream sends nothing on a quiet EventSource stream (no pings: see its nginx config),
# so a silent connection is reopened after this long, as a load balancer's idle timeout
# would: a dead connection is found within that time, a quiet one costs one reconnect.
READ_TIMEOUT = 300.0
CONNECT_TIMEOUT = 10.0


class Subscription(OwnsHttpClient):
    """Iterating yields events for as long as the caller wants them."""

    def __init__(self, url: str, last_event_id: str | None = None,
                 retry: RetryPolicy | None = None,
                 on_open: Callable[[], None] | None = None,
                 transport: httpx.BaseTransport | None = None,
                 read_timeout: float = READ_TIMEOUT):
        self.url = url
        self.last_event_id = last_event_id or ""
        self.retry = retry or RetryPolicy()
        self.on_open = on_open
        self._opened = False
        self._http = httpx.Client(
            timeout=httpx.Timeout(CONNECT_TIMEOUT, read=read_timeout), transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "text/event-stream"})

    def __iter__(self) -> Iterator[Event]:
        """Events across reconnections.

        Only failures to get a stream count against the retry policy: a stream that was
        open and then ended (closed, or silent past the read timeout) is reopened with a
        fresh backoff, so a quiet channel never exhausts it.
        """
        backoff = self.retry.start()
        while True:
            self._opened = False
            try:
                for event in self._connection():
                    backoff = self.retry.start()
                    yield event
                failure: PushaasError = ConnectionFailed("the push-stream closed the stream")
            except httpx.TransportError as exc:
                failure = ConnectionFailed(
                    f"push-stream connection lost: {str(exc) or type(exc).__name__}")
            except PushaasError as exc:
                failure = exc

            if self._opened:
                backoff = self.retry.start()
            delay = backoff.next_delay(failure, idempotent=True)
            if delay is None:
                raise failure
            log.info("reconnecting delay=%.2f last_event_id=%s", delay, self.last_event_id)
            time.sleep(delay)

    def _connection(self) -> Iterator[Event]:
        """Events of one connection, until the server ends it."""
        headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
        with self._http.stream("GET", self.url, headers=headers) as response:
            if response.status_code != 200:
                status = response.status_code
                raise error_for(status, b"", {k.lower(): v for k, v in response.headers.items()},
                                f"the push-stream answered {status} {status_phrase(status)} "
                                f"for {self.url}")
            self._opened = True
            if self.on_open is not None:
                self.on_open()

            parser = EventParser(self.last_event_id)
            for line in response.iter_lines():
                event = parser.feed(line)
                if event is not None:
                    self.last_event_id = event.id
                    yield event

