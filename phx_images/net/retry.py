"""Retry decisions: which failures are worth another attempt, and how long to wait.

Only transient failures are retried (connection errors, timeouts, 429, 500/502/503/504):
retrying a 401/403/404 just repeats a definite answer, and against an anti-bot wall it makes
things worse. Backoff is exponential with *full jitter* (uniform in ``[0, min(cap, base*2^n)]``)
so several workers that failed together do not come back together; a server's Retry-After is a
floor under that delay. Pure functions plus a seeded RNG: testable without sleeping.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

TRANSIENT_STATUSES: frozenset[int] = frozenset({429, 500, 502, 503, 504})
THROTTLE_STATUSES: frozenset[int] = frozenset({429, 503})


def is_transient_status(status: int) -> bool:
    """True for statuses worth retrying (429 and 500/502/503/504)."""
    return status in TRANSIENT_STATUSES


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent
    or unparsable. Negative results become 0."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by ``max_retries`` and ``max_wait_s``.

    ``max_wait_s`` bounds a single wait: a Retry-After longer than that is not slept through
    inside one fetch (a task would sit idle for minutes); the fetch fails as transient and the
    orchestration reschedules it.
    """

    max_retries: int = 3
    base_s: float = 0.5
    cap_s: float = 30.0
    max_wait_s: float = 120.0
    rng: random.Random = field(default_factory=random.Random)

    def should_retry(self, retries_done: int) -> bool:
        """True while another retry is allowed (``retries_done`` retries already made)."""
        return retries_done < self.max_retries

    def backoff(self, retries_done: int) -> float:
        """Full-jitter delay before retry number ``retries_done + 1``."""
        ceiling = min(self.cap_s, self.base_s * (2**retries_done))
        return self.rng.uniform(0.0, ceiling)

    def delay(self, retries_done: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before the next attempt, or None if the wait would exceed
        ``max_wait_s`` (give up now rather than idle)."""
        wait = self.backoff(retries_done)
        if retry_after is not None:
            wait = max(wait, retry_after)
        if wait > self.max_wait_s:
            return None
        return wait
