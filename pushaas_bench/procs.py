"""The processes a benchmark measures: Redis, push-stream nginx and push-agents.

Each is started with the same command the local provisioner uses, on free loopback ports
under a private directory, and is always stopped and reaped. CPU time and memory are read
from /proc so a benchmark can say which side was busy.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
AGENT_DIR = REPO_ROOT / "containers" / "push-agent"
RENDER_SCRIPT = REPO_ROOT / "containers" / "push-stream" / "render.py"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(probe: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout}s")
        time.sleep(interval)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (nginx workers of a master)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes used so far (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def rss_kb(pids: list[int]) -> int:
    """Resident memory of the processes, in KiB."""
    total = 0
    for pid in pids:
        try:
            pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except OSError:
            continue
        total += pages * PAGE_KB
    return total


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM,
               timeout: float = STOP_TIMEOUT) -> int | None:
    """Signal, wait a bounded time, then kill what is left of the process group; reaped.

    The group, not only the process: nginx workers and a stack's children would
    otherwise outlive a benchmark that gave up on their parent.
    """
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    return proc.returncode


class Process:
    """One child process with its output in a log file; ``stop`` always reaps it."""

    name = "process"

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    @property
    def pids(self) -> list[int]:
        """The process and its direct children (nginx: master and workers)."""
        if self.proc is None:
            return []
        return [self.proc.pid, *children(self.proc.pid)]

    def spawn(self, args: list[str], env: Mapping[str, str]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args, env=dict(env), stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                start_new_session=True,
            )

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        return stop_group(proc, sig)


class RedisServer(Process):
    """A private redis-server, append-only as the local stack runs it."""

    name = "redis"

    def __init__(self, run_dir: Path):
        super().__init__(run_dir)
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.port = free_port()
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.spawn([
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.run_dir),
            "--appendonly", "yes", "--save", "", "--protected-mode", "yes",
        ], os.environ)
        wait_for(self._answers, START_TIMEOUT, "redis-server")
        return self

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(port=self.port, **options)

    def _answers(self) -> bool:
        try:
            return bool(self.client(socket_timeout=1).ping())
        except redis.RedisError:
            return False


class NginxReplica(Process):
    """One push-stream replica started with ``render.py run``, as the provisioner does."""

    name = "nginx"

    def __init__(self, run_dir: Path, **settings: str):
        super().__init__(run_dir)
        self.settings = {f"PUSH_STREAM_{key.upper()}": value for key, value in settings.items()}
        self.public_port = 0
        self.internal_port = 0

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def internal_url(self) -> str:
        return f"http://127.0.0.1:{self.internal_port}"

    @property
    def worker_pids(self) -> list[int]:
        return children(self.proc.pid) if self.proc else []

    def start(self) -> "NginxReplica":
        self.public_port, self.internal_port = free_port(), free_port()
        env = {
            **os.environ,
            "PUSH_STREAM_RUN_DIR": str(self.run_dir),
            "PUSH_STREAM_PUBLIC_ADDR": "127.0.0.1",
            "PUSH_STREAM_PUBLIC_PORT": str(self.public_port),
            "PUSH_STREAM_INTERNAL_PORT": str(self.internal_port),
            **self.settings,
        }
        python = shutil.which("python3", path=os.defpath) or sys.executable
        self.spawn([python, str(RENDER_SCRIPT), "run"], env)
        wait_for(self._healthy, START_TIMEOUT, "nginx")
        wait_for(lambda: bool(self.worker_pids), START_TIMEOUT, "nginx workers")
        return self

    def _healthy(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"nginx exited: {self.logs()[-2000:]}")
        try:
            with _HTTP.open(f"{self.public_url}/healthz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False


def agent_environment(redis_url: str, instance: str, agent_id: str, nginx_url: str,
                      run_dir: Path, **extra: str) -> dict[str, str]:
    """The agent's environment as the local provisioner writes it."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PUSHAAS_")},
        "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{AGENT_DIR}",
        "PUSHAAS_REDIS_URL": redis_url,
        "PUSHAAS_INSTANCE": instance,
        "PUSHAAS_AGENT_ID": agent_id,
        "PUSHAAS_NGINX_URL": nginx_url,
        "PUSHAAS_AGENT_HEARTBEAT": str(run_dir / f"{agent_id}.heartbeat"),
    }
    env.update({f"PUSHAAS_{key.upper()}": value for key, value in extra.items()})
    return env


class AgentProcess(Process):
    """``python -m push_agent`` for one instance and one nginx."""

    name = "agent"

    def __init__(self, run_dir: Path, env: Mapping[str, str], python: str = sys.executable):
        super().__init__(run_dir)
        self.env = dict(env)
        self.python = python
        self.name = f"agent-{env['PUSHAAS_AGENT_ID']}"

    def start(self) -> "AgentProcess":
        self.spawn([self.python, "-m", "push_agent"], self.env)
        return self

    def wait_started(self, timeout: float = START_TIMEOUT) -> None:
        def started() -> bool:
            if not self.alive():
                raise RuntimeError(f"agent exited: {self.logs()[-2000:]}")
            return "agent started" in self.logs()

        wait_for(started, timeout, "push-agent", interval=0.01)
