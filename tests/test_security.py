"""Security proofs against the real processes.

1. The agent-only locations (``/pub``, ``/nchan_stub_status``) exist only in the replica's
   internal server, which listens on 127.0.0.1 alone and refuses every other source
   address, even another loopback one.
2. Secrets appear nowhere they should not: after a full flow through the local stack,
   no log file, stack output line (but the banner's, on purpose), Redis key or value, or
   process command line holds the broker password, the master key, a publisher password,
   a subscribe key or an issued token's signature.
"""

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from chalicelib import keys, subscribe_tokens
from chalicelib.credentials import subscribe_key
from chalicelib.envelope import envelope
from pushaas_local.stack import MASTER_KEY_FILE
from tests.api import MASTER_KEY
from tests.authorizer import AuthorizerProcess
from tests.nginx import NginxReplica, load_render
from tests.stack import LocalStack
from tests.subscribers import EVENT_STREAM, EventReader

pytestmark = pytest.mark.timeout(30)

OTHER_LOOPBACK = "127.0.0.2"
AGENT_ONLY = [("POST", "/pub?id=news"), ("GET", "/pub?id=news"), ("DELETE", "/pub?id=news"),
              ("GET", "/nchan_stub_status")]
TCP_LISTEN = "0A"
READ_TIMEOUT = 5.0


# ---- 1. agent-only locations -----------------------------------------------------------

def server_blocks(config: str) -> list[str]:
    """The text of each ``server { ... }`` block of a rendered config, braces matched."""
    blocks = []
    start = config.find("server {")
    while start != -1:
        depth, end = 0, start
        for end in range(config.index("{", start), len(config)):
            depth += {"{": 1, "}": -1}.get(config[end], 0)
            if depth == 0:
                break
        blocks.append(config[start:end + 1])
        start = config.find("server {", end)
    return blocks


def test_agent_only_locations_live_only_in_the_loopback_server(tmp_path: Path) -> None:
    """Rendered as in production: public on 0.0.0.0, the authorizer wired."""
    config = load_render().render_replica({
        "PUSH_STREAM_RUN_DIR": str(tmp_path), "PUSH_STREAM_INTERNAL_PORT": "9081",
        "PUSH_STREAM_AUTHORIZER_PORT": "9082",
    })
    public, internal = server_blocks(config)

    assert "listen 0.0.0.0:9080;" in public
    assert "/pub" not in public and "nchan_stub_status" not in public
    assert "nchan_publisher" not in public

    assert [line.strip() for line in internal.splitlines()
            if line.strip().startswith("listen ")] == ["listen 127.0.0.1:9081;"]
    assert "allow 127.0.0.1;\n        deny all;" in internal
    assert "location = /pub {" in internal and "location = /nchan_stub_status {" in internal


def listeners(port: int) -> set[str]:
    """Addresses with a listening TCP socket on ``port`` (this network namespace)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == TCP_LISTEN and int(port_hex, 16) == port:
                found.add(_address(address))
    return found


def _address(hex_address: str) -> str:
    """/proc/net/tcp spells addresses as host-order 32-bit words in hex."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words)


def from_source(source: str, method: str, url: str) -> int:
    """The status of a request sent from ``source`` (bound before connecting)."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=READ_TIMEOUT, trust_env=False) as client:
        return client.request(method, url, content=b"x" if method == "POST" else None)\
            .status_code


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[NginxReplica]:
    key = subscribe_key(MASTER_KEY, "mypush", "salt")
    with AuthorizerProcess(tmp_path, "mypush", key) as authorizer, \
            NginxReplica(tmp_path, env=authorizer.replica_env()) as server:
        server.authorizer_port = authorizer.port  # type: ignore[attr-defined]
        yield server


@pytest.mark.parametrize(("method", "path"), AGENT_ONLY)
def test_agent_only_locations_refuse_another_loopback_address(
    replica: NginxReplica, method: str, path: str,
) -> None:
    url = replica.internal_url + path

    assert from_source(OTHER_LOOPBACK, method, url) == 403
    # The same request from the agent's address is served: the 403 is the source's doing.
    assert from_source("127.0.0.1", method, url) in (200, 201, 202, 404)


@pytest.mark.parametrize(("method", "path"), AGENT_ONLY)
def test_the_public_port_has_no_agent_only_location(replica: NginxReplica, method: str,
                                                    path: str) -> None:
    assert from_source("127.0.0.1", method, replica.public_url + path) == 404


def test_internal_and_authorizer_ports_listen_on_127_0_0_1_only(replica: NginxReplica) -> None:
    authorizer_port: int = replica.authorizer_port  # type: ignore[attr-defined]
    for port in (replica.internal_port, authorizer_port):
        assert listeners(port) == {"127.0.0.1"}
        for address, family in ((OTHER_LOOPBACK, socket.AF_INET), ("::1", socket.AF_INET6)):
            with socket.socket(family) as sock, pytest.raises(ConnectionRefusedError):
                sock.settimeout(READ_TIMEOUT)
                sock.connect((address, port))


# ---- 2. secrets nowhere ----------------------------------------------------------------

def redis_contents(client: redis.Redis) -> list[bytes]:
    """Every key name, every value of every type, and every key's DUMP."""
    found: list[bytes] = []
    for key in client.scan_iter(count=1000):
        found += [key, client.dump(key) or b""]
        kind = client.type(key).decode()
        if kind == "string":
            found.append(client.get(key) or b"")
        elif kind == "hash":
            found += [item for pair in client.hgetall(key).items() for item in pair]
        elif kind == "list":
            found += client.lrange(key, 0, -1)
        elif kind == "set":
            found += list(client.smembers(key))
        elif kind == "zset":
            found += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            found += [item for _, fields in client.xrange(key) for pair in fields.items()
                      for item in pair]
        else:
            raise AssertionError(f"unexpected Redis type {kind} of {key!r}")
    return found


