"""ECS task events, SQS job deliveries and the reconciler, against real Redis.

The provisioner here is a recording fake: these tests are about what the events, the
job transport and the reconciler decide. The ECS provisioner has its own moto tests.
"""

import time
from dataclasses import dataclass

import pytest

from chalicelib import ecs_events, keys
from chalicelib.instances import Instance, InstanceStore, Status
from chalicelib.jobs import Job, Kind
from chalicelib.plans import load_plans
from chalicelib.reconciler import Reconciler
from chalicelib.sqs_queue import handle_delivery
from tests.api import FakeProvisioner


@dataclass
class State:
    exists: bool = True
    desired: int = 1
    running: int = 1


class Inspectable(FakeProvisioner):
    def __init__(self, states: dict[str, State], fail_for: str = ""):
        super().__init__()
        self.states = states
        self.fail_for = fail_for

    def describe(self, instance: Instance) -> State:
        if instance.name == self.fail_for:
            raise RuntimeError("AWS throttled")
        return self.states.get(instance.name, State(exists=False))

    @staticmethod
    def instance_for_group(group: str) -> str | None:
        prefix = "service:pushaas-"
        return group.removeprefix(prefix) if group.startswith(prefix) else None


class SlowProvisioner(FakeProvisioner):
    def provision(self, instance: Instance, plan: object) -> None:
        raise TimeoutError("ECS slow")


@dataclass
class Context:
    store: InstanceStore
    plans: dict
    provisioner: object


@pytest.fixture
def store(redis_client) -> InstanceStore:
    return InstanceStore(redis_client)


def add(store: InstanceStore, name: str, status: Status, age: float = 600.0) -> None:
    store.create(Instance(name=name, plan="small"))
    store.update(name, status=status)
    store.redis.hset(keys.instance(name), "updated", str(time.time() - age))
    store.mark_converged(name, time.time() - 60)


def event(name: str, status: str, started: bool = False, **extra: object) -> dict:
    detail = {"group": f"service:pushaas-{name}", "lastStatus": status,
              "taskArn": "arn:aws:ecs:us-east-1:1:task/c/abc123", **extra}
    if started:
        detail["startedAt"] = "2026-12-03T10:00:00Z"
    return detail


def apply(store: InstanceStore, detail: object) -> None:
    change = ecs_events.parse(detail, Inspectable.instance_for_group)
    if change is not None:
        ecs_events.apply(change, store)


def test_running_task_makes_a_pending_instance_running(store):
    add(store, "a", Status.PENDING)

    apply(store, event("a", "PROVISIONING"))
    assert store.get("a").status is Status.PENDING
    apply(store, event("a", "RUNNING", started=True))

    assert store.get("a").status is Status.RUNNING


def test_task_stopped_before_running_fails_the_instance_with_the_reason(store):
    add(store, "a", Status.PENDING)

    apply(store, event("a", "STOPPED", stoppedReason="CannotPullContainerError: no image",
                       containers=[{"name": "push-agent", "reason": "exit 2"}]))

    instance = store.get("a")
    assert instance.status is Status.FAILED
    assert "CannotPullContainerError" in instance.reason and "push-agent: exit 2" in instance.reason


def test_later_task_deaths_are_counted_not_failed(store):
    add(store, "a", Status.RUNNING)

    apply(store, event("a", "STOPPED", started=True, stoppedReason="Essential container exited"))
    apply(store, event("a", "STOPPED", started=True))

    assert store.get("a").status is Status.RUNNING
    assert store.task_deaths("a") == 2


@pytest.mark.parametrize("detail", [None, [], {"lastStatus": "RUNNING"}, {"group": 3},
                                    {"group": "service:other", "lastStatus": "RUNNING"},
                                    {"group": "service:pushaas-ghost", "lastStatus": "RUNNING"}])
def test_malformed_or_foreign_events_change_nothing(store, detail):
    add(store, "a", Status.PENDING)

    apply(store, detail)

    assert store.get("a").status is Status.PENDING
    assert store.find("ghost") is None


def test_removing_instances_ignore_events(store):
    add(store, "a", Status.REMOVING)

    apply(store, event("a", "RUNNING", started=True))

    assert store.get("a").status is Status.REMOVING


def test_sqs_job_retries_then_fails_on_the_last_delivery(store):
    add(store, "a", Status.PENDING)
    ctx = Context(store, load_plans(), SlowProvisioner())
    body = Job(Kind.PROVISION, "a").to_json()

    with pytest.raises(TimeoutError):
        handle_delivery(body, 1, ctx, attempts=3)
    assert store.get("a").status is Status.PENDING

    with pytest.raises(TimeoutError):
        handle_delivery(body, 3, ctx, attempts=3)
    instance = store.get("a")
    assert instance.status is Status.FAILED and "ECS slow" in instance.reason


