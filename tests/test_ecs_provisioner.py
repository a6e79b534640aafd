"""The ``ecs`` provisioner against moto: task definition, service, routing, idempotency."""

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.credentials import subscribe_key
from chalicelib.ecs import (
    EcsProvisioner,
    build_provisioner,
    key_parameter,
    listener_rule,
    naming,
    revisions,
    service,
    target_group,
    taskdef,
)
from chalicelib.ecs.errors import RetryLater
from chalicelib.ecs.service import ServiceSpec
from chalicelib.ecs.settings import EcsSettings
from chalicelib.errors import ConfigError
from chalicelib.instances import Instance
from chalicelib.plans import Plan, load_plans
from chalicelib.provisioner import ProvisionError
from chalicelib.settings import Secret
from tests.aws import CLUSTER, DOMAIN, LOG_GROUP, MASTER_KEY, REGION, Aws, moto_account

PLANS = load_plans()
SMALL = PLANS["small"]
MEDIUM = PLANS["medium"]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with moto_account(monkeypatch) as account:
        yield account


def instance(name: str = "mypush", plan: Plan = SMALL) -> Instance:
    return Instance(name=name, plan=plan.name, salt=f"salt-of-{name}")


def task_definition(aws: Aws, name: str) -> dict[str, Any]:
    return aws.ecs.describe_task_definition(taskDefinition=naming.family(name))["taskDefinition"]


def containers(aws: Aws, name: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in task_definition(aws, name)["containerDefinitions"]}


def environment(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("environment", [])}


def service_of(aws: Aws, name: str) -> dict[str, Any]:
    described = aws.ecs.describe_services(cluster=CLUSTER, services=[naming.service(name)],
                                          include=["TAGS"])
    return described["services"][0]


def rule_for(aws: Aws, name: str) -> dict[str, Any]:
    host = f"{name}.{DOMAIN}"
    [rule] = [r for r in aws.rules()
              if r["Conditions"][0]["HostHeaderConfig"]["Values"] == [host]]
    return rule


def end_state(aws: Aws, name: str) -> dict[str, Any]:
    """What a converged instance leaves in the account, comparable across runs."""
    service = service_of(aws, name)
    [group] = aws.target_groups()
    return {
        "services": [s["serviceName"] for s in aws.services()],
        "revisions": aws.revisions(naming.family(name)),
        "service_revision": service["taskDefinition"],
        "desired": service["desiredCount"],
        "target_groups": [group["TargetGroupName"]],
        "rules": [(r["Priority"], r["Actions"][0]["TargetGroupArn"]) for r in aws.rules()],
        "rule_target": group["TargetGroupArn"],
    }


def on_call(client: Any, operation: str, handler: Callable[..., None]) -> Callable[[], None]:
    """Run ``handler(params=<the call's arguments>)`` before each ``operation``; returns an
    undo."""
    event = f"before-parameter-build.{client.meta.service_model.service_id.hyphenize()}.{operation}"
    client.meta.events.register(event, handler)
    return lambda: client.meta.events.unregister(event, handler)


def fail_with(client: Any, operation: str, code: str, status: int = 400) -> Callable[[], None]:
    """Make one API call fail the way AWS would, before it reaches moto."""

    def raise_error(**_: Any) -> None:
        raise ClientError({"Error": {"Code": code, "Message": f"{code} (injected)"},
                           "ResponseMetadata": {"HTTPStatusCode": status}}, operation)

    return on_call(client, operation, raise_error)


def record(client: Any, operation: str) -> list[dict[str, Any]]:
    """The parameters of every ``operation`` call, as sent (moto does not echo them all)."""
    calls: list[dict[str, Any]] = []
    on_call(client, operation, lambda params, **_: calls.append(dict(params)))
    return calls


# Task definition


