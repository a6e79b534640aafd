"""Helpers for the push-agent tests: the agent as a real subprocess, a replica that can be
restarted on the same ports, an EventSource reader and polling with deadlines."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

import httpx

from tests.nginx import NginxReplica

REPO_ROOT = Path(__file__).resolve().parent.parent
AGENT_DIR = REPO_ROOT / "containers" / "push-agent"
if str(AGENT_DIR) not in sys.path:
    # The agent is a container package, not installed: unit tests import it from its dir.
    sys.path.insert(0, str(AGENT_DIR))

AGENT_PYTHONPATH = f"{REPO_ROOT}{os.pathsep}{AGENT_DIR}"
REPLAY_ALL = "1:0"
"""An Nchan id older than any buffered message: resuming from it replays the whole buffer."""

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T], timeout: float = 10.0, what: str = "condition", interval: float = 0.05,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class RestartableReplica(NginxReplica):
    """A replica that keeps its ports across stop/start, as the agent's URL must stay valid."""

    def _pick_ports(self) -> None:
        if not self.internal_port:
            super()._pick_ports()


class AgentProcess:
    """``python -m push_agent`` with its stderr in a file, always reaped by ``stop``."""

    def __init__(self, log_path: Path, env: Mapping[str, str]):
        self.log_path = log_path
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "AgentProcess":
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "push_agent"], env=self.env, stdout=log, stderr=log,
                cwd=REPO_ROOT,
            )
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """Block until ``text`` appears in the agent's log; returns the whole log."""

        def seen() -> str:
            assert self.proc is not None and self.proc.poll() is None, self.logs()[-2000:]
            logs = self.logs()
            return logs if text in logs else ""

        return wait_until(seen, timeout, f"agent log line {text!r}")

    def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM, then wait; returns (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def agent_env(redis_url: str, instance: str, agent_id: str, nginx_url: str, **extra: str) -> dict:
    """The agent's environment with short intervals; ``extra`` keys are PUSHAAS_ suffixes."""
    env = {
        **os.environ,
        "PYTHONPATH": AGENT_PYTHONPATH,
        "PUSHAAS_REDIS_URL": redis_url,
        "PUSHAAS_INSTANCE": instance,
        "PUSHAAS_AGENT_ID": agent_id,
        "PUSHAAS_NGINX_URL": nginx_url,
        "PUSHAAS_STATS_INTERVAL": "0.5",
        "PUSHAAS_KEEPALIVE_INTERVAL": "0.5",
        "PUSHAAS_LOG_LEVEL": "DEBUG",
    }
    env.update({f"PUSHAAS_{name.upper()}": value for name, value in extra.items()})
    return env


def read_envelopes(
    replica: NginxReplica, channel: str, done: Callable[[list[dict]], bool],
    timeout: float = 10.0,
) -> list[dict]:
    """Envelopes from the channel's EventSource (whole buffer first) until ``done`` says so.

    Reconnects with the last Nchan id it saw, so a message published while it reconnects is
    still read, and raises when ``timeout`` passes first.
    """
    envelopes: list[dict] = []
    last_id = REPLAY_ALL
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=httpx.Timeout(5.0, read=0.5)) as client:
        while not done(envelopes):
            if time.monotonic() > deadline:
                raise AssertionError(f"{channel}: got {len(envelopes)} envelopes before timeout")
            last_id = _read_stream(client, replica, channel, last_id, envelopes, done, deadline)
    return envelopes


def _read_stream(
    client: httpx.Client, replica: NginxReplica, channel: str, last_id: str,
    envelopes: list[dict], done: Callable[[list[dict]], bool], deadline: float,
) -> str:
    url = f"{replica.public_url}/ev/{channel}?last_event_id={last_id}"
    headers = {"Accept": "text/event-stream"}
    try:
        with client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200, response.status_code
            for line in response.iter_lines():
                if line.startswith("id: "):
                    last_id = line[4:]
                elif line.startswith("data: "):
                    envelopes.append(json.loads(line[6:]))
                if done(envelopes) or time.monotonic() > deadline:
                    break
    except httpx.ReadTimeout:
        pass
    return last_id


def has_ids(expected: Iterable[str]) -> Callable[[list[dict]], bool]:
    """``done`` predicate: every expected stream id was received (duplicates allowed)."""
    wanted = set(expected)
    return lambda envelopes: wanted <= {envelope["id"] for envelope in envelopes}
