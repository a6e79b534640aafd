"""Typed settings read once from the environment.

Every environment variable the Chalice app reads is read here and nowhere else. A
missing or malformed value raises ConfigError naming the variable, so a misconfigured
deployment fails on its first request with a clear log line instead of half-working.
"""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

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


def _count(env: Mapping[str, str], name: str) -> int:
    raw = env.get(name, "").strip() or "0"
    if not raw.isdigit() or int(raw) > 5:
        raise ConfigError(f"{name} must be a whole number from 0 to 5, not {raw!r}")
    return int(raw)


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
        redis_url=Secret(_required(env, "PUSHAAS_REDIS_URL")),
        broker_username=env.get("PUSHAAS_BROKER_USERNAME", "").strip() or "pushaas",
        broker_password=Secret(_required(env, "PUSHAAS_BROKER_PASSWORD")),
        master_key=Secret(master_key),
        provisioner=_choice(env, "PUSHAAS_PROVISIONER", "local", PROVISIONERS),
        job_queue=job_queue,
        jobs_queue_url=queue_url,
        endpoint=endpoint,
        plans_file=env.get("PUSHAAS_PLANS_FILE") or None,
        redis_timeout=_positive_number(env, "PUSHAAS_REDIS_TIMEOUT", 2.0),
        job_attempts=int(_positive_number(env, "PUSHAAS_JOB_ATTEMPTS", 3)),
        redis_min_replicas=_count(env, "PUSHAAS_REDIS_MIN_REPLICAS"),
    )
