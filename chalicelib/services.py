"""The process-wide objects a request or job needs, built once on first use.

Lambda reuses a container across invocations, so the Redis connection pool and the
parsed settings live as long as the container; tests build their own ``Services``
around a test Redis.
"""

import functools
from dataclasses import dataclass, field

import redis

from chalicelib import settings as settings_module
from chalicelib.errors import ConfigError
from chalicelib.instances import InstanceStore
from chalicelib.job_queue import RedisJobQueue
from chalicelib.jobs import JobQueue
from chalicelib.plans import Plan, load_plans
from chalicelib.provisioner import Provisioner
from chalicelib.settings import Settings


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    plans: dict[str, Plan]
    queue: JobQueue
    store: InstanceStore = field(init=False)
    _provisioner: Provisioner | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.store = InstanceStore(self.redis)

    @property
    def provisioner(self) -> Provisioner:
        """The ECS provisioner, built on first use (only jobs, events and the schedule need it).

        In local mode provisioning happens in the local runner, never in the API process.
        """
        if self._provisioner is None:
            if self.settings.provisioner != "ecs":
                raise ConfigError("this process has no provisioner: in local mode the "
                                  "local runner provisions instances")
            from chalicelib.ecs import build_provisioner

            self._provisioner = build_provisioner(self.settings.master_key)
        return self._provisioner


def connect(settings: Settings) -> redis.Redis:
    """A client that fails fast: a Redis outage becomes a quick 503, never a hung request."""
    return redis.Redis.from_url(
        settings.redis_url.reveal(),
        decode_responses=True,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=30,
        retry_on_timeout=False,
    )


def build(settings: Settings) -> Services:
    client = connect(settings)
    queue: JobQueue
    if settings.job_queue == "sqs":
        from chalicelib.sqs_queue import SqsJobQueue

        queue = SqsJobQueue(settings.jobs_queue_url or "")
    else:
        queue = RedisJobQueue(client)
    return Services(settings=settings, redis=client, plans=load_plans(settings.plans_file),
                    queue=queue)


@functools.cache
def current() -> Services:
    """The services of this process, from the environment."""
    return build(settings_module.from_env())
