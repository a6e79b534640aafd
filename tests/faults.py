"""Helpers for the delivery-under-faults tests.

A local stack (exactly ``make run``) on a Redis the test owns, so the test can kill and
restart that Redis; a plan with a deep replay buffer and no practical rate limit, so a
burst fits in nginx; bursts written straight into an instance stream, as the push-api's
script writes them; subscribers that keep reading in a thread across disconnections; and
the pids the local provisioner records for a replica's processes.
"""

import json
import socket
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import redis

from chalicelib import envelope, keys
from tests.agent_helpers import wait_until
from tests.servers import RedisServer
from tests.stack import LocalStack

FAULT_PLAN = "faults"
BUFFER_LENGTH = 10_000
"""Deeper than any burst here, so a reconnecting subscriber can get a whole burst back."""

PLANS = {
    FAULT_PLAN: {
        "description": "fault tests: one replica, deep buffer, no practical rate limit",
        "replicas": 1, "cpu": 256, "memory": 512,
        "publish_rate": 100_000, "buffer_length": BUFFER_LENGTH, "buffer_seconds": 600,
        "retention_max_len": 100_000, "retention_seconds": 3600,
    },
}

EVENT_STREAM = {"Accept": "text/event-stream"}
PIPELINE_CHUNK = 500


def write_plans(path: Path) -> Path:
    path.write_text(json.dumps(PLANS, indent=2))
    return path


class FaultStack(LocalStack):
    """The local stack on ``redis`` (not a Redis of its own) with the fault plans.

    The stack stops everything when a child of its own dies, so a Redis it started could
    not be restarted under it; one given by URL is left alone.
    """

    def __init__(self, state_dir: Path, redis_server: RedisServer, plans_file: Path):
        super().__init__(state_dir)
        self.redis_server = redis_server
        self.plans_file = plans_file

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(
            PUSHAAS_REDIS_URL=self.redis_server.url,
            PUSHAAS_PLANS_FILE=str(self.plans_file),
            PUSHAAS_STATS_INTERVAL="0.5",
        )
        return env

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.redis_server.port, decode_responses=True)

    def restart_redis(self) -> None:
        """Start the same redis-server again: same port, same data dir, same arguments."""
        self.redis_server = RedisServer(self.redis_server.data_dir,
                                        port=self.redis_server.port).start()

    def pid(self, name: str, role: str, replica: int = 0) -> int:
        """The pid the provisioner recorded for a replica's ``agent`` or ``nginx``."""
        path = self.state_dir / "instances" / name / f"replica-{replica}" / f"{role}.process"
        return int(path.read_text().split()[0])

    def wait_for_restart(self, name: str, role: str, old_pid: int, timeout: float = 15) -> int:
        """Block until the supervisor started ``role`` again; the new pid."""

        def restarted() -> int:
            try:
                pid = self.pid(name, role)
            except (OSError, ValueError):
                return 0
            return pid if pid != old_pid else 0

        return wait_until(restarted, timeout, f"{role} of {name} restarted")

    def internal_url(self, name: str, replica: int = 0) -> str:
        record = json.loads(self.redis().hget(keys.replicas(name), str(replica)) or "{}")
        return f"http://127.0.0.1:{record['internal']}"

    def subscribers(self, name: str, channel: str) -> int:
        """Subscribers replica 0's Nchan counts on ``channel`` (0 if it cannot tell)."""
        try:
            info = httpx.get(f"{self.internal_url(name)}/pub?id={channel}", trust_env=False,
                             headers={"Accept": "application/json"}, timeout=2)
        except httpx.HTTPError:
            return 0
        return info.json()["subscribers"] if info.status_code == 200 else 0

    def wait_for_subscribers(self, name: str, channel: str, count: int = 1) -> None:
        wait_until(lambda: self.subscribers(name, channel) >= count, 10,
                   f"{count} subscribers on {channel}")


def provision(stack: LocalStack, broker: httpx.Client, name: str,
              plan: str = FAULT_PLAN) -> dict[str, str]:
    """Create an instance, wait until it runs, bind an app: the app's environment."""
    fields = {"name": name, "plan": plan, "team": "team", "user": "dev@example.com"}
    created = broker.post("/resources", data=fields)
    assert created.status_code == 201, created.text
    stack.wait_for_status(broker, name, 204)
    bound = broker.post(f"/resources/{name}/bind-app", data={"app-name": f"{name}-app"})
    assert bound.status_code == 201, bound.text
    return bound.json()


