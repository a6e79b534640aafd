"""Agent settings, read once from the environment and validated before anything starts.

Only the standard library is imported here so the container health check can reuse it
without the agent's dependencies.
"""

import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from push_agent import ecs_task

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""Instance and agent ids end up inside Redis keys and file names: keep them plain."""

REDIS_SCHEMES = ("redis", "rediss", "unix")


class SettingsError(Exception):
    """An environment variable is missing or invalid; the message names it."""


@dataclass(frozen=True)
class NginxAddress:
    """Where the replica's internal nginx server listens (plain HTTP on a private port)."""

    host: str
    port: int
    base_path: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.base_path}"


@dataclass(frozen=True)
class Settings:
    redis_url: str
    instance: str
    agent_id: str
    nginx: NginxAddress
    batch: int = 500
    concurrency: int = 16
    stats_interval: float = 5.0
    keepalive_interval: float = 30.0
    buffer_seconds: float = 600.0
    log_level: str = "INFO"
    heartbeat_path: str = ""
    cursor_ttl: float = 172_800.0

    def __repr__(self) -> str:
        return (
            f"Settings(instance={self.instance!r}, agent_id={self.agent_id!r}, "
            f"redis={redact_url(self.redis_url)!r}, nginx={self.nginx.url!r})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        """Build settings from ``env``; raises SettingsError naming the first bad variable."""
        agent_id = _agent_id(env)
        return cls(
            redis_url=_redis_url(env),
            instance=_name(env, "PUSHAAS_INSTANCE"),
            agent_id=agent_id,
            nginx=_nginx(env),
            batch=_int(env, "PUSHAAS_AGENT_BATCH", 500, 1, 100_000),
            concurrency=_int(env, "PUSHAAS_AGENT_CONCURRENCY", 16, 1, 1024),
            stats_interval=_seconds(env, "PUSHAAS_STATS_INTERVAL", 5.0),
            keepalive_interval=_seconds(env, "PUSHAAS_KEEPALIVE_INTERVAL", 30.0),
            buffer_seconds=_seconds(env, "PUSHAAS_BUFFER_SECONDS", 600.0, minimum=0.0),
            log_level=_log_level(env),
            heartbeat_path=env.get("PUSHAAS_AGENT_HEARTBEAT") or default_heartbeat(agent_id),
            cursor_ttl=_seconds(env, "PUSHAAS_CURSOR_TTL", 172_800.0, minimum=60.0),
        )


def default_heartbeat(agent_id: str) -> str:
    """Per-agent file so several local replicas on one machine never share it."""
    return os.path.join(tempfile.gettempdir(), f"pushaas-agent-{agent_id}.heartbeat")


def redact_url(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} is required")
    return value


def _name(env: Mapping[str, str], name: str) -> str:
    value = _required(env, name)
    if not NAME_PATTERN.match(value):
        raise SettingsError(f"{name} must be 1-128 of [A-Za-z0-9._-], got {value!r}")
    return value


def _agent_id(env: Mapping[str, str]) -> str:
    """PUSHAAS_AGENT_ID, or on ECS the id of the task the agent runs in."""
    if env.get("PUSHAAS_AGENT_ID", "").strip() or not env.get(ecs_task.METADATA_VARIABLE):
        return _name(env, "PUSHAAS_AGENT_ID")

    try:
        return ecs_task.task_id(env[ecs_task.METADATA_VARIABLE])
    except ecs_task.MetadataError as exc:
        raise SettingsError(f"PUSHAAS_AGENT_ID is unset and {exc}") from None


def _redis_url(env: Mapping[str, str]) -> str:
    value = _required(env, "PUSHAAS_REDIS_URL")
    parts = urlsplit(value)
    if parts.scheme not in REDIS_SCHEMES:
        raise SettingsError("PUSHAAS_REDIS_URL must start with redis://, rediss:// or unix://")
    try:
        port = parts.port
    except ValueError:
        port = 0  # the message never quotes the URL: it holds the password
    if parts.scheme != "unix" and (not parts.hostname or port == 0):
        raise SettingsError("PUSHAAS_REDIS_URL needs a host and a port from 1 to 65535")
    return value


def _nginx(env: Mapping[str, str]) -> NginxAddress:
    value = _required(env, "PUSHAAS_NGINX_URL")
    parts = urlsplit(value)
    try:
        port = parts.port or 80
    except ValueError:
        raise SettingsError(f"PUSHAAS_NGINX_URL has a bad port: {value!r}") from None

    if parts.scheme != "http" or not parts.hostname or parts.query or parts.fragment:
        raise SettingsError(f"PUSHAAS_NGINX_URL must look like http://host:port, got {value!r}")
    return NginxAddress(parts.hostname, port, parts.path.rstrip("/"))


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default

    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, minimum: float = 0.01) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default

    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not minimum <= value <= 86_400 * 30:
        raise SettingsError(f"{name} must be between {minimum} and 2592000 seconds, got {raw}")
    return value


def _log_level(env: Mapping[str, str]) -> str:
    value = env.get("PUSHAAS_LOG_LEVEL", "").strip().upper() or "INFO"
    if value not in logging.getLevelNamesMapping():
        raise SettingsError(
            f"PUSHAAS_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {value!r}"
        )
    return value
