"""Typed settings read once from the environment.

Every environment variable the Chalice app reads is read here and nowhere else. A
missing or malformed value raises ConfigError naming the variable, so a misconfigured
deployment fails on its first request with a clear log line instead of half-working.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass

from chalicelib.errors import ConfigError

# The ECS provisioner and the SQS queue arrive with the AWS work; until then only the
# local implementations can be chosen, and choosing another fails at start.
PROVISIONERS = ("local",)
JOB_QUEUES = ("redis",)


class Secret:
    """A string that never shows its value when printed, logged or repr'd."""

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Settings:
    redis_url: Secret
    broker_username: str
    broker_password: Secret
    master_key: Secret
    provisioner: str = "local"
    job_queue: str = "redis"
    endpoint: str | None = None
    plans_file: str | None = None
    redis_timeout: float = 2.0
    job_attempts: int = 3


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} must be set")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).strip() or default
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _positive_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default

    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive")
    return value


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    master_key = _required(env, "PUSHAAS_MASTER_KEY")
    if len(master_key) < 32:
        raise ConfigError("PUSHAAS_MASTER_KEY must be at least 32 characters")

    endpoint = env.get("PUSHAAS_ENDPOINT", "").strip().rstrip("/") or None
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ConfigError("PUSHAAS_ENDPOINT must be an http(s) URL")

    return Settings(
        redis_url=Secret(_required(env, "PUSHAAS_REDIS_URL")),
        broker_username=env.get("PUSHAAS_BROKER_USERNAME", "").strip() or "pushaas",
        broker_password=Secret(_required(env, "PUSHAAS_BROKER_PASSWORD")),
        master_key=Secret(master_key),
        provisioner=_choice(env, "PUSHAAS_PROVISIONER", "local", PROVISIONERS),
        job_queue=_choice(env, "PUSHAAS_JOB_QUEUE", "redis", JOB_QUEUES),
        endpoint=endpoint,
        plans_file=env.get("PUSHAAS_PLANS_FILE") or None,
        redis_timeout=_positive_number(env, "PUSHAAS_REDIS_TIMEOUT", 2.0),
        job_attempts=int(_positive_number(env, "PUSHAAS_JOB_ATTEMPTS", 3)),
    )
