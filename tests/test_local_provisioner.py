"""The local provisioner against real Redis, real nginx + Nchan and the real agent."""

import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import redis

from chalicelib import envelope, keys
from chalicelib.instances import Instance
from chalicelib.plans import Plan, load_plans
from chalicelib.provisioner import ProvisionError
from pushaas_local import provisioner as local_provisioner
from pushaas_local.processes import ProcessSpec, RestartPolicy, SupervisedProcess, children
from pushaas_local.provisioner import LocalProvisioner, RunningInstance
from tests.servers import RedisServer

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def small() -> Plan:
    return load_plans()["small"]


@pytest.fixture
def instance() -> Instance:
    return Instance(name="mypush", plan="small")


@pytest.fixture
def provisioner(repo_root: Path, tmp_path: Path, redis_server: RedisServer,
                redis_client: redis.Redis) -> Iterator[LocalProvisioner]:
    local = LocalProvisioner(repo_root, tmp_path / "state", redis_server.url,
                             health_timeout=10)
    yield local
    local.close()


def wait_until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def healthz(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2, trust_env=False).status_code
    except httpx.HTTPError:
        return None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat_file.parent.name))
    return members


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line or environment names ``text`` (e.g. a run dir)."""
    found = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        if int(proc_dir.name) == os.getpid():
            continue
        try:
            blob = (proc_dir / "cmdline").read_bytes() + (proc_dir / "environ").read_bytes()
            state = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text.encode() in blob and state != "Z":
            found.append(int(proc_dir.name))
    return found


def all_pids(running: RunningInstance) -> list[int]:
    return [p.pid for p in running.processes() if p.pid is not None]


def subscribe(port: int, channel: str) -> socket.socket:
    """An EventSource subscriber through the front, left open."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    request = (f"GET /ev/{channel} HTTP/1.1\r\nHost: localhost\r\n"
               "Accept: text/event-stream\r\n\r\n")
    sock.sendall(request.encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return sock


def receive(sock: socket.socket, needle: bytes, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    seen = b""
    while needle not in seen:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise AssertionError(f"no {needle!r} within {timeout}s, got {seen[-300:]!r}") from None
        assert chunk, f"connection closed before {needle!r}, got {seen[-300:]!r}"
        seen += chunk


def subscribers(internal_port: int) -> int:
    """Subscribers one replica's nginx holds, from Nchan's stub status."""
    url = f"http://127.0.0.1:{internal_port}/nchan_stub_status"
    text = httpx.get(url, timeout=2, trust_env=False).text
    line = next(line for line in text.splitlines() if line.startswith("subscribers:"))
    return int(line.split(":")[1])


def publish(client: redis.Redis, name: str, channel: str, text: str) -> None:
    client.xadd(keys.stream(name), envelope.entry_fields([channel], text))


def front_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_provision_serves_and_records_ports(provisioner: LocalProvisioner, instance: Instance,
                                            small: Plan, redis_client: redis.Redis) -> None:
    placement = provisioner.provision(instance, small)

    assert placement.ready
    assert placement.push_stream_url.startswith("http://127.0.0.1:")
    assert healthz(front_port(placement.push_stream_url)) == 200

    record = redis_client.hgetall(keys.replicas("mypush"))
    assert json.loads(record["front"]) == {"port": front_port(placement.push_stream_url)}
    replica = json.loads(record["0"])
    assert healthz(replica["public"]) == 200
    assert healthz(replica["internal"]) == 200

    running = provisioner.running("mypush")
    assert running is not None
    pids = all_pids(running)
    assert provisioner.provision(instance, small) == placement
    assert all_pids(running) == pids


def test_messages_reach_subscribers_through_the_front(provisioner: LocalProvisioner,
                                                      instance: Instance, small: Plan,
                                                      redis_client: redis.Redis) -> None:
    placement = provisioner.provision(instance, small)
    sock = subscribe(front_port(placement.push_stream_url), "news")

    with sock:
        publish(redis_client, "mypush", "news", "hello-front")
        receive(sock, b"hello-front")


def test_supervisor_restarts_a_killed_nginx(provisioner: LocalProvisioner, instance: Instance,
                                            small: Plan) -> None:
    placement = provisioner.provision(instance, small)
    running = provisioner.running("mypush")
    assert running is not None
    replica = running.replicas[0]
    killed = replica.nginx.pid
    assert killed is not None

    os.kill(killed, signal.SIGKILL)

    wait_until(lambda: replica.nginx.pid != killed and replica.nginx.alive(), "a new nginx")
    wait_until(lambda: healthz(replica.ports.public) == 200, "the replica to serve again")
    assert replica.nginx.restarts == 1
    # The orphaned workers of the killed master were stopped, or the port would be theirs.
    assert group_members(killed) == []
    assert healthz(front_port(placement.push_stream_url)) == 200


def test_supervisor_restarts_a_killed_agent(provisioner: LocalProvisioner, instance: Instance,
                                            small: Plan, redis_client: redis.Redis) -> None:
    placement = provisioner.provision(instance, small)
    running = provisioner.running("mypush")
    assert running is not None
    agent = running.replicas[0].agent
    killed = agent.pid
    assert killed is not None

    os.kill(killed, signal.SIGKILL)
    wait_until(lambda: agent.pid != killed and agent.alive(), "a new agent")

    sock = subscribe(front_port(placement.push_stream_url), "news")
    with sock:
        publish(redis_client, "mypush", "news", "after-restart")
        receive(sock, b"after-restart")
    assert agent.restarts == 1


def test_scale_up_and_down_reloads_the_front(provisioner: LocalProvisioner, instance: Instance,
                                             small: Plan, redis_client: redis.Redis,
                                             tmp_path: Path) -> None:
    placement = provisioner.provision(instance, small)
    running = provisioner.running("mypush")
    assert running is not None and running.front is not None
    front_pid = running.front.nginx.pid
    assert front_pid is not None
    port = front_port(placement.push_stream_url)
    conf = tmp_path / "state" / "instances" / "mypush" / "front" / "nginx.conf"
    workers = set(children(front_pid))

    provisioner.scale(instance, replace(small, replicas=2))

    assert sorted(running.replicas) == [0, 1]
    first, second = running.replicas[0], running.replicas[1]
    assert f"127.0.0.1:{second.ports.public};" in conf.read_text()
    # Reloaded, not restarted: same master (same URL, no dropped subscribers), new workers.
    assert running.front.nginx.pid == front_pid
    assert set(children(front_pid)) - workers
    sockets = [subscribe(port, "news"), subscribe(second.ports.public, "news")]
    assert subscribers(first.ports.internal) + subscribers(second.ports.internal) == 2
    publish(redis_client, "mypush", "news", "to-both")
    for sock in sockets:
        receive(sock, b"to-both")
    cursor = keys.cursor("mypush", "mypush-1")
    wait_until(lambda: redis_client.exists(cursor), "replica 1's cursor")

    provisioner.scale(instance, small)

    for sock in sockets:
        sock.close()
    assert sorted(running.replicas) == [0]
    assert f"127.0.0.1:{second.ports.public};" not in conf.read_text()
    assert f"127.0.0.1:{first.ports.public};" in conf.read_text()
    assert running.front.nginx.pid == front_pid
    assert not second.nginx.alive() and not second.agent.alive()
    assert not (tmp_path / "state" / "instances" / "mypush" / "replica-1").exists()
    assert not redis_client.exists(cursor)
    assert set(redis_client.hkeys(keys.replicas("mypush"))) == {"0", "front"}
    with subscribe(port, "news") as sock:
        assert subscribers(first.ports.internal) == 1
        publish(redis_client, "mypush", "news", "after-scale-down")
        receive(sock, b"after-scale-down")


def test_a_plan_change_replaces_replicas_on_the_same_ports(
        provisioner: LocalProvisioner, instance: Instance, small: Plan,
        redis_client: redis.Redis, tmp_path: Path) -> None:
    placement = provisioner.provision(instance, small)
    running = provisioner.running("mypush")
    assert running is not None
    before = running.replicas[0]
    publish(redis_client, "mypush", "news", "before")
    cursor = keys.cursor("mypush", "mypush-0")
    wait_until(lambda: redis_client.exists(cursor), "replica 0's cursor")

    provisioner.scale(instance, replace(small, buffer_length=250, memory=2048))

    after = running.replicas[0]
    assert after is not before and not before.nginx.alive()
    assert after.ports == before.ports
    conf = tmp_path / "state" / "instances" / "mypush" / "replica-0" / "nginx.conf"
    assert "nchan_message_buffer_length 250;" in conf.read_text()
    assert "nchan_shared_memory_size 512M;" in conf.read_text()
    assert redis_client.exists(cursor)
    assert healthz(front_port(placement.push_stream_url)) == 200


def test_deprovision_leaves_no_process_and_no_run_dir(provisioner: LocalProvisioner,
                                                      instance: Instance, small: Plan,
                                                      redis_client: redis.Redis,
                                                      tmp_path: Path) -> None:
    placement = provisioner.provision(instance, replace(small, replicas=2))
    running = provisioner.running("mypush")
    assert running is not None
    groups = all_pids(running)
    assert len(groups) == 5

    provisioner.deprovision(instance)

    assert all(group_members(pgid) == [] for pgid in groups)
    assert processes_mentioning(str(tmp_path / "state")) == []
    assert not (tmp_path / "state" / "instances" / "mypush").exists()
    assert provisioner.running("mypush") is None
    assert not redis_client.exists(keys.replicas("mypush"))
    assert healthz(front_port(placement.push_stream_url)) is None
    provisioner.deprovision(instance)


def test_stop_all_then_restore_keeps_the_url(provisioner: LocalProvisioner, instance: Instance,
                                             small: Plan, tmp_path: Path) -> None:
    placement = provisioner.provision(instance, small)

    provisioner.stop_all()
    assert processes_mentioning(str(tmp_path / "state")) == []
    report = provisioner.restore([instance], {"small": small})

    assert report.failures == {}
    assert report.placements == {"mypush": placement}
    assert healthz(front_port(placement.push_stream_url)) == 200


def test_a_broken_nginx_fails_with_its_output(provisioner: LocalProvisioner,
                                              instance: Instance, small: Plan, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake_nginx = fake_bin / "nginx"
    fake_nginx.write_text("#!/bin/sh\necho 'nginx: [emerg] simulated broken nginx' >&2\nexit 1\n")
    fake_nginx.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")

    with pytest.raises(ProvisionError, match="simulated broken nginx") as failure:
        provisioner.provision(instance, small)

    assert "exited with code 1" in str(failure.value)
    assert provisioner.running("mypush") is None
    assert processes_mentioning(str(tmp_path / "state")) == []


def test_a_front_port_taken_after_the_check_fails_cleanly(
        provisioner: LocalProvisioner, instance: Instance, small: Plan, tmp_path: Path,
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # The recorded front port is taken between the provisioner's check and nginx's bind.
    monkeypatch.setattr(local_provisioner, "_port_free", lambda port: True)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        redis_client.hset(keys.replicas("mypush"), "front", json.dumps({"port": taken}))

        with pytest.raises(ProvisionError, match="front of mypush.*Address already in use"):
            provisioner.provision(instance, small)

    assert provisioner.running("mypush") is None
    assert processes_mentioning(str(tmp_path / "state")) == []


def test_a_taken_recorded_port_is_replaced(provisioner: LocalProvisioner, instance: Instance,
                                           small: Plan, redis_client: redis.Redis) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        redis_client.hset(keys.replicas("mypush"), "front", json.dumps({"port": taken}))

        placement = provisioner.provision(instance, small)

    assert front_port(placement.push_stream_url) != taken
    assert healthz(front_port(placement.push_stream_url)) == 200


def test_a_crashing_process_is_restarted_at_a_capped_rate(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = ProcessSpec(instance="mypush", role="agent", replica=0, args=["/bin/sh", "-c", "exit 3"],
                       env={}, cwd=tmp_path, log_path=tmp_path / "agent.log")
    process = SupervisedProcess(spec, RestartPolicy(first_delay=1, max_delay=4, stable_after=60))
    caplog.set_level(logging.WARNING, logger="pushaas_local.processes")
    process.start()
    clock = time.monotonic()

    delays = []
    for _ in range(5):
        wait_until(lambda: not process.alive(), "the process to exit")
        assert not process.supervise(clock)
        waited = 0
        while not process.supervise(clock + waited):
            waited += 1
            assert waited <= 10, "never restarted"
        delays.append(waited)
        clock += waited

    assert delays == [1, 2, 4, 4, 4]
    assert process.restarts == 5
    assert "role=agent exit_code=3 restarts=5" in caplog.text
    process.stop()
    assert not process.alive()
