"""Turning raw stream entries into the envelopes nginx receives, one per channel."""

import logging
from collections import OrderedDict
from dataclasses import dataclass

from chalicelib import envelope
from push_agent.nchan import publishable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """One envelope for one channel of one stream entry."""

    entry_id: str
    channel: str
    body: bytes


def plan_batch(
    instance: str, entries: list[tuple[str, dict[bytes, bytes]]],
) -> "OrderedDict[str, list[Delivery]]":
    """Deliveries grouped by channel, each group in stream order; malformed entries skipped.

    Grouping is what lets channels go to nginx in parallel while the messages of one
    channel keep their stream order.
    """
    by_channel: OrderedDict[str, list[Delivery]] = OrderedDict()
    for entry_id, raw_fields in entries:
        try:
            channels, text = _decode(raw_fields)
        except ValueError as exc:
            log.warning(
                "malformed stream entry skipped instance=%s entry=%s error=%s",
                instance, entry_id, exc,
            )
            continue

        for channel in channels:
            body = envelope.envelope(entry_id, channel, text)
            by_channel.setdefault(channel, []).append(Delivery(entry_id, channel, body))
    return by_channel


def _decode(raw_fields: dict[bytes, bytes]) -> tuple[list[str], str]:
    """Channels and text of an entry; ValueError (never the text itself) when malformed."""
    fields = {
        key.decode("utf-8"): value.decode("utf-8") for key, value in raw_fields.items()
    }
    channels = envelope.entry_channels(fields)
    if not channels:
        raise ValueError("stream entry has no channels")
    if not all(publishable(channel) for channel in channels):
        raise ValueError("stream entry has an empty or unpublishable channel id")

    text = fields.get(envelope.FIELD_TEXT)
    if text is None:
        raise ValueError("stream entry has no text field")
    return list(dict.fromkeys(channels)), text