def test_task_definition_runs_the_three_containers_on_fargate_with_plan_sizes(aws: Aws) -> None:
    aws.provisioner().provision(instance(plan=MEDIUM), MEDIUM)

    definition = task_definition(aws, "mypush")
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["networkMode"] == "awsvpc"
    assert (definition["cpu"], definition["memory"]) == ("512", "1024")
    assert definition["executionRoleArn"] == aws.env["PUSHAAS_ECS_EXECUTION_ROLE_ARN"]
    assert definition["taskRoleArn"] == aws.env["PUSHAAS_ECS_TASK_ROLE_ARN"]
    assert [c["name"] for c in definition["containerDefinitions"]] == [
        "push-stream", "push-agent", "push-authorizer"]
    assert all(c["essential"] for c in definition["containerDefinitions"])


def test_push_stream_container_serves_port_9080_with_the_plan_buffer(aws: Aws) -> None:
    aws.provisioner().provision(instance(plan=MEDIUM), MEDIUM)

    stream = containers(aws, "mypush")["push-stream"]
    assert stream["image"] == aws.env["PUSHAAS_PUSH_STREAM_IMAGE"]
    assert stream["portMappings"] == [{"containerPort": 9080, "protocol": "tcp"}]
    assert environment(stream) == {
        "PUSH_STREAM_PUBLIC_ADDR": "0.0.0.0",
        "PUSH_STREAM_PUBLIC_PORT": "9080",
        "PUSH_STREAM_INTERNAL_PORT": "9081",
        "PUSH_STREAM_BUFFER_LENGTH": str(MEDIUM.buffer_length),
        "PUSH_STREAM_BUFFER_SECONDS": str(MEDIUM.buffer_seconds),
        "PUSH_STREAM_SHM_SIZE": "256M",
        "PUSH_STREAM_WORKERS": "1",
        "PUSH_STREAM_AUTHORIZER_PORT": "9082",
    }
    assert stream["dependsOn"] == [{"containerName": "push-authorizer", "condition": "HEALTHY"}]
    assert stream["healthCheck"]["command"] == ["CMD", "python3", "/opt/push-stream/render.py",
                                                "health"]
    assert stream["ulimits"] == [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}]


def test_push_agent_container_gets_redis_url_as_a_secret_only(aws: Aws) -> None:
    aws.provisioner().provision(instance(), SMALL)

    agent = containers(aws, "mypush")["push-agent"]
    assert agent["image"] == aws.env["PUSHAAS_PUSH_AGENT_IMAGE"]
    assert environment(agent) == {
        "PUSHAAS_INSTANCE": "mypush",
        "PUSHAAS_NGINX_URL": "http://127.0.0.1:9081",
        "PUSHAAS_BUFFER_SECONDS": str(SMALL.buffer_seconds),
    }
    assert agent["secrets"] == [{"name": "PUSHAAS_REDIS_URL",
                                 "valueFrom": aws.env["PUSHAAS_AGENT_REDIS_SECRET_ARN"]}]
    assert "redis://" not in json.dumps(task_definition(aws, "mypush"))
    assert agent["dependsOn"] == [{"containerName": "push-stream", "condition": "HEALTHY"}]
    assert agent["healthCheck"]["command"] == ["CMD", "python", "-m", "push_agent.health"]
    assert agent["restartPolicy"]["enabled"] is True


def test_containers_log_to_the_log_group_with_their_own_prefix(aws: Aws) -> None:
    aws.provisioner().provision(instance(), SMALL)

    for name, container in containers(aws, "mypush").items():
        logs = container["logConfiguration"]
        assert logs["logDriver"] == "awslogs"
        assert logs["options"]["awslogs-group"] == LOG_GROUP
        assert logs["options"]["awslogs-region"] == REGION
        assert logs["options"]["awslogs-stream-prefix"] == name


def test_task_definition_is_tagged_with_the_instance(aws: Aws) -> None:
    aws.provisioner().provision(instance(), SMALL)

    described = aws.ecs.describe_task_definition(taskDefinition="pushaas-mypush",
                                                 include=["TAGS"])
    tags = {tag["key"]: tag["value"] for tag in described["tags"]}
    assert tags["pushaas:instance"] == "mypush"


