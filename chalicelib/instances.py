"""Instance records: what a Tsuru service instance is and where it stands.

An instance is a hash in Redis. Its status moves pending -> running (or failed) as the
provisioning job and the provisioner report, and removing while it is torn down. The
publisher secret is never stored: only a random salt from which it is derived.
"""

import json
import logging
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from enum import Enum, StrEnum

import redis

from chalicelib import keys
from chalicelib.errors import BadRequest, Conflict, NotFound

log = logging.getLogger(__name__)

# Updating a deleted instance must not resurrect a partial record.
_UPDATE_IF_EXISTS = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
redis.call('hset', KEYS[1], unpack(ARGV))
return 1
"""

# A DNS label: on AWS each instance is reached at <name>.<push-stream domain>.
NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    FAILED = "failed"
    REMOVING = "removing"


@dataclass
class Instance:
    name: str
    plan: str
    team: str = ""
    user: str = ""
    description: str = ""
    tags: list[str] = field(default_factory=list)
    status: Status = Status.PENDING
    reason: str = ""
    salt: str = ""
    push_stream_url: str = ""
    created: float = 0.0
    updated: float = 0.0

    def to_redis(self) -> dict[str, str]:
        record = asdict(self)
        record["tags"] = json.dumps(self.tags)
        record["status"] = self.status.value
        return {k: str(v) for k, v in record.items()}

    @classmethod
    def from_redis(cls, record: dict[str, str]) -> "Instance":
        """Rebuild an instance; a corrupted record raises ValueError naming the field."""
        try:
            return cls(
                name=record["name"],
                plan=record["plan"],
                team=record.get("team", ""),
                user=record.get("user", ""),
                description=record.get("description", ""),
                tags=json.loads(record.get("tags") or "[]"),
                status=Status(record.get("status", "pending")),
                reason=record.get("reason", ""),
                salt=record.get("salt", ""),
                push_stream_url=record.get("push_stream_url", ""),
                created=float(record.get("created") or 0),
                updated=float(record.get("updated") or 0),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"corrupted instance record: {exc}") from None


def is_valid_name(name: str) -> bool:
    """Whether ``name`` can be an instance's: also what keeps it out of key globs."""
    return bool(NAME_PATTERN.match(name or ""))


def validate_name(name: str) -> str:
    if not is_valid_name(name):
        raise BadRequest(
            "instance name must be 1-63 characters of lowercase letters, digits and '-',"
            " starting and ending with a letter or digit"
        )
    return name


class InstanceStore:
    """Instance records in Redis. The client is injected so tests use a real Redis."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def create(self, instance: Instance) -> Instance:
        """Store a new instance; Conflict if the name is taken (atomically)."""
        now = time.time()
        instance.created = instance.updated = now
        instance.salt = secrets.token_hex(16)

        record = instance.to_redis()
        if not self.redis.sadd(keys.INSTANCES, instance.name):
            raise Conflict(f"instance {instance.name!r} already exists")
        try:
            self.redis.hset(keys.instance(instance.name), mapping=record)
        except BaseException:
            # Without its record the name would stay taken by nothing (409, then 404).
            self._release_name(instance.name)
            raise
        return instance

    def _release_name(self, name: str) -> None:
        try:
            self.redis.srem(keys.INSTANCES, name)
        except redis.RedisError:
            log.error("instance name left reserved after a failed create instance=%s", name)

    def find(self, name: str) -> Instance | None:
        record = self.redis.hgetall(keys.instance(name))
        if not record:
            return None
        return Instance.from_redis(record)

    def find_for_removal(self, name: str) -> Instance | None:
        """The instance to remove, even when its record no longer parses.

        Removal needs only the name (the provisioners key everything by it), so a damaged
        record must not make an instance impossible to delete.
        """
        try:
            return self.find(name)
        except ValueError as exc:
            log.warning("removing an instance with an unreadable record instance=%s "
                        "error=%s", name, exc)
            return Instance(name=name, plan="", status=Status.REMOVING)

    def get(self, name: str) -> Instance:
        instance = self.find(name)
        if instance is None:
            raise NotFound(f"instance {name!r} not found")
        return instance

    def names(self) -> list[str]:
        return sorted(self.redis.smembers(keys.INSTANCES))

    def readable(self) -> list[Instance]:
        """Every instance whose record parses; the others are logged and left out, so one
        damaged record cannot take a listing or the local runner's start down."""
        instances = []
        for name in self.names():
            try:
                instance = self.find(name)
            except (ValueError, redis.ResponseError) as exc:
                log.error("unreadable instance record instance=%r error=%s", name, exc)
                continue
            if instance is not None:
                instances.append(instance)
        return instances

    def update(self, name: str, **changes: object) -> None:
        """Change some fields of an existing record, refreshing ``updated``."""
        values = {k: (v.value if isinstance(v, Enum) else v) for k, v in changes.items()}
        if "tags" in values:
            values["tags"] = json.dumps(values["tags"])
        values["updated"] = time.time()

        flat = [str(item) for pair in values.items() for item in pair]
        if not self.redis.eval(_UPDATE_IF_EXISTS, 1, keys.instance(name), *flat):
            raise NotFound(f"instance {name!r} not found")

    def set_status(self, name: str, status: Status, reason: str = "") -> None:
        self.update(name, status=status, reason=reason)

    def count_task_death(self, name: str) -> int:
        """Count a task that stopped after serving; shown in the instance info."""
        return self.redis.hincrby(keys.instance(name), "task_deaths", 1)

    def task_deaths(self, name: str) -> int:
        """The counter, or 0 (logged) when the field holds something else: it is shown in
        the instance info, which must not fail over it."""
        raw = self.redis.hget(keys.instance(name), "task_deaths") or "0"
        try:
            return int(raw)
        except ValueError:
            log.error("unreadable task death counter instance=%s", name)
            return 0

    def converged_at(self, name: str) -> float:
        """When the reconciler last converged the instance's delivery tier (0: never)."""
        return float(self.redis.hget(keys.instance(name), "converged_at") or 0)

    def mark_converged(self, name: str, when: float) -> None:
        self.redis.hset(keys.instance(name), "converged_at", str(when))

    def forget_invalid_name(self, name: str) -> None:
        """Drop a member of the instance set that no instance can have (a corrupted set)."""
        self.redis.srem(keys.INSTANCES, name)

    def purge(self, name: str) -> int:
        """Delete every key of the instance and forget its name; returns keys deleted.

        The keys are found with a SCAN pattern, so a name that is not a valid instance
        name (a ``*`` or ``[a]`` from a corrupted set member or job) is refused here: as a
        glob it would match other instances' keys.
        """
        if not is_valid_name(name):
            raise ValueError(f"refusing to purge keys of an invalid instance name {name!r}")

        deleted = 0
        batch: list[str] = []
        for key in self.redis.scan_iter(match=keys.instance_pattern(name), count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += self.redis.delete(*batch)
                batch.clear()
        if batch:
            deleted += self.redis.delete(*batch)

        self.redis.srem(keys.INSTANCES, name)
        return deleted
