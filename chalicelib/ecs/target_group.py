"""The target group of an instance: where the shared load balancer sends its subscribers.

Fargate tasks in awsvpc mode are addressed by IP, so the group has the ``ip`` target
type; the ECS service registers and deregisters its tasks' addresses in it.
"""

import logging
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.ecs import naming
from chalicelib.ecs.errors import error_code
from chalicelib.ecs.taskdef import PUBLIC_PORT
from chalicelib.provisioner import ProvisionError

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"

ATTRIBUTES = {
    # Subscribers hold their connection open for as long as they stay; waiting for them
    # would only delay a scale-in. They reconnect at once (EventSource does it by itself)
    # and resume from Last-Event-ID, and nginx closes them within 10 s on SIGQUIT anyway.
    "deregistration_delay.timeout_seconds": "15",
    # No stickiness: the ALB's cookies cannot work for these clients. A subscriber page is
    # served from the app's origin, not from <instance>.<domain>, so EventSource and XHR
    # long-polls are cross-origin requests sent without credentials: the browser neither
    # stores the AWSALB cookie nor sends it back (and nchan answers CORS with credentials
    # off). WebSocket and EventSource connections are long-lived anyway: they are pinned
    # to one task for their whole life without any cookie. A reconnect may land on another
    # task, whose nginx numbers its event ids on its own (every agent delivers every
    # message): near the resume point the client may get duplicates, dropped by the
    # envelope id, or miss messages of the same second (README, known limitations).
    "stickiness.enabled": "false",
    # An open subscriber is an outstanding request, so this algorithm sends a newcomer to
    # the task holding the fewest subscribers instead of spreading connects round-robin.
    "load_balancing.algorithm.type": "least_outstanding_requests",
}


def ensure(elbv2: Any, instance: str, vpc_id: str) -> str:
    """The ARN of the instance's target group, created if missing, attributes applied.

    A group of that name tagged for another instance (a hash collision, or a group an
    operator made) is never adopted.
    """
    name = naming.target_group(instance)
    found = _lookup(elbv2, name)
    if found is None:
        arn = _create(elbv2, instance, name, vpc_id)
    elif found[1] != instance:
        raise ProvisionError(f"target group {name} belongs to {found[1] or 'something else'}, "
                             f"not to instance {instance}")
    else:
        arn = found[0]

    attributes = [{"Key": key, "Value": value} for key, value in ATTRIBUTES.items()]
    elbv2.modify_target_group_attributes(TargetGroupArn=arn, Attributes=attributes)
    return arn


def find(elbv2: Any, instance: str) -> str | None:
    """The ARN of the instance's target group; None if there is none or it is not ours."""
    name = naming.target_group(instance)
    found = _lookup(elbv2, name)
    if found is None:
        return None
    if found[1] != instance:
        log.warning("target group of that name is not ours instance=%s name=%s owner=%s",
                    instance, name, found[1])
        return None
    return found[0]


def delete(elbv2: Any, instance: str) -> None:
    """Delete the group; its listener rule must be gone first (else ResourceInUse, retried)."""
    arn = find(elbv2, instance)
    if arn is None:
        log.info("target group already gone instance=%s", instance)
        return

    try:
        elbv2.delete_target_group(TargetGroupArn=arn)
    except ClientError as exc:
        if error_code(exc) != "TargetGroupNotFound":
            raise
    log.info("target group deleted instance=%s", instance)


def _create(elbv2: Any, instance: str, name: str, vpc_id: str) -> str:
    try:
        created = elbv2.create_target_group(
            Name=name,
            Protocol="HTTP",
            Port=PUBLIC_PORT,
            VpcId=vpc_id,
            TargetType="ip",
            HealthCheckEnabled=True,
            HealthCheckProtocol="HTTP",
            HealthCheckPath=HEALTH_PATH,
            HealthCheckIntervalSeconds=10,
            HealthCheckTimeoutSeconds=5,
            HealthyThresholdCount=2,
            UnhealthyThresholdCount=3,
            Matcher={"HttpCode": "200"},
            Tags=naming.elb_tags(instance),
        )
    except ClientError as exc:
        # Another attempt of the same job created it between our look-up and now.
        if error_code(exc) != "DuplicateTargetGroupName":
            raise
        found = _lookup(elbv2, name)
        if found is None or found[1] != instance:
            raise
        return found[0]

    arn = created["TargetGroups"][0]["TargetGroupArn"]
    log.info("target group created instance=%s name=%s", instance, name)
    return arn


def _lookup(elbv2: Any, name: str) -> tuple[str, str | None] | None:
    """(ARN, owning instance from its tag) of the group called ``name``, if it exists."""
    try:
        groups = elbv2.describe_target_groups(Names=[name])["TargetGroups"]
    except ClientError as exc:
        if error_code(exc) == "TargetGroupNotFound":
            return None
        raise

    arn = groups[0]["TargetGroupArn"]
    return arn, _owner(elbv2, arn)


def _owner(elbv2: Any, arn: str) -> str | None:
    described = elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"]
    for tag in described[0].get("Tags", []) if described else []:
        if tag["Key"] == naming.TAG_INSTANCE:
            return tag["Value"]
    return None
