"""The local runner: jobs from the Redis queue, retries, dead letters, recovery."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from chalicelib import keys
from chalicelib.instances import Instance, InstanceStore, Status
from chalicelib.job_queue import RedisJobQueue
from chalicelib.jobs import Job, Kind
from chalicelib.plans import load_plans
from pushaas_local.runner import LocalContext, Runner
from tests.servers import RedisServer

pytestmark = pytest.mark.timeout(30)

MASTER_KEY = "k" * 40


class RunnerProcess:
    """``python -m pushaas_local.runner`` (or another script) as a child of the test."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        with open(log_path, "ab") as log_file:
            self.proc = subprocess.Popen(args, env=env, cwd=Path(__file__).parent.parent,
                                         stdout=log_file, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 20.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def runner_env(redis_server: RedisServer, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PUSHAAS_REDIS_URL": redis_server.url,
        "PUSHAAS_MASTER_KEY": MASTER_KEY,
        "PUSHAAS_BROKER_PASSWORD": "broker-secret",
        "PUSHAAS_STATE_DIR": str(tmp_path / "state"),
        "PUSHAAS_JOB_ATTEMPTS": "3",
    }


@pytest.fixture
def start_runner(runner_env: dict[str, str],
                 tmp_path: Path) -> Iterator[Callable[..., RunnerProcess]]:
    started: list[RunnerProcess] = []

    def start(*args: str) -> RunnerProcess:
        command = list(args) or ["-m", "pushaas_local.runner"]
        runner = RunnerProcess([sys.executable, *command], runner_env, tmp_path / "runner.log")
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.kill()


def wait_until(condition: Callable[[], object], what: str, runner: RunnerProcess | None = None,
               timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if runner is not None and runner.proc.poll() is not None:
            raise AssertionError(f"runner exited while waiting for {what}:\n{runner.output()}")
        if time.monotonic() >= deadline:
            output = runner.output() if runner else ""
            raise AssertionError(f"timed out waiting for {what}\n{output}")
        time.sleep(0.05)


def status(store: InstanceStore, name: str) -> Status | None:
    instance = store.find(name)
    return instance.status if instance else None


def serves(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def run_dir_processes(state_dir: Path) -> list[int]:
    """Processes whose command line or environment names the state dir."""
    found = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            blob = (proc_dir / "cmdline").read_bytes() + (proc_dir / "environ").read_bytes()
            state = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(state_dir).encode() in blob and state != "Z" and b"pushaas_local.runner" not in blob:
            found.append(int(proc_dir.name))
    return found


def test_runner_process_runs_jobs_and_restores_instances(
        start_runner: Callable[..., RunnerProcess], redis_client: redis.Redis,
        tmp_path: Path) -> None:
    store = InstanceStore(redis_client)
    queue = RedisJobQueue(redis_client)
    store.create(Instance(name="mypush", plan="small"))
    runner = start_runner()

    queue.send(Job(Kind.PROVISION, "mypush"))
    wait_until(lambda: status(store, "mypush") is Status.RUNNING, "the instance to run", runner)
    url = store.get("mypush").push_stream_url
    assert serves(url)
    assert redis_client.llen(keys.JOBS_PROCESSING) == 0

    assert runner.terminate() == 0
    assert not serves(url)
    assert run_dir_processes(tmp_path / "state") == []

    again = start_runner()
    wait_until(lambda: serves(url), "the instance to come back on the same URL", again)
    queue.send(Job(Kind.DEPROVISION, "mypush"))
    wait_until(lambda: store.find("mypush") is None, "the instance to be removed", again)
    assert not serves(url)
    assert again.terminate() == 0
    assert run_dir_processes(tmp_path / "state") == []


def test_a_killed_runner_leaves_nothing_behind_after_a_restart(
        start_runner: Callable[..., RunnerProcess], redis_client: redis.Redis,
        tmp_path: Path) -> None:
    store = InstanceStore(redis_client)
    store.create(Instance(name="mypush", plan="small"))
    runner = start_runner()
    RedisJobQueue(redis_client).send(Job(Kind.PROVISION, "mypush"))
    wait_until(lambda: status(store, "mypush") is Status.RUNNING, "the instance to run", runner)
    url = store.get("mypush").push_stream_url
    orphans = run_dir_processes(tmp_path / "state")

    runner.kill()

    # Children live in their own sessions: they outlive a runner killed with SIGKILL...
    assert serves(url)
    again = start_runner()
    wait_until(lambda: not set(orphans) & set(run_dir_processes(tmp_path / "state")),
               "the leftovers to be stopped", again)
    # ...until the next runner stops them and starts the instance again on the same URL.
    wait_until(lambda: serves(url), "the instance to come back", again)
    assert store.get("mypush").push_stream_url == url
    assert again.terminate() == 0


class FailingProvisioner:
    """Raises something a provisioner does not promise, as a bug or an outage would."""

    def __init__(self) -> None:
        self.calls = 0

    def provision(self, instance: Instance, plan: object) -> None:
        self.calls += 1
        raise RuntimeError("docker daemon on fire")


def test_a_failing_job_is_retried_then_buried(redis_client: redis.Redis) -> None:
    store = InstanceStore(redis_client)
    queue = RedisJobQueue(redis_client)
    failing = FailingProvisioner()
    ctx = LocalContext(store, load_plans(), failing)  # type: ignore[arg-type]
    runner = Runner(queue, ctx, attempts=3, retry_delay=0)
    store.create(Instance(name="mypush", plan="small"))
    queue.send(Job(Kind.PROVISION, "mypush"))

    handled = 0
    while runner.run_once(0.1):
        handled += 1
        assert handled <= 3

    assert failing.calls == 3
    instance = store.get("mypush")
    assert instance.status is Status.FAILED
    assert "docker daemon on fire" in instance.reason
    dead = [Job.from_json(raw) for raw in redis_client.lrange(keys.JOBS_DEAD, 0, -1)]
    assert [(job.kind, job.instance, job.attempt) for job in dead] == [
        (Kind.PROVISION, "mypush", 3)]
    assert redis_client.llen(keys.JOBS_PROCESSING) == 0
    assert redis_client.llen(keys.JOBS) == 0


def test_a_malformed_job_is_buried(redis_client: redis.Redis) -> None:
    queue = RedisJobQueue(redis_client)
    failing = FailingProvisioner()
    ctx = LocalContext(InstanceStore(redis_client), load_plans(), failing)  # type: ignore[arg-type]
    redis_client.lpush(keys.JOBS, "{not json")

    assert Runner(queue, ctx, attempts=3).run_once(0.1)

    assert redis_client.lrange(keys.JOBS_DEAD, 0, -1) == ["{not json"]
    assert redis_client.llen(keys.JOBS_PROCESSING) == 0


# A runner whose provisioner hangs, so the test can kill it in the middle of a job.
HANGING_RUNNER = textwrap.dedent("""
    import os, time
    import redis
    from chalicelib.instances import InstanceStore
    from chalicelib.job_queue import RedisJobQueue
    from chalicelib.plans import load_plans
    from pushaas_local.runner import LocalContext, Runner

    client = redis.Redis.from_url(os.environ["PUSHAAS_REDIS_URL"], decode_responses=True)

    class Hanging:
        def provision(self, instance, plan):
            client.set("test:hanging", instance.name)
            time.sleep(60)

    ctx = LocalContext(InstanceStore(client), load_plans(), Hanging())
    Runner(RedisJobQueue(client), ctx, attempts=3).serve()
""")


def test_a_job_of_a_killed_runner_is_recovered(start_runner: Callable[..., RunnerProcess],
                                               redis_client: redis.Redis) -> None:
    store = InstanceStore(redis_client)
    store.create(Instance(name="mypush", plan="small"))
    RedisJobQueue(redis_client).send(Job(Kind.PROVISION, "mypush"))
    hanging = start_runner("-c", HANGING_RUNNER)
    wait_until(lambda: redis_client.get("test:hanging"), "the job to start", hanging)

    hanging.kill()

    assert redis_client.llen(keys.JOBS_PROCESSING) == 1
    runner = start_runner()
    wait_until(lambda: status(store, "mypush") is Status.RUNNING, "the recovered job", runner)
    assert redis_client.llen(keys.JOBS_PROCESSING) == 0
    assert redis_client.llen(keys.JOBS) == 0
    assert serves(store.get("mypush").push_stream_url)
    assert runner.terminate() == 0
