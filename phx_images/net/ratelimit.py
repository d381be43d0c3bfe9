"""Request slots for one site, shared by every process that talks to it. Pure logic plus the
in-process pieces; the shared store is :mod:`phx_images.net.ledger_sql`.

The scheme is GCRA (the generic cell rate algorithm of ATM networks, as in redis-cell): each
rate-limited name keeps a *theoretical arrival time* ``tat``, the start of the next free slot.
A process books ``count`` slots at once, ``start = max(tat, now + lead)`` and
``tat = start + count * interval``, in one atomic update of one row, then hands the slots to
its own requests locally. So the site sees one request per ``interval`` across every worker on
every machine, and the ledger is touched once per batch of requests, not once per request.

Why slots have a deadline: a request must leave early in its own slot, within
``departure_window(interval, ceiling)`` of its start. Slots never overlap, so a 10 s window
holds at most as many requests as slot starts in 10 s plus that window, which is
``floor(10 * ceiling) + 1`` or fewer, whatever the number of workers (``tests/
test_net_ratelimit.py`` checks it for every ceiling from 0.05 to 50 with each request leaving
as late as allowed). A process whose event loop was later than that forfeits the slot and
takes the next one. The window is the slot's margin, widened to 50 ms (at most half a slot)
because a busy 2-core worker wakes its sleepers milliseconds late; two requests then still
leave at least ``interval - 50 ms`` apart.

Why ``interval = SPACING_MARGIN / rate``: the ceiling is judged where requests *arrive*;
the 10 % margin absorbs network and scheduling jitter and leaves the deadline window.

Adaptivity lives in the same row, so a 429, 503 or challenge seen by one worker slows every
worker of that source: the rate halves (never below ``ceiling / 64``), a Retry-After pauses
the name for everyone, and the rate recovers linearly to the ceiling over ``RECOVERY_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Protocol

Clock = Callable[[], float]

#: Slot length over the ceiling's spacing: what absorbs arrival jitter (see module docstring).
SPACING_MARGIN = 1.1
#: Multiplicative decrease on a throttle, and the floor as a fraction of the ceiling.
DECREASE_FACTOR = 0.5
MIN_RATE_FRACTION = 1 / 64
#: Seconds for the rate to climb from zero back to the ceiling after a throttle.
RECOVERY_S = 5.0
#: The most slots one booking takes, in seconds of the ceiling: one process cannot take all
#: of the ``MAX_AHEAD_S`` the ledger hands out at a time.
MAX_BOOKING_S = 0.5
#: No booking starts further ahead than this, whoever asks: the ledger never holds more than
#: about a second of the site's future, so slots booked before a throttle (which still go
#: out) end within that, and a Retry-After holds for every worker after it (tested).
MAX_AHEAD_S = 1.0


@dataclass(frozen=True)
class PaceRow:
    """The shared state of one rate-limited name (one database row)."""

    tat: float = 0.0  # start of the next free slot (ledger clock)
    rate: float = 0.0  # rate set at ``rate_at``; 0: never throttled, the ceiling applies
    rate_at: float = 0.0
    paused_until: float = 0.0  # Retry-After: no slot starts before this
    version: int = 0


@dataclass(frozen=True)
class Booking:
    """Slots ``start + i * interval`` for ``i < count``, in the ledger's clock, booked when the
    ledger's clock read ``now``; or, with ``count == 0``, nothing booked: the next slot is
    more than ``MAX_AHEAD_S`` away (ask again later), or the name is paused beyond the
    caller's patience until ``start``."""

    start: float
    interval: float
    count: int
    now: float
    rate: float


def effective_rate(row: PaceRow, now: float, ceiling: float) -> float:
    """The rate in force at ``now``: the ceiling, or a throttled rate climbing back to it."""
    if row.rate <= 0:
        return ceiling
    recovered = row.rate + (now - row.rate_at) * ceiling / RECOVERY_S
    return max(ceiling * MIN_RATE_FRACTION, min(ceiling, recovered))


def plan_booking(row: PaceRow, now: float, count: int, ceiling: float, lead: float,
                 max_delay: float) -> tuple[PaceRow, Booking]:
    """The row after booking ``count`` slots at ``now``, and the booking (pure)."""
    rate = effective_rate(row, now, ceiling)
    interval = SPACING_MARGIN / rate
    start = max(row.tat, now + lead, row.paused_until)
    count = max(1, min(count, math.floor(ceiling * MAX_BOOKING_S)))
    if start > row.paused_until:  # not waiting out a pause: slots start within MAX_AHEAD_S
        horizon = now + MAX_AHEAD_S - start
        count = min(count, math.floor(horizon / interval) + 1) if horizon >= 0 else 0
    if start - now > max_delay or count < 1:
        return row, Booking(start, interval, 0, now, rate)  # paused, or come back later
    new = replace(row, tat=start + count * interval, version=row.version + 1)
    return new, Booking(start, interval, count, now, rate)


def plan_throttle(row: PaceRow, now: float, ceiling: float,
                  retry_after: float | None) -> PaceRow:
    """The row after a throttle seen at ``now`` (pure): rate halved, optional pause."""
    rate = max(ceiling * MIN_RATE_FRACTION, effective_rate(row, now, ceiling) * DECREASE_FACTOR)
    paused = row.paused_until
    if retry_after is not None and retry_after > 0:
        paused = max(paused, now + retry_after)
    return replace(row, rate=rate, rate_at=now, paused_until=paused, version=row.version + 1)


