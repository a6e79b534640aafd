"""The global options of ``pushaas`` and the clients built from them.

Publisher commands need ``--username``/``--password`` (a bound app's env), instance
commands ``--broker-password``; a client is built only when a command needs it, so a
missing setting is reported by name for the commands that need it and no others.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from pushaas.broker import DEFAULT_BROKER_USERNAME, BrokerClient
from pushaas.client import PushClient
from pushaas.retry import RetryPolicy

F = TypeVar("F", bound=Callable[..., Any])

# A person is waiting: a few quick retries, then a clear error.
CLI_RETRY = RetryPolicy(max_attempts=3, max_elapsed=10.0, base_delay=0.25, max_delay=2.0)


@dataclass
class CliContext:
    endpoint: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    broker_username: str = DEFAULT_BROKER_USERNAME
    broker_password: str | None = field(default=None, repr=False)
    push_stream_url: str | None = None
    timeout: float = 10.0
    json: bool = False
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def require(self, *settings: tuple[str | None, str]) -> None:
        """Fail with a usage error naming each missing ``option (ENV)``."""
        missing = [hint for value, hint in settings if not value]
        if missing:
            raise click.UsageError(f"missing {', '.join(missing)}")

    def push_client(self) -> PushClient:
        self.require((self.endpoint, "--endpoint (PUSHAAS_ENDPOINT)"),
                     (self.username, "--username (PUSHAAS_USERNAME)"),
                     (self.password, "--password (PUSHAAS_PASSWORD)"))
        assert self.endpoint and self.username and self.password
        client = PushClient(self.endpoint, self.username, self.password,
                            push_stream_url=self.push_stream_url, timeout=self.timeout,
                            retry=CLI_RETRY)
        self._closers.append(client.close)
        return client

    def broker_client(self) -> BrokerClient:
        self.require((self.endpoint, "--endpoint (PUSHAAS_ENDPOINT)"),
                     (self.broker_password, "--broker-password (PUSHAAS_BROKER_PASSWORD)"))
        assert self.endpoint and self.broker_password
        client = BrokerClient(self.endpoint, self.broker_password, self.broker_username,
                              timeout=self.timeout, retry=CLI_RETRY)
        self._closers.append(client.close)
        return client

    def close(self) -> None:
        for close in self._closers:
            close()


def _enable_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(CliContext).json = True


def json_option(command: F) -> F:
    """``--json`` on a command, as well as before it (``pushaas --json ...``)."""
    return click.option("--json", is_flag=True, expose_value=False, callback=_enable_json,
                        is_eager=True, help="Machine-readable JSON on stdout, nothing else.")(
        command)


pass_cli = click.make_pass_decorator(CliContext)
