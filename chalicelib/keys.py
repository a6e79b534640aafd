"""Every Redis key PushaaS uses, in one place.

Keys of one instance share the hash tag ``{<instance>}`` so that all of them land in
the same slot and the design runs unchanged on Redis Cluster. The agent imports this
module too, so the API and the delivery tier can never disagree on a name.
"""

PREFIX = "pushaas"

INSTANCES = f"{PREFIX}:instances"
"""Set of every instance name (global, not hash-tagged: it spans instances)."""

JOBS = f"{PREFIX}:jobs"
"""List used as the local job queue (SQS plays this part on AWS)."""

JOBS_PROCESSING = f"{PREFIX}:jobs:processing"
"""List holding jobs taken by the local runner and not yet finished."""

JOBS_DEAD = f"{PREFIX}:jobs:dead"
"""List of jobs that failed every attempt (the local dead-letter queue)."""


def _tag(instance: str) -> str:
    return f"{PREFIX}:{{{instance}}}"


def instance(name: str) -> str:
    """Hash with the instance record (plan, status, salt, endpoints...)."""
    return f"{_tag(name)}:instance"


def bindings(name: str) -> str:
    """Hash app name -> JSON of the app binding."""
    return f"{_tag(name)}:bindings"


def unit_bindings(name: str) -> str:
    """Hash "<app>|<unit-host>" -> JSON of the unit binding."""
    return f"{_tag(name)}:units"


def job_bindings(name: str) -> str:
    """Hash job name -> JSON of the Tsuru job binding."""
    return f"{_tag(name)}:jobbinds"


def channel_index(name: str) -> str:
    """Sorted set of channel ids scored by expiry (unix seconds, +inf = persistent)."""
    return f"{_tag(name)}:channels"


def channel(name: str, channel_id: str) -> str:
    """String with the channel's JSON record; carries the channel TTL as a key TTL."""
    return f"{_tag(name)}:channel:{channel_id}"


def stream(name: str) -> str:
    """The instance's message stream (Redis Streams)."""
    return f"{_tag(name)}:stream"


def idempotency(name: str, key: str) -> str:
    """String mapping a publisher's Idempotency-Key to the stream id it produced."""
    return f"{_tag(name)}:idem:{key}"


def cursor(name: str, agent: str) -> str:
    """String with the last stream id an agent's nginx accepted."""
    return f"{_tag(name)}:cursor:{agent}"


def agents(name: str) -> str:
    """Sorted set of agent ids scored by the unix time of their last report."""
    return f"{_tag(name)}:agents"


def global_stats(name: str, agent: str) -> str:
    """String with one agent's global stats JSON; expires when the agent stops reporting."""
    return f"{_tag(name)}:stats:global:{agent}"


def channel_stats(name: str, agent: str) -> str:
    """Hash channel id -> one agent's stats JSON for that channel; expires with the agent."""
    return f"{_tag(name)}:stats:channels:{agent}"


def replicas(name: str) -> str:
    """Hash replica index -> JSON of where that replica runs (provisioner bookkeeping)."""
    return f"{_tag(name)}:replicas"


def instance_pattern(name: str) -> str:
    """Glob matching every key of one instance (used on deprovision)."""
    return f"{_tag(name)}:*"


def publish_rate(name: str) -> str:
    """Counter of publishes in the current one-second window (rate limit)."""
    return f"{_tag(name)}:rate"
