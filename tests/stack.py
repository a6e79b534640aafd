"""The whole local stack (``python -m pushaas_local.stack``) as a test fixture.

It is started exactly as ``make run`` starts it, on free loopback ports with a private
state dir, and stopped with SIGTERM as Ctrl-C would.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.servers import free_port

READY = "PushaaS ready:"
REPO = Path(__file__).resolve().parent.parent


class LocalStack:
    def __init__(self, state_dir: Path, api_port: int | None = None,
                 redis_port: int | None = None):
        self.state_dir = state_dir
        self.api_port = api_port or free_port()
        self.redis_port = redis_port or free_port()
        self.output: list[str] = []
        self.proc: subprocess.Popen | None = None
        self._ready = threading.Event()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHAAS_")}
        env.update(PUSHAAS_STATE_DIR=str(self.state_dir), PUSHAAS_API_PORT=str(self.api_port),
                   PUSHAAS_REDIS_PORT=str(self.redis_port))
        return env

    def start(self, timeout: float = 60.0) -> "LocalStack":
        self._ready.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pushaas_local.stack"], cwd=REPO, env=self.env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError("stack not ready:\n" + "\n".join(self.output[-40:]))
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line.rstrip("\n"))
            if line.startswith(READY):
                self._ready.set()

    def broker_password(self) -> str:
        printed = subprocess.run(
            [sys.executable, "-m", "pushaas_local.stack", "--broker-password"], cwd=REPO,
            env=self.env(), capture_output=True, text=True, timeout=30, check=True)
        return printed.stdout.strip()

    def broker(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, auth=("pushaas", self.broker_password()),
                            timeout=10, trust_env=False)

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, decode_responses=True)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (what Ctrl-C amounts to); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def wait_for_status(self, client: httpx.Client, name: str, wanted: int,
                        timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (code := client.get(f"/resources/{name}/status").status_code) != wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} status stayed {code}, wanted {wanted}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One stack per test module: modules stay independent, tests in one share it."""
    running = LocalStack(tmp_path_factory.mktemp("stack") / "state").start()
    yield running
    assert running.stop() == 0, "\n".join(running.output[-30:])


@pytest.fixture(scope="module")
def broker(stack: LocalStack) -> Iterator[httpx.Client]:
    """An HTTP client for the stack's Tsuru broker, with its credentials."""
    with stack.broker() as client:
        yield client
