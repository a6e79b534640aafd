"""The scheduled reconciler: repairs drift between Redis and what ECS runs.

Events can be missed and people edit things by hand. Every minute the reconciler
compares each instance's record with its ECS service and converges: a service deleted
behind our back is recreated, a desired count off-plan is corrected, a pending instance
whose tasks run is marked running, a removal that never finished is finished. It also
trims expired channels and silent agents from their indexes. One instance's failure
is logged and never stops the others.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import redis

from chalicelib import keys
from chalicelib.instances import Instance, InstanceStore, Status, is_valid_name
from chalicelib.plans import Plan
from chalicelib.provisioner import Provisioner

log = logging.getLogger(__name__)

SETTLE_SECONDS = 120
"""Leave alone instances changed this recently: their own job may still be running."""

AGENT_SILENCE_SECONDS = 120

CONVERGE_EVERY_SECONDS = 900
"""A full convergence of each healthy instance this often rolls out new images and settings:
it registers a new task definition only when what is wanted differs."""


class ServiceState(Protocol):
    exists: bool
    desired: int
    running: int


class Inspectable(Provisioner, Protocol):
    def describe(self, instance: Instance) -> ServiceState: ...


@dataclass
class Report:
    checked: int = 0
    repairs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Reconciler:
    def __init__(self, store: InstanceStore, plans: dict[str, Plan],
                 provisioner: Inspectable, now: Callable[[], float] = time.time):
        self.store = store
        self.plans = plans
        self.provisioner = provisioner
        self.now = now

    def run(self) -> Report:
        report = Report()
        for name in self.store.names():
            report.checked += 1
            try:
                self._housekeeping(name)
                self._reconcile(name, report)
            except Exception as exc:
                log.exception("reconcile failed instance=%s", name)
                report.errors.append(f"{name}: {type(exc).__name__}")

        log.info("reconciled instances=%d repairs=%d errors=%d",
                 report.checked, len(report.repairs), len(report.errors))
        return report

    def _reconcile(self, name: str, report: Report) -> None:
        if not is_valid_name(name):
            log.warning("dropping an invalid name from the instance set name=%r", name)
            self.store.forget_invalid_name(name)
            report.repairs.append(f"{name!r}: dropped an invalid instance name")
            return

        instance = self.store.find(name)
        if instance is None:
            self.store.purge(name)
            report.repairs.append(f"{name}: dropped a name without a record")
            return
        if self.now() - instance.updated < SETTLE_SECONDS:
            return

        if instance.status is Status.REMOVING:
            self.provisioner.deprovision(instance)
            self.store.purge(name)
            self._repaired(report, name, "finished an interrupted removal")
            return
        if instance.status not in (Status.PENDING, Status.RUNNING):
            return

        plan = self.plans.get(instance.plan)
        if plan is None:
            log.error("instance has an unknown plan instance=%s plan=%s", name, instance.plan)
            return
        self._converge(instance, plan, report)

    def _converge(self, instance: Instance, plan: Plan, report: Report) -> None:
        name = instance.name
        state = self.provisioner.describe(instance)
        if not state.exists:
            placement = self.provisioner.provision(instance, plan)
            self.store.update(name, status=Status.PENDING,
                              push_stream_url=placement.push_stream_url,
                              reason="service was missing and has been recreated")
            self._repaired(report, name, "recreated a missing service")
            self.store.mark_converged(name, self.now())
            return

        if state.desired != plan.replicas:
            self.provisioner.scale(instance, plan)
            self._repaired(report, name, f"desired count {state.desired} -> {plan.replicas}")
            self.store.mark_converged(name, self.now())
        elif self.now() - self.store.converged_at(name) > CONVERGE_EVERY_SECONDS:
            self.provisioner.scale(instance, plan)
            self.store.mark_converged(name, self.now())
            log.info("periodic convergence instance=%s", name)

        if instance.status is Status.PENDING and state.running > 0:
            self.store.set_status(name, Status.RUNNING)
            self._repaired(report, name, "marked running (missed task event)")
        elif instance.status is Status.RUNNING and state.running == 0:
            log.warning("instance has no running task instance=%s desired=%d",
                        name, state.desired)

    def _repaired(self, report: Report, name: str, what: str) -> None:
        log.warning("drift repaired instance=%s repair=%s", name, what)
        report.repairs.append(f"{name}: {what}")

    def _housekeeping(self, name: str) -> None:
        """Trim indexes that only grow otherwise: expired channels and silent agents."""
        client: redis.Redis = self.store.redis
        now = self.now()
        pipe = client.pipeline(transaction=False)
        pipe.zremrangebyscore(keys.channel_index(name), "-inf", now)
        pipe.zremrangebyscore(keys.agents(name), "-inf", now - AGENT_SILENCE_SECONDS)
        pipe.execute()
