"""The ECS task this agent runs in, from the container metadata endpoint (stdlib only).

A task definition cannot give each task its own PUSHAAS_AGENT_ID, so on ECS the agent
names itself after its task: the id is stable across restarts of the agent container
inside the task (its cursor survives them) and unique across the service's tasks.
"""

import json
import time
import urllib.error
import urllib.request

METADATA_VARIABLE = "ECS_CONTAINER_METADATA_URI_V4"
TIMEOUT = 2.0
DEADLINE = 10.0


class MetadataError(Exception):
    """The task metadata could not be read; the message says why."""


def task_id(metadata_uri: str, deadline: float | None = None) -> str:
    """The task id (last segment of the task ARN), retrying briefly while the agent starts."""
    give_up = time.monotonic() + (DEADLINE if deadline is None else deadline)
    while True:
        try:
            with urllib.request.urlopen(f"{metadata_uri.rstrip('/')}/task",
                                        timeout=TIMEOUT) as response:
                arn = json.load(response)["TaskARN"]
            return str(arn).rsplit("/", 1)[-1]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if time.monotonic() >= give_up:
                raise MetadataError(f"cannot read the ECS task metadata: {exc}") from None
            time.sleep(0.5)