def departure_window(interval: float, ceiling: float) -> float:
    """How late after its slot's start a request may still leave (see module docstring)."""
    return max(interval - 1.0 / ceiling, min(interval / 2, 0.05))


class Ledger(Protocol):
    """Where :class:`PaceRow` records live: this process (:class:`MemoryLedger`) or a database
    every worker shares (:class:`phx_images.net.ledger_sql.SqlLedger`)."""

    async def book(self, name: str, count: int, *, ceiling: float, lead: float,
                   max_delay: float) -> Booking: ...

    async def throttle(self, name: str, *, ceiling: float, retry_after: float | None) -> float:
        """Record a throttle; return the rate now in force."""
        ...

    async def aclose(self) -> None: ...


class MemoryLedger:
    """The ledger of one process (one event loop: no lock needed)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._rows: dict[str, PaceRow] = {}

    async def book(self, name: str, count: int, *, ceiling: float, lead: float,
                   max_delay: float) -> Booking:
        row, booking = plan_booking(self._rows.get(name, PaceRow()), self._clock(), count,
                                    ceiling, lead, max_delay)
        self._rows[name] = row
        return booking

    async def throttle(self, name: str, *, ceiling: float, retry_after: float | None) -> float:
        now = self._clock()
        row = plan_throttle(self._rows.get(name, PaceRow()), now, ceiling, retry_after)
        self._rows[name] = row
        return effective_rate(row, now, ceiling)

    async def aclose(self) -> None:
        return None


class Paused(Exception):
    """The name is paused (Retry-After) for longer than the caller waits."""

    def __init__(self, remaining: float) -> None:
        super().__init__(f"paused for {remaining:.0f}s (Retry-After)")
        self.remaining = remaining


class SlotPacer:
    """This process's requests for one name: books slots from the ledger for everyone waiting
    (one booking at a time), sleeps each request until its slot, forfeits missed slots.

    ``take`` returns at the moment the request may leave; send it right away.
    """

    def __init__(self, name: str, ledger: Ledger, ceiling: float, *,
                 clock: Clock = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        if ceiling <= 0:
            raise ValueError("ceiling must be > 0")
        self.name = name
        self.ceiling = ceiling
        self.rate = ceiling  # the rate of the last booking (for operators)
        self.forfeited = 0
        self.bookings = 0
        self._ledger = ledger
        self._clock = clock
        self._sleep = sleep
        self._slots: deque[tuple[float, float]] = deque()  # (start, deadline), local clock
        self._epoch = 0  # bumped by a throttle: slots booked before it are given up
        self._woken = asyncio.Event()  # set (and replaced) by a throttle: sleepers rebook
        self._waiting = 0
        self._booking = asyncio.Lock()
        self._lead = 0.02

    async def take(self, max_wait: float = math.inf) -> None:
        """Wait for a slot of this name and return when it starts; ``Paused`` if the name is
        paused for longer than ``max_wait`` seconds."""
        while True:
            epoch, woken = self._epoch, self._woken
            start, deadline = await self._next_slot(max_wait)
            delay = start - self._clock()
            if delay > 0:
                await self._wait(delay, woken)
            if epoch != self._epoch:
                continue  # throttled meanwhile: this slot was booked at the old rate
            if self._clock() <= deadline:
                return
            self.forfeited += 1  # the loop was late: this slot would crowd the next one

    async def _wait(self, delay: float, woken: asyncio.Event) -> None:
        """Sleep ``delay`` seconds, or less if a throttle comes first."""
        if self._sleep is not asyncio.sleep:  # an injected clock (tests): plain sleep
            await self._sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), delay)

    async def _next_slot(self, max_wait: float) -> tuple[float, float]:
        self._waiting += 1
        try:
            while not self._slots:
                async with self._booking:
                    if self._slots:
                        break
                    await self._book(max_wait)
            return self._slots.popleft()
        finally:
            self._waiting -= 1

    async def _book(self, max_wait: float) -> None:
        sent = self._clock()
        booking = await self._ledger.book(self.name, self._waiting, ceiling=self.ceiling,
                                          lead=self._lead, max_delay=max_wait)
        back = self._clock()
        rtt = back - sent
        self._lead = min(1.0, 0.02 + 2 * rtt)  # the next booking starts past our round trip
        if booking.count == 0:
            wait = booking.start - booking.now
            if wait > max_wait:
                raise Paused(wait)
            # the site's next second is booked by others: ask again when it is near
            await self._sleep(max(0.01, wait - MAX_AHEAD_S))
            return
        self.bookings += 1
        self.rate = booking.rate
        # ledger time -> local time, taken at the midpoint of the round trip; starts are moved
        # later and deadlines earlier by half of it, so the mapping error never crowds a slot
        offset = (sent + back) / 2 - booking.now
        window = departure_window(booking.interval, self.ceiling)
        # a slow round trip (the first booking creates the table; compare-and-swap retries)
        # must not close the window: with a start past its deadline every slot would be
        # forfeited, forever
        half = min(rtt / 2, window / 4)
        for i in range(booking.count):
            start = booking.start + i * booking.interval + offset
            self._slots.append((start + half, start + window - half))

    async def throttle(self, retry_after: float | None) -> float:
        """Tell every process of this name to slow down; drop slots not yet used (they were
        booked at the old rate). Returns the rate now in force."""
        self._slots.clear()
        self._epoch += 1
        self._woken.set()
        self._woken = asyncio.Event()
        self.rate = await self._ledger.throttle(self.name, ceiling=self.ceiling,
                                                retry_after=retry_after)
        return self.rate
