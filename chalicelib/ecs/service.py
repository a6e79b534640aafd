"""The ECS service of an instance: keeps ``plan.replicas`` tasks running behind its target
group, and replaces tasks that stop or fail their health checks."""

import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.ecs import naming
from chalicelib.ecs.errors import RetryLater, error_code
from chalicelib.ecs.taskdef import PUBLIC_PORT

log = logging.getLogger(__name__)

GRACE_SECONDS = 60
"""Load balancer health checks are ignored this long after a task starts: nginx answers
within seconds, but the agent waits for nginx to be healthy before it starts."""

GONE = ("MISSING", "INACTIVE")
ABSENT_CODES = ("ServiceNotFoundException", "ServiceNotActiveException")


@dataclass(frozen=True)
class ServiceState:
    """What ECS says about an instance's service, for the event handler and reconciler.

    ``exists`` is True while the service is ACTIVE or DRAINING (being deleted); ``status``
    is MISSING when ECS never heard of it. ``rollout`` is the primary deployment's state
    (IN_PROGRESS, COMPLETED or FAILED, the last when the circuit breaker gave up).
    """

    exists: bool
    status: str
    desired: int = 0
    running: int = 0
    pending: int = 0
    task_definition: str = ""
    rollout: str = ""
    rollout_reason: str = ""

    @property
    def ready(self) -> bool:
        return self.status == "ACTIVE" and 0 < self.desired <= self.running

    @property
    def failed(self) -> bool:
        return self.rollout == "FAILED"


@dataclass(frozen=True)
class ServiceSpec:
    """What the service of an instance must look like."""

    instance: str
    cluster: str
    task_definition: str
    desired: int
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: str
    target_group: str

    @property
    def name(self) -> str:
        return naming.service(self.instance)

    def network(self) -> dict[str, Any]:
        return {"awsvpcConfiguration": {
            "subnets": list(self.subnets),
            "securityGroups": list(self.security_groups),
            "assignPublicIp": self.assign_public_ip,
        }}

    def load_balancers(self) -> list[dict[str, Any]]:
        return [{"targetGroupArn": self.target_group, "containerName": naming.PUSH_STREAM,
                 "containerPort": PUBLIC_PORT}]


def describe(ecs: Any, cluster: str, instance: str) -> ServiceState:
    found = _find(ecs, cluster, naming.service(instance))
    if found is None:
        return ServiceState(exists=False, status="MISSING")

    deployments = found.get("deployments", [])
    primary: dict[str, Any] = next(
        (d for d in deployments if d.get("status") == "PRIMARY"), {})
    return ServiceState(
        exists=found["status"] not in GONE,
        status=found["status"],
        desired=found.get("desiredCount", 0),
        running=found.get("runningCount", 0),
        pending=found.get("pendingCount", 0),
        task_definition=found.get("taskDefinition", ""),
        rollout=primary.get("rolloutState", ""),
        rollout_reason=primary.get("rolloutStateReason", ""),
    )


def converge(ecs: Any, spec: ServiceSpec) -> None:
    """Create the service, or update only what differs from ``spec`` (no needless rollout)."""
    found = _find(ecs, spec.cluster, spec.name)
    status = found["status"] if found else "MISSING"
    if status in GONE:
        _create(ecs, spec)
        return
    if status == "DRAINING":
        raise RetryLater(f"service {spec.name} is still being deleted; it can be created "
                         "again once ECS finished")

    changes = _differences(found or {}, spec)
    if not changes:
        log.info("service current instance=%s desired=%d", spec.instance, spec.desired)
        return

    ecs.update_service(cluster=spec.cluster, service=spec.name, **changes)
    log.info("service updated instance=%s changed=%s desired=%d",
             spec.instance, ",".join(sorted(changes)), spec.desired)


def delete(ecs: Any, cluster: str, instance: str) -> None:
    """Scale to zero, then delete; harmless when the service is gone or already draining."""
    name = naming.service(instance)
    try:
        found = _find(ecs, cluster, name)
    except ClientError as exc:
        # ECS refuses to delete a cluster that still has services: none is left.
        if error_code(exc) != "ClusterNotFoundException":
            raise
        log.warning("cluster gone, so is the service instance=%s", instance)
        return

    status = found["status"] if found else "MISSING"
    if status != "ACTIVE":
        log.info("service already removed instance=%s status=%s", instance, status)
        return

    try:
        ecs.update_service(cluster=cluster, service=name, desiredCount=0)
        ecs.delete_service(cluster=cluster, service=name, force=True)
    except ClientError as exc:
        if error_code(exc) not in ABSENT_CODES:
            raise
        log.info("service vanished while deleting instance=%s", instance)
        return
    log.info("service deleted instance=%s", instance)


def _create(ecs: Any, spec: ServiceSpec) -> None:
    ecs.create_service(
        cluster=spec.cluster,
        serviceName=spec.name,
        taskDefinition=spec.task_definition,
        desiredCount=spec.desired,
        launchType="FARGATE",
        schedulingStrategy="REPLICA",
        networkConfiguration=spec.network(),
        loadBalancers=spec.load_balancers(),
        healthCheckGracePeriodSeconds=GRACE_SECONDS,
        deploymentConfiguration={
            # New tasks come up before old ones leave, and a deployment whose tasks keep
            # failing rolls back to the last working revision instead of looping.
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
        },
        enableExecuteCommand=False,
        propagateTags="SERVICE",
        tags=naming.ecs_tags(spec.instance),
    )
    log.info("service created instance=%s desired=%d", spec.instance, spec.desired)


def _differences(found: dict[str, Any], spec: ServiceSpec) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if found.get("desiredCount") != spec.desired:
        changes["desiredCount"] = spec.desired
    if found.get("taskDefinition") != spec.task_definition:
        changes["taskDefinition"] = spec.task_definition

    current = found.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
    if _network_key(current) != _network_key(spec.network()["awsvpcConfiguration"]):
        changes["networkConfiguration"] = spec.network()

    wiring = [(lb.get("targetGroupArn"), lb.get("containerName"), lb.get("containerPort"))
              for lb in found.get("loadBalancers", [])]
    if wiring != [(spec.target_group, naming.PUSH_STREAM, PUBLIC_PORT)]:
        changes["loadBalancers"] = spec.load_balancers()
    return changes


def _network_key(config: dict[str, Any]) -> tuple[Any, ...]:
    return (sorted(config.get("subnets", [])), sorted(config.get("securityGroups", [])),
            config.get("assignPublicIp", "DISABLED"))


def _find(ecs: Any, cluster: str, name: str) -> dict[str, Any] | None:
    described = ecs.describe_services(cluster=cluster, services=[name])
    services = described.get("services", [])
    return services[0] if services else None
