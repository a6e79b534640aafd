"""The agent's main loop: read a batch, publish it, advance the cursor; stop on a signal."""

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from push_agent import streamids
from push_agent.backoff import Backoff
from push_agent.cursor import CursorStore, LoadedCursor
from push_agent.entries import Planner
from push_agent.heartbeat import Heartbeat
from push_agent.http import HttpPool
from push_agent.keepalive import ChannelKeeper
from push_agent.logs import describe
from push_agent.nchan import NchanClient, PublishRequests
from push_agent.pipeline import PipelinePool
from push_agent.publisher import Publisher, Resend
from push_agent.refill import BufferRefill, NginxBuffer
from push_agent.settings import Settings, redact_url
from push_agent.state import AgentState
from push_agent.stats import StatsReporter
from push_agent.stream import GapReporter, InstanceStream, retention_gap

log = logging.getLogger(__name__)

BLOCK_MS = 1000
"""XREAD blocks this long: idle agents cost one round trip a second and stop promptly."""

SHUTDOWN_GRACE = 5.0
HEARTBEAT_EVERY = 1.0
HTTP_TIMEOUT = 10.0
REDIS_SOCKET_TIMEOUT = 5.0
CONTROL_CONNECTIONS = 2
"""Stats and keepalive get their own connections so they never delay delivery."""
PIPELINE_DEPTH = 64
"""Requests in flight on each of the ``concurrency`` delivery connections: enough that
every read and write system call carries dozens of messages."""

TRANSIENT = (RedisError, OSError)

T = TypeVar("T")


