"""Typed settings read once from the environment.

Every environment variable the Chalice app reads is read here and nowhere else. A
missing or malformed value raises ConfigError naming the variable, so a misconfigured
deployment fails on its first request with a clear log line instead of half-working.
"""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from chalicelib.errors import ConfigError

PROVISIONERS = ("local", "ecs")
JOB_QUEUES = ("redis", "sqs")

# On AWS these three come from one Secrets Manager secret (PUSHAAS_SECRETS_ARN), fetched
# at cold start, so no secret sits in the Lambda's configuration.
SECRET_KEYS = {
    "PUSHAAS_REDIS_URL": "redis_url",
    "PUSHAAS_BROKER_PASSWORD": "broker_password",
    "PUSHAAS_MASTER_KEY": "master_key",
}


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
    jobs_queue_url: str | None = None
    redis_min_replicas: int = 0


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


def _positive_number(env: Mapping[str, str], name: str, default: float,
                     most: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default

    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if not 0 < value <= most:  # also refuses nan and inf
        raise ConfigError(f"{name} must be above 0 and at most {most:g}, not {raw!r}")
    return value


def _count(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip() or str(default)
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, not {raw!r}")
    return int(raw)


def _redis_url(env: Mapping[str, str]) -> str:
    """The URL checked here, so a typo is one clear error at start rather than a 500 on
    every request; the message never quotes the URL, which holds the password."""
    name = "PUSHAAS_REDIS_URL"
    value = _required(env, name)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL (bad port or address)") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{name} must start with redis://, rediss:// or unix://")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{name} has no host")
    if port == 0:
        raise ConfigError(f"{name} has port 0")
    return value


def log_level(env: Mapping[str, str] | None = None) -> str:
    """PUSHAAS_LOG_LEVEL, any case; a bad value is a ConfigError naming the variable."""
    env = os.environ if env is None else env
    value = env.get("PUSHAAS_LOG_LEVEL", "").strip().upper() or "INFO"
    allowed = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    if value not in allowed:
        raise ConfigError(f"PUSHAAS_LOG_LEVEL must be one of {', '.join(allowed)}, "
                          f"not {value!r}")
    return value


def _with_secrets(env: Mapping[str, str],
                  fetch: Callable[[str], Mapping[str, str]] | None) -> Mapping[str, str]:
    arn = env.get("PUSHAAS_SECRETS_ARN", "").strip()
    if not arn:
        return env

    if fetch is None:
        from chalicelib.secrets import fetch_secret as fetch
    secret = fetch(arn)
    merged = dict(env)
    for name, key in SECRET_KEYS.items():
        value = secret.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"the secret PUSHAAS_SECRETS_ARN names has no {key!r} value")
        merged[name] = value
    return merged


def from_env(env: Mapping[str, str] | None = None,
             fetch_secret: Callable[[str], Mapping[str, str]] | None = None) -> Settings:
    """Build settings from ``env`` (default: the process environment).

    With ``PUSHAAS_SECRETS_ARN`` set, the Redis URL, broker password and master key are
    read from that secret (``fetch_secret`` is injectable for tests).
    """
    env = _with_secrets(os.environ if env is None else env, fetch_secret)
    master_key = _required(env, "PUSHAAS_MASTER_KEY")
    if len(master_key) < 32:
        raise ConfigError("PUSHAAS_MASTER_KEY must be at least 32 characters")

    endpoint = env.get("PUSHAAS_ENDPOINT", "").strip().rstrip("/") or None
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ConfigError("PUSHAAS_ENDPOINT must be an http(s) URL")

    job_queue = _choice(env, "PUSHAAS_JOB_QUEUE", "redis", JOB_QUEUES)
    queue_url = env.get("PUSHAAS_JOBS_QUEUE_URL", "").strip() or None
    if job_queue == "sqs" and not queue_url:
        raise ConfigError("PUSHAAS_JOBS_QUEUE_URL must be set when PUSHAAS_JOB_QUEUE is sqs")

    return Settings(
        redis_url=Secret(_redis_url(env)),
        broker_username=env.get("PUSHAAS_BROKER_USERNAME", "").strip() or "pushaas",
        broker_password=Secret(_required(env, "PUSHAAS_BROKER_PASSWORD")),
        master_key=Secret(master_key),
        provisioner=_choice(env, "PUSHAAS_PROVISIONER", "local", PROVISIONERS),
        job_queue=job_queue,
        jobs_queue_url=queue_url,
        endpoint=endpoint,
        plans_file=env.get("PUSHAAS_PLANS_FILE") or None,
        redis_timeout=_positive_number(env, "PUSHAAS_REDIS_TIMEOUT", 2.0, most=60),
        job_attempts=_count(env, "PUSHAAS_JOB_ATTEMPTS", 3, 1, 100),
        redis_min_replicas=_count(env, "PUSHAAS_REDIS_MIN_REPLICAS", 0, 0, 5),
    )
