"""A fleet of subscriber worker processes, driven from the benchmark process."""

import json
import subprocess
import sys
from dataclasses import dataclass, field

from pushaas_bench.procs import REPO_ROOT, cpu_seconds

REPLY_TIMEOUT = 120.0


@dataclass
class Arrivals:
    """Per message sequence number: how many subscribers got it, first and last arrival."""

    events: int = 0
    lost: int = 0
    messages: dict[int, list[int]] = field(default_factory=dict)

    def merge(self, reply: dict) -> None:
        self.events += reply["events"]
        self.lost += reply["lost"]
        for raw, (count, first, last) in reply["messages"].items():
            seq = int(raw)
            known = self.messages.get(seq)
            if known is None:
                self.messages[seq] = [count, first, last]
            else:
                known[0] += count
                known[1] = min(known[1], first)
                known[2] = max(known[2], last)


class Fleet:
    """``workers`` processes sharing the subscribers; always stopped and reaped."""

    def __init__(self, port: int, workers: int = 2):
        self.port = port
        self.procs: list[subprocess.Popen[str]] = []
        for _ in range(workers):
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "pushaas_bench.subscribers", "127.0.0.1", str(port)],
                cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            ))
        self.connected = 0
        self.failed = 0

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pids)

    def connect(self, paths: list[str]) -> int:
        """Open one subscriber per path, spread over the workers; returns the total held."""
        shares = [paths[n::len(self.procs)] for n in range(len(self.procs))]
        for proc, share in zip(self.procs, shares, strict=True):
            self._send(proc, {"connect": share})
        replies = [self._receive(proc) for proc in self.procs]
        self.connected = sum(reply["connected"] for reply in replies)
        self.failed = sum(reply["failed"] for reply in replies)
        return self.connected

    def collect(self) -> Arrivals:
        """What arrived since the last collect; the subscribers stay connected."""
        arrivals = Arrivals()
        for proc in self.procs:
            self._send(proc, {"collect": True})
        for proc in self.procs:
            arrivals.merge(self._receive(proc))
        return arrivals

    def stop(self) -> Arrivals:
        """Close every subscriber and collect what arrived."""
        arrivals = Arrivals()
        for proc in self.procs:
            if proc.poll() is None:
                self._send(proc, {"stop": True})
        for proc in self.procs:
            if proc.poll() is None or proc.stdout:
                try:
                    arrivals.merge(self._receive(proc))
                except (RuntimeError, ValueError):
                    pass
        self.close()
        return arrivals

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs = []

    def _send(self, proc: subprocess.Popen[str], command: dict) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(command) + "\n")
        proc.stdin.flush()

    def _receive(self, proc: subprocess.Popen[str]) -> dict:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"subscriber worker {proc.pid} exited ({proc.poll()})")
        return json.loads(line)
