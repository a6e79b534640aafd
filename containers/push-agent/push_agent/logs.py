"""Logging setup: one line per event, key=value fields, on stderr (collected by ECS/runner)."""

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure(level: str) -> None:
    """Send every push_agent logger to stderr; quiet noisy libraries below WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("push_agent").setLevel(level)


def describe(exc: BaseException) -> str:
    """``Type: message`` for log fields (redis-py's repr hides the message)."""
    return f"{type(exc).__name__}: {exc}"
