"""A moto-backed AWS account for the ECS provisioner's tests.

Credentials are fake and set through monkeypatch, and every client is created inside
``mock_aws``, so nothing can reach real AWS. The account holds what an operator sets up
once: a VPC with two subnets, a security group, an ALB with an HTTPS listener, an ECS
cluster, the task roles, a log group and the agent's Redis secret.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.ecs import EcsProvisioner, EcsSettings
from chalicelib.settings import Secret

REGION = "us-east-1"
MASTER_KEY = "k" * 48
CLUSTER = "pushaas"
DOMAIN = "push.example.com"
LOG_GROUP = "/pushaas/instances"
ASSUME_ECS_TASKS = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
})


@dataclass
class Aws:
    """The account's clients, the operator's resources and the provisioner's settings."""

    ecs: Any
    elbv2: Any
    ec2: Any
    ssm: Any
    env: dict[str, str]
    vpc_id: str
    subnets: list[str]
    security_group: str
    listener_arn: str
    default_target_group: str

    def settings(self, **overrides: str) -> EcsSettings:
        return EcsSettings.from_env({**self.env, **overrides})

    def provisioner(self, **overrides: str) -> EcsProvisioner:
        return EcsProvisioner(self.settings(**overrides), self.ecs, self.elbv2, self.ssm,
                              Secret(MASTER_KEY))

    def rules(self) -> list[dict[str, Any]]:
        """The listener's rules without the default one."""
        rules = self.elbv2.describe_rules(ListenerArn=self.listener_arn)["Rules"]
        return [rule for rule in rules if not rule["IsDefault"]]

    def target_groups(self) -> list[dict[str, Any]]:
        groups = self.elbv2.describe_target_groups()["TargetGroups"]
        return [g for g in groups if g["TargetGroupArn"] != self.default_target_group]

    def services(self) -> list[dict[str, Any]]:
        arns = self.ecs.list_services(cluster=CLUSTER)["serviceArns"]
        if not arns:
            return []
        described = self.ecs.describe_services(cluster=CLUSTER, services=arns)["services"]
        return [s for s in described if s["status"] == "ACTIVE"]

    def revisions(self, family: str, status: str = "ACTIVE") -> list[str]:
        return self.ecs.list_task_definitions(familyPrefix=family,
                                              status=status)["taskDefinitionArns"]


@contextmanager
def moto_account(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """The account, alive inside the ``with`` block; test modules wrap it in a fixture."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")

    with mock_aws():
        yield _account()


def _account() -> Aws:
    ec2 = boto3.client("ec2", region_name=REGION)
    elbv2 = boto3.client("elbv2", region_name=REGION)
    ecs = boto3.client("ecs", region_name=REGION)
    iam = boto3.client("iam", region_name=REGION)

    vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.20.{i}.0/24",
                          AvailabilityZone=f"{REGION}{zone}")["Subnet"]["SubnetId"]
        for i, zone in enumerate("ab", start=1)
    ]
    group = ec2.create_security_group(GroupName="pushaas-tasks", Description="push tasks",
                                      VpcId=vpc_id)["GroupId"]

    certificate = boto3.client("acm", region_name=REGION).request_certificate(
        DomainName=f"*.{DOMAIN}")["CertificateArn"]
    balancer = elbv2.create_load_balancer(Name="pushaas", Subnets=subnets,
                                          SecurityGroups=[group])["LoadBalancers"][0]
    default = elbv2.create_target_group(Name="pushaas-default", Protocol="HTTP", Port=80,
                                        VpcId=vpc_id, TargetType="ip")["TargetGroups"][0]
    listener = elbv2.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"], Protocol="HTTPS", Port=443,
        Certificates=[{"CertificateArn": certificate}],
        DefaultActions=[{"Type": "fixed-response",
                         "FixedResponseConfig": {"StatusCode": "404"}}],
    )["Listeners"][0]

    ecs.create_cluster(clusterName=CLUSTER)
    roles = {
        role: iam.create_role(RoleName=f"pushaas-{role}",
                              AssumeRolePolicyDocument=ASSUME_ECS_TASKS)["Role"]["Arn"]
        for role in ("execution", "task")
    }
    boto3.client("logs", region_name=REGION).create_log_group(logGroupName=LOG_GROUP)
    secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="pushaas/agent-redis", SecretString="rediss://:token@redis.internal:6379/0",
    )["ARN"]

    env = {
        "AWS_DEFAULT_REGION": REGION,
        "PUSHAAS_ECS_CLUSTER": CLUSTER,
        "PUSHAAS_ECS_SUBNETS": ",".join(subnets),
        "PUSHAAS_ECS_SECURITY_GROUPS": group,
        "PUSHAAS_ECS_EXECUTION_ROLE_ARN": roles["execution"],
        "PUSHAAS_ECS_TASK_ROLE_ARN": roles["task"],
        "PUSHAAS_PUSH_STREAM_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/push-stream:1",
        "PUSHAAS_PUSH_AGENT_IMAGE": "123456789012.dkr.ecr.us-east-1.amazonaws.com/push-agent:1",
        "PUSHAAS_ECS_LOG_GROUP": LOG_GROUP,
        "PUSHAAS_VPC_ID": vpc_id,
        "PUSHAAS_LB_LISTENER_ARN": listener["ListenerArn"],
        "PUSHAAS_PUSH_STREAM_DOMAIN": DOMAIN,
        "PUSHAAS_AGENT_REDIS_SECRET_ARN": secret,
    }
    return Aws(ecs=ecs, elbv2=elbv2, ec2=ec2, ssm=boto3.client("ssm", region_name=REGION),
               env=env, vpc_id=vpc_id, subnets=subnets,
               security_group=group, listener_arn=listener["ListenerArn"],
               default_target_group=default["TargetGroupArn"])