def publisher(env: dict[str, str], timeout: float = 10) -> httpx.Client:
    return httpx.Client(base_url=env["PUSHAAS_ENDPOINT"], timeout=timeout, trust_env=False,
                        auth=(env["PUSHAAS_USERNAME"], env["PUSHAAS_PASSWORD"]))


def xadd_burst(client: redis.Redis, instance: str, channel: str,
               texts: Iterable[str]) -> list[str]:
    """Append entries as the push-api's script does (same fields, no trim); their ids."""
    ids: list[str] = []
    batch = list(texts)
    for start in range(0, len(batch), PIPELINE_CHUNK):
        pipe = client.pipeline(transaction=False)
        for text in batch[start:start + PIPELINE_CHUNK]:
            pipe.xadd(keys.stream(instance), envelope.entry_fields([channel], text))
        ids += pipe.execute()
    return ids


def cursor(client: redis.Redis, instance: str, replica: int = 0) -> str | None:
    return client.get(keys.cursor(instance, f"{instance}-{replica}"))


def id_key(entry_id: str) -> tuple[int, int]:
    millis, _, sequence = entry_id.partition("-")
    return int(millis), int(sequence)


def duplicates(envelopes: list[dict]) -> dict[str, int]:
    """Stream ids received more than once, with how many extra copies."""
    counts = Counter(item["id"] for item in envelopes)
    return {entry_id: count - 1 for entry_id, count in counts.items() if count > 1}


class Subscriber:
    """An EventSource subscriber reading in a thread until stopped.

    It speaks HTTP/1.0 on a raw socket, so the event stream arrives unchunked even through
    the front nginx, and a quiet spell never costs it its connection. Every reconnection
    resumes with the last Nchan event id it saw, as a browser does (``?last_event_id=``,
    since browsers cannot set headers on EventSource); ``reconnect=False`` makes it stop
    at the first connection nginx closes, like a client that went away.
    """

    def __init__(self, base_url: str, channel: str, last_event_id: str | None = None,
                 reconnect: bool = True):
        parts = urlsplit(base_url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.path = f"/ev/{channel}"
        self.last_event_id = last_event_id
        self.reconnect = reconnect
        self.envelopes: list[dict] = []
        self.event_ids: list[tuple[int, str]] = []
        """(connection number, Nchan event id) of each envelope, in arrival order."""
        self.connections = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Subscriber":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "subscriber thread did not stop"

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.envelopes)

    def ids(self) -> set[str]:
        return {item["id"] for item in self.received()}

    def wait_for(self, expected: Iterable[str], timeout: float = 20) -> None:
        wanted = set(expected)
        wait_until(lambda: wanted <= self.ids(), timeout,
                   f"{len(wanted)} ids on {self.path} (have {len(wanted & self.ids())})")

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self._read_connection():
                return
            self.dropped += 1
            if not self.reconnect:
                return
            self._stopping.wait(0.05)

    def _read_connection(self) -> bool:
        """One connection until nginx ends it (False) or the subscriber is stopped (True)."""
        target = self.path
        if self.last_event_id is not None:
            target += f"?last_event_id={self.last_event_id}"
        request = (f"GET {target} HTTP/1.0\r\nHost: {self.address[0]}\r\n"
                   "Accept: text/event-stream\r\n\r\n")
        try:
            with socket.create_connection(self.address, timeout=2) as sock:
                sock.sendall(request.encode())
                sock.settimeout(0.2)
                self.connections += 1
                return self._read_events(sock)
        except OSError:
            return self._stopping.is_set()

    def _read_events(self, sock: socket.socket) -> bool:
        buffer = b""
        head_done = False
        while not self._stopping.is_set():
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return False

            buffer += chunk
            if not head_done:
                head, sep, buffer = buffer.partition(b"\r\n\r\n")
                if not sep:
                    buffer = head
                    continue
                if b" 200 " not in head.split(b"\r\n", 1)[0]:
                    return False
                head_done = True
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                self._event(event.decode())
        return True

    def _event(self, block: str) -> None:
        for line in block.split("\n"):
            if line.startswith("id: "):
                self.last_event_id = line[4:]
            elif line.startswith("data: "):
                with self._lock:
                    self.envelopes.append(json.loads(line[6:]))
                    self.event_ids.append((self.connections, self.last_event_id or ""))