def command_lines() -> dict[int, bytes]:
    """Every process's command line (what ``ps`` shows to any user)."""
    lines = {}
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            lines[int(proc_dir.name)] = (proc_dir / "cmdline").read_bytes()
        except OSError:
            continue
    return lines


def leaks(secrets: dict[str, str], places: dict[str, bytes]) -> list[str]:
    return [f"{name} in {place}" for name, secret in secrets.items()
            for place, content in places.items() if secret.encode() in content]


def wait_for_subscriber(stack: LocalStack, name: str, channel: str) -> None:
    """Poll the replica's Nchan until a subscriber sits on ``channel``."""
    record = json.loads(stack.redis().hget(keys.replicas(name), "0") or "{}")
    url = f"http://127.0.0.1:{record['internal']}/pub?id={channel}"
    deadline = time.monotonic() + READ_TIMEOUT
    while True:
        info = httpx.get(url, headers={"Accept": "application/json"}, trust_env=False)
        if info.status_code == 200 and info.json()["subscribers"] > 0:
            return
        assert time.monotonic() < deadline, f"no subscriber on {channel}"
        time.sleep(0.05)


def private_flow(stack: LocalStack, name: str, env: dict[str, str]) -> str:
    """Refused and accepted private subscriptions, a publish; the token's signature."""
    auth = (env["PUSHAAS_USERNAME"], env["PUSHAAS_PASSWORD"])
    with httpx.Client(base_url=env["PUSHAAS_ENDPOINT"], auth=auth, timeout=10,
                      trust_env=False) as api:
        issued = api.post("/api/v1/tokens", json={"channels": ["private-room"], "ttl": 300})
        assert issued.status_code == 201, issued.text
        token = issued.json()["token"]
        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")

        base = f"{env['PUSHAAS_PUSH_STREAM_URL']}/ev/news/private-room"
        refused = httpx.get(f"{base}?auth={forged}", headers=EVENT_STREAM, trust_env=False)
        assert refused.status_code == 403

        with httpx.stream("GET", f"{base}?auth={token}", headers=EVENT_STREAM,
                          timeout=READ_TIMEOUT, trust_env=False) as response:
            assert response.status_code == 200
            wait_for_subscriber(stack, name, "private-room")
            sent = api.post("/api/v1/messages", json={"channels": ["private-room", "news"],
                                                      "content": "hello"})
            assert sent.status_code == 201, sent.text
            assert json.loads(EventReader(response).next()[1])["text"] == "hello"
    return subscribe_tokens.signature_of(token)


def banner_lines(password: str) -> list[str]:
    """The two banner lines that show the broker password to the user, on purpose."""
    return [f"broker password:  {password}  (derived from the master key)",
            f"AUTH=pushaas:{password}"]


@pytest.mark.timeout(90)
def test_no_secret_leaks_anywhere(tmp_path: Path) -> None:
    state = tmp_path / "state"
    stack = LocalStack(state).start()
    try:
        with stack.broker() as broker:
            created = broker.post("/resources", data={"name": "vault", "team": "t",
                                                      "user": "u@example.com"})
            assert created.status_code == 201, created.text
            stack.wait_for_status(broker, "vault", 204)
            bound = broker.post("/resources/vault/bind-app", data={"app-name": "vault-app"})
            assert bound.status_code == 201, bound.text
        env = bound.json()
        signature = private_flow(stack, "vault", env)

        master_key = (state / MASTER_KEY_FILE).read_text().strip()
        salt = stack.redis().hget(keys.instance("vault"), "salt")
        secrets = {
            "broker password": stack.broker_password(),
            "master key": master_key,
            "publisher password": env["PUSHAAS_PASSWORD"],
            "subscribe key": subscribe_key(master_key, "vault", salt),
            "token signature": signature,
        }

        raw_redis = redis.Redis(port=stack.redis_port)
        stored = {"redis": b"\n".join(redis_contents(raw_redis))}
        raw_redis.close()
        processes = {f"cmdline of pid {pid}": line for pid, line in command_lines().items()}
    finally:
        assert stack.stop() == 0, "\n".join(stack.output[-30:])

    files = {str(path.relative_to(state)): path.read_bytes()
             for path in state.rglob("*") if path.is_file() and path.name != MASTER_KEY_FILE}
    # The places were really looked at: the instance's logs, its processes, its records.
    for log_name in ("authorizer.log", "agent.log", "nginx.log"):
        assert any(name.endswith(log_name) for name in files), sorted(files)
    assert any(b"push_agent.authorizer" in line for line in processes.values())
    assert salt.encode() in stored["redis"]

    allowed = banner_lines(secrets["broker password"])
    output = [line for line in stack.output if line not in allowed]
    assert [stack.output.count(line) for line in allowed] == [1, 1]

    places = {**stored, **processes, **files, "stack output": "\n".join(output).encode()}
    assert leaks(secrets, places) == []


def test_the_leak_check_finds_a_planted_secret() -> None:
    """Guards the test above: a secret in a place is reported, a near miss is not."""
    secrets = {"token signature": "abcDEF123"}
    places = {"a.log": b"x abcDEF123 y", "b.log": b"abcDEF12", "redis": envelope("1-0", "c", "t")}
    assert leaks(secrets, places) == ["token signature in a.log"]