@pytest.mark.parametrize(("cpu", "memory", "allowed"), [
    (256, 4096, "one of 512, 1024, 2048"),
    (256, 1536, "one of 512, 1024, 2048"),
    (1024, 1536, "from 2048 to 8192 in steps of 1024"),
])
def test_a_plan_fargate_cannot_run_is_a_provision_error(
    aws: Aws, cpu: int, memory: int, allowed: str,
) -> None:
    odd = replace(SMALL, name="odd", cpu=cpu, memory=memory)
    with pytest.raises(ProvisionError, match=f"odd.*{cpu} CPU units with {memory} MiB "
                                             f"\\({allowed}\\)"):
        aws.provisioner().provision(instance(plan=odd), odd)
    assert aws.target_groups() == []


def test_spec_digest_changes_with_the_plan_only() -> None:
    settings = EcsSettings.from_env(_valid_env())
    arn = key_parameter.parameter_arn(settings, "mypush")
    first = taskdef.build("mypush", SMALL, settings, arn)
    again = taskdef.build("mypush", replace(SMALL, replicas=3, publish_rate=7), settings, arn)
    bigger = taskdef.build("mypush", replace(SMALL, buffer_length=999), settings, arn)

    assert first == again
    assert first["tags"] != bigger["tags"]


# Private channels: the authorizer and its subscribe key


def test_authorizer_container_gets_the_subscribe_key_as_a_secret_only(aws: Aws) -> None:
    aws.provisioner().provision(instance(), SMALL)

    authorizer = containers(aws, "mypush")["push-authorizer"]
    parameter = naming.subscribe_key_parameter("mypush")
    key = subscribe_key(MASTER_KEY, "mypush", "salt-of-mypush")
    assert authorizer["image"] == aws.env["PUSHAAS_PUSH_AGENT_IMAGE"]
    assert authorizer["command"] == ["python", "-m", "push_agent.authorizer"]
    assert environment(authorizer) == {"PUSHAAS_INSTANCE": "mypush",
                                       "PUSHAAS_AUTHORIZER_PORT": "9082"}
    assert authorizer["secrets"] == [{
        "name": "PUSHAAS_SUBSCRIBE_KEY",
        "valueFrom": f"arn:aws:ssm:{REGION}:123456789012:parameter{parameter}",
    }]
    assert authorizer["healthCheck"]["command"] == ["CMD", "python", "-m",
                                                    "push_agent.authorizer", "health"]
    assert key not in json.dumps(task_definition(aws, "mypush"))
    assert MASTER_KEY not in json.dumps(task_definition(aws, "mypush"))


def test_the_subscribe_key_is_a_secure_string_written_once(aws: Aws) -> None:
    provisioner = aws.provisioner()
    provisioner.provision(instance(), SMALL)
    provisioner.provision(instance(), SMALL)
    provisioner.scale(instance(plan=MEDIUM), MEDIUM)

    parameter = naming.subscribe_key_parameter("mypush")
    stored = aws.ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]
    assert stored["Type"] == "SecureString"
    assert stored["Value"] == subscribe_key(MASTER_KEY, "mypush", "salt-of-mypush")
    assert stored["Version"] == 1
    assert stored["ARN"] == key_parameter.parameter_arn(aws.settings(), "mypush")


def test_each_instance_gets_its_own_subscribe_key(aws: Aws) -> None:
    provisioner = aws.provisioner()
    provisioner.provision(instance("one"), SMALL)
    provisioner.provision(instance("two"), SMALL)

    values = {name: aws.ssm.get_parameter(Name=naming.subscribe_key_parameter(name),
                                          WithDecryption=True)["Parameter"]["Value"]
              for name in ("one", "two")}
    assert values["one"] != values["two"]
    secrets = {name: containers(aws, name)["push-authorizer"]["secrets"][0]["valueFrom"]
               for name in ("one", "two")}
    assert secrets["one"].endswith("/one/subscribe-key")
    assert secrets["two"].endswith("/two/subscribe-key")


# Service


