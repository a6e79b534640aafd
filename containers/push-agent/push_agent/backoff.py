"""Exponential backoff with jitter, shared by every retry loop of the agent."""

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    """Delays of ``first * 2**n`` capped at ``cap``, each shortened by up to ``jitter``.

    Jitter spreads the retries of the replicas of one instance so a recovering nginx or
    Redis is not hit by all of them in the same millisecond.
    """

    first: float = 0.05
    cap: float = 5.0
    jitter: float = 0.25
    attempt: int = 0

    def next_delay(self) -> float:
        """Count one more failed attempt and return how long to wait before the next one."""
        self.attempt += 1
        delay = min(self.cap, self.first * 2 ** min(self.attempt - 1, 30))
        return delay * (1 - self.jitter * random.random())

    def reset(self) -> None:
        self.attempt = 0
