"""When to try a request again, and how long to wait first.

One policy serves the sync and the async clients and the subscriber's reconnects, so
the rules live here only: 429 and 503 are retried (the server applied nothing), so is a
connection that never reached the server; a connection that broke after sending is
retried only for idempotent requests. Delays grow exponentially with jitter, honour
``Retry-After``, and stop at ``max_attempts`` or before ``max_elapsed`` seconds.
"""

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pushaas.errors import ConnectionFailed, PushaasError, RateLimited, Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the retries of one call; ``RetryPolicy(max_attempts=1)`` never retries."""

    max_attempts: int = 5
    max_elapsed: float = 30.0
    base_delay: float = 0.25
    max_delay: float = 8.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_elapsed < 0 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("delays must be >= 0 and max_delay >= base_delay")

    def start(self) -> "Backoff":
        """The retry state of one call, started now."""
        return Backoff(self)


def retryable(error: PushaasError, idempotent: bool) -> bool:
    """Whether sending the same request again can neither fail worse nor apply it twice."""
    if isinstance(error, RateLimited | Unavailable):
        return True
    if isinstance(error, ConnectionFailed):
        return idempotent or not error.maybe_delivered
    return False


class Backoff:
    """Counts the attempts of one call and gives the delay before the next one."""

    def __init__(self, policy: RetryPolicy):
        self.policy = policy
        self.attempt = 1
        self.started = policy.clock()

    def next_delay(self, error: PushaasError, idempotent: bool) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up now."""
        policy = self.policy
        if not retryable(error, idempotent) or self.attempt >= policy.max_attempts:
            return None

        delay = self._delay(error.retry_after)
        elapsed = policy.clock() - self.started
        if elapsed + delay > policy.max_elapsed:
            log.info("retry budget spent attempt=%d elapsed=%.2f wanted_delay=%.2f",
                     self.attempt, elapsed, delay)
            return None

        log.info("retrying error=%s status=%s attempt=%d max_attempts=%d delay=%.2f",
                 type(error).__name__, error.status, self.attempt, policy.max_attempts, delay)
        self.attempt += 1
        return delay

    def _delay(self, retry_after: float | None) -> float:
        """Equal jitter: half the exponential step for sure, half at random.

        The sure half keeps clients from retrying at once in a herd; the random half
        spreads them. The server's ``Retry-After`` is a floor, never shortened.
        """
        policy = self.policy
        step = min(policy.max_delay, policy.base_delay * 2.0 ** (self.attempt - 1))
        jittered = step / 2 + policy.rng.uniform(0, step / 2)
        return max(jittered, retry_after or 0.0)
