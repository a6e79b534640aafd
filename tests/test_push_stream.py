"""push-stream (nginx + Nchan) with the real nginx: config, subscribers, replay, front."""

import ast
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from chalicelib.envelope import envelope
from tests.nginx import PYTHON, RENDER_SCRIPT, NginxFront, NginxReplica, load_render
from tests.subscribers import EVENT_STREAM, EventReader

pytestmark = pytest.mark.timeout(30)

READ_TIMEOUT = 5.0


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[NginxReplica]:
    with NginxReplica(tmp_path, buffer_length=10) as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(READ_TIMEOUT)) as http:
        yield http


def entry(n: int, channel: str = "news") -> bytes:
    """The envelope of the n-th stream entry on a channel, as the agent publishes it."""
    return envelope(f"1700000000{n:03d}-0", channel, f"message {n} on {channel}")


def receive(client: httpx.Client, replica: NginxReplica, url: str, channel: str,
            body: bytes, headers: dict[str, str] | None = None) -> tuple[str, bytes]:
    """Subscribe over EventSource, publish ``body`` once attached, return the first event."""
    with client.stream("GET", url, headers={**EVENT_STREAM, **(headers or {})}) as response:
        assert response.status_code == 200
        replica.wait_for_subscribers(channel)
        assert replica.publish(channel, body).status_code in (201, 202)
        return EventReader(response).next()


def render_cli(env: dict[str, str], out: Path, front: bool = False) -> subprocess.CompletedProcess:
    command = [PYTHON, str(RENDER_SCRIPT), "render", "--out", str(out)]
    command += ["--front"] if front else []
    return subprocess.run(command, env={"PATH": os.environ["PATH"], **env},
                          capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize(("front", "authorizer"), [(False, ""), (False, "9082"), (True, "")],
                         ids=["replica", "replica-with-authorizer", "front"])
def test_rendered_config_passes_nginx_test(tmp_path: Path, front: bool, authorizer: str) -> None:
    conf = tmp_path / "nginx.conf"
    env = {"PUSH_STREAM_RUN_DIR": str(tmp_path / "run"), "PUSH_STREAM_UPSTREAMS": "127.0.0.1:1",
           "PUSH_STREAM_AUTHORIZER_PORT": authorizer}
    rendered = render_cli(env, conf, front)
    assert rendered.returncode == 0, rendered.stderr

    nginx = load_render().nginx_command(conf, tmp_path / "run")[0]
    checked = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path / "run"),
                              "-e", "stderr"], capture_output=True, text=True, timeout=10)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_replica_config_carries_the_settings(tmp_path: Path) -> None:
    text = load_render().render_replica({
        "PUSH_STREAM_RUN_DIR": str(tmp_path), "PUSH_STREAM_BUFFER_LENGTH": "7",
        "PUSH_STREAM_BUFFER_SECONDS": "42", "PUSH_STREAM_INTERNAL_PORT": "9999",
    })

    assert "listen 0.0.0.0:9080;" in text
    assert "listen 127.0.0.1:9999;" in text
    assert "nchan_message_buffer_length 7;" in text
    assert "nchan_message_timeout 42s;" in text
    assert "load_module /" in text
    assert "{{" not in text


def test_eventsource_pings_only_when_asked(tmp_path: Path) -> None:
    """Nchan 1.3.6 keeps memory per EventSource ping on a busy connection (the soak and
    pushaas_bench.ping_memory measure it), so they are off unless an operator asks;
    WebSocket pings do not grow and stay."""
    render = load_render()
    default = render.render_replica({"PUSH_STREAM_RUN_DIR": str(tmp_path)})
    asked = render.render_replica({"PUSH_STREAM_RUN_DIR": str(tmp_path),
                                   "PUSH_STREAM_EVENTSOURCE_PING": "45"})

    assert "nchan_eventsource_ping_interval" not in default
    assert "nchan_websocket_ping_interval 30s;" in default
    assert "nchan_eventsource_ping_interval 45s;" in asked


