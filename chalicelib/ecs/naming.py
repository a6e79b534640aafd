"""Names and tags of an instance's AWS resources, derived from the instance name alone.

Deterministic names are what make every step idempotent: a retried job finds what an
earlier attempt created by asking for the same name, without any bookkeeping of its own.
"""

import hashlib

from chalicelib.instances import NAME_PATTERN

PREFIX = "pushaas-"
GROUP_PREFIX = "service:"
TAG_INSTANCE = "pushaas:instance"
TAG_SPEC = "pushaas:spec"

PUSH_STREAM = "push-stream"
PUSH_AGENT = "push-agent"
PUSH_AUTHORIZER = "push-authorizer"
SUBSCRIBE_KEY_PATH = "/pushaas/instances/"

TARGET_GROUP_HASH = 16
"""Hex digits of the name hash: 64 bits, so two instances never meet in practice, and
``pushaas-`` + 16 stays under the 32 characters a target group name may have."""


def service(name: str) -> str:
    """The ECS service; instance names are DNS labels, far below ECS's 255 characters."""
    return f"{PREFIX}{name}"


def family(name: str) -> str:
    """The task definition family, one per instance, named like its service."""
    return f"{PREFIX}{name}"


def target_group(name: str) -> str:
    """Target group names are capped at 32 characters, so the name is hashed."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:TARGET_GROUP_HASH]
    return f"{PREFIX}{digest}"


def subscribe_key_parameter(name: str) -> str:
    """The SSM parameter holding the instance's subscribe key (one path for IAM to grant)."""
    return f"{SUBSCRIBE_KEY_PATH}{name}/subscribe-key"


def host(name: str, domain: str) -> str:
    """The host subscribers use; the operator's wildcard DNS record points it at the ALB."""
    return f"{name}.{domain}"


def instance_for_group(group: str) -> str | None:
    """The instance of an ECS task's ``group`` ("service:pushaas-<name>"), if it is ours."""
    if not group.startswith(GROUP_PREFIX + PREFIX):
        return None

    name = group[len(GROUP_PREFIX + PREFIX):]
    return name if NAME_PATTERN.match(name) else None


def ecs_tags(name: str) -> list[dict[str, str]]:
    return [{"key": TAG_INSTANCE, "value": name}]


def elb_tags(name: str) -> list[dict[str, str]]:
    return [{"Key": TAG_INSTANCE, "Value": name}]
