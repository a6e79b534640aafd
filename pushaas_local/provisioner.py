"""The ``local`` provisioner: each instance's replicas as supervised processes here.

A replica is one nginx + Nchan (``render.py run``), one push-agent and, when the
provisioner holds the master key, one authorizer (``python -m push_agent.authorizer``,
which checks private-channel tokens for that nginx), as in an ECS task. In front of an
instance's replicas runs one more nginx (``render.py run --front``) that plays the AWS
load balancer, so an instance keeps one subscriber URL while it scales.

Ports are recorded in Redis (``keys.replicas``) and reused when the stack starts again,
so the URL given to bound apps stays valid across restarts. A supervisor thread restarts
any process that dies, as ECS restarts a stopped task.
"""

import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import redis

from chalicelib import keys
from chalicelib.credentials import subscribe_key
from chalicelib.instances import Instance
from chalicelib.plans import Plan
from chalicelib.provisioner import Placement, ProvisionError
from pushaas_local.processes import (
    ProcessSpec,
    SupervisedProcess,
    children,
    reap_leftovers,
)

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
FRONT_FIELD = "front"
HEALTH_TIMEOUT = 20.0
SUPERVISE_INTERVAL = 0.5
PORT_ATTEMPTS = 50
LISTEN_PORT_FLOOR = 20000
EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR")
AGENT_TUNING_ENV = ("PUSHAAS_STATS_INTERVAL", "PUSHAAS_KEEPALIVE_INTERVAL", "PUSHAAS_LOG_LEVEL")

# Health probes must never go through an http_proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class ReplicaPorts:
    public: int
    internal: int
    authorizer: int = 0
    """0 when the replica runs no authorizer (its nginx then refuses private channels)."""


@dataclass
class Replica:
    """One replica: its nginx, agent and authorizer, and the plan settings they run with."""

    index: int
    ports: ReplicaPorts
    buffer: tuple[int, int]
    nginx: SupervisedProcess
    agent: SupervisedProcess
    authorizer: SupervisedProcess | None = None

    def processes(self) -> list[SupervisedProcess]:
        return [self.nginx, self.agent] + ([self.authorizer] if self.authorizer else [])

    def stop_order(self) -> list[SupervisedProcess]:
        """The agent first (it saves its cursor), nginx, then what nginx asks: the authorizer."""
        return [self.agent, self.nginx] + ([self.authorizer] if self.authorizer else [])


@dataclass
class Front:
    port: int
    upstreams: tuple[int, ...]
    nginx: SupervisedProcess


@dataclass
class RunningInstance:
    """What runs for one instance; only processes in here are supervised."""

    name: str
    replicas: dict[int, Replica] = field(default_factory=dict)
    front: Front | None = None

    def processes(self) -> list[SupervisedProcess]:
        front = [self.front.nginx] if self.front else []
        return front + [p for r in self.replicas.values() for p in r.processes()]


@dataclass(frozen=True)
class _Check:
    """One readiness condition of one process, for the wait after starting processes."""

    label: str
    process: SupervisedProcess
    ready: Callable[[], bool]
    what: str


@dataclass(frozen=True)
class RestoreReport:
    """Where each restored instance serves now, and why the others could not start."""

    placements: dict[str, Placement]
    failures: dict[str, str]


