"""The installed ``pushaas`` command against the running local stack.

The command is run as a user runs it, as the console script beside this interpreter
(``scripts/bootstrap.sh`` installs it), with only the environment each test gives it.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from pushaas import PushClient
from tests.servers import free_port
from tests.stack import READY, REPO, LocalStack
from tests.test_client import ScriptedServer

pytestmark = pytest.mark.timeout(60)

PUSHAAS = shutil.which("pushaas", path=str(Path(sys.executable).parent))


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PUSHAAS_")}


def run(*args: str, env: dict[str, str], stdin: str | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if PUSHAAS is None:
        pytest.fail(f"no pushaas command beside {sys.executable}: run scripts/bootstrap.sh")
    return subprocess.run([PUSHAAS, *args], env={**base_env(), **env}, input=stdin,
                          capture_output=True, text=True, timeout=30, cwd=cwd or REPO)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The exit code and the single ``error:`` line on stderr, nothing on stdout."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    return lines[0]



@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> dict[str, str]:
    return {"PUSHAAS_ENDPOINT": stack.api, "PUSHAAS_BROKER_PASSWORD": stack.broker_password()}


def provision(operator: dict[str, str], name: str) -> dict[str, str]:
    """create -> wait -> bind through the CLI; the app's env from ``bind --json``."""
    assert "provisioning" in ok(run("instance", "create", name, "--plan", "small",
                                    env=operator))
    assert json.loads(ok(run("instance", "wait", name, "--json", env=operator))) == {
        "name": name, "status": "running"}
    return json.loads(ok(run("instance", "bind", name, "--app", f"{name}-app", "--json",
                             env=operator)))


def subscribe_until_received(env: dict[str, str], channel: str) -> tuple[dict, list[str]]:
    """Run ``subscribe --count 1`` while publishing until it prints a message.

    A new subscriber only gets what is published after it connected, so publishing
    until one arrives avoids guessing when it is connected.
    """
    assert PUSHAAS is not None
    subscriber = subprocess.Popen([PUSHAAS, "subscribe", channel, "--count", "1", "--json"],
                                  env={**base_env(), **env}, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
    sent: list[str] = []
    try:
        with PushClient.from_env(env) as push:
            deadline = time.monotonic() + 15
            while subscriber.poll() is None and time.monotonic() < deadline:
                sent.append(push.publish([channel], f"ping {len(sent)}"))
                time.sleep(0.2)
        out, err = subscriber.communicate(timeout=10)
    finally:
        subscriber.kill()
        subscriber.wait()

    assert subscriber.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0]), sent