class Agent:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.stopping = asyncio.Event()
        self.in_batch = False
        self.batch_retried = False
        self.heartbeat = Heartbeat(settings.heartbeat_path)
        self.redis = aioredis.Redis.from_url(
            settings.redis_url,
            socket_timeout=REDIS_SOCKET_TIMEOUT,
            socket_connect_timeout=3.0,
            retry=Retry(NoBackoff(), 0),
            client_name=f"pushaas-agent-{settings.agent_id}",
        )
        nginx = settings.nginx
        self.publish_pool = PipelinePool(nginx.host, nginx.port, settings.concurrency,
                                         HTTP_TIMEOUT)
        self.control_pool = HttpPool(nginx.host, nginx.port, CONTROL_CONNECTIONS, HTTP_TIMEOUT)
        self.control = NchanClient(self.control_pool, nginx.base_path)
        self.stream = InstanceStream(self.redis, settings.instance)
        self.refill = BufferRefill(self.control, self.stream, settings.instance,
                                   settings.buffer_seconds)
        self.cursors = CursorStore(self.redis, settings.instance, settings.agent_id,
                                   settings.cursor_ttl)
        self.gaps = GapReporter(settings.instance, settings.agent_id)
        self.planner = Planner(settings.instance)
        self._last_beat = 0.0

    async def run(self) -> int:
        """Deliver until SIGTERM/SIGINT; returns the process exit code."""
        self._install_signal_handlers()
        try:
            loaded = await self._retry_redis("load cursor", self._load_cursor)
            if loaded is None:
                return 0
            return await self._serve(loaded)
        finally:
            await self._close()

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping instance=%s agent=%s", self.settings.instance,
                     self.settings.agent_id)
        self.stopping.set()

    async def _serve(self, loaded: LoadedCursor) -> int:
        settings = self.settings
        self.state = AgentState(loaded.value)
        requests = PublishRequests(settings.nginx.host, settings.nginx.port,
                                   settings.nginx.base_path)
        self.publisher = Publisher(
            self.publish_pool, requests, settings.instance, PIPELINE_DEPTH,
            on_retry=self._publish_retried, before_resend=self._before_resend,
        )
        log.info(
            "agent started instance=%s agent=%s nginx=%s redis=%s cursor=%s saved_cursor=%s "
            "batch=%d concurrency=%d pipeline_depth=%d loop=%s",
            settings.instance, settings.agent_id, settings.nginx.url,
            redact_url(settings.redis_url), loaded.value, loaded.saved, settings.batch,
            settings.concurrency, PIPELINE_DEPTH,
            type(asyncio.get_running_loop()).__module__.split(".")[0],
        )
        if loaded.saved:
            await self._check_gap(loaded.value)
            await self._refill_at_start(loaded.value)

        background = self._start_background()
        delivery = asyncio.create_task(self._deliver(), name="delivery")
        stop_wait = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({delivery, stop_wait}, return_when=asyncio.FIRST_COMPLETED)

        stop_wait.cancel()
        for task in background:
            task.cancel()
        await asyncio.gather(stop_wait, *background, return_exceptions=True)
        code = await self._finish(delivery)
        log.info(
            "agent stopped instance=%s agent=%s cursor=%s delivered=%d uptime=%.1fs",
            settings.instance, settings.agent_id, self.state.cursor, self.state.delivered,
            self.state.uptime,
        )
        return code

    async def _finish(self, delivery: asyncio.Task) -> int:
        """Let a batch in flight complete within the grace period, then cancel."""
        if not delivery.done() and not self.in_batch:
            delivery.cancel()

        done, _ = await asyncio.wait({delivery}, timeout=SHUTDOWN_GRACE)
        if not done:
            log.warning(
                "batch in flight abandoned at shutdown instance=%s agent=%s cursor=%s "
                "(it will be delivered again on restart)",
                self.settings.instance, self.settings.agent_id, self.state.cursor,
            )
            delivery.cancel()
            await asyncio.gather(delivery, return_exceptions=True)
            return 0

        if not delivery.cancelled() and delivery.exception() is not None:
            log.error("delivery loop crashed instance=%s", self.settings.instance,
                      exc_info=delivery.exception())
            return 1
        return 0

    def _start_background(self) -> list[asyncio.Task]:
        settings = self.settings
        stats = StatsReporter(
            self.redis, self.control, self.stream, self.state, self.gaps, settings.instance,
            settings.agent_id, settings.stats_interval,
        )
        keeper = ChannelKeeper(self.redis, self.control, settings.instance,
                               settings.keepalive_interval)
        return [
            asyncio.create_task(stats.run(), name="stats"),
            asyncio.create_task(keeper.run(), name="keepalive"),
        ]

    async def _deliver(self) -> None:
        """Read, publish, save; a batch is never followed by another before its cursor is saved.

        That ordering bounds the duplicates after a crash to one batch. A batch that nginx
        did not take at once held the agent up, possibly long enough for retention to trim
        entries it has not read yet, so the stream is checked for a gap before going on
        (the periodic stats check cannot see it: it needs nginx, and the agent rushes past
        the gap as soon as nginx is back).
        """
        ahead: asyncio.Task | None = None
        try:
            while not self.stopping.is_set():
                self._beat()
                if ahead is None:
                    entries = await self._retry_redis("read stream", self._reader(None))
                else:
                    entries, ahead = await ahead, None
                if not entries:
                    continue

                last_id = entries[-1][0]
                # The next batch is read while this one is published: reading moves no
                # cursor, and nginx and Redis then work at the same time.
                ahead = asyncio.create_task(
                    self._retry_redis("read stream", self._reader(last_id)), name="read-ahead")
                await self._deliver_batch(entries, last_id)
                if self.batch_retried:
                    await _discard(ahead)
                    ahead = None
                    # The cursor, not last_id: a refill may have rewound it.
                    await self._check_gap(self.state.cursor)
        finally:
            if ahead is not None:
                await _discard(ahead)

    async def _deliver_batch(self, entries: list, last_id: str) -> None:
        self.in_batch = True
        self.batch_retried = False
        try:
            self.state.read_position = last_id
            while (result := await self.publisher.publish_batch(
                    self.planner.plan(entries))) is None:
                if await self._refill_after_failure(entries):
                    return
            save = partial(self.cursors.save, last_id)
            await self._retry_redis("save cursor", save, until_stopped=False)
            self.state.cursor = last_id
            self.state.record_deliveries(result.accepted)
            log.debug("batch delivered instance=%s entries=%d cursor=%s",
                      self.settings.instance, len(entries), last_id)
        finally:
            self.in_batch = False

    def _beat(self) -> None:
        """Touch the heartbeat at most once a second: a busy loop turns hundreds of times."""
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_EVERY:
            self._last_beat = now
            self.heartbeat.beat()

    def _publish_retried(self) -> None:
        self.heartbeat.beat()
        self.batch_retried = True

    async def _before_resend(self) -> Resend:
        """Before resending a failed batch, ask nginx whether it lost its buffer meanwhile.

        Only the rest of the batch would go to a fresh nginx: what the dead one had
        accepted, of this batch and before, would be missing from the new buffer. So the
        batch is abandoned and the buffer window read again. While nginx does not answer,
        nothing is resent: a resend must go to an nginx whose buffer was looked at.
        """
        buffer = await self.refill.nginx_buffer()
        if buffer is NginxBuffer.UNKNOWN:
            return Resend.LATER
        return Resend.ABANDON if buffer is NginxBuffer.LOST else Resend.NOW

    async def _refill_at_start(self, cursor: str) -> None:
        """An agent restarted beside a fresh nginx delivers the buffer window again.

        nginx not answering yet is no verdict: the first failed publish asks again.
        """
        if await self.refill.nginx_buffer() is not NginxBuffer.LOST:
            return

        position = await self._window_start(cursor)
        if position is not None:
            self._rewind(position, "nginx-empty-at-agent-start")

    async def _refill_after_failure(self, entries: list) -> bool:
        """Read again from the buffer window; True when the agent rewound to it.

        When nothing delivered before this batch lies in the window, the fresh nginx only
        lacks this batch, so it is sent again whole from memory (False): reading it again
        from Redis would lose what retention trimmed while nginx was down.
        """
        cursor = self.state.cursor
        position = await self._window_start(cursor)
        if position is None:
            log.warning(
                "resending whole batch to a fresh nginx instance=%s agent=%s entries=%d "
                "cursor=%s", self.settings.instance, self.settings.agent_id, len(entries),
                cursor,
            )
            self.state.count_refill()
            return False

        self._rewind(position, "nginx-empty-after-failed-publish")
        return True

    async def _window_start(self, cursor: str) -> str | None:
        find = partial(self.refill.window_start, cursor)
        return await self._retry_redis("find buffer window", find)

    def _rewind(self, position: str, reason: str) -> None:
        """Deliver again from ``position`` on; the saved cursor follows as batches land."""
        log.warning(
            "refilling nginx buffer instance=%s agent=%s position=%s cursor=%s reason=%s",
            self.settings.instance, self.settings.agent_id, position, self.state.cursor,
            reason,
        )
        self.state.rewind(position)

    def _reader(self, after: str | None) -> Callable[[], Awaitable[list]]:
        """Reads the batch after ``after`` (None: after the cursor, as it is at read time)."""

        async def read() -> list:
            position = self.state.cursor if after is None else after
            return await self.stream.read(position, self.settings.batch, BLOCK_MS)

        return read

    async def _load_cursor(self) -> LoadedCursor:
        loaded = await self.cursors.load(self.settings.buffer_seconds)
        if not loaded.saved:
            return loaded

        # A cursor past the stream's last id (Redis restored from an older snapshot, a
        # failover that lost writes) would skip every entry until the stream caught up.
        info = await self.stream.info()
        if info is not None and streamids.parse(loaded.value) > streamids.parse(info.last_id):
            log.warning(
                "cursor ahead of the stream, starting one buffer back instance=%s agent=%s "
                "cursor=%s last_id=%s", self.settings.instance, self.settings.agent_id,
                loaded.value, info.last_id,
            )
            return self.cursors.window_back(self.settings.buffer_seconds)
        return loaded

    async def _check_gap(self, cursor: str) -> None:
        """Log entries after ``cursor`` that retention trimmed before the agent read them."""
        try:
            info = await self.stream.info()
        except TRANSIENT as exc:
            log.warning("stream info failed instance=%s error=%s", self.settings.instance,
                        describe(exc))
            return
        self.gaps.report(retention_gap(cursor, info))

    async def _retry_redis(
        self, what: str, call: Callable[[], Awaitable[T]], until_stopped: bool = True,
    ) -> T | None:
        """Run ``call`` until Redis answers; None if the agent stops first.

        With ``until_stopped=False`` it keeps trying during shutdown too (the cursor save
        of a finished batch); the shutdown grace period bounds it.
        """
        backoff = Backoff()
        while not (until_stopped and self.stopping.is_set()):
            try:
                return await call()
            except TRANSIENT as exc:
                delay = backoff.next_delay()
                # An error reply is Redis refusing this command (a key of the wrong type,
                # a read-only replica during failover), not Redis being away.
                refused = isinstance(exc, ResponseError)
                log.log(
                    logging.ERROR if refused else logging.WARNING,
                    "redis %s instance=%s operation=%s attempt=%d delay=%.2fs error=%s",
                    "refused the command" if refused else "unavailable",
                    self.settings.instance, what, backoff.attempt, delay, describe(exc),
                )
                self.heartbeat.beat()
                if until_stopped:
                    await self._pause(delay)
                else:
                    await asyncio.sleep(delay)
        return None

    async def _pause(self, seconds: float) -> None:
        """Sleep, waking early when the agent is told to stop."""
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            pass

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)

    async def _close(self) -> None:
        started = time.monotonic()
        await self.publish_pool.close()
        await self.control_pool.close()
        try:
            await self.redis.aclose()
        except TRANSIENT as exc:
            log.debug("redis close failed error=%r", exc)
        self.heartbeat.remove()
        log.debug("connections closed in %.3fs", time.monotonic() - started)


async def _discard(task: asyncio.Task) -> None:
    """Cancel a read-ahead whose batch is not wanted (after a retry the gap check comes first)."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (the container has it): its transports cost less per message."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
