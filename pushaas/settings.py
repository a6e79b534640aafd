"""Where the push-api is and who the publisher is, from arguments or a bound app's env.

Tsuru gives a bound app ``PUSHAAS_ENDPOINT``, ``PUSHAAS_USERNAME``, ``PUSHAAS_PASSWORD``
and ``PUSHAAS_PUSH_STREAM_URL``; reading them in one place means a missing one is
reported once, by name, instead of as a failed request later.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pushaas.errors import ConfigurationError

ENV_ENDPOINT = "PUSHAAS_ENDPOINT"
ENV_USERNAME = "PUSHAAS_USERNAME"
ENV_PASSWORD = "PUSHAAS_PASSWORD"
ENV_PUSH_STREAM_URL = "PUSHAAS_PUSH_STREAM_URL"


def http_url(value: str, what: str) -> str:
    """``value`` without a trailing slash, if it is an absolute http(s) URL."""
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{what} must be an http:// or https:// URL, not {value!r}")
    return url


@dataclass(frozen=True)
class Settings:
    """A publisher's connection settings; the password never shows in ``repr``."""

    endpoint: str
    username: str
    password: str = field(repr=False)
    push_stream_url: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "endpoint", http_url(self.endpoint, "the endpoint"))
        if self.push_stream_url:
            object.__setattr__(self, "push_stream_url",
                               http_url(self.push_stream_url, "the push-stream URL"))
        if not self.username or not self.password:
            raise ConfigurationError("a username and a password are required")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Settings from the env vars of a bound app; names every missing variable."""
        env = os.environ if env is None else env
        required = (ENV_ENDPOINT, ENV_USERNAME, ENV_PASSWORD)
        missing = [name for name in required if not env.get(name, "").strip()]
        if missing:
            raise ConfigurationError(f"missing environment variable(s): {', '.join(missing)}")

        return cls(endpoint=env[ENV_ENDPOINT], username=env[ENV_USERNAME].strip(),
                   password=env[ENV_PASSWORD].strip(),
                   push_stream_url=env.get(ENV_PUSH_STREAM_URL, "").strip() or None)
