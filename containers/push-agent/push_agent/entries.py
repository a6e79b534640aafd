"""Turning raw stream entries into the envelopes nginx receives, one per channel.

This runs for every message an agent delivers, so the envelope is assembled from parts
instead of serialising a dict per channel: the entry's id, text and time are JSON-encoded
once per entry and each channel's name once per batch, with the very encoder
``chalicelib.envelope.envelope`` uses, so the bytes are identical (a test holds them to it).
"""

import json
import logging
from collections import deque
from json.encoder import encode_basestring
from typing import NamedTuple

from chalicelib import envelope
from push_agent.nchan import publishable

log = logging.getLogger(__name__)

CHANNELS_KEY = envelope.FIELD_CHANNELS.encode()
TEXT_KEY = envelope.FIELD_TEXT.encode()

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""``envelope.envelope``'s encoder: for a plain string it escapes exactly as in a dict."""

_encode_text = encode_basestring
"""What ``_encode`` does with a string (the encoder's ``ensure_ascii=False`` escaping),
called directly: the text is encoded once per delivered entry."""


class Delivery(NamedTuple):
    """One envelope for one channel of one stream entry."""

    entry_id: str
    channel: str
    body: bytes


Channels = list[tuple[str, bytes]]
"""An entry's channels, each with its name already JSON-encoded."""

ENVELOPE = b'{"id":"%s","channel":%s,"text":%s,"time":%s}'
"""The envelope's bytes, in ``envelope.envelope``'s key order and separators."""

_new_delivery = tuple.__new__
"""Builds a Delivery without the Python-level constructor call, once per delivery."""


class Planner:
    """Plans the batches of one instance, remembering checked channel lists in between.

    Publishers tend to reuse the same channel lists, so most entries skip the JSON parse
    and the checks of their channels; the memory is bounded by ``KNOWN_LIMIT`` lists.
    """

    KNOWN_LIMIT = 10_000

    def __init__(self, instance: str):
        self.instance = instance
        self.known: dict[bytes, Channels | str] = {}

    def plan(self, entries: list[tuple[str, dict[bytes, bytes]]]) -> dict[str, deque[Delivery]]:
        if len(self.known) > self.KNOWN_LIMIT:
            self.known.clear()
        return plan_batch(self.instance, entries, self.known)


def plan_batch(
    instance: str, entries: list[tuple[str, dict[bytes, bytes]]],
    known_channels: dict[bytes, Channels | str] | None = None,
) -> dict[str, deque[Delivery]]:
    """Deliveries grouped by channel, each group in stream order; malformed entries skipped.

    Grouping is what lets channels go to nginx in parallel while the messages of one
    channel keep their stream order. ``known_channels`` carries checked channel lists
    from one batch to the next (see ``Planner``).
    """
    by_channel: dict[str, deque[Delivery]] = {}
    known_channels = {} if known_channels is None else known_channels
    times: dict[str, bytes] = {}
    for entry_id, raw_fields in entries:
        try:
            # The usual entry inline (this loop runs per message), anything else in _entry.
            checked = known_channels.get(raw_fields.get(CHANNELS_KEY, b""))
            if checked.__class__ is list and len(raw_fields) == 2 and TEXT_KEY in raw_fields:
                channels, text = checked, raw_fields[TEXT_KEY].decode("utf-8")
            else:
                channels, text = _entry(raw_fields, known_channels)
        except ValueError as exc:
            log.warning(
                "malformed stream entry skipped instance=%s entry=%s error=%s",
                instance, entry_id, exc,
            )
            continue

        millis = entry_id.partition("-")[0]
        time = times.get(millis)
        if time is None:
            time = times[millis] = _encode(envelope.entry_time(entry_id)).encode()
        # Stream ids are digits and a dash: nothing in them needs escaping.
        id_bytes = entry_id.encode()
        text_json = _encode_text(text).encode()

        for channel, channel_json in channels:
            body = ENVELOPE % (id_bytes, channel_json, text_json, time)
            delivery = _new_delivery(Delivery, (entry_id, channel, body))
            group = by_channel.get(channel)
            if group is None:
                by_channel[channel] = deque((delivery,))
            else:
                group.append(delivery)
    return by_channel


def _entry(raw_fields: dict[bytes, bytes], known: dict[bytes, Channels | str]) -> tuple[
    Channels, str
]:
    """Channels and text of an entry; ValueError (never the text itself) when malformed.

    Entries as the push-api writes them (exactly a channels and a text field) take the
    short way, with their channel lists checked once per batch; anything else is decoded
    field by field.
    """
    raw_channels = raw_fields.get(CHANNELS_KEY)
    raw_text = raw_fields.get(TEXT_KEY)
    if len(raw_fields) != 2 or raw_channels is None or raw_text is None:
        channels, text = _decode(raw_fields)
        return [(channel, _encode(channel).encode()) for channel in channels], text

    checked = known.get(raw_channels)
    if checked is None:
        checked = known[raw_channels] = _check_channels(raw_channels)
    text = raw_text.decode("utf-8")
    if isinstance(checked, str):
        raise ValueError(checked)
    return checked, text


def _check_channels(raw: bytes) -> Channels | str:
    """The entry's channels with their JSON, or why they are unusable."""
    try:
        channels = _valid_channels({envelope.FIELD_CHANNELS: raw.decode("utf-8")})
    except ValueError as exc:
        return str(exc)
    return [(channel, _encode(channel).encode()) for channel in channels]


def _decode(raw_fields: dict[bytes, bytes]) -> tuple[list[str], str]:
    """Channels and text of an entry of any shape, every field decoded."""
    fields = {
        key.decode("utf-8"): value.decode("utf-8") for key, value in raw_fields.items()
    }
    channels = _valid_channels(fields)
    text = fields.get(envelope.FIELD_TEXT)
    if text is None:
        raise ValueError("stream entry has no text field")
    return channels, text


def _valid_channels(fields: dict[str, str]) -> list[str]:
    channels = envelope.entry_channels(fields)
    if not channels:
        raise ValueError("stream entry has no channels")
    if not all(publishable(channel) for channel in channels):
        raise ValueError("stream entry has an empty or unpublishable channel id")
    return list(dict.fromkeys(channels))