def test_service_runs_the_plan_replicas_in_the_configured_network(aws: Aws) -> None:
    calls = record(aws.ecs, "CreateService")
    aws.provisioner(PUSHAAS_ECS_ASSIGN_PUBLIC_IP="enabled").provision(instance(plan=MEDIUM),
                                                                      MEDIUM)

    service = service_of(aws, "mypush")
    assert service["serviceName"] == "pushaas-mypush"
    assert service["desiredCount"] == MEDIUM.replicas
    assert service["launchType"] == "FARGATE"
    assert service["taskDefinition"].endswith("task-definition/pushaas-mypush:1")
    assert service["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": aws.subnets,
        "securityGroups": [aws.security_group],
        "assignPublicIp": "ENABLED",
    }
    assert service["propagateTags"] == "SERVICE"
    assert service["tags"] == [{"key": "pushaas:instance", "value": "mypush"}]


    [request] = calls
    assert request["deploymentConfiguration"]["deploymentCircuitBreaker"] == {
        "enable": True, "rollback": True}
    assert request["deploymentConfiguration"]["minimumHealthyPercent"] == 100
    assert request["healthCheckGracePeriodSeconds"] == 60
    assert request["enableExecuteCommand"] is False


def test_service_sends_the_target_group_to_push_stream_port_9080(aws: Aws) -> None:
    aws.provisioner().provision(instance(), SMALL)

    [group] = aws.target_groups()
    assert service_of(aws, "mypush")["loadBalancers"] == [{
        "targetGroupArn": group["TargetGroupArn"],
        "containerName": "push-stream",
        "containerPort": 9080,
    }]


def test_describe_reports_the_service_state(aws: Aws) -> None:
    provisioner = aws.provisioner()
    assert provisioner.describe("mypush").status == "MISSING"
    assert not provisioner.describe("mypush").exists

    provisioner.provision(instance(plan=MEDIUM), MEDIUM)
    state = provisioner.describe(instance())
    assert (state.exists, state.status, state.desired) == (True, "ACTIVE", MEDIUM.replicas)
    assert state.task_definition.endswith("pushaas-mypush:1")


def test_instance_for_group_maps_ecs_task_groups_back(aws: Aws) -> None:
    provisioner = aws.provisioner()
    assert provisioner.instance_for_group("service:pushaas-mypush") == "mypush"
    assert provisioner.instance_for_group("service:pushaas-Bad_Name") is None
    assert provisioner.instance_for_group("service:other-app") is None
    assert provisioner.instance_for_group("family:pushaas-mypush") is None


# Routing


def test_provision_routes_the_instance_host_to_its_target_group(aws: Aws) -> None:
    placement = aws.provisioner().provision(instance(), SMALL)

    assert placement.push_stream_url == f"https://mypush.{DOMAIN}"
    assert placement.ready is False
    [group] = aws.target_groups()
    assert group["TargetGroupName"] == naming.target_group("mypush")
    assert (group["TargetType"], group["Protocol"], group["Port"]) == ("ip", "HTTP", 9080)
    assert group["HealthCheckPath"] == "/healthz"
    assert group["VpcId"] == aws.vpc_id

    rule = rule_for(aws, "mypush")
    assert rule["Actions"] == [{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}]


def test_target_group_drains_quickly_and_is_not_sticky(aws: Aws) -> None:
    aws.provisioner().provision(instance(), SMALL)

    [group] = aws.target_groups()
    described = aws.elbv2.describe_target_group_attributes(
        TargetGroupArn=group["TargetGroupArn"])["Attributes"]
    attributes = {a["Key"]: a["Value"] for a in described}
    assert attributes["deregistration_delay.timeout_seconds"] == "15"
    assert attributes["stickiness.enabled"] == "false"
    assert attributes["load_balancing.algorithm.type"] == "least_outstanding_requests"


def test_two_instances_get_distinct_priorities(aws: Aws) -> None:
    provisioner = aws.provisioner()
    provisioner.provision(instance("first"), SMALL)
    provisioner.provision(instance("second"), SMALL)

    assert rule_for(aws, "first")["Priority"] == "1"
    assert rule_for(aws, "second")["Priority"] == "2"
    assert len(aws.target_groups()) == 2


def test_a_new_rule_takes_the_lowest_free_priority(aws: Aws) -> None:
    provisioner = aws.provisioner()
    for name in ("one", "two", "three"):
        provisioner.provision(instance(name), SMALL)
    provisioner.deprovision(instance("two"))

    provisioner.provision(instance("four"), SMALL)

    assert rule_for(aws, "four")["Priority"] == "2"


