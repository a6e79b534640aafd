"""The local stack behind ``make run``: Redis, the Chalice app and the local runner.

It runs in the foreground. The output of every child is forwarded to stdout with a
prefix (``[redis]``, ``[api]``, ``[runner]``); nginx and agent output goes to log files
under ``<state>/instances/<name>/``. Once the API answers, it prints the credentials, a
copy-paste walkthrough and, last, a line starting with ``PushaaS ready`` (what a test
waits for). Ctrl-C or SIGTERM stops the runner first (it stops the instances' processes),
then the API, then Redis. Running it again brings back the instances that were running.

    python -m pushaas_local.stack
"""

import fcntl
import hashlib
import hmac
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_MARKER = "PushaaS ready"
DEFAULT_API_PORT = 8000
DEFAULT_STATE_DIR = ".pushaas"
MASTER_KEY_FILE = "master.key"
LOCK_FILE = "stack.lock"
START_TIMEOUT = 60.0
POLL_INTERVAL = 0.2
# render.py puts the run dirs inside quoted nginx strings and accepts only these.
SAFE_PATH = re.compile(r"[A-Za-z0-9_./@+-]+")

STOP_TIMEOUTS = {"runner": 45.0, "api": 10.0, "redis": 15.0}

_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class StackError(Exception):
    """The stack cannot start; the message tells the user what to change."""


@dataclass(frozen=True)
class StackConfig:
    state_dir: Path
    api_port: int
    broker_username: str
    broker_password: str
    password_derived: bool
    master_key: str
    redis_url: str | None
    redis_port: int | None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


def load_config(env: Mapping[str, str], cwd: Path) -> StackConfig:
    """Read the stack's settings, creating the state dir and master key on first run."""
    state_dir = (cwd / (env.get("PUSHAAS_STATE_DIR") or DEFAULT_STATE_DIR)).resolve()
    if not SAFE_PATH.fullmatch(str(state_dir)):
        raise StackError(f"PUSHAAS_STATE_DIR {state_dir} may only hold letters, digits "
                         "and _./@+- (nginx run dirs live under it)")
    state_dir.mkdir(parents=True, exist_ok=True)

    master_key = env.get("PUSHAAS_MASTER_KEY", "").strip() or load_master_key(state_dir)
    if len(master_key) < 32:
        raise StackError("PUSHAAS_MASTER_KEY must be at least 32 characters")

    password = env.get("PUSHAAS_BROKER_PASSWORD", "").strip()
    return StackConfig(
        state_dir=state_dir,
        api_port=_port(env, "PUSHAAS_API_PORT") or DEFAULT_API_PORT,
        broker_username=env.get("PUSHAAS_BROKER_USERNAME", "").strip() or "pushaas",
        broker_password=password or derive_broker_password(master_key),
        password_derived=not password,
        master_key=master_key,
        redis_url=env.get("PUSHAAS_REDIS_URL", "").strip() or None,
        redis_port=_port(env, "PUSHAAS_REDIS_PORT"),
    )


def load_master_key(state_dir: Path) -> str:
    """The key in ``<state>/master.key``, generated (mode 0600) on the first run."""
    path = state_dir / MASTER_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()

    with os.fdopen(fd, "w") as key_file:
        key_file.write(secrets.token_urlsafe(36) + "\n")
    return path.read_text().strip()


def derive_broker_password(master_key: str) -> str:
    """Stable across runs without being stored: the same key always gives it back."""
    return hmac.new(master_key.encode(), b"broker", hashlib.sha256).hexdigest()[:32]


