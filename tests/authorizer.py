"""The replica's authorizer (``python -m push_agent.authorizer``) as a real test process.

Started exactly as the local provisioner starts it, on a free loopback port, with its
output in a file; always stopped and reaped.

    with AuthorizerProcess(tmp_path, "mypush", key) as authorizer:
        replica = NginxReplica(tmp_path, env=authorizer.replica_env()).start()
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx

from tests.agent_helpers import AGENT_PYTHONPATH
from tests.servers import free_port

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class AuthorizerProcess:
    def __init__(self, base_dir: Path, instance: str, key: str) -> None:
        self.log_path = base_dir / f"authorizer-{instance}.log"
        self.instance = instance
        self.key = key
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": AGENT_PYTHONPATH,
            "PUSHAAS_INSTANCE": self.instance,
            "PUSHAAS_SUBSCRIBE_KEY": self.key,
            "PUSHAAS_AUTHORIZER_PORT": str(self.port),
        }

    def replica_env(self) -> dict[str, str]:
        """What a replica's nginx needs to ask this authorizer."""
        return {"PUSH_STREAM_AUTHORIZER_PORT": str(self.port)}

    def start(self) -> Self:
        self.port = free_port()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "push_agent.authorizer"], env=self.env(),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        deadline = time.monotonic() + START_TIMEOUT
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"authorizer did not start: {self.log_path.read_text()}")
            time.sleep(0.02)
        return self

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/healthz"
            return httpx.get(url, timeout=1, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return proc.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
