"""Provision, scale and deprovision jobs, and the code that runs them.

The broker answers Tsuru at once and leaves the slow work to a job. On AWS jobs travel
through SQS; locally through a Redis list consumed by the local runner. Both call
``run_job`` with the same provisioner interface, so one code path is tested for both.
Each job is idempotent: it reads the instance's current record and converges.
"""

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Protocol

from chalicelib.instances import InstanceStore, Status, is_valid_name
from chalicelib.plans import Plan
from chalicelib.provisioner import Provisioner, ProvisionError

log = logging.getLogger(__name__)


class Kind(StrEnum):
    PROVISION = "provision"
    SCALE = "scale"
    DEPROVISION = "deprovision"


@dataclass(frozen=True)
class Job:
    kind: Kind
    instance: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    attempt: int = 1

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "kind": self.kind.value})

    @classmethod
    def from_json(cls, raw: str) -> "Job":
        """Parse a queued job; ValueError for anything that is not a job we know."""
        try:
            data = json.loads(raw)
            job = cls(
                kind=Kind(data["kind"]),
                instance=str(data["instance"]),
                id=str(data["id"]),
                attempt=int(data.get("attempt", 1)),
            )
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            raise ValueError(f"malformed job: {exc}") from None

        # Instance names end up in key patterns: only a valid name makes a job.
        if not is_valid_name(job.instance):
            raise ValueError(f"malformed job: invalid instance name {job.instance!r}")
        return job

    def retried(self) -> "Job":
        return Job(kind=self.kind, instance=self.instance, id=self.id, attempt=self.attempt + 1)


class JobQueue(Protocol):
    def send(self, job: Job) -> None: ...


class JobContext(Protocol):
    """What a job needs: the store, the plans and a provisioner."""

    store: InstanceStore
    plans: dict[str, Plan]
    provisioner: Provisioner


def run_job(job: Job, ctx: JobContext) -> None:
    """Run one job to completion; raises to ask the transport for a retry."""
    started = time.monotonic()
    log.info("job started job=%s kind=%s instance=%s attempt=%d",
             job.id, job.kind.value, job.instance, job.attempt)

    handler = {Kind.PROVISION: _provision, Kind.SCALE: _scale, Kind.DEPROVISION: _deprovision}
    handler[job.kind](job, ctx)

    log.info("job finished job=%s kind=%s instance=%s elapsed=%.2fs",
             job.id, job.kind.value, job.instance, time.monotonic() - started)


def fail_job(job: Job, ctx: JobContext, reason: str) -> None:
    """Record that a job gave up, so the user reads why in status and info."""
    log.error("job failed for good job=%s kind=%s instance=%s reason=%s",
              job.id, job.kind.value, job.instance, reason)
    instance = ctx.store.find(job.instance)
    if instance is None or job.kind is Kind.DEPROVISION:
        return
    ctx.store.set_status(job.instance, Status.FAILED, f"{job.kind.value} failed: {reason}")


def _provision(job: Job, ctx: JobContext) -> None:
    instance = ctx.store.find(job.instance)
    if instance is None or instance.status is Status.REMOVING:
        log.info("job skipped job=%s instance=%s reason=gone", job.id, job.instance)
        return

    plan = ctx.plans[instance.plan]
    try:
        placement = ctx.provisioner.provision(instance, plan)
    except ProvisionError as exc:
        ctx.store.set_status(instance.name, Status.FAILED, str(exc))
        log.error("provision failed job=%s instance=%s reason=%s", job.id, instance.name, exc)
        return

    changes: dict[str, object] = {"push_stream_url": placement.push_stream_url}
    if placement.ready:
        changes.update(status=Status.RUNNING, reason="")
    ctx.store.update(instance.name, **changes)


def _scale(job: Job, ctx: JobContext) -> None:
    instance = ctx.store.find(job.instance)
    if instance is None or instance.status is Status.REMOVING:
        return

    try:
        ctx.provisioner.scale(instance, ctx.plans[instance.plan])
    except ProvisionError as exc:
        ctx.store.set_status(instance.name, Status.FAILED, str(exc))


def _deprovision(job: Job, ctx: JobContext) -> None:
    instance = ctx.store.find_for_removal(job.instance)
    if instance is None:
        ctx.store.purge(job.instance)
        return

    ctx.provisioner.deprovision(instance)
    deleted = ctx.store.purge(instance.name)
    log.info("instance removed job=%s instance=%s keys=%d", job.id, instance.name, deleted)
