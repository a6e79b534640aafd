#!/usr/bin/env python3
"""Render the push-stream nginx config from the environment, and run nginx with it.

The container, the local provisioner and the tests all start nginx through this one
script, so the config that is tested is the config that ships. It uses the standard
library only because the image carries nothing but python3-minimal.

    render.py render --out FILE [--front]   write the rendered config to FILE
    render.py run [--front]                 render into the run dir, then exec nginx
    render.py health                        exit 0 when /healthz on the public port is 200

A bad environment value exits with status 2 and one line naming the variable.
"""

import argparse
import ipaddress
import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger("push_stream.render")

HERE = Path(__file__).resolve().parent
REPLICA_TEMPLATE = HERE / "nginx.conf.template"
FRONT_TEMPLATE = HERE / "front.conf.template"

MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules")
MODULE_FILE = "ngx_nchan_module.so"
NGINX_FALLBACK_DIRS = ["/usr/sbin", "/sbin"]
TEMP_DIRS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_SETTING = 2
HEALTH_TIMEOUT = 2.0

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
DIGITS = re.compile(r"[0-9]{1,9}")
SAFE_PATH = re.compile(r"[A-Za-z0-9_./@+-]+")
SIZE = re.compile(r"[1-9][0-9]*[kKmMgG]?")
ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


class SettingError(ValueError):
    """An environment value nginx must not see; the message names the variable."""


def _setting(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, default).strip() or default


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _setting(env, name, str(default))
    if not DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise SettingError(f"{name} must be an integer from {low} to {high}, got {raw!r}")
    return int(raw)


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    return _integer(env, name, default, 1, 65535)


def _listen(address: str, port: int) -> str:
    """nginx spells IPv6 listen addresses in brackets."""
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}"


def _public_listen(env: Mapping[str, str]) -> str:
    name = "PUSH_STREAM_PUBLIC_ADDR"
    raw = _setting(env, name, "0.0.0.0")
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        raise SettingError(f"{name} must be an IP address, got {raw!r}") from None

    return _listen(str(address), _port(env, "PUSH_STREAM_PUBLIC_PORT", 9080))


def _run_dir(env: Mapping[str, str]) -> str:
    """Absolute, and spelled so it can sit inside a quoted nginx string as is."""
    name = "PUSH_STREAM_RUN_DIR"
    path = os.path.abspath(_setting(env, name, "/tmp/push-stream"))
    if not SAFE_PATH.fullmatch(path):
        raise SettingError(f"{name} may only hold letters, digits and _./@+-, got {path!r}")
    return path


def _workers(env: Mapping[str, str]) -> str:
    if _setting(env, "PUSH_STREAM_WORKERS", "1") == "auto":
        return "auto"
    return str(_integer(env, "PUSH_STREAM_WORKERS", 1, 1, 256))


def _shm_size(env: Mapping[str, str]) -> str:
    name = "PUSH_STREAM_SHM_SIZE"
    raw = _setting(env, name, "64M")
    if not SIZE.fullmatch(raw):
        raise SettingError(f"{name} must be a size such as 65536, 512k or 64M, got {raw!r}")
    return raw


def _cors_origin(env: Mapping[str, str]) -> str:
    name = "PUSH_STREAM_CORS_ORIGIN"
    raw = _setting(env, name, "*")
    if raw != "*" and not ORIGIN.fullmatch(raw):
        raise SettingError(f"{name} must be * or an origin like https://app.example.com, "
                           f"got {raw!r}")
    return raw


def _nchan_module(env: Mapping[str, str]) -> str:
    """The module given, or the one the Debian package installs."""
    name = "PUSH_STREAM_NCHAN_MODULE"
    raw = env.get(name, "").strip()
    candidates = [raw] if raw else [os.path.join(d, MODULE_FILE) for d in MODULE_DIRS]

    for candidate in candidates:
        usable = os.path.isabs(candidate) and SAFE_PATH.fullmatch(candidate)
        if usable and os.path.isfile(candidate):
            return candidate

    if raw:
        raise SettingError(f"{name} must be the absolute path of an existing file, got {raw!r}")
    raise SettingError(f"{name} is unset and {MODULE_FILE} is not in {', '.join(MODULE_DIRS)}")


def _upstream(name: str, item: str) -> str:
    host, sep, port = item.rpartition(":")
    if not sep or not DIGITS.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise SettingError(f"{name} items must be host:port, got {item!r}")

    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return _listen(str(ipaddress.ip_address(bare)), int(port))
    except ValueError:
        pass

    if not HOSTNAME.fullmatch(host):
        raise SettingError(f"{name} items must be host:port, got {item!r}")
    return f"{host}:{port}"


