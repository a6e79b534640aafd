"""A file whose age tells the container health check that the delivery loop still turns."""

import logging
import os
import time

log = logging.getLogger(__name__)

MAX_AGE = 30.0
"""Longer than the slowest healthy loop turn (a 5 s backoff plus a 10 s HTTP timeout)."""


class Heartbeat:
    def __init__(self, path: str):
        self.path = path
        self._failed = False

    def beat(self) -> None:
        """Touch the file; a failure is logged once and never stops delivery."""
        try:
            with open(self.path, "a"):
                pass
            os.utime(self.path)
            self._failed = False
        except OSError as exc:
            if not self._failed:
                log.warning("heartbeat write failed path=%s error=%s", self.path, exc)
            self._failed = True

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass


def age(path: str) -> float | None:
    """Seconds since the last beat, or None when there is no heartbeat file."""
    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return None