def walkthrough() -> str:
    """The copy-paste tour of the local stack, once ``API`` and ``AUTH`` are set.

    The README shows this very text (a test keeps them equal); the banner prints it
    after the two variable lines with this run's real values.
    """
    return """\
# 1. Create an instance (what `tsuru service-instance-add pushaas mypush small -t myteam` does):
curl -sS -w '%{http_code}\\n' -u "$AUTH" -d name=mypush -d plan=small \\
  -d team=myteam -d user=me@example.com $API/resources

# 2. Wait until it runs (202 pending, 204 running, 500 failed):
for i in $(seq 60); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -u "$AUTH" $API/resources/mypush/status)
  [ "$code" = 204 ] && echo running && break; sleep 1
done

# 3. Bind an app and export the environment the app receives:
eval "$(curl -sS -u "$AUTH" -d app-name=myapp -d app-host=myapp.example.com \\
  $API/resources/mypush/bind-app | python3 -c 'import json, shlex, sys
for name, value in json.load(sys.stdin).items(): print(f"export {name}={shlex.quote(value)}")')"

# 4. Subscribe in the background (the message shows up here):
curl -sN -H 'Accept: text/event-stream' $PUSHAAS_PUSH_STREAM_URL/ev/news & sleep 1

# 5. Publish as the app does:
curl -sS -u "$PUSHAAS_USERNAME:$PUSHAAS_PASSWORD" -H 'Content-Type: application/json' \\
  -d '{"channels":["news"],"content":"hello"}' $PUSHAAS_ENDPOINT/api/v1/messages

# 6. Stop the subscriber:
sleep 1; kill %1

# 7. The same with the pushaas command line (make run installs it in .venv):
export PUSHAAS_BROKER_PASSWORD="${AUTH#*:}"
.venv/bin/pushaas instance list
.venv/bin/pushaas channels create alerts --ttl 3600
.venv/bin/pushaas publish news alerts --content "hello from the CLI"

# 8. And from Python, as a publisher app does (pushaas.PushClient):
.venv/bin/python examples/publish.py news "hello from Python"

# 9. The web console: open $API/console in a browser and sign in with
#    $PUSHAAS_USERNAME / $PUSHAAS_PASSWORD (publisher) or the broker credentials.
"""


def walkthrough_variables(api_url: str, username: str, password: str) -> str:
    """The two lines the walkthrough starts from, with this run's values."""
    return f"API={api_url}\nAUTH={shlex.quote(f'{username}:{password}')}\n"