class LocalProvisioner:
    """Implements ``chalicelib.provisioner.Provisioner`` with local processes."""

    def __init__(self, repo_root: Path, state_dir: Path, redis_url: str,
                 python: str = sys.executable, health_timeout: float = HEALTH_TIMEOUT,
                 master_key: str | None = None):
        """Without ``master_key`` no authorizer runs, so private channels refuse everyone."""
        self.repo_root = Path(repo_root).resolve()
        self.state_dir = Path(state_dir).resolve()
        self.redis_url = redis_url
        self.python = python
        self.health_timeout = health_timeout
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.render_script = self.repo_root / "containers" / "push-stream" / "render.py"
        self._master_key = master_key

        # Jobs run one at a time; the table lock is held only briefly, so the
        # supervisor keeps watching other instances while a job waits for health.
        self._ops_lock = threading.Lock()
        self._table_lock = threading.Lock()
        self._instances: dict[str, RunningInstance] = {}
        self._closing = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise_loop,
                                            name="local-supervisor", daemon=True)
        self._supervisor.start()

    # The Provisioner interface.

    def provision(self, instance: Instance, plan: Plan) -> Placement:
        with self._ops_lock:
            return self._converge(instance.name, plan, self._subscribe_key(instance))

    def scale(self, instance: Instance, plan: Plan) -> None:
        with self._ops_lock:
            self._converge(instance.name, plan, self._subscribe_key(instance))

    def deprovision(self, instance: Instance) -> None:
        with self._ops_lock:
            with self._table_lock:
                running = self._instances.pop(instance.name, None)
            if running is not None:
                self._stop_instance(running)

            instance_dir = self._instance_dir(instance.name)
            reap_leftovers(instance_dir)
            shutil.rmtree(instance_dir, ignore_errors=True)
            self.redis.delete(keys.replicas(instance.name))
            log.info("instance stopped instance=%s", instance.name)

    # Stack life cycle.

    def restore(self, instances: Iterable[Instance], plans: Mapping[str, Plan]) -> RestoreReport:
        """Bring back instances that were running when the stack stopped."""
        placements: dict[str, Placement] = {}
        failures: dict[str, str] = {}
        for instance in instances:
            plan = plans.get(instance.plan)
            if plan is None:
                failures[instance.name] = f"unknown plan {instance.plan!r}"
                continue
            try:
                placements[instance.name] = self.provision(instance, plan)
            except ProvisionError as exc:
                failures[instance.name] = str(exc)

        log.info("instances restored count=%d failed=%d", len(placements), len(failures))
        return RestoreReport(placements, failures)

    def stop_all(self) -> None:
        """Stop every process but keep the port records, so ``restore`` reuses them."""
        with self._ops_lock:
            with self._table_lock:
                running = list(self._instances.values())
                self._instances.clear()
            for item in running:
                self._stop_instance(item)
        log.info("all instances stopped count=%d", len(running))

    def close(self) -> None:
        """Stop every process and the supervisor thread."""
        self.stop_all()
        self._closing.set()
        self._supervisor.join(timeout=5)
        self.redis.close()

    def running(self, name: str) -> RunningInstance | None:
        """The live view of an instance's processes (for tests and diagnostics)."""
        with self._table_lock:
            return self._instances.get(name)

    # Converging an instance to its plan.

    def _subscribe_key(self, instance: Instance) -> str | None:
        """The instance's derived subscribe key: the one secret its authorizers hold."""
        if not self._master_key:
            return None
        return subscribe_key(self._master_key, instance.name, instance.salt)

    def _converge(self, name: str, plan: Plan, key: str | None) -> Placement:
        """Replace what is stale, start what is missing, route, then retire the excess."""
        with self._table_lock:
            running = self._instances.get(name)
        if running is None:
            # A runner that was killed may have left this instance's processes behind.
            reap_leftovers(self._instance_dir(name))
            running = RunningInstance(name)
        record = self._load_record(name)

        # A plan change can change the buffer too: replace replicas one at a time, as a
        # rolling deployment does, so the others keep serving meanwhile.
        buffer = (plan.buffer_length, plan.buffer_seconds)
        stale = [r for r in running.replicas.values()
                 if r.index < plan.replicas and r.buffer != buffer]
        for replica in stale:
            self._retire(running, replica, keep_cursor=True)
            self._bring_up(running, plan, [replica.index], record, key)

        missing = [i for i in range(plan.replicas) if i not in running.replicas]
        self._bring_up(running, plan, missing, record, key)

        self._route(running, tuple(running.replicas[i].ports.public for i in range(plan.replicas)))
        for replica in [r for r in running.replicas.values() if r.index >= plan.replicas]:
            self._retire(running, replica, keep_cursor=False)

        self._save_record(running)
        assert running.front is not None
        log.info("instance converged instance=%s replicas=%d started=%d front_port=%d",
                 name, len(running.replicas), len(missing) + len(stale), running.front.port)
        return Placement(push_stream_url=f"http://{LOOPBACK}:{running.front.port}", ready=True)

    def _bring_up(self, running: RunningInstance, plan: Plan, indices: list[int],
                  record: dict[str, dict], key: str | None) -> None:
        """Start replicas ``indices`` (and the front if missing), wait until all serve.

        On success the new processes are handed to the supervisor; on failure they are
        stopped and ProvisionError says why. What ran before keeps running either way.
        """
        name = running.name
        started: list[Replica] = []
        new_front: Front | None = None
        try:
            taken = self._ports_in_use(running)
            for index in indices:
                started.append(self._start_replica(name, index, plan, record.get(str(index)),
                                                   taken, key))

            wanted = sorted([*running.replicas.values(), *started], key=lambda r: r.index)
            wanted = [r for r in wanted if r.index < plan.replicas]
            if running.front is None:
                upstreams = tuple(r.ports.public for r in wanted)
                new_front = self._start_front(name, record.get(FRONT_FIELD), upstreams, taken)

            self._wait_healthy(name, started, wanted, new_front or running.front)
        except ProvisionError:
            self._abandon(started, new_front)
            raise
        except OSError as exc:
            self._abandon(started, new_front)
            raise ProvisionError(f"cannot start the processes of {name}: {exc}") from None

        with self._table_lock:
            for replica in started:
                running.replicas[replica.index] = replica
            if new_front is not None:
                running.front = new_front
            self._instances[name] = running

    def _route(self, running: RunningInstance, upstreams: tuple[int, ...]) -> None:
        """Point the front at exactly ``upstreams``: re-render and reload nginx (SIGHUP)."""
        front = running.front
        assert front is not None
        if front.upstreams == upstreams:
            return

        env = {**front.nginx.spec.env, "PUSH_STREAM_UPSTREAMS": _upstream_list(upstreams)}
        conf = Path(env["PUSH_STREAM_RUN_DIR"]) / "nginx.conf"
        args = [self.python, str(self.render_script), "render", "--out", str(conf), "--front"]
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise ProvisionError(f"cannot render the front of {running.name}: "
                                 f"{done.stderr.strip()[-500:]}")

        with self._table_lock:
            front.nginx.spec = replace(front.nginx.spec, env=env)
            front.upstreams = upstreams
            master = front.nginx.pid
            old_workers = set(children(master)) if master else set()
            front.nginx.signal(signal.SIGHUP)
        if master:
            self._wait_reloaded(running.name, front, master, old_workers)
        log.info("front reloaded instance=%s upstreams=%s",
                 running.name, env["PUSH_STREAM_UPSTREAMS"])

    def _wait_reloaded(self, name: str, front: Front, master: int, old: set[int]) -> None:
        """Block until nginx runs the new config: new workers up, old ones not accepting.

        A reload is asynchronous; a replica must not be stopped while old workers still
        route new subscribers to it. Old workers that hold subscribers linger, marked
        "shutting down", after they closed their listening sockets.
        """
        deadline = time.monotonic() + self.health_timeout
        while time.monotonic() < deadline:
            workers = children(master)
            fresh = set(workers) - old
            lingering = [pid for pid in old & set(workers) if "shutting down" not in workers[pid]]
            if fresh and not lingering:
                return
            if not front.nginx.alive() or front.nginx.pid != master:
                return  # restarted by the supervisor, with the new config
            time.sleep(0.02)
        raise ProvisionError(f"front of {name}: nginx did not reload within "
                             f"{self.health_timeout:.0f}s: {front.nginx.tail() or 'no output'}")

    def _retire(self, running: RunningInstance, replica: Replica, keep_cursor: bool) -> None:
        """Stop a replica; a removed one also loses its cursor and run dir."""
        with self._table_lock:
            running.replicas.pop(replica.index, None)
        _stop_all(replica.stop_order())
        if keep_cursor:
            log.info("replica stopped for replacement instance=%s replica=%d",
                     running.name, replica.index)
            return

        self.redis.delete(keys.cursor(running.name, _agent_id(running.name, replica.index)))
        self.redis.hdel(keys.replicas(running.name), str(replica.index))
        shutil.rmtree(self._replica_dir(running.name, replica.index), ignore_errors=True)
        log.info("replica removed instance=%s replica=%d", running.name, replica.index)

    def _abandon(self, started: list[Replica], new_front: Front | None) -> None:
        """Stop what a failed converge started; what ran before keeps running."""
        processes = [new_front.nginx] if new_front else []
        for replica in started:
            processes += replica.stop_order()
        _stop_all(processes)

    def _stop_instance(self, running: RunningInstance) -> None:
        processes = [running.front.nginx] if running.front else []
        for replica in running.replicas.values():
            processes += replica.stop_order()
        _stop_all(processes)

    # Starting processes.

    def _start_replica(self, name: str, index: int, plan: Plan, recorded: dict | None,
                       taken: set[int], key: str | None) -> Replica:
        recorded = recorded or {}
        public = _pick_port(recorded.get("public"), taken)
        internal = _pick_port(recorded.get("internal"), taken)
        authorizer_port = _pick_port(recorded.get("authorizer"), taken) if key else 0
        run_dir = self._replica_dir(name, index)
        run_dir.mkdir(parents=True, exist_ok=True)
        agent_id = _agent_id(name, index)
        pythonpath = f"{self.repo_root}:{self.repo_root / 'containers' / 'push-agent'}"

        nginx_env = {
            **_base_env(),
            "PUSH_STREAM_RUN_DIR": str(run_dir),
            "PUSH_STREAM_PUBLIC_ADDR": LOOPBACK,
            "PUSH_STREAM_PUBLIC_PORT": str(public),
            "PUSH_STREAM_INTERNAL_PORT": str(internal),
            "PUSH_STREAM_BUFFER_LENGTH": str(plan.buffer_length),
            "PUSH_STREAM_BUFFER_SECONDS": str(plan.buffer_seconds),
            "PUSH_STREAM_SHM_SIZE": f"{plan.message_store_mib}M",
        }
        if authorizer_port:
            nginx_env["PUSH_STREAM_AUTHORIZER_PORT"] = str(authorizer_port)
        agent_env = {
            **_base_env(),
            **{k: os.environ[k] for k in AGENT_TUNING_ENV if os.environ.get(k)},
            "PYTHONPATH": pythonpath,
            "PYTHONUNBUFFERED": "1",
            "PUSHAAS_REDIS_URL": self.redis_url,
            "PUSHAAS_INSTANCE": name,
            "PUSHAAS_AGENT_ID": agent_id,
            "PUSHAAS_NGINX_URL": f"http://{LOOPBACK}:{internal}",
            "PUSHAAS_BUFFER_SECONDS": str(plan.buffer_seconds),
            "PUSHAAS_AGENT_HEARTBEAT": str(run_dir / "agent.heartbeat"),
        }

        nginx = self._process(name, "nginx", index, run_dir, nginx_env,
                              [self.python, str(self.render_script), "run"])
        agent = self._process(name, "agent", index, run_dir, agent_env,
                              [self.python, "-m", "push_agent"])
        authorizer = None
        if key:
            # The key travels in the environment only: a command line is world-readable.
            authorizer_env = {**_base_env(), "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1",
                              "PUSHAAS_INSTANCE": name, "PUSHAAS_SUBSCRIBE_KEY": key,
                              "PUSHAAS_AUTHORIZER_PORT": str(authorizer_port)}
            authorizer = self._process(name, "authorizer", index, run_dir, authorizer_env,
                                       [self.python, "-m", "push_agent.authorizer"])
        replica = Replica(index, ReplicaPorts(public, internal, authorizer_port),
                          (plan.buffer_length, plan.buffer_seconds), nginx, agent, authorizer)
        # A heartbeat left by an earlier agent must not pass for this one's.
        Path(agent_env["PUSHAAS_AGENT_HEARTBEAT"]).unlink(missing_ok=True)

        started: list[SupervisedProcess] = []
        try:
            for process in [p for p in (authorizer, nginx, agent) if p is not None]:
                process.start()
                started.append(process)
        except OSError:
            _stop_all(started)
            raise
        return replica

    def _start_front(self, name: str, recorded: dict | None, upstreams: tuple[int, ...],
                     taken: set[int]) -> Front:
        port = _pick_port((recorded or {}).get("port"), taken)
        run_dir = self._front_dir(name)
        run_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **_base_env(),
            "PUSH_STREAM_RUN_DIR": str(run_dir),
            "PUSH_STREAM_PUBLIC_ADDR": LOOPBACK,
            "PUSH_STREAM_PUBLIC_PORT": str(port),
            "PUSH_STREAM_UPSTREAMS": _upstream_list(upstreams),
        }
        nginx = self._process(name, "front", None, run_dir, env,
                              [self.python, str(self.render_script), "run", "--front"])
        nginx.start()
        return Front(port, upstreams, nginx)

    def _process(self, name: str, role: str, replica: int | None, run_dir: Path,
                 env: dict[str, str], args: list[str]) -> SupervisedProcess:
        log_name = f"{role}.log" if role in ("agent", "authorizer") else "nginx.log"
        spec = ProcessSpec(instance=name, role=role, replica=replica, args=args, env=env,
                           cwd=self.repo_root, log_path=run_dir / log_name)
        return SupervisedProcess(spec)

    # Health.

    def _wait_healthy(self, name: str, started: list[Replica], wanted: list[Replica],
                      front: Front | None) -> None:
        """Wait until every wanted replica and the front serve, or explain why not.

        nginx serves when /healthz answers; a new agent when it wrote its heartbeat (it
        has loaded its cursor from Redis). A process started by this call that exits
        fails at once with its last output; processes that ran before are left to the
        supervisor, which restarts them.
        """
        assert front is not None
        new = {id(p) for r in started for p in r.processes()} | {id(front.nginx)}
        checks = [_http_check("front", front.nginx, front.port)]
        for replica in wanted:
            label = f"replica {replica.index}"
            checks += [_http_check(label, replica.nginx, replica.ports.public),
                       _http_check(label, replica.nginx, replica.ports.internal)]
            if replica.authorizer is not None:
                checks.append(_http_check(label, replica.authorizer, replica.ports.authorizer))
        for replica in started:
            heartbeat = Path(replica.agent.spec.env["PUSHAAS_AGENT_HEARTBEAT"])
            checks.append(_Check(f"replica {replica.index}", replica.agent,
                                 heartbeat.exists, "write its heartbeat"))

        deadline = time.monotonic() + self.health_timeout
        pending = checks
        while True:
            for check in checks:
                if id(check.process) in new and not check.process.alive():
                    raise ProvisionError(
                        f"{check.label} of {name}: {check.process.spec.role} exited with code "
                        f"{check.process.exit_code}: {check.process.tail() or 'no output'}")

            pending = [check for check in pending if not check.ready()]
            if not pending:
                return
            if time.monotonic() >= deadline:
                check = pending[0]
                raise ProvisionError(
                    f"{check.label} of {name}: {check.process.spec.role} did not "
                    f"{check.what} within {self.health_timeout:.0f}s: "
                    f"{check.process.tail() or 'no output'}")
            time.sleep(0.05)

    # The supervisor.

    def _supervise_loop(self) -> None:
        while not self._closing.wait(SUPERVISE_INTERVAL):
            try:
                self._supervise_once()
            except Exception:
                log.exception("supervisor pass failed")

    def _supervise_once(self) -> None:
        now = time.monotonic()
        with self._table_lock:
            for running in self._instances.values():
                for process in running.processes():
                    process.supervise(now)

    # Records and paths.

    def _load_record(self, name: str) -> dict[str, dict]:
        record: dict[str, dict] = {}
        for key, raw in self.redis.hgetall(keys.replicas(name)).items():
            try:
                record[key] = json.loads(raw)
            except ValueError:
                log.warning("ignoring corrupted replica record instance=%s field=%s", name, key)
        return record

    def _save_record(self, running: RunningInstance) -> None:
        """Remember ports so the next stack start gives subscribers the same URL."""
        fields = {str(i): json.dumps({"public": r.ports.public, "internal": r.ports.internal,
                                      "authorizer": r.ports.authorizer})
                  for i, r in running.replicas.items()}
        if running.front is not None:
            fields[FRONT_FIELD] = json.dumps({"port": running.front.port})
        self.redis.hset(keys.replicas(running.name), mapping=fields)

    def _ports_in_use(self, running: RunningInstance) -> set[int]:
        ports: set[int] = set()
        for replica in running.replicas.values():
            ports |= {replica.ports.public, replica.ports.internal, replica.ports.authorizer}
        if running.front is not None:
            ports.add(running.front.port)
        return ports

    def _instance_dir(self, name: str) -> Path:
        return self.state_dir / "instances" / name

    def _replica_dir(self, name: str, index: int) -> Path:
        return self._instance_dir(name) / f"replica-{index}"

    def _front_dir(self, name: str) -> Path:
        return self._instance_dir(name) / "front"


