"""Settings of the ECS provisioner, read once from the environment and validated.

Every value is checked for its shape here, so a typo fails at start with ConfigError
naming the variable instead of surfacing as an AWS error in the first provisioning job.
Whether the resources exist is for AWS to say, when a job first uses them.
"""

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from chalicelib.errors import ConfigError

REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
CLUSTER_ARN = re.compile(r"^arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/[A-Za-z0-9_-]{1,255}$")
SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")
VPC = re.compile(r"^vpc-[0-9a-f]{8,17}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$")
LISTENER_ARN = re.compile(
    r"^arn:aws[a-z-]*:elasticloadbalancing:(?P<region>[a-z0-9-]+):[0-9]{12}:listener/app/\S+$"
)
SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:(secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:\S+"
    r"|ssm:[a-z0-9-]+:[0-9]{12}:parameter/\S+)$"
)
LOG_GROUP = re.compile(r"^[A-Za-z0-9_./#-]{1,512}$")
IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,1023}$")
DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

MAX_DOMAIN = 64
"""An ALB host condition holds at most 128 characters: a 63-character instance name, a dot
and the domain must fit."""

PUBLIC_IP_CHOICES = ("ENABLED", "DISABLED")


@dataclass(frozen=True)
class EcsSettings:
    region: str
    cluster: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: str
    execution_role_arn: str
    task_role_arn: str
    push_stream_image: str
    push_agent_image: str
    log_group: str
    vpc_id: str
    listener_arn: str
    push_stream_domain: str
    agent_redis_secret_arn: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "EcsSettings":
        """Build settings from ``env`` (default: the process environment)."""
        env = os.environ if env is None else env
        region = _region(env)
        return cls(
            region=region,
            cluster=_cluster(env),
            subnets=_id_list(env, "PUSHAAS_ECS_SUBNETS", SUBNET, "subnet-0123abcd"),
            security_groups=_id_list(env, "PUSHAAS_ECS_SECURITY_GROUPS", SECURITY_GROUP,
                                     "sg-0123abcd"),
            assign_public_ip=_public_ip(env),
            execution_role_arn=_matching(env, "PUSHAAS_ECS_EXECUTION_ROLE_ARN", ROLE_ARN,
                                         "an IAM role ARN"),
            task_role_arn=_matching(env, "PUSHAAS_ECS_TASK_ROLE_ARN", ROLE_ARN,
                                    "an IAM role ARN"),
            push_stream_image=_matching(env, "PUSHAAS_PUSH_STREAM_IMAGE", IMAGE,
                                        "a container image reference"),
            push_agent_image=_matching(env, "PUSHAAS_PUSH_AGENT_IMAGE", IMAGE,
                                       "a container image reference"),
            log_group=_matching(env, "PUSHAAS_ECS_LOG_GROUP", LOG_GROUP,
                                "a CloudWatch Logs group name"),
            vpc_id=_matching(env, "PUSHAAS_VPC_ID", VPC, "a VPC id such as vpc-0123abcd"),
            listener_arn=_listener(env, region),
            push_stream_domain=_domain(env),
            agent_redis_secret_arn=_matching(
                env, "PUSHAAS_AGENT_REDIS_SECRET_ARN", SECRET_ARN,
                "a Secrets Manager secret ARN or an SSM parameter ARN"),
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} must be set")
    return value


def _matching(env: Mapping[str, str], name: str, pattern: re.Pattern[str], what: str) -> str:
    value = _required(env, name)
    if not pattern.match(value):
        raise ConfigError(f"{name} must be {what}, not {value!r}")
    return value


def _region(env: Mapping[str, str]) -> str:
    """The region boto3 uses: AWS_DEFAULT_REGION first, then AWS_REGION (set by Lambda)."""
    value = env.get("AWS_DEFAULT_REGION", "").strip() or env.get("AWS_REGION", "").strip()
    if not value:
        raise ConfigError("AWS_DEFAULT_REGION or AWS_REGION must be set")
    if not REGION.match(value):
        raise ConfigError(f"AWS_DEFAULT_REGION/AWS_REGION must be a region name, not {value!r}")
    return value


def _cluster(env: Mapping[str, str]) -> str:
    name = "PUSHAAS_ECS_CLUSTER"
    value = _required(env, name)
    if not (CLUSTER_NAME.match(value) or CLUSTER_ARN.match(value)):
        raise ConfigError(f"{name} must be an ECS cluster name or ARN, not {value!r}")
    return value


def _id_list(env: Mapping[str, str], name: str, pattern: re.Pattern[str],
             example: str) -> tuple[str, ...]:
    items = [item.strip() for item in _required(env, name).split(",")]
    if not all(items):
        raise ConfigError(f"{name} must be a comma-separated list without empty items")

    bad = [item for item in items if not pattern.match(item)]
    if bad:
        raise ConfigError(f"{name} items must look like {example}, not {bad[0]!r}")
    return tuple(dict.fromkeys(items))


def _public_ip(env: Mapping[str, str]) -> str:
    name = "PUSHAAS_ECS_ASSIGN_PUBLIC_IP"
    value = env.get(name, "").strip().upper() or "DISABLED"
    if value not in PUBLIC_IP_CHOICES:
        raise ConfigError(f"{name} must be ENABLED or DISABLED, not {value!r}")
    return value


def _listener(env: Mapping[str, str], region: str) -> str:
    """The listener's region must be the clients' region, or every lookup says not found."""
    name = "PUSHAAS_LB_LISTENER_ARN"
    value = _required(env, name)
    match = LISTENER_ARN.match(value)
    if not match:
        raise ConfigError(f"{name} must be the ARN of an Application Load Balancer listener")
    if match.group("region") != region:
        raise ConfigError(f"{name} is in region {match.group('region')}, "
                          f"but AWS clients use {region}")
    return value


def _domain(env: Mapping[str, str]) -> str:
    name = "PUSHAAS_PUSH_STREAM_DOMAIN"
    value = _required(env, name).lower().rstrip(".")
    labels = value.split(".")
    if len(labels) < 2 or not all(DNS_LABEL.match(label) for label in labels):
        raise ConfigError(f"{name} must be a DNS name such as push.example.com, not {value!r}")
    if len(value) > MAX_DOMAIN:
        raise ConfigError(f"{name} must be at most {MAX_DOMAIN} characters, so that "
                          "<instance>.<domain> fits a load balancer host rule")
    return value
