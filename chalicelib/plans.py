"""Plans: what a Tsuru user picks with ``tsuru service-instance-add pushaas x -p PLAN``.

Plans are configuration, not code: ``plans.json`` beside this module is the default and
``PUSHAAS_PLANS_FILE`` points at another file. A malformed file fails loudly at load
time instead of producing instances with half a plan.
"""

import json
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

from chalicelib.errors import ConfigError

DEFAULT_FILE = Path(__file__).with_name("plans.json")
DEFAULT_CHANNEL_ID_PATTERN = r"^[A-Za-z0-9_.:@-]{1,128}$"


@dataclass(frozen=True)
class Plan:
    """A plan's sizing and the limits the push-api enforces for its instances."""

    name: str
    description: str
    replicas: int
    cpu: int
    memory: int
    max_content_bytes: int = 32768
    max_channels_per_message: int = 100
    max_channels: int = 1000
    publish_rate: int = 100
    buffer_length: int = 100
    buffer_seconds: int = 600
    retention_max_len: int = 100000
    retention_seconds: int = 3600
    channel_id_pattern: str = DEFAULT_CHANNEL_ID_PATTERN

    def channel_id_regex(self) -> re.Pattern[str]:
        return re.compile(self.channel_id_pattern)

    @property
    def message_store_mib(self) -> int:
        """Nchan's shared message store (the replay buffers) in MiB: a quarter of a replica's
        memory. The rest holds subscriber connections (about 10 KiB each), the agent and the
        authorizer. A fixed store would either waste small tasks or fill up on large plans,
        and a full store makes nginx refuse publishes until messages expire."""
        return max(16, self.memory // 4)


def _build(name: str, raw: object) -> Plan:
    if not isinstance(raw, dict):
        raise ConfigError(f"plan {name!r} must be an object")

    known = {f.name for f in fields(Plan)} - {"name"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"plan {name!r} has unknown keys: {sorted(unknown)}")

    try:
        plan = Plan(name=name, **raw)
    except TypeError as exc:
        raise ConfigError(f"plan {name!r} is incomplete: {exc}") from None

    for field in fields(Plan):
        value = getattr(plan, field.name)
        if field.type is int and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"plan {name!r}: {field.name} must be a positive integer")

    try:
        plan.channel_id_regex()
    except re.error as exc:
        raise ConfigError(f"plan {name!r}: bad channel_id_pattern: {exc}") from None
    return plan


def load_plans(path: str | None = None) -> dict[str, Plan]:
    """Read and validate the plans file; the order of the file is kept."""
    source = Path(path or os.environ.get("PUSHAAS_PLANS_FILE") or DEFAULT_FILE)
    try:
        raw = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read plans from {source}: {exc}") from None

    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source} must map plan names to plans")
    return {name: _build(name, body) for name, body in raw.items()}
