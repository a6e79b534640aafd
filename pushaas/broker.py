"""A client of the Tsuru broker API (``/resources``), for operators and the CLI.

Tsuru itself is the broker's usual caller; this client makes the same calls in Tsuru's
form encoding, with the broker's credentials, and reuses the push-api client's flows,
error mapping and retries.
"""

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from pushaas.errors import error_for
from pushaas.protocol import Flow, Request, exchange
from pushaas.retry import RetryPolicy
from pushaas.settings import Settings
from pushaas.transport import OwnsHttpClient, SyncDriver
from pushaas.version import USER_AGENT

DEFAULT_BROKER_USERNAME = "pushaas"

# Tsuru reads an instance's state from the status route's HTTP code.
STATES = {202: "pending", 204: "running", 500: "failed", 200: "removing"}


@dataclass(frozen=True)
class InstanceStatus:
    state: str
    reason: str = ""


def instance_path(name: str, *rest: str) -> str:
    return "/".join(["/resources", quote(name, safe=""), *rest])


class BrokerApi:
    """The broker's calls as flows (see ``pushaas.protocol``)."""

    def __init__(self, retry: RetryPolicy):
        self.retry = retry

    def _call(self, method: str, path: str, **request: Any) -> Flow[Any]:
        reply = yield from exchange(Request(method, path, **request), self.retry)
        return reply.json() if reply.body else None

    def list_instances(self) -> Flow[list[dict[str, Any]]]:
        return self._call("GET", "/resources")

    def plans(self) -> Flow[list[dict[str, str]]]:
        return self._call("GET", "/resources/plans")

    def create_instance(self, name: str, plan: str, team: str, user: str) -> Flow[None]:
        fields = {"name": name, "team": team, "user": user}
        if plan:
            fields["plan"] = plan
        return self._call("POST", "/resources", form=fields)

    def instance_info(self, name: str) -> Flow[list[dict[str, str]]]:
        return self._call("GET", instance_path(name))

    def change_plan(self, name: str, plan: str) -> Flow[None]:
        return self._call("PUT", instance_path(name), form={"plan": plan})

    def remove_instance(self, name: str) -> Flow[None]:
        return self._call("DELETE", instance_path(name), form={})

    def instance_status(self, name: str) -> Flow[InstanceStatus]:
        """The state Tsuru sees; a failed instance's body is the reason."""
        request = Request("GET", instance_path(name, "status"), accept=frozenset({500}))
        reply = yield from exchange(request, self.retry)
        if reply.headers.get("content-type", "").startswith("application/json"):
            raise error_for(reply.status, reply.body, reply.headers)

        reason = reply.body.decode("utf-8", "replace").strip()
        return InstanceStatus(STATES.get(reply.status, f"unknown ({reply.status})"), reason)

    def bind_app(self, name: str, app: str, app_host: str = "") -> Flow[dict[str, str]]:
        """The env vars Tsuru would give ``app``; binding again gives the same ones."""
        fields = {"app-name": app}
        if app_host:
            fields["app-host"] = app_host
        return self._call("POST", instance_path(name, "bind-app"), form=fields)

    def unbind_app(self, name: str, app: str) -> Flow[None]:
        return self._call("DELETE", instance_path(name, "bind-app"), form={"app-name": app})


class BrokerClient(OwnsHttpClient):
    """Blocking client of the broker with ``PUSHAAS_BROKER_*`` credentials."""

    def __init__(self, endpoint: str, password: str,
                 username: str = DEFAULT_BROKER_USERNAME, *, timeout: float = 10.0,
                 retry: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None):
        self.settings = Settings(endpoint, username, password)
        self._api = BrokerApi(retry or RetryPolicy())
        self._http = httpx.Client(
            base_url=self.settings.endpoint, auth=(username, password), timeout=timeout,
            headers={"User-Agent": USER_AGENT}, transport=transport)
        self._driver = SyncDriver(self._http)

    def list_instances(self) -> list[dict[str, Any]]:
        return self._driver.run(self._api.list_instances())

    def plans(self) -> list[dict[str, str]]:
        return self._driver.run(self._api.plans())

    def create_instance(self, name: str, plan: str, team: str, user: str) -> None:
        self._driver.run(self._api.create_instance(name, plan, team, user))

    def instance_info(self, name: str) -> list[dict[str, str]]:
        return self._driver.run(self._api.instance_info(name))

    def change_plan(self, name: str, plan: str) -> None:
        self._driver.run(self._api.change_plan(name, plan))

    def remove_instance(self, name: str) -> None:
        self._driver.run(self._api.remove_instance(name))

    def instance_status(self, name: str) -> InstanceStatus:
        return self._driver.run(self._api.instance_status(name))

    def bind_app(self, name: str, app: str, app_host: str = "") -> dict[str, str]:
        return self._driver.run(self._api.bind_app(name, app, app_host))

    def unbind_app(self, name: str, app: str) -> None:
        self._driver.run(self._api.unbind_app(name, app))

