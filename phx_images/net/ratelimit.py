"""Adaptive per-source request rate under a hard ceiling. Pure logic, injectable clock.

Two separate concerns, on purpose:

* :class:`AdaptiveRate` decides *how fast we should go now* (AIMD): start at ``start_rps``
  (or ``max_rps``), halve on 429/503/challenge, pause the source until a Retry-After expires,
  creep back up additively on success, never above ``max_rps``.
* :class:`Pacer` decides *when the next request may leave* so the ceiling holds even in a
  burst: a token bucket (capacity ``burst``) refilled at the current adaptive rate, plus a
  minimum spacing of ``1/max_rps`` between any two requests, plus at most
  ``max(1, floor(max_rps))`` requests in any one-second window. So ``burst`` only lets us catch
  up to the ceiling after idling; it never lets a second hold more than the ceiling allows
  (the earlier system's fixed sleeps did not bound bursts at all).

Both are synchronous and take ``now`` from an injected clock, so tests step time by hand. The
async waiting lives in :mod:`phx_images.net.state` (``PolicyState.acquire``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]

#: Safety margin on spacing and on the one-second window. The ceiling is judged where the
#: requests *arrive*: connection set-up, TLS and scheduling jitter can delay one request by
#: tens of milliseconds and squeeze the next gap. Going 10 % under the ceiling absorbs about
#: 100 ms of such jitter across a one-second window (measured: 40 ms for a first request).
SPACING_MARGIN = 1.1


@dataclass
class AdaptiveRate:
    """AIMD rate of one source. ``rate`` is requests/second, always in ``[min_rps, max_rps]``."""

    max_rps: float
    start_rps: float | None = None
    clock: Clock = time.monotonic
    decrease_factor: float = 0.5
    increase_step: float | None = None  # default: a tenth of max_rps per success
    min_rps: float | None = None  # default: max_rps / 64
    rate: float = field(init=False)
    paused_until: float = field(init=False, default=0.0)
    throttles: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.max_rps <= 0:
            raise ValueError("max_rps must be > 0")
        self.min_rps = self.min_rps or self.max_rps / 64
        self.increase_step = self.increase_step or self.max_rps / 10
        start = self.start_rps if self.start_rps is not None else self.max_rps
        self.rate = min(max(start, self.min_rps), self.max_rps)

    def on_success(self) -> None:
        """Additive increase, capped at the ceiling."""
        assert self.increase_step is not None
        self.rate = min(self.max_rps, self.rate + self.increase_step)

    def on_throttle(self, retry_after: float | None = None) -> None:
        """Multiplicative decrease; with ``retry_after`` (seconds) pause the whole source."""
        assert self.min_rps is not None
        self.throttles += 1
        self.rate = max(self.min_rps, self.rate * self.decrease_factor)
        if retry_after is not None and retry_after > 0:
            self.paused_until = max(self.paused_until, self.clock() + retry_after)

    def pause_remaining(self) -> float:
        """Seconds until the source may be contacted again (0 when not paused)."""
        return max(0.0, self.paused_until - self.clock())


class Pacer:
    """Slot reservation for one source: token bucket at the adaptive rate, under the ceiling.

    ``reserve(rate)`` books the earliest allowed start time and returns it; the caller sleeps
    until then. Booking (not checking) makes concurrent callers in one event loop safe without
    a lock: each one gets its own later slot.
    """

    def __init__(self, ceiling: float, burst: int = 1, clock: Clock = time.monotonic) -> None:
        if ceiling <= 0:
            raise ValueError("ceiling must be > 0")
        self.ceiling = ceiling
        self.burst = max(1, int(burst))
        self.clock = clock
        self.spacing = SPACING_MARGIN / ceiling
        self.per_second = max(1, math.floor(ceiling))
        self._tokens = float(self.burst)
        self._tokens_at: float | None = None
        self._last: float | None = None
        self._recent: deque[float] = deque()  # booked start times within the last window

    def reserve(self, rate: float) -> float:
        """Book a slot at adaptive ``rate`` (clamped to the ceiling); return its start time."""
        now = self.clock()
        rate = min(max(rate, 1e-9), self.ceiling)
        # Token bucket: refill from the last booking up to ``now`` (or to the booked slot).
        if self._tokens_at is None:
            self._tokens_at = now
        ref = max(now, self._tokens_at)
        self._tokens = min(self.burst, self._tokens + (ref - self._tokens_at) * rate)
        self._tokens_at = ref
        start = ref
        if self._tokens < 1.0:
            start = ref + (1.0 - self._tokens) / rate
        # Hard ceiling: minimum spacing from the previous booking...
        if self._last is not None:
            start = max(start, self._last + self.spacing)
        # ...and never more than ``per_second`` bookings in any one-second window.
        while self._recent and self._recent[0] <= start - 1.0 * SPACING_MARGIN:
            self._recent.popleft()
        if len(self._recent) >= self.per_second:
            start = max(start, self._recent[-self.per_second] + 1.0 * SPACING_MARGIN)
        # Consume one token at ``start``.
        self._tokens = min(self.burst, self._tokens + (start - self._tokens_at) * rate) - 1.0
        self._tokens_at = start
        self._last = start
        self._recent.append(start)
        return start


class DepartureGate:
    """The hard ceiling judged on when requests actually *leave*, not when their slot was due.

    :class:`Pacer` books slots ahead and the caller sleeps until its slot; when the event loop
    is late (a busy or starved process: measured 0.1-0.3 s on a shared 2-core machine) every
    sleeper whose slot passed meanwhile wakes at once and the site saw three requests within
    70 ms at a 6/s ceiling. So right before a request leaves, the same two rules (spacing
    ``SPACING_MARGIN / ceiling``, at most ``max(1, floor(ceiling))`` in any
    ``SPACING_MARGIN``-second window) are checked again against the recorded departures.
    """

    def __init__(self, ceiling: float, clock: Clock = time.monotonic) -> None:
        if ceiling <= 0:
            raise ValueError("ceiling must be > 0")
        self.ceiling = ceiling
        self.clock = clock
        self.spacing = SPACING_MARGIN / ceiling
        self.per_second = max(1, math.floor(ceiling))
        self._recent: deque[float] = deque()  # departures within the last window

    def wait(self) -> float:
        """Seconds until a request may leave (0: now). Pair with :meth:`depart`."""
        now = self.clock()
        while self._recent and self._recent[0] <= now - 1.0 * SPACING_MARGIN:
            self._recent.popleft()
        wait = 0.0
        if self._recent:
            wait = self._recent[-1] + self.spacing - now
        if len(self._recent) >= self.per_second:
            wait = max(wait, self._recent[-self.per_second] + 1.0 * SPACING_MARGIN - now)
        return max(0.0, wait)

    def depart(self) -> None:
        """Record that a request leaves now."""
        self._recent.append(self.clock())