def _upstreams(env: Mapping[str, str]) -> list[str]:
    name = "PUSH_STREAM_UPSTREAMS"
    raw = env.get(name, "").strip()
    if not raw:
        raise SettingError(f"{name} must list at least one replica as host:port[,host:port]")
    return [_upstream(name, item.strip()) for item in raw.split(",")]


def _nofile_hard_limit() -> int | None:
    """The open-files hard limit, read from /proc: python3-minimal has no resource module."""
    try:
        limits = Path("/proc/self/limits").read_text()
    except OSError:
        return None

    for line in limits.splitlines():
        if line.startswith("Max open files"):
            hard = line.split()[4]
            return int(hard) if hard.isdigit() else None
    return None


def _rlimit_nofile(max_connections: int) -> int:
    """Two descriptors per connection, but never above what this user may raise to.

    Only root can lift the hard limit; asking for more makes nginx log an alert at every
    start, and the soft limit it gets is the hard one either way.
    """
    wanted = 2 * max_connections
    hard = _nofile_hard_limit()
    if os.geteuid() == 0 or hard is None or wanted <= hard:
        return wanted

    if max_connections > hard:
        log.warning("descriptor limit below connections max_connections=%d nofile_hard=%d",
                    max_connections, hard)
    return hard


def _common(env: Mapping[str, str]) -> dict[str, str]:
    """Settings both configs share."""
    max_connections = _integer(env, "PUSH_STREAM_MAX_CONNECTIONS", 16384, 16, 1048576)
    return {
        "run_dir": _run_dir(env),
        "public_listen": _public_listen(env),
        "workers": _workers(env),
        "max_connections": str(max_connections),
        "rlimit_nofile": str(_rlimit_nofile(max_connections)),
    }