def test_instance_lifecycle(operator: dict[str, str], tmp_path: Path) -> None:
    env = provision(operator, "clid")
    assert set(env) == {"PUSHAAS_ENDPOINT", "PUSHAAS_USERNAME", "PUSHAAS_PASSWORD",
                        "PUSHAAS_PUSH_STREAM_URL"}
    shell = ok(run("instance", "bind", "clid", "--app", "clid-app", "--shell", env=operator))
    assert "export PUSHAAS_USERNAME=clid\n" in shell

    # subscribe --count: a live message, printed with its EventSource id.
    first, sent = subscribe_until_received(env, "news")
    assert first["id"] in sent and first["channel"] == "news"
    assert first["text"] == f"ping {sent.index(first['id'])}"
    after_first = sent[sent.index(first["id"]) + 1:]

    # publish: arguments, --file, stdin (one message per line).
    message_file = tmp_path / "message.txt"
    message_file.write_text("from a file\n")
    ids = [ok(run("publish", "news", "--content", "from args", env=env)).strip(),
           ok(run("publish", "news", "--file", str(message_file), env=env)).strip(),
           *ok(run("publish", "news", env=env, stdin="line 1\n\nline 2\n")).split()]
    assert len(ids) == 4

    # subscribe --since replays everything after that event, in order.
    replay = run("subscribe", "news", "--since", first["event_id"],
                 "--count", str(len(after_first) + 4), "--json", env=env)
    received = [json.loads(line) for line in ok(replay).splitlines()]
    assert [m["id"] for m in received] == after_first + ids
    assert [m["text"] for m in received[-4:]] == ["from args", "from a file\n", "line 1",
                                                  "line 2"]

    # channels and stats.
    assert "created" in ok(run("channels", "create", "news", "--ttl", "0", env=env))
    assert json.loads(ok(run("channels", "list", "--json", env=env)))[0]["id"] == "news"
    assert json.loads(ok(run("--json", "channels", "get", "news", env=env)))["ttl"] == 0
    assert "news" in ok(run("channels", "list", env=env))
    stats = json.loads(ok(run("stats", "--json", env=env)))
    assert set(stats) == {"aggregated", "all"} and "agents" in stats["aggregated"]
    assert "subscribers" in ok(run("stats", "news", env=env))
    assert "deleted" in ok(run("channels", "delete", "news", env=env))

    # scale, then remove: the instance goes away.
    assert json.loads(ok(run("instance", "scale", "clid", "--plan", "medium", "--json",
                             env=operator))) == {"name": "clid", "plan": "medium"}
    info = json.loads(ok(run("instance", "info", "clid", "--json", env=operator)))
    assert info["Plan"] == "medium"
    assert "clid" in ok(run("instance", "list", env=operator))
    assert "removed" in ok(run("instance", "remove", "clid", env=operator))
    deadline = time.monotonic() + 20
    while any(i["name"] == "clid" for i in json.loads(
            ok(run("instance", "list", "--json", env=operator)))):
        assert time.monotonic() < deadline, "instance clid was never removed"
        time.sleep(0.2)


def test_errors_are_one_line_with_meaningful_exit_codes(operator: dict[str, str]) -> None:
    env = provision(operator, "clierr")

    wrong = {**env, "PUSHAAS_PASSWORD": "not-the-secret"}
    assert "authentication failed" in one_error_line(run("channels", "list", env=wrong), 4)
    wrong_broker = {**operator, "PUSHAAS_BROKER_PASSWORD": "nope"}
    one_error_line(run("instance", "list", env=wrong_broker), 4)

    nowhere = {**env, "PUSHAAS_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    assert "cannot connect" in one_error_line(run("publish", "x", "--content", "y",
                                                  env=nowhere), 3)

    # The API's own 4xx messages are shown.
    assert "channel 'nope' not found (HTTP 404)" in one_error_line(
        run("channels", "get", "nope", env=env), 1)
    assert "plans: small, medium, large (HTTP 400)" in one_error_line(
        run("instance", "scale", "clierr", "--plan", "huge", env=operator), 1)
    assert "(HTTP 413)" in one_error_line(
        run("publish", "news", env=env, stdin="x" * 40_000 + "\n"), 1)
    assert "already exists (HTTP 409)" in one_error_line(
        run("instance", "create", "clierr", env=operator), 1)

    # Usage errors: exit 2, one line.
    one_error_line(run("publish", env=env), 2)
    one_error_line(run("publish", "news", "--content", "a", "--file", __file__, env=env), 2)
    assert "PUSHAAS_PASSWORD" in one_error_line(
        run("channels", "list", env={"PUSHAAS_ENDPOINT": env["PUSHAAS_ENDPOINT"]}), 2)
    assert "PUSHAAS_BROKER_PASSWORD" in one_error_line(
        run("instance", "list", env={"PUSHAAS_ENDPOINT": operator["PUSHAAS_ENDPOINT"]}), 2)