def test_sqs_job_runs_and_a_malformed_one_raises(store):
    add(store, "a", Status.PENDING)
    ctx = Context(store, load_plans(), FakeProvisioner())

    handle_delivery(Job(Kind.PROVISION, "a").to_json(), 1, ctx, attempts=3)
    assert store.get("a").status is Status.RUNNING

    with pytest.raises(ValueError):
        handle_delivery('{"kind": "explode"}', 1, ctx, attempts=3)


def test_reconciler_repairs_drift(store):
    for name, status in [("deleted", Status.RUNNING), ("offplan", Status.RUNNING),
                         ("missed", Status.PENDING), ("fine", Status.RUNNING),
                         ("stuck", Status.REMOVING)]:
        add(store, name, status)
    add(store, "fresh", Status.PENDING, age=1)
    provisioner = Inspectable({"offplan": State(desired=3), "missed": State(running=1),
                               "fine": State(), "stuck": State()})

    report = Reconciler(store, load_plans(), provisioner).run()

    assert ("provision", "deleted") in provisioner.calls
    assert store.get("deleted").status is Status.PENDING
    assert "recreated" in store.get("deleted").reason
    assert ("scale", "offplan") in provisioner.calls
    assert store.get("missed").status is Status.RUNNING
    assert ("deprovision", "stuck") in provisioner.calls and store.find("stuck") is None
    assert not any(name in ("fine", "fresh") for _, name in provisioner.calls)
    assert len(report.repairs) == 4 and report.errors == []


def test_reconciler_goes_on_after_one_instance_fails(store):
    add(store, "broken", Status.RUNNING)
    add(store, "deleted", Status.RUNNING)
    provisioner = Inspectable({}, fail_for="broken")

    report = Reconciler(store, load_plans(), provisioner).run()

    assert report.errors == ["broken: RuntimeError"]
    assert ("provision", "deleted") in provisioner.calls


def test_reconciler_trims_expired_channels_and_silent_agents(store):
    add(store, "a", Status.RUNNING)
    store.redis.zadd(keys.channel_index("a"), {"old": time.time() - 1, "live": "+inf"})
    store.redis.zadd(keys.agents("a"), {"gone": time.time() - 3600, "here": time.time()})

    Reconciler(store, load_plans(), Inspectable({"a": State()})).run()

    assert store.redis.zrange(keys.channel_index("a"), 0, -1) == ["live"]
    assert store.redis.zrange(keys.agents("a"), 0, -1) == ["here"]


def test_reconciler_converges_each_instance_periodically(store):
    add(store, "stale", Status.RUNNING)
    add(store, "recent", Status.RUNNING)
    store.mark_converged("stale", time.time() - 3600)
    provisioner = Inspectable({"stale": State(), "recent": State()})

    Reconciler(store, load_plans(), provisioner).run()

    assert provisioner.calls == [("scale", "stale")]
    assert time.time() - store.converged_at("stale") < 5


@pytest.mark.parametrize("name", ["*", "[a]", "a?", "A"])
def test_an_invalid_name_never_becomes_a_key_pattern(store, name):
    """A corrupted set member or job naming ``*`` would, as a SCAN glob, match every
    instance's keys: the reconciler drops the member, jobs and purge refuse it."""
    add(store, "a", Status.RUNNING)
    store.redis.sadd(keys.INSTANCES, name)
    kept = sorted(store.redis.keys("*{a}*"))

    report = Reconciler(store, load_plans(), Inspectable({"a": State()})).run()

    assert sorted(store.redis.keys("*{a}*")) == kept and store.get("a")
    assert not store.redis.sismember(keys.INSTANCES, name)
    assert report.errors == [] and len(report.repairs) == 1
    with pytest.raises(ValueError, match="invalid instance name"):
        Job.from_json(f'{{"kind": "deprovision", "instance": "{name}", "id": "1"}}')
    with pytest.raises(ValueError, match="invalid instance name"):
        store.purge(name)
    assert sorted(store.redis.keys("*{a}*")) == kept


@pytest.mark.parametrize("raw", ['{"kind": "provision", "instance": "a", "id": "1", '
                                 '"attempt": 1e999}',
                                 '{"kind": "provision", "instance": "a", "id": "1", '
                                 '"attempt": "x"}'])
def test_a_job_with_an_impossible_attempt_is_malformed(raw):
    with pytest.raises(ValueError, match="malformed job"):
        Job.from_json(raw)


def test_odd_containers_and_a_huge_reason_are_handled(store):
    add(store, "a", Status.PENDING)
    add(store, "b", Status.PENDING)

    apply(store, event("a", "STOPPED", stoppedReason="x" * 300_000, containers=5))
    apply(store, event("b", "STOPPED", containers="oops"))

    reason = store.get("a").reason
    assert store.get("a").status is Status.FAILED and len(reason) < 1100
    assert reason.endswith("…")
    assert store.get("b").reason == "task stopped before running: no reason given"