def test_front_config_lists_every_upstream(tmp_path: Path) -> None:
    text = load_render().render_front({
        "PUSH_STREAM_RUN_DIR": str(tmp_path),
        "PUSH_STREAM_UPSTREAMS": "127.0.0.1:7001, replica-2:7002,[::1]:7003",
    })

    for server in ("127.0.0.1:7001", "replica-2:7002", "[::1]:7003"):
        assert f"server {server};" in text


@pytest.mark.parametrize(("name", "value", "front"), [
    ("PUSH_STREAM_PUBLIC_PORT", "http", False),
    ("PUSH_STREAM_INTERNAL_PORT", "70000", False),
    ("PUSH_STREAM_PUBLIC_ADDR", "example.com", False),
    ("PUSH_STREAM_BUFFER_LENGTH", "-1", False),
    ("PUSH_STREAM_CORS_ORIGIN", "*; deny all", False),
    ("PUSH_STREAM_SHM_SIZE", "64X", False),
    ("PUSH_STREAM_EVENTSOURCE_PING", "30s", False),
    ("PUSH_STREAM_WORKERS", "0", False),
    ("PUSH_STREAM_NCHAN_MODULE", "/nonexistent/ngx_nchan_module.so", False),
    ("PUSH_STREAM_RUN_DIR", "/tmp/a b", False),
    ("PUSH_STREAM_AUTHORIZER_PORT", "9080", False),
    ("PUSH_STREAM_UPSTREAMS", "127.0.0.1", True),
    ("PUSH_STREAM_UPSTREAMS", "", True),
])
def test_render_rejects_a_bad_value(tmp_path: Path, name: str, value: str, front: bool) -> None:
    out = tmp_path / "nginx.conf"
    env = {"PUSH_STREAM_RUN_DIR": str(tmp_path / "run"), "PUSH_STREAM_UPSTREAMS": "h:1"}

    rendered = render_cli({**env, name: value}, out, front)

    assert rendered.returncode == 2
    assert name in rendered.stderr
    assert len(rendered.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_render_needs_only_python3_minimal() -> None:
    """The image has python3-minimal, whose stdlib lacks shutil, http, resource and more."""
    in_python3_minimal = {"argparse", "collections", "ipaddress", "logging", "os", "pathlib",
                          "re", "socket", "sys"}
    tree = ast.parse(RENDER_SCRIPT.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}

    assert imported <= in_python3_minimal


def test_health_command_follows_the_replica(tmp_path: Path) -> None:
    replica = NginxReplica(tmp_path).start()
    env = {**os.environ, "PUSH_STREAM_PUBLIC_PORT": str(replica.public_port)}
    command = [PYTHON, str(RENDER_SCRIPT), "health"]
    try:
        up = subprocess.run(command, env=env, capture_output=True, timeout=10)
    finally:
        replica.stop()
    down = subprocess.run(command, env=env, capture_output=True, timeout=10)

    assert (up.returncode, down.returncode) == (0, 1)


def test_eventsource_delivers_the_exact_envelope(
    replica: NginxReplica, client: httpx.Client
) -> None:
    body = entry(1)

    event_id, data = receive(client, replica, f"{replica.public_url}/ev/news", "news", body)

    assert data == body
    assert event_id


def test_eventsource_multi_channel_gets_both(replica: NginxReplica, client: httpx.Client) -> None:
    with client.stream("GET", f"{replica.public_url}/ev/a/b", headers=EVENT_STREAM) as response:
        replica.wait_for_subscribers("a")
        replica.wait_for_subscribers("b")
        replica.publish("a", entry(1, "a"))
        replica.publish("b", entry(2, "b"))

        reader = EventReader(response)
        assert [reader.next()[1], reader.next()[1]] == [entry(1, "a"), entry(2, "b")]


def test_websocket_delivers_the_exact_envelope(replica: NginxReplica) -> None:
    body = entry(1)
    ws_url = f"ws://127.0.0.1:{replica.public_port}/ws/news"

    with connect(ws_url, open_timeout=READ_TIMEOUT) as websocket:
        replica.wait_for_subscribers("news")
        replica.publish("news", body)
        frame = websocket.recv(timeout=READ_TIMEOUT)

    assert frame == body.decode()


def test_longpoll_delivers_the_exact_envelope(replica: NginxReplica) -> None:
    body = entry(1)

    with ThreadPoolExecutor(1) as pool:
        poll = pool.submit(httpx.get, f"{replica.public_url}/lp/news", timeout=READ_TIMEOUT)
        replica.wait_for_subscribers("news")
        replica.publish("news", body)
        response = poll.result(READ_TIMEOUT)

    assert response.status_code == 200
    assert response.content == body


def test_http_stream_delivers_newline_framed_envelopes(
    replica: NginxReplica, client: httpx.Client
) -> None:
    with client.stream("GET", f"{replica.public_url}/sub/news") as response:
        replica.wait_for_subscribers("news")
        replica.publish("news", entry(1))
        replica.publish("news", entry(2))

        received = b""
        for chunk in response.iter_raw():
            received += chunk
            if received.count(b"\n") >= 2:
                break

    assert received.splitlines() == [entry(1), entry(2)]


def test_new_subscriber_gets_only_new_messages(
    replica: NginxReplica, client: httpx.Client
) -> None:
    replica.publish("news", entry(1))

    _, data = receive(client, replica, f"{replica.public_url}/ev/news", "news", entry(2))

    assert data == entry(2)


@pytest.mark.parametrize("resume", ["header", "query"])
def test_reconnect_replays_what_was_missed(
    replica: NginxReplica, client: httpx.Client, resume: str
) -> None:
    url = f"{replica.public_url}/ev/news"
    last_id, _ = receive(client, replica, url, "news", entry(1))
    replica.publish("news", entry(2))
    replica.publish("news", entry(3))

    headers = {**EVENT_STREAM}
    if resume == "header":
        headers["Last-Event-ID"] = last_id
    else:
        url += f"?last_event_id={last_id}"

    with client.stream("GET", url, headers=headers) as response:
        reader = EventReader(response)
        assert [reader.next()[1], reader.next()[1]] == [entry(2), entry(3)]


@pytest.mark.parametrize("path", ["/pub?id=news", "/nchan_stub_status", "/", "/ev/", "/ev/a/",
                                  "/_authorize"])
def test_public_port_has_no_publisher_or_stats(replica: NginxReplica, path: str) -> None:
    assert httpx.post(replica.public_url + path, content=b"x").status_code == 404
    assert httpx.get(replica.public_url + path).status_code == 404


@pytest.mark.parametrize("query", ["", "?id=", "?id=a%3Ab", "?id=a/b"])
def test_internal_port_rejects_a_bad_channel_id(replica: NginxReplica, query: str) -> None:
    assert httpx.post(f"{replica.internal_url}/pub{query}", content=b"x").status_code == 400


def test_internal_port_refuses_put_which_would_publish_an_empty_message(
    replica: NginxReplica,
) -> None:
    assert httpx.put(f"{replica.internal_url}/pub?id=news").status_code == 405


def test_internal_port_serves_channel_info_stats_and_delete(replica: NginxReplica) -> None:
    replica.publish("news", entry(1))
    info = httpx.get(f"{replica.internal_url}/pub?id=news", headers={"Accept": "application/json"})
    status = httpx.get(f"{replica.internal_url}/nchan_stub_status")
    deleted = httpx.delete(f"{replica.internal_url}/pub?id=news")

    assert info.json()["messages"] == 1
    assert "total published messages: 1" in status.text
    assert deleted.status_code == 200
    assert httpx.get(f"{replica.internal_url}/healthz").text == "ok"


@pytest.mark.skipif(os.geteuid() != 0, reason="every other test already runs unprivileged")
def test_replica_runs_as_an_unprivileged_user(client: httpx.Client) -> None:
    base = Path(tempfile.mkdtemp(prefix="push-stream-"))
    shutil.chown(base, "nobody")
    try:
        with NginxReplica(base, user="nobody") as replica:
            run_dir_owner = replica.run_dir.joinpath("nginx.pid").owner()
            _, data = receive(client, replica, f"{replica.public_url}/ev/news", "news", entry(1))
    finally:
        shutil.rmtree(base)

    assert run_dir_owner == "nobody"
    assert data == entry(1)


def test_cors_headers_for_any_origin(replica: NginxReplica, client: httpx.Client) -> None:
    headers = {**EVENT_STREAM, "Origin": "https://app.example.com"}
    with client.stream("GET", f"{replica.public_url}/ev/news", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_cors_with_a_configured_origin(tmp_path: Path, client: httpx.Client) -> None:
    origin = "https://app.example.com"
    url_path = "/ev/news"

    with NginxReplica(tmp_path, cors_origin=origin) as replica:
        allowed = {**EVENT_STREAM, "Origin": origin}
        with client.stream("GET", replica.public_url + url_path, headers=allowed) as response:
            assert response.headers["Access-Control-Allow-Origin"] == origin
            assert response.headers["Access-Control-Allow-Credentials"] == "true"

        other = {**EVENT_STREAM, "Origin": "https://evil.example.com"}
        assert client.get(replica.public_url + url_path, headers=other).status_code == 403


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[NginxReplica]]:
    pair = [NginxReplica(tmp_path), NginxReplica(tmp_path)]
    try:
        yield [replica.start() for replica in pair]
    finally:
        for replica in pair:
            replica.stop()


@pytest.fixture
def front(tmp_path: Path, replicas: list[NginxReplica]) -> Iterator[NginxFront]:
    ports = [replica.public_port for replica in replicas]
    with NginxFront(tmp_path, upstream_ports=ports) as server:
        yield server


def publish_everywhere(replicas: list[NginxReplica], channel: str, body: bytes) -> None:
    for replica in replicas:
        assert replica.publish(channel, body).status_code in (201, 202)


def wait_for_one_subscriber(replicas: list[NginxReplica], channel: str) -> None:
    """The front put the subscriber on exactly one replica (which one is its choice)."""
    deadline = time.monotonic() + READ_TIMEOUT
    while sum(replica.subscribers(channel) for replica in replicas) != 1:
        assert time.monotonic() < deadline, "the front did not attach the subscriber"
        time.sleep(0.02)


def test_front_delivers_a_message_published_to_every_replica(
    front: NginxFront, replicas: list[NginxReplica], client: httpx.Client
) -> None:
    with client.stream("GET", f"{front.public_url}/ev/news", headers=EVENT_STREAM) as response:
        assert response.status_code == 200
        wait_for_one_subscriber(replicas, "news")
        publish_everywhere(replicas, "news", entry(1))

        assert EventReader(response).next()[1] == entry(1)


def test_front_proxies_websocket_upgrade(front: NginxFront, replicas: list[NginxReplica]) -> None:
    with connect(f"ws://127.0.0.1:{front.public_port}/ws/news") as websocket:
        wait_for_one_subscriber(replicas, "news")
        publish_everywhere(replicas, "news", entry(1))

        assert websocket.recv(timeout=READ_TIMEOUT) == entry(1).decode()


def test_front_passes_last_event_id(
    front: NginxFront, replicas: list[NginxReplica], client: httpx.Client
) -> None:
    publish_everywhere(replicas, "news", entry(1))

    # An id older than the buffer resumes at the oldest buffered message.
    headers = {**EVENT_STREAM, "Last-Event-ID": "1:0"}
    with client.stream("GET", f"{front.public_url}/ev/news", headers=headers) as response:
        assert EventReader(response).next()[1] == entry(1)


@pytest.mark.parametrize("path", ["/pub?id=news", "/nchan_stub_status", "/"])
def test_front_hides_everything_but_subscribers(front: NginxFront, path: str) -> None:
    assert httpx.post(front.public_url + path, content=b"x").status_code == 404
    assert httpx.get(front.public_url + path).status_code == 404
    assert httpx.get(front.public_url + "/healthz").text == "ok"
