"""End to end through Tsuru's service API against the running local stack.

Everything is real: the stack is started as ``make run`` starts it, the broker and the
push-api are called over HTTP, and subscribers connect to nginx + Nchan the way
browsers do.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from chalicelib import keys
from pushaas_local.stack import walkthrough
from tests.stack import REPO, LocalStack
from tests.subscribers import EVENT_STREAM, EventReader

pytestmark = pytest.mark.timeout(120)




def provision(stack: LocalStack, broker: httpx.Client, name: str, plan: str = "small",
              encoding: str = "form") -> dict[str, str]:
    """Create an instance, see it pending then running, bind an app: the app's env."""
    fields = {"name": name, "plan": plan, "team": "team", "user": "dev@example.com"}
    if encoding == "json":
        created = broker.post("/resources", json={**fields, "eventID": "1", "tags": ["e2e"]})
    else:
        created = broker.post("/resources", data={**fields, "tags": ["e2e", "x"]})
    assert created.status_code == 201, created.text
    assert broker.get(f"/resources/{name}/status").status_code == 202

    stack.wait_for_status(broker, name, 204)
    if encoding == "json":
        bound = broker.post(f"/resources/{name}/bind-app", json={"appName": f"{name}-app"})
    else:
        bound = broker.post(f"/resources/{name}/bind-app",
                            data={"app-name": f"{name}-app", "app-host": "app.example.com"})
    assert bound.status_code == 201, bound.text
    return bound.json()


def publisher(env: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=env["PUSHAAS_ENDPOINT"], timeout=10, trust_env=False,
                        auth=(env["PUSHAAS_USERNAME"], env["PUSHAAS_PASSWORD"]))


def publish(env: dict[str, str], channels: list[str], text: str) -> str:
    with publisher(env) as client:
        response = client.post("/api/v1/messages", json={"channels": channels, "content": text})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_for_subscribers(stack: LocalStack, name: str, channel: str, count: int) -> None:
    """Poll every replica's Nchan until ``count`` subscribers sit on ``channel``."""
    replicas = {k: json.loads(v) for k, v in stack.redis().hgetall(keys.replicas(name)).items()}
    ports = [r["internal"] for k, r in replicas.items() if k.isdigit()]
    deadline = time.monotonic() + 10
    while True:
        total = 0
        for port in ports:
            info = httpx.get(f"http://127.0.0.1:{port}/pub?id={channel}", trust_env=False,
                             headers={"Accept": "application/json"})
            total += info.json()["subscribers"] if info.status_code == 200 else 0
        if total >= count:
            return
        assert time.monotonic() < deadline, f"{total} subscribers on {channel}, not {count}"
        time.sleep(0.05)


