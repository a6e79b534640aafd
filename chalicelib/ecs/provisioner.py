"""The ``ecs`` provisioner: each instance is an ECS service on Fargate behind a shared ALB.

Provisioning converges five things, in the order AWS needs them: the target group, the
listener rule routing ``<instance>.<domain>`` to it (a service can only be attached to a
group that a load balancer uses), the instance's subscribe key parameter, the task
definition that names it, and the service. Every step
looks up what exists by its deterministic name first, so a retried or half-finished job
ends in the same state. Readiness arrives later, as ECS task state change events.
"""

import logging
import time
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.credentials import subscribe_key
from chalicelib.ecs import (
    key_parameter,
    listener_rule,
    naming,
    revisions,
    service,
    target_group,
    taskdef,
)
from chalicelib.ecs.errors import error_code, permanent_errors
from chalicelib.ecs.service import ServiceSpec, ServiceState
from chalicelib.ecs.settings import EcsSettings
from chalicelib.instances import Instance
from chalicelib.plans import Plan
from chalicelib.provisioner import Placement, ProvisionError
from chalicelib.settings import Secret

log = logging.getLogger(__name__)


class EcsProvisioner:
    """Implements ``chalicelib.provisioner.Provisioner``; the boto3 clients are injected.

    The master key is needed to derive each instance's subscribe key; it never leaves
    this process (the task gets the derived key only).
    """

    def __init__(self, settings: EcsSettings, ecs_client: Any, elbv2_client: Any,
                 ssm_client: Any, master_key: Secret):
        self.settings = settings
        self.ecs = ecs_client
        self.elbv2 = elbv2_client
        self.ssm = ssm_client
        self._master_key = master_key

    def provision(self, instance: Instance, plan: Plan) -> Placement:
        self._converge(instance, plan)
        return Placement(self.url(instance.name), ready=False)

    def scale(self, instance: Instance, plan: Plan) -> None:
        """The same convergence: a new revision only if the plan changed the task."""
        self._converge(instance, plan)

    def deprovision(self, instance: Instance) -> None:
        """Remove the service, routing and task definitions; harmless when already gone."""
        name = instance.name
        started = time.monotonic()
        with permanent_errors(name, "service removal"):
            service.delete(self.ecs, self.settings.cluster, name)

        with permanent_errors(name, "routing removal"):
            group = target_group.find(self.elbv2, name)
            listener_rule.delete(self.elbv2, name, self.settings.listener_arn,
                                 self._host(name), group)
            target_group.delete(self.elbv2, name)

        with permanent_errors(name, "task definition removal"):
            revisions.remove_family(self.ecs, name, naming.family(name))

        # Last: no task of the instance is left to read it.
        with permanent_errors(name, "subscribe key removal"):
            key_parameter.delete(self.ssm, name)
        log.info("deprovisioned instance=%s elapsed=%.2fs", name, time.monotonic() - started)

    def describe(self, instance: Instance | str) -> ServiceState:
        name = instance.name if isinstance(instance, Instance) else instance
        return service.describe(self.ecs, self.settings.cluster, name)

    @staticmethod
    def instance_for_group(group: str) -> str | None:
        """The instance of an ECS task's ``group`` ("service:pushaas-<name>"), if ours."""
        return naming.instance_for_group(group)

    def url(self, name: str) -> str:
        return f"https://{self._host(name)}"

    def _converge(self, instance: Instance, plan: Plan) -> None:
        name = instance.name
        started = time.monotonic()
        parameter = key_parameter.parameter_arn(self.settings, name)
        definition = taskdef.build(name, plan, self.settings, parameter)

        with permanent_errors(name, "routing"):
            self._check_listener(name)
            group = target_group.ensure(self.elbv2, name, self.settings.vpc_id)
            listener_rule.ensure(self.elbv2, name, self.settings.listener_arn,
                                 self._host(name), group)

        # Before the definition that names it: a task must find its key at start.
        with permanent_errors(name, "subscribe key"):
            key = subscribe_key(self._master_key.reveal(), name, instance.salt)
            key_parameter.ensure(self.ssm, name, key)

        with permanent_errors(name, "task definition"):
            revision = revisions.ensure(self.ecs, name, definition)

        spec = ServiceSpec(
            instance=name,
            cluster=self.settings.cluster,
            task_definition=revision,
            desired=plan.replicas,
            subnets=self.settings.subnets,
            security_groups=self.settings.security_groups,
            assign_public_ip=self.settings.assign_public_ip,
            target_group=group,
        )
        with permanent_errors(name, "service"):
            service.converge(self.ecs, spec)
        log.info("converged instance=%s plan=%s replicas=%d elapsed=%.2fs",
                 name, plan.name, plan.replicas, time.monotonic() - started)

    def _check_listener(self, name: str) -> None:
        """A missing listener is the operator's to fix: say so instead of AWS's code."""
        try:
            listeners = self.elbv2.describe_listeners(
                ListenerArns=[self.settings.listener_arn])["Listeners"]
        except ClientError as exc:
            if error_code(exc) != "ListenerNotFound":
                raise
            raise ProvisionError("the shared load balancer listener does not exist "
                                 "(operator: check PUSHAAS_LB_LISTENER_ARN)") from exc

        if listeners and listeners[0].get("Protocol") != "HTTPS":
            log.warning("listener is not HTTPS instance=%s protocol=%s",
                        name, listeners[0].get("Protocol"))

    def _host(self, name: str) -> str:
        return naming.host(name, self.settings.push_stream_domain)
