"""Helpers for tests that drive the Chalice app in-process with chalice.test.Client."""

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from chalice.test import Client

from chalicelib import services
from chalicelib.instances import Instance
from chalicelib.job_queue import RedisJobQueue
from chalicelib.jobs import run_job
from chalicelib.plans import Plan
from chalicelib.provisioner import Placement, ProvisionError

BROKER_PASSWORD = "broker-secret-for-tests"
MASTER_KEY = "m" * 48


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


BROKER = basic("pushaas", BROKER_PASSWORD)
FORM = {**BROKER, "Content-Type": "application/x-www-form-urlencoded"}
JSON = {**BROKER, "Content-Type": "application/json"}


@dataclass
class FakeProvisioner:
    """Stands in for a provisioner where the delivery tier is not what is under test."""

    fail_with: str | None = None
    ready: bool = True
    calls: list[tuple[str, str]] = field(default_factory=list)

    def provision(self, instance: Instance, plan: Plan) -> Placement:
        self.calls.append(("provision", instance.name))
        if self.fail_with:
            raise ProvisionError(self.fail_with)
        return Placement(f"http://127.0.0.1:1/{instance.name}", ready=self.ready)

    def scale(self, instance: Instance, plan: Plan) -> None:
        self.calls.append(("scale", instance.name))

    def deprovision(self, instance: Instance) -> None:
        self.calls.append(("deprovision", instance.name))


@dataclass
class JobContext:
    store: object
    plans: dict
    provisioner: object


def drain_jobs(provisioner: object) -> int:
    """Run every queued job with ``provisioner``, as the local runner would."""
    svc = services.current()
    queue = RedisJobQueue(svc.redis)
    ctx = JobContext(svc.store, svc.plans, provisioner)
    ran = 0
    while (taken := queue.take(0.01)) is not None:
        raw, job = taken
        assert job is not None, raw
        run_job(job, ctx)
        queue.done(raw)
        ran += 1
    return ran


@pytest.fixture
def client(redis_client, redis_server, monkeypatch) -> Iterator[Client]:
    monkeypatch.setenv("PUSHAAS_REDIS_URL", redis_server.url)
    monkeypatch.setenv("PUSHAAS_MASTER_KEY", MASTER_KEY)
    monkeypatch.setenv("PUSHAAS_BROKER_PASSWORD", BROKER_PASSWORD)
    monkeypatch.setenv("PUSHAAS_ENDPOINT", "http://pushaas.test")
    services.current.cache_clear()

    import app

    with Client(app.app, stage_name="local") as test_client:
        yield test_client
    services.current.cache_clear()


def body(response) -> object:
    return json.loads(response.body) if response.body else None


def running_instance(client: Client, name: str = "mypush", plan: str = "small") -> dict:
    """Create an instance, run its provisioning job, bind an app; returns the env vars."""
    created = client.http.post("/resources", headers=FORM,
                               body=f"name={name}&plan={plan}&team=t&user=u@x")
    assert created.status_code == 201, created.body
    drain_jobs(FakeProvisioner())
    bound = client.http.post(f"/resources/{name}/bind-app", headers=FORM,
                             body="app-name=myapp&app-host=myapp.example.com")
    assert bound.status_code == 201, bound.body
    return body(bound)
