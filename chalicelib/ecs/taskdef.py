"""The task definition of an instance: one Fargate task = push-stream, push-agent and the
authorizer of private channels.

A pure function of the instance name, its plan, the settings and the ARN of the
instance's subscribe key parameter, so it is tested without AWS and a retried job asks
for exactly the same definition. The containers get the same environment the local
provisioner gives the same three processes, with the ports fixed: in awsvpc mode every
task has its own network namespace (loopback included), so 9080-9082 never clash.
"""

import hashlib
import json
from typing import Any

from chalicelib.ecs import naming
from chalicelib.ecs.settings import EcsSettings
from chalicelib.plans import Plan
from chalicelib.provisioner import ProvisionError

PUBLIC_PORT = 9080
INTERNAL_PORT = 9081
AUTHORIZER_PORT = 9082
NOFILE = 65536
"""render.py asks nginx for two descriptors per connection (16384 by default); nginx runs
unprivileged, so the hard limit must be granted here."""

AGENT_CONFIG_EXIT = 2
"""The agent's exit status for a bad environment: restarting it would not help."""

AGENT_RESTART_PERIOD = 60
"""A crashed agent is restarted in place (its nginx and subscribers stay up) if it ran
this long; one that fails sooner stops the task, and ECS replaces the task."""

FARGATE_MEMORY: dict[int, range | tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: range(1024, 4097, 1024),
    1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024),
    4096: range(8192, 30721, 1024),
    8192: range(16384, 61441, 4096),
    16384: range(32768, 122881, 8192),
}
"""CPU units -> the memory sizes (MiB) Fargate accepts with them."""


def check_fargate_size(plan: Plan) -> None:
    """Fail with the plan's name rather than with AWS's terse 'no Fargate configuration'."""
    sizes = FARGATE_MEMORY.get(plan.cpu)
    if sizes is None:
        raise ProvisionError(f"plan {plan.name!r}: Fargate has no {plan.cpu} CPU unit size "
                             f"(one of {', '.join(map(str, FARGATE_MEMORY))})")
    if plan.memory not in sizes:
        raise ProvisionError(f"plan {plan.name!r}: Fargate does not run {plan.cpu} CPU units "
                             f"with {plan.memory} MiB ({_sizes(sizes)})")


def _sizes(sizes: range | tuple[int, ...]) -> str:
    if isinstance(sizes, range):
        return f"from {sizes.start} to {sizes.stop - 1} in steps of {sizes.step}"
    return "one of " + ", ".join(map(str, sizes))


def build(name: str, plan: Plan, settings: EcsSettings, subscribe_key_arn: str) -> dict[str, Any]:
    """The ``register_task_definition`` keyword arguments, tags included."""
    check_fargate_size(plan)
    definition: dict[str, Any] = {
        "family": naming.family(name),
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
        "cpu": str(plan.cpu),
        "memory": str(plan.memory),
        "executionRoleArn": settings.execution_role_arn,
        "taskRoleArn": settings.task_role_arn,
        "containerDefinitions": [
            _push_stream(plan, settings),
            _push_agent(name, plan, settings),
            _authorizer(name, settings, subscribe_key_arn),
        ],
    }
    tags = naming.ecs_tags(name) + [{"key": naming.TAG_SPEC, "value": spec_digest(definition)}]
    return {**definition, "tags": tags}


