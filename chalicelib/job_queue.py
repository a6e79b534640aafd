"""The Redis-backed job queue that plays SQS's part in local mode.

Jobs move atomically from the queue to a processing list while they run (LMOVE), so a
runner killed mid-job finds them again on restart: nothing is lost between the broker's
201 and the job's end. A job that keeps failing lands in a dead-letter list.
"""

import logging

import redis

from chalicelib import keys
from chalicelib.jobs import Job

log = logging.getLogger(__name__)


class RedisJobQueue:
    def __init__(self, client: redis.Redis):
        self.redis = client

    def send(self, job: Job) -> None:
        self.redis.lpush(keys.JOBS, job.to_json())
        log.info("job queued job=%s kind=%s instance=%s", job.id, job.kind.value, job.instance)

    def take(self, timeout: float) -> tuple[str, Job | None] | None:
        """Next raw job (kept in the processing list until ``done``), or None on timeout.

        A malformed entry is returned with ``None`` so the caller can drop it loudly.
        """
        raw = self.redis.blmove(keys.JOBS, keys.JOBS_PROCESSING, timeout, "RIGHT", "LEFT")
        if raw is None:
            return None

        try:
            return raw, Job.from_json(raw)
        except ValueError as exc:
            log.error("dropping malformed job error=%s", exc)
            return raw, None

    def done(self, raw: str) -> None:
        self.redis.lrem(keys.JOBS_PROCESSING, 1, raw)

    def retry(self, raw: str, job: Job) -> None:
        """Put a failed job back with its attempt counted (atomically with removal)."""
        pipe = self.redis.pipeline()
        pipe.lrem(keys.JOBS_PROCESSING, 1, raw)
        pipe.lpush(keys.JOBS, job.retried().to_json())
        pipe.execute()

    def bury(self, raw: str) -> None:
        """Move a job that failed every attempt (or is malformed) to the dead letters."""
        pipe = self.redis.pipeline()
        pipe.lrem(keys.JOBS_PROCESSING, 1, raw)
        pipe.lpush(keys.JOBS_DEAD, raw)
        pipe.execute()

    def recover(self) -> int:
        """Requeue jobs a previous runner took and never finished; returns how many."""
        moved = 0
        while self.redis.lmove(keys.JOBS_PROCESSING, keys.JOBS, "RIGHT", "RIGHT"):
            moved += 1
        if moved:
            log.warning("requeued unfinished jobs count=%d", moved)
        return moved
