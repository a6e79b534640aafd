"""The local runner: plays SQS and Lambda's job handler for the local stack.

It takes jobs from the Redis job queue and runs them with the same ``run_job`` the SQS
handler uses, with the ``local`` provisioner. A job that raises is retried a few times
and then buried in the dead letters with its instance marked failed, as an SQS
redrive policy would. On start it requeues the jobs a killed runner left unfinished and
brings back the instances that were running.

    python -m pushaas_local.runner    (needs PUSHAAS_STATE_DIR and the app's settings)
"""

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import redis

from chalicelib import settings as app_settings
from chalicelib.errors import ConfigError
from chalicelib.instances import InstanceStore, Status
from chalicelib.job_queue import RedisJobQueue
from chalicelib.jobs import Job, fail_job, run_job
from chalicelib.plans import Plan, load_plans
from pushaas_local.provisioner import LocalProvisioner

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
TAKE_TIMEOUT = 1.0
REDIS_RETRY_DELAY = 1.0


@dataclass
class LocalContext:
    """The JobContext of local mode."""

    store: InstanceStore
    plans: dict[str, Plan]
    provisioner: LocalProvisioner


class Runner:
    """Consumes the job queue until asked to stop; one job at a time."""

    def __init__(self, queue: RedisJobQueue, ctx: LocalContext, attempts: int,
                 retry_delay: float = 1.0):
        self.queue = queue
        self.ctx = ctx
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.stopping = threading.Event()

    def start(self) -> None:
        """Requeue unfinished jobs, then restore the instances that were running."""
        self.queue.recover()

        running = [i for i in self.ctx.store.readable() if i.status is Status.RUNNING]
        report = self.ctx.provisioner.restore(running, self.ctx.plans)
        for name, placement in report.placements.items():
            self.ctx.store.update(name, push_stream_url=placement.push_stream_url)
        for name, reason in report.failures.items():
            log.error("instance not restored instance=%s reason=%s", name, reason)
            self.ctx.store.set_status(name, Status.FAILED, f"restore failed: {reason}")

    def serve(self) -> None:
        """Run jobs until ``stopping`` is set; the job in hand is always finished."""
        log.info("runner started attempts=%d", self.attempts)
        while not self.stopping.is_set():
            try:
                self.run_once(TAKE_TIMEOUT)
            except redis.ConnectionError as exc:
                log.error("redis unavailable, retrying error=%s", exc)
                self.stopping.wait(REDIS_RETRY_DELAY)
        log.info("runner stopping")

    def run_once(self, timeout: float) -> bool:
        """Take and handle one job; False when the queue stayed empty for ``timeout``."""
        taken = self.queue.take(timeout)
        if taken is None:
            return False

        raw, job = taken
        if job is None:
            self.queue.bury(raw)
            return True

        try:
            run_job(job, self.ctx)
        except Exception as exc:
            self._failed(raw, job, exc)
        else:
            self.queue.done(raw)
        return True

    def _failed(self, raw: str, job: Job, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if job.attempt < self.attempts:
            delay = self.retry_delay * job.attempt
            log.warning("job error, will retry job=%s kind=%s instance=%s attempt=%d "
                        "retries_left=%d delay=%.1fs error=%s", job.id, job.kind.value,
                        job.instance, job.attempt, self.attempts - job.attempt, delay, reason)
            # A stop request cuts the wait short; the job is requeued either way.
            self.stopping.wait(delay)
            self.queue.retry(raw, job)
            return

        log.error("job error, giving up job=%s kind=%s instance=%s attempt=%d",
                      job.id, job.kind.value, job.instance, job.attempt, exc_info=exc)
        fail_job(job, self.ctx, reason)
        self.queue.bury(raw)


def build(env: dict[str, str] | None = None) -> tuple[Runner, LocalProvisioner]:
    """A runner and its provisioner from the app's settings plus PUSHAAS_STATE_DIR."""
    env = dict(os.environ if env is None else env)
    settings = app_settings.from_env(env)
    state_dir = env.get("PUSHAAS_STATE_DIR", "").strip()
    if not state_dir:
        raise ConfigError("PUSHAAS_STATE_DIR must be set")

    redis_url = settings.redis_url.reveal()
    client = redis.Redis.from_url(redis_url, decode_responses=True,
                                  socket_timeout=settings.redis_timeout + TAKE_TIMEOUT + 1)
    # The master key lets the provisioner derive each instance's subscribe key for its
    # authorizers; it never leaves this process.
    provisioner = LocalProvisioner(REPO_ROOT, Path(state_dir), redis_url,
                                   master_key=settings.master_key.reveal())
    ctx = LocalContext(InstanceStore(client), load_plans(settings.plans_file), provisioner)
    return Runner(RedisJobQueue(client), ctx, settings.job_attempts), provisioner


def main() -> int:
    logging.basicConfig(level=os.environ.get("PUSHAAS_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        runner, provisioner = build()
    except ConfigError as exc:
        log.error("bad configuration: %s", exc)
        return 2

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received signal=%s", signal.Signals(signum).name)
        runner.stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    started = time.monotonic()
    try:
        runner.start()
        runner.serve()
    finally:
        provisioner.close()
    log.info("runner stopped uptime=%.0fs", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