def spec_digest(definition: dict[str, Any]) -> str:
    """A fingerprint of what we ask for, stored as a tag on the revision.

    AWS echoes a definition back with defaults filled in, so comparing our request with
    the described revision field by field would see differences that are not there.
    Comparing fingerprints tells exactly whether the latest revision is the one we want.
    """
    wanted = {key: value for key, value in definition.items() if key != "tags"}
    canonical = json.dumps(wanted, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _push_stream(plan: Plan, settings: EcsSettings) -> dict[str, Any]:
    """nginx + Nchan; the image's CMD (``render.py run``) starts it.

    It starts once the authorizer is healthy, so a task never serves subscribers while
    its private channels would still answer 502.
    """
    return {
        "name": naming.PUSH_STREAM,
        "image": settings.push_stream_image,
        "essential": True,
        "portMappings": [{"containerPort": PUBLIC_PORT, "protocol": "tcp"}],
        "environment": _environment({
            "PUSH_STREAM_PUBLIC_ADDR": "0.0.0.0",
            "PUSH_STREAM_PUBLIC_PORT": str(PUBLIC_PORT),
            "PUSH_STREAM_INTERNAL_PORT": str(INTERNAL_PORT),
            "PUSH_STREAM_BUFFER_LENGTH": str(plan.buffer_length),
            "PUSH_STREAM_BUFFER_SECONDS": str(plan.buffer_seconds),
            "PUSH_STREAM_SHM_SIZE": f"{plan.message_store_mib}M",
            "PUSH_STREAM_WORKERS": str(max(1, plan.cpu // 1024)),
            "PUSH_STREAM_AUTHORIZER_PORT": str(AUTHORIZER_PORT),
        }),
        "dependsOn": [{"containerName": naming.PUSH_AUTHORIZER, "condition": "HEALTHY"}],
        "ulimits": [{"name": "nofile", "softLimit": NOFILE, "hardLimit": NOFILE}],
        "healthCheck": {
            "command": ["CMD", "python3", "/opt/push-stream/render.py", "health"],
            "interval": 10, "timeout": 3, "retries": 3, "startPeriod": 5,
        },
        "logConfiguration": _logs(settings, naming.PUSH_STREAM),
    }


def _push_agent(name: str, plan: Plan, settings: EcsSettings) -> dict[str, Any]:
    """The agent; its Redis URL carries the auth token, so it arrives as an ECS secret.

    No PUSHAAS_AGENT_ID: a task definition cannot give each task its own value. The agent
    takes its task's id from the ECS metadata endpoint, which stays the same when the
    agent container is restarted in place, so a restarted agent resumes its own cursor.
    """
    return {
        "name": naming.PUSH_AGENT,
        "image": settings.push_agent_image,
        "essential": True,
        "environment": _environment({
            "PUSHAAS_INSTANCE": name,
            "PUSHAAS_NGINX_URL": f"http://127.0.0.1:{INTERNAL_PORT}",
            "PUSHAAS_BUFFER_SECONDS": str(plan.buffer_seconds),
        }),
        "secrets": [{"name": "PUSHAAS_REDIS_URL", "valueFrom": settings.agent_redis_secret_arn}],
        "dependsOn": [{"containerName": naming.PUSH_STREAM, "condition": "HEALTHY"}],
        "restartPolicy": {
            "enabled": True,
            "ignoredExitCodes": [AGENT_CONFIG_EXIT],
            "restartAttemptPeriod": AGENT_RESTART_PERIOD,
        },
        "healthCheck": {
            "command": ["CMD", "python", "-m", "push_agent.health"],
            "interval": 15, "timeout": 5, "retries": 3, "startPeriod": 20,
        },
        "logConfiguration": _logs(settings, naming.PUSH_AGENT),
    }


def _authorizer(name: str, settings: EcsSettings, subscribe_key_arn: str) -> dict[str, Any]:
    """``python -m push_agent.authorizer`` from the agent's image, on loopback.

    Its one secret, the instance's subscribe key, is an ECS secret read from the SSM
    parameter at start: the definition carries only the parameter's ARN.
    """
    return {
        "name": naming.PUSH_AUTHORIZER,
        "image": settings.push_agent_image,
        "essential": True,
        "command": ["python", "-m", "push_agent.authorizer"],
        "environment": _environment({
            "PUSHAAS_INSTANCE": name,
            "PUSHAAS_AUTHORIZER_PORT": str(AUTHORIZER_PORT),
        }),
        "secrets": [{"name": "PUSHAAS_SUBSCRIBE_KEY", "valueFrom": subscribe_key_arn}],
        "restartPolicy": {
            "enabled": True,
            "ignoredExitCodes": [AGENT_CONFIG_EXIT],
            "restartAttemptPeriod": AGENT_RESTART_PERIOD,
        },
        "healthCheck": {
            "command": ["CMD", "python", "-m", "push_agent.authorizer", "health"],
            "interval": 10, "timeout": 3, "retries": 3, "startPeriod": 5,
        },
        "logConfiguration": _logs(settings, naming.PUSH_AUTHORIZER),
    }


def _environment(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": key, "value": value} for key, value in sorted(values.items())]


def _logs(settings: EcsSettings, container: str) -> dict[str, Any]:
    """awslogs, non-blocking: a slow CloudWatch must never stall nginx or the agent."""
    return {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": settings.log_group,
            "awslogs-region": settings.region,
            "awslogs-stream-prefix": container,
            "mode": "non-blocking",
            "max-buffer-size": "4m",
        },
    }
