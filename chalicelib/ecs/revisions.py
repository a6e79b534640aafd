"""Task definition revisions of an instance's family: register only what changed.

Every registration creates a revision, so registering on each retry would pile them up
and roll the service for nothing. The spec tag written by ``taskdef.build`` tells whether
the latest ACTIVE revision already is the wanted definition.
"""

import logging
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.ecs import naming
from chalicelib.ecs.errors import error_code

log = logging.getLogger(__name__)

DELETE_BATCH = 10
"""DeleteTaskDefinitions accepts at most ten revisions per call."""


def ensure(ecs: Any, instance: str, definition: dict[str, Any]) -> str:
    """The ARN of a revision equal to ``definition``, registering one only if needed."""
    family = definition["family"]
    wanted = _spec(definition["tags"])
    latest = _latest_active(ecs, family)
    if latest is not None and _spec(_tags(ecs, latest)) == wanted:
        log.info("task definition current instance=%s revision=%s", instance, _revision(latest))
        return latest

    registered = ecs.register_task_definition(**definition)["taskDefinition"]
    arn = registered["taskDefinitionArn"]
    log.info("task definition registered instance=%s revision=%s", instance, _revision(arn))
    return arn


def remove_family(ecs: Any, instance: str, family: str) -> int:
    """Deregister every ACTIVE revision, then delete every revision; returns how many.

    ECS deletes a revision only once it is INACTIVE, and keeps one in DELETE_IN_PROGRESS
    until no task uses it any more, so this is safe right after the service is deleted.
    """
    active = _revisions(ecs, family, "ACTIVE")
    for arn in active:
        try:
            ecs.deregister_task_definition(taskDefinition=arn)
        except ClientError as exc:
            if error_code(exc) != "ClientException":
                raise
            log.info("task definition already inactive instance=%s revision=%s",
                     instance, _revision(arn))

    inactive = _revisions(ecs, family, "INACTIVE")
    for start in range(0, len(inactive), DELETE_BATCH):
        batch = inactive[start:start + DELETE_BATCH]
        failures = ecs.delete_task_definitions(taskDefinitions=batch).get("failures", [])
        for failure in failures:
            log.warning("task definition not deleted instance=%s arn=%s reason=%s",
                        instance, failure.get("arn"), failure.get("reason"))

    log.info("task definitions removed instance=%s deregistered=%d deleted=%d",
             instance, len(active), len(inactive))
    return len(inactive)


def _latest_active(ecs: Any, family: str) -> str | None:
    """The highest ACTIVE revision; a family has few, so they are all listed."""
    arns = _revisions(ecs, family, "ACTIVE")
    return max(arns, key=lambda arn: int(_revision(arn))) if arns else None


def _revisions(ecs: Any, family: str, status: str) -> list[str]:
    """Every revision of exactly ``family`` in ``status`` (the filter is documented as the
    full family name, but the family is checked again so a look-alike is never touched)."""
    paginator = ecs.get_paginator("list_task_definitions")
    arns: list[str] = []
    for page in paginator.paginate(familyPrefix=family, status=status):
        arns += [arn for arn in page.get("taskDefinitionArns", []) if _family(arn) == family]
    return arns


def _tags(ecs: Any, arn: str) -> list[dict[str, str]]:
    described = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
    return described.get("tags", [])


def _spec(tags: list[dict[str, str]]) -> str | None:
    for tag in tags:
        if tag.get("key") == naming.TAG_SPEC:
            return tag.get("value")
    return None


def _family(arn: str) -> str:
    """``arn:...:task-definition/<family>:<revision>`` -> family."""
    return arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]


def _revision(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]