def envelope_of(data: bytes | str) -> dict:
    message = json.loads(data)
    assert set(message) == {"id", "channel", "text", "time"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", message["time"])
    return message


def instance_pids(stack: LocalStack, name: str) -> list[int]:
    run_dir = stack.state_dir / "instances" / name
    return [int(f.read_text().split()[0]) for f in run_dir.rglob("*.process")]


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_full_tsuru_flow(stack: LocalStack, broker: httpx.Client) -> None:
    env = provision(stack, broker, "flow")
    base = env["PUSHAAS_PUSH_STREAM_URL"]
    assert base.startswith("http://127.0.0.1:")

    # EventSource, WebSocket and long-poll subscribers all receive the envelope.
    with httpx.Client(timeout=10, trust_env=False) as http, \
            http.stream("GET", f"{base}/ev/news", headers=EVENT_STREAM) as events, \
            connect(base.replace("http", "ws") + "/ws/news", open_timeout=10) as ws, \
            ThreadPoolExecutor(1) as pool:
        poll = pool.submit(http.get, f"{base}/lp/news")
        wait_for_subscribers(stack, "flow", "news", 3)
        entry_id = publish(env, ["news"], "hello subscribers")

        event_id, data = EventReader(events).next()
        for received in (data, ws.recv(timeout=10), poll.result(10).content):
            assert envelope_of(received) == {**envelope_of(data), "id": entry_id,
                                             "channel": "news", "text": "hello subscribers"}

    # One subscription to several channels receives each message once per channel.
    with httpx.Client(timeout=10, trust_env=False) as http, \
            http.stream("GET", f"{base}/ev/alpha/beta", headers=EVENT_STREAM) as events:
        wait_for_subscribers(stack, "flow", "alpha", 1)
        both = publish(env, ["alpha", "beta"], "to both")
        reader = EventReader(events)
        received = [envelope_of(reader.next()[1]) for _ in range(2)]
    assert {(m["id"], m["channel"]) for m in received} == {(both, "alpha"), (both, "beta")}

    # A reconnect with Last-Event-ID replays what was published while away.
    missed = [publish(env, ["news"], f"missed {n}") for n in range(2)]
    with httpx.Client(timeout=10, trust_env=False) as http, \
            http.stream("GET", f"{base}/ev/news",
                        headers={**EVENT_STREAM, "Last-Event-ID": event_id}) as events:
        reader = EventReader(events)
        assert [envelope_of(reader.next()[1])["id"] for _ in range(2)] == missed

    # Unbind, delete: processes, run dirs and Redis keys are gone.
    pids = instance_pids(stack, "flow")
    assert pids and all(alive(p) for p in pids)
    assert broker.request("DELETE", "/resources/flow/bind-app",
                          data={"app-name": "flow-app"}).status_code == 200
    assert broker.request("DELETE", "/resources/flow", data={"user": "u"}).status_code == 200
    stack.wait_for_status(broker, "flow", 404)
    assert not any(alive(p) for p in pids)
    assert not (stack.state_dir / "instances" / "flow").exists()
    assert stack.redis().keys("*{flow}*") == []
    assert httpx.get(f"{env['PUSHAAS_ENDPOINT']}/api/v1/auth", trust_env=False,
                     auth=(env["PUSHAAS_USERNAME"], env["PUSHAAS_PASSWORD"])).status_code == 401


def test_json_encoding_two_replicas_and_isolation(stack: LocalStack, broker: httpx.Client) -> None:
    env_a = provision(stack, broker, "multi", plan="medium", encoding="json")
    env_b = provision(stack, broker, "other")
    replicas = stack.redis().hgetall(keys.replicas("multi"))
    assert sorted(k for k in replicas if k.isdigit()) == ["0", "1"]

    with httpx.Client(timeout=10, trust_env=False) as http, \
            http.stream("GET", env_a["PUSHAAS_PUSH_STREAM_URL"] + "/ev/shared",
                        headers=EVENT_STREAM) as events_a, \
            http.stream("GET", env_b["PUSHAAS_PUSH_STREAM_URL"] + "/ev/shared",
                        headers=EVENT_STREAM) as events_b:
        wait_for_subscribers(stack, "multi", "shared", 1)
        wait_for_subscribers(stack, "other", "shared", 1)
        sent_to_a = publish(env_a, ["shared"], "only for A")
        sent_to_b = publish(env_b, ["shared"], "only for B")

        assert envelope_of(EventReader(events_a).next()[1])["id"] == sent_to_a
        message_b = envelope_of(EventReader(events_b).next()[1])
    assert (message_b["id"], message_b["text"]) == (sent_to_b, "only for B")

    cross = httpx.post(f"{env_b['PUSHAAS_ENDPOINT']}/api/v1/messages", trust_env=False,
                       auth=("multi", env_b["PUSHAAS_PASSWORD"]),
                       json={"channels": ["shared"], "content": "x"})
    assert cross.status_code == 401


def test_killed_agent_delivers_what_was_published_meanwhile(stack: LocalStack,
                                                            broker: httpx.Client) -> None:
    env = provision(stack, broker, "crashy")
    agent_file = stack.state_dir / "instances/crashy/replica-0/agent.process"
    killed = int(agent_file.read_text().split()[0])

    with httpx.Client(timeout=15, trust_env=False) as http, \
            http.stream("GET", env["PUSHAAS_PUSH_STREAM_URL"] + "/ev/news",
                        headers=EVENT_STREAM) as events:
        wait_for_subscribers(stack, "crashy", "news", 1)
        os.kill(killed, signal.SIGKILL)
        sent = [publish(env, ["news"], f"while down {n}") for n in range(3)]
        reader = EventReader(events)
        received = [envelope_of(reader.next()[1])["id"] for _ in range(3)]

    assert received == sent
    assert int(agent_file.read_text().split()[0]) != killed


def test_readme_walkthrough_runs_verbatim(stack: LocalStack) -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- walkthrough:start -->")[1].split("<!-- walkthrough:end -->")[0]
    script = block.strip().removeprefix("```sh").removesuffix("```")
    assert walkthrough().strip() in script, "README walkthrough differs from make run's"

    script = script.replace("API=http://127.0.0.1:8000", f"API={stack.api}")
    if not (REPO / ".venv/bin/python").exists():
        bin_dir = Path(sys.executable).parent
        script = script.replace(".venv/bin/", f"{bin_dir}/")
    run = subprocess.run(["bash", "-c", "set -e\n" + script], cwd=REPO, env=stack.env(),
                         capture_output=True, text=True, timeout=90)

    assert run.returncode == 0, run.stdout + run.stderr
    assert "running" in run.stdout
    assert '"channel":"news","text":"hello"' in run.stdout, run.stdout + run.stderr
    assert "mypush" in run.stdout and "published " in run.stdout, run.stdout + run.stderr


def test_restart_brings_back_running_instances(tmp_path: Path) -> None:
    first = LocalStack(tmp_path / "state").start()
    try:
        with first.broker() as client:
            env = provision(first, client, "durable")
            pids = instance_pids(first, "durable")
    finally:
        assert first.stop() == 0
    assert not any(alive(p) for p in pids)

    second = LocalStack(tmp_path / "state", api_port=first.api_port,
                        redis_port=first.redis_port).start()
    try:
        with second.broker() as client:
            second.wait_for_status(client, "durable", 204)
        with httpx.Client(timeout=10, trust_env=False) as http, \
                http.stream("GET", env["PUSHAAS_PUSH_STREAM_URL"] + "/ev/news",
                            headers=EVENT_STREAM) as events:
            wait_for_subscribers(second, "durable", "news", 1)
            sent = publish(env, ["news"], "after restart")
            assert envelope_of(EventReader(events).next()[1])["id"] == sent
    finally:
        assert second.stop() == 0


def test_javascript_client_calls_against_the_stack(stack: LocalStack,
                                                   broker: httpx.Client) -> None:
    """The calls push-api-client-javascript makes, in its order, over HTTP."""
    env = provision(stack, broker, "jsclient")
    base = env["PUSHAAS_PUSH_STREAM_URL"]

    with publisher(env) as api:
        # ensureChannel(id): getChannel -> 404 -> createChannel({...data, id}) with ttl 0
        assert api.get("/api/v1/channels/news").status_code == 404
        assert api.post("/api/v1/channels", json={"ttl": 0, "id": "news"}).status_code == 201
        assert api.get("/api/v1/channels/news").json()["ttl"] == 0
        assert [c["id"] for c in api.get("/api/v1/channels").json()] == ["news"]

        # getConfig() tells the browser where to subscribe.
        push_stream = api.get("/api/v1/config").json()["pushStream"]
        assert push_stream["url"] == base
        assert f"{push_stream['hostname']}:{push_stream['port']}" in base

        with httpx.Client(timeout=10, trust_env=False) as http, \
                http.stream("GET", f"{push_stream['url']}/ev/news",
                            headers=EVENT_STREAM) as events:
            wait_for_subscribers(stack, "jsclient", "news", 1)
            sent = api.post("/api/v1/messages", json={"channels": ["news"], "content": "js"})
            assert sent.status_code == 201
            reader = EventReader(events)  # kept: dropping it would close the stream
            assert envelope_of(reader.next()[1])["text"] == "js"

            # getGlobalStats() / getChannelStats(id): agents report every few seconds.
            deadline = time.monotonic() + 15
            while api.get("/api/v1/stats/channels/news").json()["aggregated"][
                    "subscribers"] < 1:
                assert time.monotonic() < deadline, "agents never reported the subscriber"
                time.sleep(0.2)
        stats = api.get("/api/v1/stats/global").json()
        assert stats["aggregated"]["agents"] == 1
        assert stats["all"][0]["agent"] == "jsclient-0"

        assert api.delete("/api/v1/channels/news").status_code == 204
