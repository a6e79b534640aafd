"""ECS Task State Change events: how an instance learns that it serves, or cannot.

On AWS the provisioning job returns as soon as the ECS service exists; readiness comes
later as events. A task that reaches RUNNING makes its instance running. A task that
stops before it ever ran, while the instance is still pending, fails the instance with
ECS's stopped reason. Later task deaths are logged and counted: ECS replaces the task.
"""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from chalicelib.instances import InstanceStore, Status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskChange:
    instance: str
    task: str
    last_status: str
    stopped_reason: str
    started: bool


def parse(detail: object, instance_for_group: Callable[[str], str | None]) -> TaskChange | None:
    """The change an event describes, or None for events that are not about an instance.

    Events come from outside: anything malformed is logged and ignored, never raised,
    so a bad event cannot make EventBridge retry forever.
    """
    if not isinstance(detail, Mapping):
        log.warning("ignoring ECS event without a detail object")
        return None

    group, status = detail.get("group"), detail.get("lastStatus")
    if not isinstance(group, str) or not isinstance(status, str):
        log.warning("ignoring ECS event without group or lastStatus")
        return None

    instance = instance_for_group(group)
    if instance is None:
        log.debug("ignoring ECS event of another group group=%s", group)
        return None

    return TaskChange(
        instance=instance,
        task=str(detail.get("taskArn", "?")).rsplit("/", 1)[-1],
        last_status=status,
        stopped_reason=_stopped_reason(detail),
        started=bool(detail.get("startedAt")),
    )


MAX_REASON = 1000
"""Characters of a stopped reason kept: it is stored as the instance's reason and logged,
and ECS's own reasons are far shorter."""


def _stopped_reason(detail: Mapping) -> str:
    reasons = [str(detail["stoppedReason"])] if detail.get("stoppedReason") else []
    containers = detail.get("containers")
    for container in containers if isinstance(containers, list) else []:
        if isinstance(container, Mapping) and container.get("reason"):
            reasons.append(f"{container.get('name', 'container')}: {container['reason']}")
    reason = "; ".join(reasons)
    return reason if len(reason) <= MAX_REASON else reason[:MAX_REASON - 1] + "…"


def apply(change: TaskChange, store: InstanceStore) -> None:
    """Move the instance's status as the change warrants."""
    instance = store.find(change.instance)
    if instance is None or instance.status is Status.REMOVING:
        return

    if change.last_status == "RUNNING" and instance.status is not Status.RUNNING:
        store.set_status(instance.name, Status.RUNNING)
        log.info("instance running instance=%s task=%s", instance.name, change.task)
        return

    if change.last_status != "STOPPED":
        return

    if instance.status is Status.PENDING and not change.started:
        reason = f"task stopped before running: {change.stopped_reason or 'no reason given'}"
        store.set_status(instance.name, Status.FAILED, reason)
        log.error("instance failed instance=%s task=%s reason=%s",
                  instance.name, change.task, reason)
    elif instance.status is Status.RUNNING:
        deaths = store.count_task_death(instance.name)
        log.warning("task stopped instance=%s task=%s reason=%s deaths=%d",
                    instance.name, change.task, change.stopped_reason or "-", deaths)
