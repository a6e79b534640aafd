"""Container health check (standard library only): ``python -m push_agent.health``.

Healthy means this replica's nginx answers its internal /healthz and the agent's delivery
loop touched its heartbeat file recently. Exit 0 when healthy, 1 otherwise, with one line.
"""

import http.client
import os
import sys

from push_agent import heartbeat
from push_agent.settings import Settings, SettingsError

TIMEOUT = 3.0


def check(settings: Settings) -> str | None:
    """None when healthy, else the reason."""
    nginx = settings.nginx
    try:
        connection = http.client.HTTPConnection(nginx.host, nginx.port, timeout=TIMEOUT)
        connection.request("GET", f"{nginx.base_path}/healthz")
        status = connection.getresponse().status
        connection.close()
    except OSError as exc:
        return f"nginx unreachable: {exc}"
    if status != 200:
        return f"nginx /healthz answered {status}"

    age = heartbeat.age(settings.heartbeat_path)
    if age is None:
        return "no agent heartbeat yet"
    if age > heartbeat.MAX_AGE:
        return f"agent heartbeat is {age:.0f}s old"
    return None


def main() -> int:
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1

    problem = check(settings)
    print(f"unhealthy: {problem}" if problem else "healthy")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
