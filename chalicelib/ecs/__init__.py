"""The ``ecs`` provisioner: an instance's delivery tier as an ECS service on Fargate.

``EcsSettings.from_env()`` reads the configuration; ``EcsProvisioner(settings, ecs, elbv2,
ssm, master_key)`` takes boto3 clients built by the caller (region ``settings.region``).
"""

import os
from collections.abc import Mapping

from chalicelib.ecs.provisioner import EcsProvisioner
from chalicelib.ecs.service import ServiceState
from chalicelib.ecs.settings import EcsSettings
from chalicelib.settings import Secret

__all__ = ["EcsProvisioner", "EcsSettings", "ServiceState", "build_provisioner"]


def build_provisioner(master_key: Secret,
                      env: Mapping[str, str] | None = None) -> EcsProvisioner:
    """The provisioner of this Lambda container, with clients in the configured region."""
    import boto3  # only AWS mode pays for importing boto3

    settings = EcsSettings.from_env(os.environ if env is None else env)
    session = boto3.session.Session(region_name=settings.region)
    return EcsProvisioner(settings, session.client("ecs"), session.client("elbv2"),
                          session.client("ssm"), master_key)
