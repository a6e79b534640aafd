"""Idle subscribers per nginx: how many one push-stream holds and what each thousand costs."""

import re
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from pushaas_bench.fleet import Fleet
from pushaas_bench.procs import NginxReplica, rss_kb

CHANNELS = 1000
SUBSCRIBE_TIMEOUT = 60.0

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class IdleResult:
    wanted: int
    held: int
    max_connections: int
    steps: list[tuple[int, int]]
    """(subscribers, nginx resident KiB: master and workers) after each step."""
    shared_memory: str

    @property
    def kib_per_thousand(self) -> float:
        (first_count, first_kib), (last_count, last_kib) = self.steps[0], self.steps[-1]
        if last_count == first_count:
            return float("nan")
        return (last_kib - first_kib) / (last_count - first_count) * 1000

    def as_dict(self) -> dict:
        data = asdict(self)
        data["kib_per_thousand"] = self.kib_per_thousand
        return data


def stub_status(internal_url: str) -> str:
    with _HTTP.open(f"{internal_url}/nchan_stub_status", timeout=5) as response:
        return response.read().decode()


def subscribers(internal_url: str) -> int:
    match = re.search(r"subscribers:\s*(\d+)", stub_status(internal_url))
    return int(match.group(1)) if match else 0


def wait_subscribed(internal_url: str, count: int, timeout: float = SUBSCRIBE_TIMEOUT) -> None:
    """Block until nginx counts ``count`` subscribers, so a publish cannot race them."""
    deadline = time.monotonic() + timeout
    while subscribers(internal_url) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"nginx counts fewer than {count} subscribers")
        time.sleep(0.05)


def idle_subscribers(run_dir: Path, total: int, step: int, workers: int = 2) -> IdleResult:
    """Connect ``total`` EventSource subscribers ``step`` at a time, reading nginx's memory."""
    max_connections = total + 2000
    replica = NginxReplica(run_dir / "idle", max_connections=str(max_connections)).start()
    fleet = Fleet(replica.public_port, workers)
    try:
        pids = replica.pids
        steps = [(0, rss_kb(pids))]
        held = 0
        paths = [f"/ev/idle{n % CHANNELS}" for n in range(total)]
        for start in range(0, total, step):
            held = fleet.connect(paths[start:start + step])
            if held < start + step:
                break
            wait_subscribed(replica.internal_url, held)
            steps.append((held, rss_kb(pids)))
        memory = re.search(r"shared memory used:\s*(\S+)", stub_status(replica.internal_url))
        return IdleResult(total, held, max_connections, steps,
                          memory.group(1) if memory else "")
    finally:
        fleet.stop()
        replica.stop()
