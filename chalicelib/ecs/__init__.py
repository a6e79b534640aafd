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
    from botocore.config import Config

    settings = EcsSettings.from_env(os.environ if env is None else env)
    session = boto3.session.Session(region_name=settings.region)
    # Bounded calls: a hung AWS endpoint must fail the step while the job function still
    # has time to record why (its timeout is 120 s), not outlast it.
    config = Config(connect_timeout=5, read_timeout=20,
                    retries={"total_max_attempts": 3, "mode": "standard"})
    clients = [session.client(name, config=config) for name in ("ecs", "elbv2", "ssm")]
    return EcsProvisioner(settings, *clients, master_key)
