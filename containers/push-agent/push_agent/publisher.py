"""Publishing one batch of deliveries to nginx until every one is accepted or rejected.

Requests are pipelined over the pool's kept-alive connections (the agent's
``concurrency``), up to ``depth`` in flight on each. A channel has at most one request in
flight: its next delivery is written only once the previous one is answered, so the
deliveries of a channel reach nginx in stream order and a channel stops exactly at its
first failure, where a retry resumes. Many channels share each connection, which is where
the parallelism comes from.

Failed deliveries are retried in rounds with exponential backoff, forever: the caller
decides when to give up (shutdown cancels the batch), and before each resend it may have
the batch abandoned instead (to read it again from further back, see ``push_agent.refill``).
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from push_agent.backoff import Backoff
from push_agent.entries import Delivery
from push_agent.logs import describe
from push_agent.nchan import PublishRequests
from push_agent.pipeline import PipelinedConnection, PipelinePool

log = logging.getLogger(__name__)

RETRYABLE_4XX = frozenset({408, 429})

Plan = dict[str, deque[Delivery]]


@dataclass(frozen=True)
class BatchResult:
    accepted: dict[str, int]
    """Deliveries nginx accepted, per channel."""
    rejected: int
    """Deliveries nginx refused with a 4xx; they were skipped."""


class Resend(Enum):
    """What becomes of the rest of a batch once the backoff after a failed round is over."""

    NOW = "now"
    LATER = "later"
    """Back off once more first (nginx is not answering yet)."""
    ABANDON = "abandon"
    """Give the batch up: the caller reads it again."""


async def _resend_now() -> Resend:
    return Resend.NOW


class Publisher:
    def __init__(
        self, pool: PipelinePool, requests: PublishRequests, instance: str, depth: int,
        on_retry: Callable[[], None] = lambda: None,
        before_resend: Callable[[], Awaitable[Resend]] = _resend_now,
    ):
        self.pool = pool
        self.requests = requests
        self.instance = instance
        self.depth = depth
        self.on_retry = on_retry
        self.before_resend = before_resend
        self.backoff = Backoff()
        """Reset by a completed batch only: an abandoned batch's retries still count, so
        batches abandoned one after another do not hit a failing nginx any faster."""

    async def publish_batch(self, plan: Plan) -> BatchResult | None:
        """Deliver every planned envelope: each is accepted or, on a 4xx, skipped.

        The plan's queues are consumed: what is left in them is what is still to send.
        None when ``before_resend`` had the batch abandoned.
        """
        accepted = {channel: len(queue) for channel, queue in plan.items()}
        rejected: dict[str, int] = {}
        pending = plan
        while True:
            outcome = _Round(self, pending, rejected)
            await outcome.run()
            if not outcome.complete:
                pending = {channel: queue for channel, queue in pending.items() if queue}
            if outcome.complete or not pending:
                self.backoff.reset()
                for channel, count in rejected.items():
                    accepted[channel] -= count
                return BatchResult(accepted, sum(rejected.values()))

            if not await self._back_off(pending, outcome.last_error):
                return None

    async def _back_off(self, pending: Plan, error: str) -> bool:
        """Wait until the rest of the batch may be sent again; False to abandon it."""
        while True:
            delay = self.backoff.next_delay()
            log.warning(
                "publish failed, retrying instance=%s attempt=%d channels=%d messages=%d "
                "delay=%.2fs error=%s",
                self.instance, self.backoff.attempt, len(pending),
                sum(len(queue) for queue in pending.values()), delay, error,
            )
            self.on_retry()
            await asyncio.sleep(delay)

            verdict = await self.before_resend()
            if verdict is not Resend.LATER:
                return verdict is Resend.NOW


class _Round:
    """One pass over the pending channels, driven by the responses as they arrive.

    It is the sink of every connection it writes to: each response is handled in the
    connection's receive callback and the freed channels are written at once, without a
    task switch per message. The ``run`` coroutine only opens connections, waits and
    enforces the timeout.
    """

    def __init__(self, publisher: Publisher, pending: Plan, rejected: dict[str, int]):
        self.publisher = publisher
        self.pool = publisher.pool
        self.pending = pending
        self.ready: deque[str] = deque(pending)
        self.depth = publisher.depth
        self.window = self.depth * self.pool.size
        self.in_flight = 0
        self.rejected = rejected
        self.transport_down = False
        self.halted = False
        self.last_error = ""
        self.wake: asyncio.Future[None] | None = None
        self.last_progress = time.monotonic()
        self.reused: dict[PipelinedConnection, int] = {}

    async def run(self) -> None:
        for connection in self.pool.usable():
            connection.sink = self
            self.reused[connection] = connection.answered

        try:
            await self._drive()
        except BaseException:
            # Cancelled mid-round: answers still on their way must not reach a later round.
            self.pool.abort_busy(ConnectionAbortedError("batch cancelled"))
            raise

    async def _drive(self) -> None:
        timeout = self.pool.timeout
        while True:
            self._pump()
            if self._finished():
                return

            if self.ready and not self.transport_down and self._needs_connection():
                await self._connect()
                continue

            self.wake = asyncio.get_running_loop().create_future()
            waited = time.monotonic() - self.last_progress
            try:
                async with asyncio.timeout(max(0.001, timeout - waited)):
                    await self.wake
            except TimeoutError:
                if self.in_flight and time.monotonic() - self.last_progress >= timeout:
                    self.pool.abort_busy(TimeoutError(f"no answer within {timeout:.0f}s"))

    async def _connect(self) -> None:
        try:
            await self.pool.connect(self)
        except (OSError, TimeoutError) as exc:
            self._fail(f"POST {self.pool.where()}/pub failed: {describe(exc)}")

    # ---- the sink of the connections ----------------------------------------------------

    def on_responses(self, connection: PipelinedConnection, tokens: list,
                     statuses: list[int]) -> None:
        """Settle each answered delivery, then write what the answers freed."""
        self.in_flight -= len(tokens)
        self.last_progress = time.monotonic()
        pending, ready = self.pending, self.ready
        for channel, status in zip(tokens, statuses, strict=True):
            queue = pending[channel]
            if 200 <= status < 300:
                queue.popleft()
            elif not self._settle_failure(channel, queue, status):
                continue
            if queue:
                ready.append(channel)

        self._pump()
        if self._finished() or (ready and self.in_flight < self.window):
            # Done, or ready channels wait for a connection only the coroutine can open.
            self._wake()

    def _settle_failure(self, channel: str, queue: deque[Delivery], status: int) -> bool:
        """A 4xx skips the delivery (True: the channel goes on); anything else halts it."""
        if 400 <= status < 500 and status not in RETRYABLE_4XX:
            delivery = queue.popleft()
            self.rejected[channel] = self.rejected.get(channel, 0) + 1
            log.warning(
                "publish rejected, message skipped instance=%s entry=%s channel=%s status=%d",
                self.publisher.instance, delivery.entry_id, channel, status,
            )
            return True

        self.halted = True
        self.last_error = f"status {status}"
        return False

    def on_lost(self, connection: PipelinedConnection, unanswered: list,
                error: BaseException | None) -> None:
        """Requests the server never answered go back to ``ready`` or fail the round.

        A connection nginx closed on purpose (``Connection: close``), or a reused one that
        died before answering anything in this round (nginx dropped it while idle), lost
        nothing that was accepted: its requests are simply sent again on another one.
        """
        self.in_flight -= len(unanswered)
        if unanswered:
            silent_reuse = self.reused.get(connection) == connection.answered
            if connection.closing or silent_reuse:
                self.ready.extend(str(token) for token in unanswered)
            else:
                reason = describe(error) if error else "connection closed by nginx"
                self._fail(f"POST {self.pool.where()}/pub failed: {reason}")
        self._wake()

    @property
    def complete(self) -> bool:
        """Every delivery was accepted or rejected: nothing is left for another round."""
        return not (self.transport_down or self.halted or self.ready)

    # ---- writing --------------------------------------------------------------------------

    def _pump(self) -> None:
        """Write the next delivery of every ready channel while the window has room."""
        if self.transport_down or not self.ready:
            return

        for connection in self.pool.usable():
            room = min(self.pool.room(connection, self.depth), self.window - self.in_flight,
                       len(self.ready))
            if room <= 0:
                continue

            connection.sink = self
            build, pending, ready = self.publisher.requests.build, self.pending, self.ready
            tokens = [ready.popleft() for _ in range(room)]
            requests = [build(channel, pending[channel][0].body) for channel in tokens]
            connection.write(requests, tokens)
            self.in_flight += room
            if not ready:
                return

    def _wake(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    def _needs_connection(self) -> bool:
        if not self.pool.can_grow() or self.in_flight >= self.window:
            return False
        return all(self.pool.room(c, self.depth) <= 0 for c in self.pool.usable())

    def _finished(self) -> bool:
        return self.in_flight == 0 and (self.transport_down or not self.ready)

    def _fail(self, error: str) -> None:
        self.transport_down = True
        self.last_error = error