def _port(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise StackError(f"{name} must be a TCP port, not {raw!r}")
    return int(raw)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Output:
    """Serialises lines from several children onto one stream."""

    def __init__(self, stream: IO[str]):
        self.stream = stream
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            try:
                self.stream.write(text.rstrip("\n") + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                pass


class Child:
    """A process of the stack, in its own session, its output forwarded with a prefix."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], output: Output):
        self.name = name
        self.args = args
        self.env = env
        self.output = output
        self.proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        try:
            self.proc = subprocess.Popen(
                self.args, env=self.env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise StackError(f"cannot start {self.name} ({self.args[0]}): {exc}") from None
        self._pump = threading.Thread(target=self._forward, name=f"output-{self.name}",
                                      daemon=True)
        self._pump.start()

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def stop(self) -> None:
        """SIGTERM, a bounded wait, then SIGKILL of the whole group; always reaped."""
        if self.proc is None:
            return

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUTS.get(self.name, 10.0))
            except subprocess.TimeoutExpired:
                self.output.line(f"[stack] {self.name} did not stop in time, killing it")
                _kill_group(self.proc.pid)
                self.proc.wait(5)

        _kill_group(self.proc.pid)
        if self._pump is not None:
            self._pump.join(timeout=2)

    def _forward(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.output.line(f"[{self.name}] {raw.decode('utf-8', 'replace')}")
        self.proc.stdout.close()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Stack:
    """Starts the children in order, watches them, and stops them in reverse order."""

    def __init__(self, config: StackConfig, output: Output, python: str = sys.executable):
        self.config = config
        self.output = output
        self.python = python
        self.stopping = threading.Event()
        self.children: list[Child] = []
        self._lock_file: IO[str] | None = None

    def start(self) -> None:
        """Start Redis (unless given), the runner and the API; wait until the API answers."""
        self._lock_state_dir()
        if not _port_free(self.config.api_port):
            raise StackError(f"port {self.config.api_port} is in use: "
                             "set PUSHAAS_API_PORT to a free port")

        redis_url = self.config.redis_url or self._start_redis()
        env = self._child_env(redis_url)
        self._spawn("runner", [self.python, "-m", "pushaas_local.runner"], env)

        chalice = str(Path(self.python).parent / "chalice")
        self._spawn("api", [chalice, "local", "--stage", "local", "--host", "127.0.0.1",
                            "--port", str(self.config.api_port), "--no-autoreload"], env)
        self._wait(lambda: _answers(f"{self.config.api_url}/api/healthcheck"), "the API")

    def watch(self) -> int:
        """Block until a stop is requested (0) or a child dies (1)."""
        while not self.stopping.wait(POLL_INTERVAL):
            dead = self._dead_child()
            if dead is not None:
                self.output.line(f"[stack] {dead.name} exited unexpectedly with code "
                                 f"{dead.exit_code()}; stopping everything")
                return 1
        return 0

    def stop(self) -> None:
        """Runner first (it stops the instances), then the API, then Redis."""
        if self.stopping.is_set():
            self.output.line("[stack] stop requested, stopping")
        order = {"runner": 0, "api": 1, "redis": 2}
        for child in sorted(self.children, key=lambda c: order.get(c.name, 1)):
            child.stop()
        self.output.line("[stack] stopped")

    def banner(self) -> str:
        config = self.config
        lines = [
            "",
            f"PushaaS API:      {config.api_url}",
            f"broker username:  {config.broker_username}",
            f"broker password:  {config.broker_password}"
            + ("  (derived from the master key)" if config.password_derived else ""),
            f"state and logs:   {config.state_dir}",
            "",
            walkthrough_variables(config.api_url, config.broker_username,
                                  config.broker_password) + walkthrough(),
            f"{READY_MARKER}: {config.api_url}  (Ctrl-C stops everything)",
        ]
        return "\n".join(lines)

    def _lock_state_dir(self) -> None:
        """Two stacks on one state dir would stop each other's instances: refuse the second.

        The lock lives as long as this process (the kernel drops it when the file closes).
        """
        self._lock_file = open(self.config.state_dir / LOCK_FILE, "w")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(f"another stack runs on {self.config.state_dir}; stop it or "
                             "set PUSHAAS_STATE_DIR to another directory") from None

    def _start_redis(self) -> str:
        port = self.config.redis_port or _free_port()
        data_dir = self.config.state_dir / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self._spawn("redis", [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--appendonly", "yes", "--save", "", "--protected-mode", "yes",
        ], dict(os.environ))

        url = f"redis://127.0.0.1:{port}/0"
        self._wait(lambda: _redis_answers(url), "Redis")
        return url

    def _child_env(self, redis_url: str) -> dict[str, str]:
        config = self.config
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PUSHAAS_REDIS_URL": redis_url,
            "PUSHAAS_MASTER_KEY": config.master_key,
            "PUSHAAS_BROKER_USERNAME": config.broker_username,
            "PUSHAAS_BROKER_PASSWORD": config.broker_password,
            "PUSHAAS_ENDPOINT": config.api_url,
            "PUSHAAS_PROVISIONER": "local",
            "PUSHAAS_JOB_QUEUE": "redis",
            "PUSHAAS_STATE_DIR": str(config.state_dir),
        }

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        child = Child(name, args, env, self.output)
        self.children.append(child)
        child.start()

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            dead = self._dead_child()
            if dead is not None:
                raise StackError(f"{dead.name} exited with code {dead.exit_code()} "
                                 f"while waiting for {what}")
            if self.stopping.is_set():
                raise StackError(f"stopped while waiting for {what}")
            if time.monotonic() >= deadline:
                raise StackError(f"{what} did not answer within {START_TIMEOUT:.0f}s")
            time.sleep(POLL_INTERVAL)

    def _dead_child(self) -> Child | None:
        return next((c for c in self.children if c.exit_code() is not None), None)


def _answers(url: str) -> bool:
    try:
        with _HTTP.open(url, timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    output = Output(sys.stdout)
    try:
        config = load_config(os.environ, Path.cwd())
    except StackError as exc:
        output.line(f"[stack] cannot start: {exc}")
        return 2

    if args == ["--broker-password"]:
        # Lets the README's walkthrough fetch the password without it being stored.
        print(config.broker_password)
        return 0
    if args:
        output.line("usage: python -m pushaas_local.stack [--broker-password]")
        return 2

    stack = Stack(config, output)

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        # Only set the event: the handler runs on the main thread, which may be inside
        # Output.line holding its lock; printing here could deadlock. stop() says it.
        stack.stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    try:
        stack.start()
        output.line(stack.banner())
        code = stack.watch()
    except StackError as exc:
        output.line(f"[stack] cannot start: {exc}")
        code = 0 if stack.stopping.is_set() else 1
    finally:
        stack.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
