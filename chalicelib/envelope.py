"""The stream entry and the JSON envelope every subscriber receives.

A stream entry holds the message once, whatever the number of channels; the agent
turns it into one envelope per channel. Both sides import this module so the entry
layout is defined once.
"""

import json
from datetime import UTC, datetime, timedelta

FIELD_CHANNELS = "c"
FIELD_TEXT = "t"
# Integer arithmetic from here: seconds as a float lose milliseconds after year 2106.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def entry_fields(channels: list[str], text: str) -> dict[str, str]:
    """Stream entry fields for one published message."""
    return {FIELD_CHANNELS: json.dumps(channels, separators=(",", ":")), FIELD_TEXT: text}


def entry_channels(fields: dict) -> list[str]:
    """Channels of a stream entry; raises ValueError on a malformed entry."""
    raw = fields.get(FIELD_CHANNELS)
    if raw is None:
        raise ValueError("stream entry has no channels field")

    channels = json.loads(raw)
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise ValueError("stream entry channels is not a list of strings")
    return channels


def entry_time(entry_id: str) -> str:
    """ISO 8601 UTC time of a stream id (its first part is milliseconds since epoch)."""
    millis = int(entry_id.split("-", 1)[0])
    moment = EPOCH + timedelta(milliseconds=millis)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(entry_id: str, channel: str, text: str) -> bytes:
    """The body delivered to subscribers of ``channel`` for one stream entry."""
    body = {"id": entry_id, "channel": channel, "text": text, "time": entry_time(entry_id)}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
