"""Redis stream ids ("<milliseconds>-<sequence>") as comparable values."""

StreamId = tuple[int, int]

MAX_SEQUENCE = 2**64 - 1
"""The largest sequence part Redis accepts in an id."""


def parse(entry_id: str) -> StreamId:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``; raises ValueError otherwise."""
    millis, sep, sequence = entry_id.partition("-")
    if not (sep and entry_id.isascii() and millis.isdigit() and sequence.isdigit()):
        raise ValueError(f"not a stream id: {entry_id!r}")
    parsed = int(millis), int(sequence)
    if max(parsed) > MAX_SEQUENCE:  # Redis ids are two unsigned 64-bit numbers
        raise ValueError(f"not a stream id: {entry_id!r}")
    return parsed


def is_valid(entry_id: str) -> bool:
    try:
        parse(entry_id)
    except ValueError:
        return False
    return True


def at_time(unix_seconds: float) -> str:
    """The smallest id a stream could assign at that moment."""
    return f"{max(0, int(unix_seconds * 1000))}-0"


def millis(entry_id: str) -> int:
    return parse(entry_id)[0]


def before(entry_id: str) -> str:
    """The greatest id below ``entry_id``: reading after it starts exactly at that entry."""
    millis_part, sequence = parse(entry_id)
    if sequence:
        return f"{millis_part}-{sequence - 1}"
    return f"{millis_part - 1}-{MAX_SEQUENCE}" if millis_part else "0-0"
