"""The provisioner interface: how an instance's delivery tier comes to exist.

Two implementations share it: ``local`` (processes on this machine, in
``pushaas_local``) and ``ecs`` (an ECS service per instance). Jobs call only this
interface, so the job code is the same on a laptop and on AWS. Every method must be
idempotent: a redelivered job calls it again with the same arguments.
"""

from dataclasses import dataclass
from typing import Protocol

from chalicelib.instances import Instance
from chalicelib.plans import Plan


@dataclass(frozen=True)
class Placement:
    """Where subscribers reach an instance, and whether it already serves them.

    ``ready`` is True when the provisioner saw the delivery tier answer (local mode
    waits for nginx); False when readiness arrives later as an event (ECS).
    """

    push_stream_url: str
    ready: bool


class ProvisionError(Exception):
    """The delivery tier could not be brought up; the message is shown to the user."""


class Provisioner(Protocol):
    def provision(self, instance: Instance, plan: Plan) -> Placement:
        """Bring up ``plan.replicas`` replicas (or converge to that) and route to them."""
        ...

    def scale(self, instance: Instance, plan: Plan) -> None:
        """Converge the number of replicas to the plan's."""
        ...

    def deprovision(self, instance: Instance) -> None:
        """Stop and remove everything the instance runs; harmless if already gone."""
        ...
