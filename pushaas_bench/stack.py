"""The whole local stack (what ``make run`` starts) with one instance, for end-to-end runs.

The stack runs with a plans file holding one extra plan, ``bench``: one replica and a
publish rate no benchmark reaches, so the rate limit never shapes a measurement.
"""

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from chalicelib import keys
from pushaas_bench.procs import (
    REPO_ROOT,
    Process,
    children,
    free_port,
    stop_group,
    wait_for,
)

READY = "PushaaS ready:"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
INSTANCE = "bench"

BENCH_PLAN = {
    "description": "benchmarks: 1 replica, no practical publish rate limit",
    "replicas": 1, "cpu": 1024, "memory": 2048,
    "max_content_bytes": 65536, "max_channels_per_message": 100,
    "max_channels": 100000, "publish_rate": 1000000,
    "buffer_length": 100, "buffer_seconds": 600,
    "retention_max_len": 1000000, "retention_seconds": 3600,
}


@dataclass(frozen=True)
class Publisher:
    """What a bound app gets, plus the replica behind the instance."""

    api_url: str
    username: str
    password: str
    public_url: str
    internal_url: str


class LocalStack:
    """``python -m pushaas_local.stack`` on free ports with a private state dir."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.api_port = free_port()
        self.redis_port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._ready = threading.Event()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        plans = self.run_dir / "plans.json"
        default = json.loads((REPO_ROOT / "chalicelib" / "plans.json").read_text())
        plans.write_text(json.dumps({**default, "bench": BENCH_PLAN}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHAAS_")}
        env.update(
            PUSHAAS_STATE_DIR=str(self.run_dir / "state"), PUSHAAS_API_PORT=str(self.api_port),
            PUSHAAS_REDIS_PORT=str(self.redis_port), PUSHAAS_PLANS_FILE=str(plans),
            PUSHAAS_LOG_LEVEL="WARNING",
        )
        return env

    def start(self) -> "LocalStack":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pushaas_local.stack"], cwd=REPO_ROOT, env=self.env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(START_TIMEOUT):
            self.stop()
            raise TimeoutError("stack not ready:\n" + "\n".join(self.output[-30:]))
        return self

    def create_instance(self, timeout: float = 60.0) -> Publisher:
        """Create the ``bench`` instance, wait until it runs, bind an app to it."""
        with self._broker() as broker:
            created = broker.post("/resources", data={
                "name": INSTANCE, "plan": "bench", "team": "bench", "user": "bench@localhost"})
            if created.status_code != 201:
                raise RuntimeError(f"create instance: {created.status_code} {created.text}")

            deadline = time.monotonic() + timeout
            while broker.get(f"/resources/{INSTANCE}/status").status_code != 204:
                if time.monotonic() > deadline:
                    raise TimeoutError("the bench instance did not start")
                time.sleep(0.2)

            bound = broker.post(f"/resources/{INSTANCE}/bind-app",
                                data={"app-name": "bench", "app-host": "bench.localhost"})
            env = bound.json()
        replica = json.loads(self.redis().hget(keys.replicas(INSTANCE), "0"))
        return Publisher(self.api_url, env["PUSHAAS_USERNAME"], env["PUSHAAS_PASSWORD"],
                         f"http://127.0.0.1:{replica['public']}",
                         f"http://127.0.0.1:{replica['internal']}")

    def start_lambda_host(self, index: int = 0) -> "LambdaHost":
        """The same app behind a Lambda-like host (see ``lambda_host``), on this stack's Redis."""
        master_key = (self.run_dir / "state" / "master.key").read_text().strip()
        env = {
            **self.env(),
            "PYTHONUNBUFFERED": "1",
            "PUSHAAS_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "PUSHAAS_MASTER_KEY": master_key,
            "PUSHAAS_BROKER_PASSWORD": "unused-by-the-push-api",
            "PUSHAAS_ENDPOINT": self.api_url,
            "PUSHAAS_PROVISIONER": "local",
            "PUSHAAS_JOB_QUEUE": "redis",
        }
        return LambdaHost(self.run_dir / f"lambda-host-{index}", env).start()

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, decode_responses=True)

    def pids(self) -> dict[str, list[int]]:
        """Process ids by role: the API, Redis, and the instance's agent and nginx workers."""
        roles: dict[str, list[int]] = {"api": [], "redis": [], "agent": [], "nginx": []}
        if self.proc is None:
            return roles
        for pid in _descendants(self.proc.pid):
            command = _command(pid)
            if "chalice" in command and " local" in command:
                roles["api"].append(pid)
            elif command.startswith(("redis-server", "/usr/bin/redis-server")):
                roles["redis"].append(pid)
            elif "push_agent" in command:
                roles["agent"].append(pid)
            elif "nginx: worker" in command and f"instances/{INSTANCE}/" in _nginx_conf(pid):
                roles["nginx"].append(pid)
        return roles

    def stop(self) -> int | None:
        """SIGTERM, as Ctrl-C would; the whole group is killed if it lingers."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        return stop_group(proc, timeout=STOP_TIMEOUT)

    def _broker(self) -> httpx.Client:
        password = subprocess.run(
            [sys.executable, "-m", "pushaas_local.stack", "--broker-password"], cwd=REPO_ROOT,
            env=self.env(), capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()
        return httpx.Client(base_url=self.api_url, auth=("pushaas", password), timeout=10,
                            trust_env=False)

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            del self.output[:-200]
            if line.startswith(READY):
                self._ready.set()


class LambdaHost(Process):
    """``python -m pushaas_bench.lambda_host`` on a free port."""

    name = "lambda-host"

    def __init__(self, run_dir: Path, env: dict[str, str]):
        super().__init__(run_dir)
        self.env = env
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LambdaHost":
        self.port = free_port()
        self.spawn([sys.executable, "-m", "pushaas_bench.lambda_host", str(self.port)],
                   self.env)
        wait_for(self._ready, 30.0, "lambda host")
        return self

    def _ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"lambda host exited: {self.logs()[-2000:]}")
        return "lambda host ready" in self.logs()


def _descendants(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        for child in children(current):
            found.append(child)
            queue.append(child)
    return found


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ").strip()
    except OSError:
        return ""


def _nginx_conf(worker: int) -> str:
    """The command line of a worker's master (it names the config and so the instance)."""
    try:
        stat = Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    return _command(int(stat[1]))