def test_a_priority_taken_concurrently_is_skipped(aws: Aws) -> None:
    """Another instance's job takes priority 1 between our look-up and our create."""
    other = boto3.client("elbv2", region_name=REGION)
    raced: list[int] = []

    def take_priority_first(params: dict[str, Any], **_: Any) -> None:
        if raced:
            return
        raced.append(params["Priority"])
        other.create_rule(
            ListenerArn=aws.listener_arn, Priority=params["Priority"],
            Conditions=[{"Field": "host-header",
                         "HostHeaderConfig": {"Values": [f"rival.{DOMAIN}"]}}],
            Actions=[{"Type": "forward", "TargetGroupArn": aws.default_target_group}])

    on_call(aws.elbv2, "CreateRule", take_priority_first)
    aws.provisioner().provision(instance(), SMALL)

    assert raced == [1]
    assert rule_for(aws, "mypush")["Priority"] == "2"


def test_a_target_group_of_another_owner_is_never_adopted(aws: Aws) -> None:
    aws.elbv2.create_target_group(
        Name=naming.target_group("mypush"), Protocol="HTTP", Port=9080, VpcId=aws.vpc_id,
        TargetType="ip", Tags=[{"Key": "pushaas:instance", "Value": "someone-else"}])

    with pytest.raises(ProvisionError, match="belongs to someone-else"):
        aws.provisioner().provision(instance(), SMALL)
    assert aws.services() == []

    aws.provisioner().deprovision(instance())
    assert [g["TargetGroupName"] for g in aws.target_groups()] == [naming.target_group("mypush")]


# Idempotency


def test_provisioning_twice_converges_to_the_same_state(aws: Aws) -> None:
    provisioner = aws.provisioner()
    provisioner.provision(instance(), SMALL)
    first = end_state(aws, "mypush")

    provisioner.provision(instance(), SMALL)

    assert end_state(aws, "mypush") == first
    assert len(first["services"]) == len(first["revisions"]) == len(first["rules"]) == 1


def _target_group_only(aws: Aws) -> None:
    target_group.ensure(aws.elbv2, "mypush", aws.vpc_id)


def _routing_only(aws: Aws) -> None:
    group = target_group.ensure(aws.elbv2, "mypush", aws.vpc_id)
    listener_rule.ensure(aws.elbv2, "mypush", aws.listener_arn, f"mypush.{DOMAIN}", group)


def _routing_and_task_definition(aws: Aws) -> None:
    _routing_only(aws)
    arn = key_parameter.parameter_arn(aws.settings(), "mypush")
    revisions.ensure(aws.ecs, "mypush", taskdef.build("mypush", SMALL, aws.settings(), arn))


def _duplicate_rules(aws: Aws) -> None:
    """Two attempts of the same job raced and both created a rule."""
    group = target_group.ensure(aws.elbv2, "mypush", aws.vpc_id)
    for priority in (5, 3):
        aws.elbv2.create_rule(
            ListenerArn=aws.listener_arn, Priority=priority,
            Conditions=[{"Field": "host-header",
                         "HostHeaderConfig": {"Values": [f"mypush.{DOMAIN}"]}}],
            Actions=[{"Type": "forward", "TargetGroupArn": group}])


def _rule_to_the_wrong_group(aws: Aws) -> None:
    aws.elbv2.create_rule(
        ListenerArn=aws.listener_arn, Priority=9,
        Conditions=[{"Field": "host-header",
                     "HostHeaderConfig": {"Values": [f"mypush.{DOMAIN}"]}}],
        Actions=[{"Type": "forward", "TargetGroupArn": aws.default_target_group}])