def _agent_id(name: str, index: int) -> str:
    """Stable per replica, so a restarted agent resumes from its own cursor."""
    return f"{name}-{index}"


def _upstream_list(ports: Iterable[int]) -> str:
    return ",".join(f"{LOOPBACK}:{port}" for port in ports)


def _base_env() -> dict[str, str]:
    """Only what children need: the runner's secrets never reach nginx or the agent."""
    return {k: os.environ[k] for k in PASSED_ENV if k in os.environ}


def _stop_all(processes: list[SupervisedProcess]) -> None:
    for process in processes:
        process.stop()


def _http_check(label: str, process: SupervisedProcess, port: int) -> _Check:
    return _Check(label, process, lambda: _healthy(port),
                  f"answer /healthz on {LOOPBACK}:{port}")


def _healthy(port: int) -> bool:
    try:
        with _HTTP.open(f"http://{LOOPBACK}:{port}/healthz", timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _port_free(port: int) -> bool:
    """Whether nginx could listen on the port (it sets SO_REUSEADDR, so we do too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _listen_ports() -> range:
    """Ports below the kernel's ephemeral range.

    Outgoing connections (an agent's to Redis) take their source port from the ephemeral
    range; a recorded port in there could be taken while the stack is down, changing the
    instance's URL on the next start. Below it, only another server can take it.
    """
    try:
        low = int(Path(EPHEMERAL_RANGE_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(LISTEN_PORT_FLOOR, max(low, LISTEN_PORT_FLOOR + 1000))


def free_port(taken: set[int]) -> int:
    """A port nobody listens on and not ``taken``, below the ephemeral range if possible."""
    candidates = _listen_ports()
    for _ in range(PORT_ATTEMPTS):
        port = random.choice(candidates)
        if port not in taken and _port_free(port):
            return port

    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
    if port in taken:
        raise ProvisionError("no free loopback port found")
    return port


def _pick_port(recorded: object, taken: set[int]) -> int:
    """The recorded port when it is still free, else a new free one."""
    port = recorded if isinstance(recorded, int) else None
    if port is None or port in taken or not _port_free(port):
        port = free_port(taken)
    taken.add(port)
    return port
