"""Real push-stream nginx processes for tests.

Each one is started exactly as the container and the local provisioner start it
(``render.py run``), on free loopback ports, with everything under a private run dir,
and is always stopped and reaped.

    replica = NginxReplica(tmp_path, buffer_length=10).start()
    replica.publish("news", body)
    front = NginxFront(tmp_path, upstream_ports=[replica.public_port]).start()
    ...
    front.stop(); replica.stop()
"""

import http.client
import importlib.util
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Self

import httpx

from tests.servers import free_port

RENDER_SCRIPT = Path(__file__).resolve().parent.parent / "containers/push-stream/render.py"
# The image runs render.py with Debian's python3; so do the tests, wherever pytest runs from.
PYTHON = shutil.which("python3", path=os.defpath) or sys.executable
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
START_ATTEMPTS = 3

_names = itertools.count()


def load_render() -> ModuleType:
    """render.py imported by path (it is a script in a container dir, not a package)."""
    spec = importlib.util.spec_from_file_location("push_stream_render", RENDER_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


class _Nginx:
    """One ``render.py run`` process: the master nginx after the exec."""

    front = False

    def __init__(
        self, base_dir: Path, env: Mapping[str, str] | None = None, user: str | None = None
    ) -> None:
        self.run_dir = base_dir / f"{type(self).__name__.lower()}-{next(_names)}"
        self.extra_env = dict(env or {})
        self.user = user
        self.public_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "nginx.log"

    def settings(self) -> dict[str, str]:
        """PUSH_STREAM_* variables for this process; ports are chosen by the caller."""
        return {
            "PUSH_STREAM_RUN_DIR": str(self.run_dir),
            "PUSH_STREAM_PUBLIC_ADDR": "127.0.0.1",
            "PUSH_STREAM_PUBLIC_PORT": str(self.public_port),
            "PUSH_STREAM_MAX_CONNECTIONS": "1024",
            **self.extra_env,
        }

    def _pick_ports(self) -> None:
        self.public_port = free_port()

    def start(self) -> Self:
        """Start and wait for /healthz; a port taken meanwhile gets new ports."""
        for _ in range(START_ATTEMPTS):
            self._pick_ports()
            if self._launch():
                return self
        raise RuntimeError(f"nginx did not start: {self.log_path.read_text()[-2000:]}")

    def _launch(self) -> bool:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            shutil.chown(self.run_dir, self.user)

        command = [PYTHON, str(RENDER_SCRIPT), "run"] + (["--front"] if self.front else [])
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, env={**os.environ, **self.settings()}, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, user=self.user,
            )

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            if _healthy(self.public_port):
                return True
            time.sleep(0.02)

        self.stop()
        raise TimeoutError(f"nginx not healthy after {START_TIMEOUT}s: {self.log_path}")

    def stop(self) -> None:
        """Fast shutdown, then kill the whole process group (workers too) if it lingers."""
        if self.proc is None:
            return

        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NginxReplica(_Nginx):
    """One replica: subscribers on ``public_url``, the publisher on ``internal_url``."""

    def __init__(
        self,
        base_dir: Path,
        buffer_length: int = 100,
        buffer_seconds: int = 600,
        cors_origin: str = "*",
        env: Mapping[str, str] | None = None,
        user: str | None = None,
    ) -> None:
        super().__init__(base_dir, env, user)
        self.buffer_length = buffer_length
        self.buffer_seconds = buffer_seconds
        self.cors_origin = cors_origin
        self.internal_port = 0

    @property
    def internal_url(self) -> str:
        return f"http://127.0.0.1:{self.internal_port}"

    def settings(self) -> dict[str, str]:
        return {
            "PUSH_STREAM_INTERNAL_PORT": str(self.internal_port),
            "PUSH_STREAM_BUFFER_LENGTH": str(self.buffer_length),
            "PUSH_STREAM_BUFFER_SECONDS": str(self.buffer_seconds),
            "PUSH_STREAM_CORS_ORIGIN": self.cors_origin,
            **super().settings(),
        }

    def _pick_ports(self) -> None:
        super()._pick_ports()
        self.internal_port = free_port()

    def publish(self, channel: str, body: bytes) -> httpx.Response:
        """POST one message to a channel, as the agent does."""
        headers = {"Content-Type": "application/json"}
        url = f"{self.internal_url}/pub?id={channel}"
        return httpx.post(url, content=body, headers=headers, timeout=5)

    def subscribers(self, channel: str) -> int:
        """Subscribers Nchan counts on a channel (0 when the channel does not exist)."""
        url = f"{self.internal_url}/pub?id={channel}"
        response = httpx.get(url, headers={"Accept": "application/json"}, timeout=5)
        return response.json()["subscribers"] if response.status_code == 200 else 0

    def wait_for_subscribers(self, channel: str, count: int = 1, timeout: float = 5.0) -> None:
        """Block until ``count`` subscribers are attached, so a publish cannot race them."""
        deadline = time.monotonic() + timeout
        while self.subscribers(channel) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} subscribers on {channel!r}")
            time.sleep(0.02)


class NginxFront(_Nginx):
    """The local load balancer in front of replicas' public ports."""

    front = True

    def __init__(
        self,
        base_dir: Path,
        upstream_ports: list[int],
        env: Mapping[str, str] | None = None,
        user: str | None = None,
    ) -> None:
        super().__init__(base_dir, env, user)
        self.upstream_ports = list(upstream_ports)

    def settings(self) -> dict[str, str]:
        upstreams = ",".join(f"127.0.0.1:{port}" for port in self.upstream_ports)
        return {"PUSH_STREAM_UPSTREAMS": upstreams, **super().settings()}