@pytest.mark.parametrize("earlier_attempt", [
    _target_group_only, _routing_only, _routing_and_task_definition, _duplicate_rules,
    _rule_to_the_wrong_group,
], ids=lambda f: f.__name__.strip("_"))
def test_a_half_finished_attempt_is_resumed(aws: Aws, earlier_attempt: Any) -> None:
    earlier_attempt(aws)

    aws.provisioner().provision(instance(), SMALL)

    state = end_state(aws, "mypush")
    assert state["services"] == ["pushaas-mypush"]
    assert len(state["revisions"]) == 1
    assert state["service_revision"] == state["revisions"][0]
    assert len(state["rules"]) == 1
    assert state["rules"][0][1] == state["rule_target"]


class DrainingEcs:
    """ECS while it deletes a service (moto deletes at once, so never shows DRAINING)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def describe_services(self, **_: Any) -> dict[str, Any]:
        return {"services": [{"serviceName": "pushaas-mypush", "status": "DRAINING"}]}

    def __getattr__(self, name: str) -> Any:
        return lambda **_: self.calls.append(name)


def test_a_service_still_draining_is_created_again_later() -> None:
    ecs = DrainingEcs()
    spec = ServiceSpec(instance="mypush", cluster=CLUSTER, task_definition="pushaas-mypush:1",
                       desired=1, subnets=("subnet-0123abcd",),
                       security_groups=("sg-0123abcd",), assign_public_ip="DISABLED",
                       target_group="arn:tg")

    with pytest.raises(RetryLater, match="still being deleted"):
        service.converge(ecs, spec)
    service.delete(ecs, CLUSTER, "mypush")

    assert ecs.calls == []
    assert service.describe(ecs, CLUSTER, "mypush").exists is True


# Scaling


def test_scale_changes_the_desired_count_without_a_new_revision(aws: Aws) -> None:
    provisioner = aws.provisioner()
    provisioner.provision(instance(), SMALL)

    more = replace(SMALL, name="small-x3", replicas=3)
    provisioner.scale(instance(plan=more), more)

    service = service_of(aws, "mypush")
    assert service["desiredCount"] == 3
    assert aws.revisions("pushaas-mypush") == [service["taskDefinition"]]


def test_scale_to_a_bigger_plan_registers_a_new_revision(aws: Aws) -> None:
    provisioner = aws.provisioner()
    provisioner.provision(instance(), SMALL)

    provisioner.scale(instance(plan=MEDIUM), MEDIUM)
    provisioner.scale(instance(plan=MEDIUM), MEDIUM)

    service = service_of(aws, "mypush")
    assert service["desiredCount"] == MEDIUM.replicas
    assert service["taskDefinition"].endswith("pushaas-mypush:2")
    assert len(aws.revisions("pushaas-mypush")) == 2
    assert task_definition(aws, "mypush")["memory"] == str(MEDIUM.memory)


# Deprovisioning


def test_deprovision_leaves_nothing_of_the_instance(aws: Aws) -> None:
    provisioner = aws.provisioner()
    provisioner.provision(instance(), SMALL)
    provisioner.scale(instance(plan=MEDIUM), MEDIUM)

    provisioner.deprovision(instance())

    assert aws.services() == []
    assert aws.revisions("pushaas-mypush") == []
    assert aws.revisions("pushaas-mypush", "INACTIVE") == []
    assert aws.target_groups() == []
    assert aws.rules() == []
    assert provisioner.describe("mypush").exists is False
    assert aws.ssm.describe_parameters()["Parameters"] == []


def test_deprovision_twice_or_of_nothing_is_harmless(aws: Aws) -> None:
    provisioner = aws.provisioner()
    provisioner.deprovision(instance("never"))
    provisioner.provision(instance(), SMALL)

    provisioner.deprovision(instance())
    provisioner.deprovision(instance())

    assert aws.services() == [] and aws.rules() == [] and aws.target_groups() == []


def test_deprovision_spares_an_instance_whose_name_extends_it(aws: Aws) -> None:
    provisioner = aws.provisioner()
    provisioner.provision(instance("app"), SMALL)
    provisioner.provision(instance("app-2"), SMALL)

    provisioner.deprovision(instance("app"))

    assert [s["serviceName"] for s in aws.services()] == ["pushaas-app-2"]
    assert len(aws.revisions("pushaas-app-2")) == 1
    assert [g["TargetGroupName"] for g in aws.target_groups()] == [naming.target_group("app-2")]
    assert rule_for(aws, "app-2")["Priority"] == "2"


def test_provision_after_deprovision_starts_afresh(aws: Aws) -> None:
    provisioner = aws.provisioner()
    provisioner.provision(instance(), SMALL)
    provisioner.deprovision(instance())

    provisioner.provision(instance(), SMALL)

    assert [s["serviceName"] for s in aws.services()] == ["pushaas-mypush"]
    assert rule_for(aws, "mypush")["Priority"] == "1"


# Errors


def test_a_missing_listener_is_a_provision_error(aws: Aws) -> None:
    missing = aws.listener_arn.rsplit("/", 1)[0] + "/0123456789abcdef"
    provisioner = aws.provisioner(PUSHAAS_LB_LISTENER_ARN=missing)

    with pytest.raises(ProvisionError, match="listener does not exist"):
        provisioner.provision(instance(), SMALL)
    provisioner.deprovision(instance())


def test_an_unknown_subnet_is_a_provision_error(aws: Aws) -> None:
    provisioner = aws.provisioner(PUSHAAS_ECS_SUBNETS="subnet-0123456789abcdef0")
    with pytest.raises(ProvisionError, match="service of mypush.*subnet-0123456789abcdef0"):
        provisioner.provision(instance(), SMALL)


def test_an_unknown_cluster_is_a_provision_error(aws: Aws) -> None:
    with pytest.raises(ProvisionError, match="ClusterNotFoundException"):
        aws.provisioner(PUSHAAS_ECS_CLUSTER="elsewhere").provision(instance(), SMALL)


def test_an_unknown_vpc_is_a_provision_error(aws: Aws) -> None:
    with pytest.raises(ProvisionError, match="routing of mypush.*vpc-0123456789abcdef0"):
        aws.provisioner(PUSHAAS_VPC_ID="vpc-0123456789abcdef0").provision(instance(), SMALL)


@pytest.mark.parametrize("code,status", [("ThrottlingException", 400),
                                         ("ServerException", 500)])
def test_transient_errors_propagate_for_a_retry(aws: Aws, code: str, status: int) -> None:
    undo = fail_with(aws.ecs, "CreateService", code, status)
    provisioner = aws.provisioner()

    with pytest.raises(ClientError) as raised:
        provisioner.provision(instance(), SMALL)
    assert not isinstance(raised.value, ProvisionError)
    assert raised.value.response["Error"]["Code"] == code

    undo()
    provisioner.provision(instance(), SMALL)
    assert end_state(aws, "mypush")["services"] == ["pushaas-mypush"]


def test_logs_name_the_instance_and_never_the_secret(aws: Aws,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chalicelib.ecs")
    provisioner = aws.provisioner()
    provisioner.provision(instance(), SMALL)
    provisioner.deprovision(instance())

    text = caplog.text
    assert "service created instance=mypush" in text
    assert "listener rule created instance=mypush" in text
    assert "deprovisioned instance=mypush" in text
    assert aws.env["PUSHAAS_AGENT_REDIS_SECRET_ARN"] not in text


# Settings and names


def _valid_env() -> dict[str, str]:
    return {
        "AWS_REGION": "eu-west-1",
        "PUSHAAS_ECS_CLUSTER": "arn:aws:ecs:eu-west-1:123456789012:cluster/pushaas",
        "PUSHAAS_ECS_SUBNETS": "subnet-0123abcd, subnet-4567ef01",
        "PUSHAAS_ECS_SECURITY_GROUPS": "sg-0123abcd",
        "PUSHAAS_ECS_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/exec",
        "PUSHAAS_ECS_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/ecs/task",
        "PUSHAAS_PUSH_STREAM_IMAGE": "ghcr.io/pushaas/push-stream:1.0",
        "PUSHAAS_PUSH_AGENT_IMAGE": "ghcr.io/pushaas/push-agent@sha256:abc",
        "PUSHAAS_ECS_LOG_GROUP": "/pushaas/tasks",
        "PUSHAAS_VPC_ID": "vpc-0123abcd",
        "PUSHAAS_LB_LISTENER_ARN": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:"
                                   "listener/app/shared/50dc6c495c0c9188/f2f7dc8efc522ab2",
        "PUSHAAS_PUSH_STREAM_DOMAIN": "Push.Example.com.",
        "PUSHAAS_AGENT_REDIS_SECRET_ARN": "arn:aws:ssm:eu-west-1:123456789012:parameter/redis",
    }


def test_settings_read_a_valid_environment() -> None:
    settings = EcsSettings.from_env(_valid_env())

    assert settings.region == "eu-west-1"
    assert settings.subnets == ("subnet-0123abcd", "subnet-4567ef01")
    assert settings.assign_public_ip == "DISABLED"
    assert settings.push_stream_domain == "push.example.com"


@pytest.mark.parametrize("name,value", [
    ("PUSHAAS_ECS_CLUSTER", ""),
    ("PUSHAAS_ECS_CLUSTER", "my cluster"),
    ("PUSHAAS_ECS_SUBNETS", ""),
    ("PUSHAAS_ECS_SUBNETS", "subnet-0123abcd,,"),
    ("PUSHAAS_ECS_SUBNETS", "sg-0123abcd"),
    ("PUSHAAS_ECS_SECURITY_GROUPS", "default"),
    ("PUSHAAS_ECS_ASSIGN_PUBLIC_IP", "yes"),
    ("PUSHAAS_ECS_EXECUTION_ROLE_ARN", "exec"),
    ("PUSHAAS_ECS_TASK_ROLE_ARN", ""),
    ("PUSHAAS_PUSH_STREAM_IMAGE", "push stream"),
    ("PUSHAAS_PUSH_AGENT_IMAGE", ""),
    ("PUSHAAS_ECS_LOG_GROUP", "logs?"),
    ("PUSHAAS_VPC_ID", "default"),
    ("PUSHAAS_LB_LISTENER_ARN", "arn:aws:elasticloadbalancing:eu-west-1:1:loadbalancer/x"),
    ("PUSHAAS_LB_LISTENER_ARN", "arn:aws:elasticloadbalancing:us-east-1:123456789012:"
                                "listener/app/shared/50dc6c495c0c9188/f2f7dc8efc522ab2"),
    ("PUSHAAS_PUSH_STREAM_DOMAIN", "localhost"),
    ("PUSHAAS_PUSH_STREAM_DOMAIN", "push_stream.example.com"),
    ("PUSHAAS_PUSH_STREAM_DOMAIN", "a" * 60 + ".example.com"),
    ("PUSHAAS_AGENT_REDIS_SECRET_ARN", "rediss://:token@redis:6379"),
])
def test_settings_name_the_bad_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        EcsSettings.from_env({**_valid_env(), name: value})


def test_settings_need_a_region() -> None:
    env = {k: v for k, v in _valid_env().items() if k != "AWS_REGION"}
    with pytest.raises(ConfigError, match="AWS_DEFAULT_REGION or AWS_REGION"):
        EcsSettings.from_env(env)


def test_names_fit_aws_limits() -> None:
    longest = "a" * 63
    assert naming.service(longest) == naming.family(longest) == f"pushaas-{longest}"
    assert len(naming.target_group(longest)) <= 32
    assert naming.target_group("mypush") == naming.target_group("mypush")
    assert naming.target_group("mypush") != naming.target_group("mypush2")
    assert naming.instance_for_group(f"service:pushaas-{longest}") == longest
    assert len(f"{longest}.{EcsSettings.from_env(_valid_env()).push_stream_domain}") <= 128
    assert isinstance(EcsProvisioner.instance_for_group("service:pushaas-x"), str)


def test_the_lambda_provisioner_bounds_every_aws_call() -> None:
    """A hung endpoint fails the step within the job function's time, so its reason is
    recorded; the default clients would wait a minute per read and retry on top."""
    provisioner = build_provisioner(Secret(MASTER_KEY), _valid_env())

    for client in (provisioner.ecs, provisioner.elbv2, provisioner.ssm):
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout) == (5, 20)
        assert config.retries == {"total_max_attempts": 3, "mode": "standard"}
        assert client.meta.region_name == "eu-west-1"
