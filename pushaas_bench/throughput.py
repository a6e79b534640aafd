"""Agent throughput: agents draining pre-filled instance streams into their nginx.

Each stream is filled under a staging key first and renamed into place once every agent
is up and blocked on its empty stream, so the clock starts with the rename and no agent
start-up or stream filling is measured. The clock stops when every agent's saved cursor
is the last entry: that is when its nginx accepted everything.
"""

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

from chalicelib import envelope, keys
from pushaas_bench.procs import (
    AgentProcess,
    NginxReplica,
    RedisServer,
    agent_environment,
    cpu_seconds,
)
from pushaas_bench.profiling import ProfileSummary, Sampler

FILL_CHUNK = 2000
POLL_SECONDS = 0.002


@dataclass(frozen=True)
class Workload:
    messages: int
    channels: int = 1000
    channels_per_message: int = 1
    content_bytes: int = 100

    @property
    def deliveries(self) -> int:
        return self.messages * self.channels_per_message


@dataclass
class DrainResult:
    workload: Workload
    instances: int
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds used during the drain by the agents, the nginx workers and Redis."""
    profile: ProfileSummary | None = None

    @property
    def messages_per_second(self) -> float:
        return self.workload.messages * self.instances / self.seconds

    @property
    def deliveries_per_second(self) -> float:
        return self.workload.deliveries * self.instances / self.seconds

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(messages_per_second=self.messages_per_second,
                    deliveries_per_second=self.deliveries_per_second)
        return data


def content(size: int) -> str:
    """ASCII text of ``size`` bytes that needs no JSON escaping, like typical messages."""
    pattern = "lorem-ipsum-dolor-sit-amet-"
    return (pattern * (size // len(pattern) + 1))[:size]


def fill(client: redis.Redis, key: str, workload: Workload, prefix: str) -> str:
    """Append the workload's messages to ``key``; returns the last entry id."""
    text = content(workload.content_bytes)
    per_message = workload.channels_per_message
    last_id = ""
    for start in range(0, workload.messages, FILL_CHUNK):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(start + FILL_CHUNK, workload.messages)):
            first = n * per_message
            channels = [f"{prefix}{(first + k) % workload.channels}" for k in range(per_message)]
            pipe.xadd(key, envelope.entry_fields(channels, text))
        last_id = pipe.execute()[-1]
    return last_id.decode() if isinstance(last_id, bytes) else last_id


class Drain:
    """``instances`` instances sharing one Redis, each with its own nginx and agent."""

    def __init__(self, run_dir: Path, redis_server: RedisServer, workload: Workload,
                 instances: int = 1, nginx_settings: dict[str, str] | None = None,
                 agent_settings: dict[str, str] | None = None, label: str = "drain"):
        self.run_dir = run_dir
        self.redis_server = redis_server
        self.workload = workload
        self.names = [f"{label}{n}" for n in range(instances)]
        self.nginx_settings = nginx_settings or {}
        self.agent_settings = agent_settings or {}
        self.nginx: list[NginxReplica] = []
        self.agents: list[AgentProcess] = []

    def start_nginx(self) -> list[NginxReplica]:
        for name in self.names:
            replica = NginxReplica(self.run_dir / name, **self.nginx_settings).start()
            self.nginx.append(replica)
        return self.nginx

    def run(self, timeout: float, profile: Path | None = None) -> DrainResult:
        """Fill, start the agents, release the streams and time the drain.

        With ``profile``, py-spy samples the first agent during the drain.
        """
        client = self.redis_server.client()
        if not self.nginx:
            self.start_nginx()
        last_ids = self._fill(client)
        self._start_agents(client)

        pids = self._pids()
        sampler = Sampler(self.agents[0].proc.pid, profile).start() if profile else None
        before = {side: cpu_seconds(group) for side, group in pids.items()}
        started = time.perf_counter()
        with client.pipeline(transaction=True) as pipe:
            for name in self.names:
                pipe.rename(_staging(name), keys.stream(name))
            pipe.execute()

        self._wait_drained(client, last_ids, started + timeout)
        seconds = time.perf_counter() - started
        after = {side: cpu_seconds(group) for side, group in pids.items()}
        cpu = {side: after[side] - before[side] for side in pids}
        summary = sampler.stop() if sampler else None
        return DrainResult(self.workload, len(self.names), seconds, cpu, summary)

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()
        for replica in self.nginx:
            replica.stop()
        self.agents, self.nginx = [], []

    def _fill(self, client: redis.Redis) -> dict[str, str]:
        last_ids = {}
        for name in self.names:
            client.delete(_staging(name), keys.stream(name))
            last_ids[name] = fill(client, _staging(name), self.workload, f"{name}-ch")
        return last_ids

    def _start_agents(self, client: redis.Redis) -> None:
        for name, replica in zip(self.names, self.nginx, strict=True):
            agent_id = f"{name}-0"
            client.set(keys.cursor(name, agent_id), "0-0")
            env = agent_environment(self.redis_server.url, name, agent_id,
                                    replica.internal_url, self.run_dir, **self.agent_settings)
            self.agents.append(AgentProcess(self.run_dir / name, env).start())
        for agent in self.agents:
            agent.wait_started()

    def _wait_drained(self, client: redis.Redis, last_ids: dict[str, str],
                      deadline: float) -> None:
        waiting = {name: keys.cursor(name, f"{name}-0") for name in self.names}
        while waiting:
            cursors = client.mget(list(waiting.values()))
            for name, value in zip(list(waiting), cursors, strict=True):
                if value is not None and value.decode() == last_ids[name]:
                    del waiting[name]
            if time.perf_counter() > deadline:
                dead = [a.name for a in self.agents if not a.alive()]
                raise TimeoutError(f"{len(waiting)} streams not drained in time; dead={dead}")
            time.sleep(POLL_SECONDS)

    def _pids(self) -> dict[str, list[int]]:
        return {
            "agent": [pid for agent in self.agents for pid in agent.pids],
            "nginx": [pid for replica in self.nginx for pid in replica.worker_pids],
            "redis": self.redis_server.pids,
        }


def _staging(name: str) -> str:
    return f"bench:staging:{{{name}}}"
