"""Publishing one batch of deliveries to nginx until every one is accepted or rejected.

Channels go in parallel (at most ``concurrency`` requests in flight); the deliveries of one
channel go one after another in stream order, and a channel stops at its first failure so
a retry resumes exactly there. Failed deliveries are retried in rounds with exponential
backoff, forever: the caller decides when to give up (shutdown cancels the batch).
"""

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator

from push_agent.backoff import Backoff
from push_agent.entries import Delivery
from push_agent.http import HttpError
from push_agent.nchan import NchanClient
from push_agent.state import AgentState

log = logging.getLogger(__name__)

RETRYABLE_4XX = frozenset({408, 429})


class _Round:
    """Outcome of one pass over the pending channels."""

    def __init__(self) -> None:
        self.last_error = ""
        self.transport_down = False


class Publisher:
    def __init__(
        self, nchan: NchanClient, state: AgentState, instance: str, concurrency: int,
        on_retry: Callable[[], None] = lambda: None,
    ):
        self.nchan = nchan
        self.state = state
        self.instance = instance
        self.concurrency = concurrency
        self.on_retry = on_retry

    async def publish_batch(self, plan: "OrderedDict[str, list[Delivery]]") -> int:
        """Deliver every planned envelope; returns how many nginx rejected with a 4xx."""
        pending = {channel: deque(deliveries) for channel, deliveries in plan.items()}
        rejected = 0
        backoff = Backoff()
        while True:
            outcome = _Round()
            rejected += await self._run_round(pending, outcome)
            pending = {channel: queue for channel, queue in pending.items() if queue}
            if not pending:
                return rejected

            delay = backoff.next_delay()
            log.warning(
                "publish failed, retrying instance=%s attempt=%d channels=%d messages=%d "
                "delay=%.2fs error=%s",
                self.instance, backoff.attempt, len(pending),
                sum(len(queue) for queue in pending.values()), delay, outcome.last_error,
            )
            self.on_retry()
            await asyncio.sleep(delay)

    async def _run_round(self, pending: dict[str, deque[Delivery]], outcome: _Round) -> int:
        channels = iter(list(pending))
        workers = min(self.concurrency, len(pending))
        counts = await asyncio.gather(
            *(self._worker(channels, pending, outcome) for _ in range(workers))
        )
        return sum(counts)

    async def _worker(
        self, channels: Iterator[str], pending: dict[str, deque[Delivery]], outcome: _Round,
    ) -> int:
        rejected = 0
        for channel in channels:
            if outcome.transport_down:
                break
            rejected += await self._publish_channel(pending[channel], outcome)
        return rejected

    async def _publish_channel(self, queue: deque[Delivery], outcome: _Round) -> int:
        """Publish a channel's deliveries in order; stop at the first retryable failure."""
        rejected = 0
        while queue and not outcome.transport_down:
            delivery = queue[0]
            try:
                response = await self.nchan.publish(delivery.channel, delivery.body)
            except HttpError as exc:
                outcome.transport_down = True
                outcome.last_error = str(exc)
                return rejected

            if response.ok:
                self.state.record_delivery(delivery.channel)
            elif 400 <= response.status < 500 and response.status not in RETRYABLE_4XX:
                rejected += 1
                log.warning(
                    "publish rejected, message skipped instance=%s entry=%s channel=%s "
                    "status=%d",
                    self.instance, delivery.entry_id, delivery.channel, response.status,
                )
            else:
                outcome.last_error = f"status {response.status}"
                return rejected
            queue.popleft()
        return rejected