def test_wait_exits_5_on_timeout_and_1_with_the_reason(operator: dict[str, str]) -> None:
    assert "not found (HTTP 404)" in one_error_line(run("instance", "wait", "ghost",
                                                        env=operator), 1)

    # The stack provisions too fast to be caught pending: a scripted broker is not.
    pending = (202, {"Content-Type": "text/plain"}, b"")
    with ScriptedServer(pending) as broker:
        started = time.monotonic()
        result = run("instance", "wait", "slow", "--timeout", "1",
                     env={"PUSHAAS_ENDPOINT": broker.url, "PUSHAAS_BROKER_PASSWORD": "x"})
    assert "still pending after 1s" in one_error_line(result, 5)
    assert 0.5 <= time.monotonic() - started < 10

    failed = (500, {"Content-Type": "text/plain"}, b"replica 0 would not start")
    with ScriptedServer(pending, failed) as broker:
        result = run("instance", "wait", "broken",
                     env={"PUSHAAS_ENDPOINT": broker.url, "PUSHAAS_BROKER_PASSWORD": "x"})
    assert "broken failed: replica 0 would not start" in one_error_line(result, 1)
    assert [seen.path for seen in broker.seen] == ["/resources/broken/status"] * 2


def test_stats_watch_stops_quietly_on_ctrl_c(operator: dict[str, str]) -> None:
    env = provision(operator, "cliwatch")
    assert PUSHAAS is not None
    watcher = subprocess.Popen([PUSHAAS, "stats", "--watch", "--json"],
                               env={**base_env(), **env}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None
        assert "aggregated" in json.loads(watcher.stdout.readline())
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(10) == 0
        assert watcher.stderr is not None and watcher.stderr.read() == ""
    finally:
        watcher.kill()
        watcher.wait()


def test_dev_runs_the_stack_from_a_checkout_only(tmp_path: Path) -> None:
    one_error_line(run("dev", env={}, cwd=tmp_path), 2)

    assert PUSHAAS is not None
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = {**base_env(), "PUSHAAS_STATE_DIR": str(tmp_path / "state"),
           "PUSHAAS_API_PORT": str(port)}
    derived = subprocess.run([sys.executable, "-m", "pushaas_local.stack", "--broker-password"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    printed = run("dev", "--print-broker-password", "--json", env=env, cwd=REPO / "docs")
    assert json.loads(ok(printed)) == {"broker_password": derived.stdout.strip()}

    dev = subprocess.Popen([PUSHAAS, "dev"], cwd=REPO / "docs", env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           start_new_session=True)
    ready = threading.Event()
    lines: list[str] = []

    def watch_output() -> None:
        assert dev.stdout is not None
        for line in dev.stdout:
            lines.append(line)
            if line.startswith(READY):
                ready.set()

    threading.Thread(target=watch_output, daemon=True).start()
    try:
        assert ready.wait(30), "pushaas dev never printed the ready line"
        # The API answering is the point; it also lets the stack finish printing its
        # banner before the signal arrives (its handler writes through the same lock).
        assert httpx.get(f"{api}/api/healthcheck", trust_env=False).status_code == 200
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(30)
        except subprocess.TimeoutExpired:
            raise AssertionError("".join(lines[-30:])) from None
        assert dev.returncode == 0, "".join(lines[-30:])
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)
        dev.wait()


def test_manifest(tmp_path: Path) -> None:
    env = {"PUSHAAS_BROKER_PASSWORD": "s3cret: with # yaml specials"}
    printed = ok(run("manifest", "--endpoint", "https://push.example.com/", env=env))
    assert yaml.safe_load(printed) == {
        "id": "pushaas", "username": "pushaas", "password": "s3cret: with # yaml specials",
        "endpoint": {"production": "https://push.example.com"}}
    as_json = json.loads(ok(run("manifest", "--endpoint", "https://x.example", "--json",
                                env=env)))
    assert as_json["endpoint"] == {"production": "https://x.example"}

    assert "https://" in one_error_line(run("manifest", "--endpoint", "http://x", env=env), 1)
    one_error_line(run("manifest", "--endpoint", "https://x.example", env=env,
                       cwd=tmp_path), 2)