def _fill(template: Path, values: Mapping[str, str]) -> str:
    """Replace every {{name}}; a placeholder without a value is a bug, not a blank."""

    def value(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return PLACEHOLDER.sub(value, template.read_text())


def _authorizer(env: Mapping[str, str], taken: set[int]) -> dict[str, str]:
    """The placeholders that wire private channels to the replica's authorizer.

    Without PUSH_STREAM_AUTHORIZER_PORT no authorizer runs beside nginx, and the private
    locations refuse every subscriber themselves: private channels fail closed. (They do
    not ask an /_authorize that answers 403 by itself: Nchan 1.3.6 crashes the worker
    on an authorization subrequest served without an upstream.)
    """
    name = "PUSH_STREAM_AUTHORIZER_PORT"
    if not env.get(name, "").strip():
        return {
            "authorizer_upstream": "    # No authorizer beside this nginx: private channels "
                                   "are refused.",
            "private_gate": "return 403;",
            "authorizer_handler": "return 404;",
        }

    port = _port(env, name, 9082)
    if port in taken:
        raise SettingError(f"{name} must differ from the public and internal ports")
    upstream = ("    # Kept-alive connections to the authorizer: one subrequest per private\n"
                "    # subscription must not cost a TCP handshake.\n"
                "    upstream push_authorizer {\n"
                f"        server 127.0.0.1:{port};\n"
                "        keepalive 8;\n"
                "    }")
    return {
        "authorizer_upstream": upstream,
        "private_gate": "nchan_authorize_request /_authorize;",
        "authorizer_handler": "proxy_pass http://push_authorizer/authorize;",
    }


def _eventsource_ping(env: Mapping[str, str]) -> str:
    """Off by default: Nchan 1.3.6 holds memory per ping on a busy EventSource connection
    until it closes (docs/reliability.md). An operator behind proxies that cut quiet
    streams sooner than the load balancer can turn it on and accept that cost."""
    seconds = _integer(env, "PUSH_STREAM_EVENTSOURCE_PING", 0, 0, 3600)
    if not seconds:
        return "# No EventSource pings (PUSH_STREAM_EVENTSOURCE_PING=0)."
    return f"nchan_eventsource_ping_interval {seconds}s;"


def render_replica(env: Mapping[str, str]) -> str:
    """The config of one replica: public subscriber server plus loopback publisher server."""
    values = _common(env)
    internal_port = _port(env, "PUSH_STREAM_INTERNAL_PORT", 9081)
    public_port = _port(env, "PUSH_STREAM_PUBLIC_PORT", 9080)
    if internal_port == public_port:
        raise SettingError("PUSH_STREAM_INTERNAL_PORT must differ from PUSH_STREAM_PUBLIC_PORT")
    authorizer = _authorizer(env, {internal_port, public_port})

    cors_origin = _cors_origin(env)
    values.update(
        nchan_module=_nchan_module(env),
        internal_port=str(internal_port),
        buffer_length=str(_integer(env, "PUSH_STREAM_BUFFER_LENGTH", 100, 1, 1000000)),
        buffer_seconds=str(_integer(env, "PUSH_STREAM_BUFFER_SECONDS", 600, 1, 31536000)),
        cors_origin=cors_origin,
        cors_credentials="off" if cors_origin == "*" else "on",
        shm_size=_shm_size(env),
        eventsource_ping=_eventsource_ping(env),
        **authorizer,
    )
    return _fill(REPLICA_TEMPLATE, values)


def render_front(env: Mapping[str, str]) -> str:
    """The config of the local load balancer in front of an instance's replicas."""
    values = _common(env)
    servers = (f"        server {upstream};" for upstream in _upstreams(env))
    values["upstream_servers"] = "\n".join(servers)
    return _fill(FRONT_TEMPLATE, values)


def prepare_run_dir(env: Mapping[str, str]) -> Path:
    """Create the run dir and the temp dirs the config names, owned by the caller."""
    run_dir = Path(_run_dir(env))
    for temp in TEMP_DIRS:
        (run_dir / "tmp" / temp).mkdir(parents=True, exist_ok=True)
    return run_dir


def _nginx_binary() -> str:
    """nginx lives in /usr/sbin, which an unprivileged user's PATH often lacks.

    Searched by hand: shutil is not part of python3-minimal.
    """
    search = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    search += NGINX_FALLBACK_DIRS
    for directory in search:
        binary = os.path.join(directory, "nginx")
        if os.path.isfile(binary) and os.access(binary, os.X_OK):
            return binary
    raise FileNotFoundError(f"no nginx executable in {os.pathsep.join(search)}")


def nginx_command(conf: Path, run_dir: Path) -> list[str]:
    """The foreground nginx command; -e keeps even startup errors off /var/log."""
    return [_nginx_binary(), "-c", str(conf), "-p", str(run_dir), "-e", "stderr",
            "-g", "daemon off;"]


def _render_to(env: Mapping[str, str], front: bool, out: Path) -> None:
    renderer: Callable[[Mapping[str, str]], str] = render_front if front else render_replica
    text = renderer(env)
    prepare_run_dir(env)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(out.name + ".tmp")
    staging.write_text(text)
    os.replace(staging, out)


def healthy(env: Mapping[str, str], timeout: float = HEALTH_TIMEOUT) -> bool:
    """Whether /healthz on the public port answers 200, asked from this machine.

    Plain sockets: http.client is not part of python3-minimal.
    """
    listen = _public_listen(env)
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if ipaddress.ip_address(host).is_unspecified:
        host = "::1" if ":" in host else "127.0.0.1"

    request = b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(request)
            head = b""
            while b"\r\n" not in head and len(head) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return False
    return head.split(b" ", 2)[1:2] == [b"200"]


def _command_render(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    _render_to(os.environ, args.front, out)
    log.info("rendered conf=%s front=%s", out, args.front)
    return EXIT_OK


def _command_health(args: argparse.Namespace) -> int:
    if healthy(os.environ):
        return EXIT_OK
    log.error("unhealthy listen=%s", _public_listen(os.environ))
    return EXIT_FAILED


def _command_run(args: argparse.Namespace) -> int:
    run_dir = Path(_run_dir(os.environ))
    conf = run_dir / "nginx.conf"
    command = nginx_command(conf, run_dir)
    _render_to(os.environ, args.front, conf)

    log.info("starting nginx conf=%s front=%s", conf, args.front)
    logging.shutdown()
    os.execv(command[0], command)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Render and run the push-stream nginx.")
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser("render", help="write the rendered config to a file")
    render.add_argument("--out", required=True, help="file to write")
    render.add_argument("--front", action="store_true", help="render the front config")
    render.set_defaults(handler=_command_render)

    run = commands.add_parser("run", help="render into the run dir and exec nginx")
    run.add_argument("--front", action="store_true", help="run the front instead")
    run.set_defaults(handler=_command_run)

    health = commands.add_parser("health", help="check /healthz on the public port")
    health.set_defaults(handler=_command_health)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except SettingError as exc:
        log.error("bad setting: %s", exc)
        return EXIT_BAD_SETTING
    except OSError as exc:
        log.error("cannot start nginx: %s", exc)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
