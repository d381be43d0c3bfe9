"""Request slots: GCRA bookings, the departure window, shared throttles, the SQL ledger.

Pure parts run on an injected clock; the shared ledger runs on a real SQLite file with real
processes, since "every worker together stays under the ceiling" is the claim.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from phx_images.net.ledger_sql import SqlLedger
from phx_images.net.ratelimit import (
    MAX_BOOKING_S,
    RECOVERY_S,
    SPACING_MARGIN,
    MemoryLedger,
    PaceRow,
    Paused,
    SlotPacer,
    departure_window,
    effective_rate,
    plan_booking,
    plan_throttle,
)
from phx_images.net.state import MemoryPolicyState


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


def most_in_window(times: list[float], window: float) -> int:
    """Largest number of ``times`` in any half-open window of ``window`` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_bookings_are_consecutive_and_never_overlap() -> None:
    row = PaceRow()
    slots: list[float] = []
    now = 100.0
    for count in (1, 3, 2, 5):
        row, booking = plan_booking(row, now, count, ceiling=2.0, lead=0.0, max_delay=60)
        assert booking.interval == pytest.approx(SPACING_MARGIN / 2.0)
        slots += [booking.start + i * booking.interval for i in range(booking.count)]
        now += 0.1  # asked again before the slots ran out: booked after them
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) == pytest.approx(SPACING_MARGIN / 2.0)


@pytest.mark.parametrize("ceiling", [0.05, 0.1, 0.3, 0.5, 0.9, 1.0, 1.5, 2.0, 6.0, 50.0])
def test_every_ceiling_books_slot_after_slot(ceiling: float) -> None:
    """However slow the site, a caller always gets a slot within its slot length: a booking
    never refuses only because one slot is longer than the look-ahead (a hang once)."""
    row, now, got = PaceRow(), 1000.0, []
    for _ in range(50):
        row, booking = plan_booking(row, now, 3, ceiling=ceiling, lead=0.02, max_delay=120)
        got += [booking.start + i * booking.interval for i in range(booking.count)]
        # come back when the next slot is near, as SlotPacer does after a refusal
        now = booking.start - 0.5 if booking.count == 0 else now + 0.01
        if len(got) >= 5:
            break
    assert len(got) >= 5, f"{ceiling}/s: {len(got)} slots after 50 bookings"
    gaps = [b - a for a, b in itertools.pairwise(got)]
    assert min(gaps) == pytest.approx(SPACING_MARGIN / ceiling)


def test_a_booking_is_capped_so_one_process_cannot_hoard_the_site() -> None:
    _, booking = plan_booking(PaceRow(), 0.0, 1000, ceiling=3.0, lead=0.0, max_delay=60)
    assert booking.count == math.floor(3.0 * MAX_BOOKING_S)
    _, booking = plan_booking(PaceRow(), 0.0, 5, ceiling=0.2, lead=0.0, max_delay=60)
    assert booking.count == 1


@pytest.mark.parametrize("ceiling", [k / 20 for k in range(1, 1001)])
def test_late_departures_still_hold_every_10s_window(ceiling: float) -> None:
    """Each request leaving as late as its slot allows, at the full rate or a throttled one:
    no 10 s window holds more than ceiling x 10 + 1 requests (the simulator's rule)."""
    for rate in (ceiling, ceiling * 0.7, ceiling / 64):
        interval = SPACING_MARGIN / rate
        late = departure_window(interval, ceiling)
        n = int(min(400, 40 / interval + 3))
        departures = [i * interval + late for i in range(n)]
        departures[0] -= late  # the first leaves on time: the tightest case
        assert most_in_window(departures, 10.0) <= ceiling * 10 + 1, (ceiling, rate)


def test_throttle_halves_pauses_and_recovers() -> None:
    row = plan_throttle(PaceRow(), now=10.0, ceiling=4.0, retry_after=3.0)
    assert effective_rate(row, 10.0, 4.0) == 2.0
    assert row.paused_until == 13.0
    _, booking = plan_booking(row, 10.0, 1, ceiling=4.0, lead=0.0, max_delay=60)
    assert booking.start == 13.0  # nobody starts before the Retry-After ends
    row2 = plan_throttle(row, now=10.0, ceiling=4.0, retry_after=None)
    assert effective_rate(row2, 10.0, 4.0) == 1.0
    assert effective_rate(row2, 10.0 + RECOVERY_S / 4, 4.0) == pytest.approx(2.0)  # climbs
    assert effective_rate(row2, 10.0 + 60.0, 4.0) == 4.0  # never above the ceiling
    floor = PaceRow()
    for _ in range(20):
        floor = plan_throttle(floor, 0.0, 4.0, None)
    assert effective_rate(floor, 0.0, 4.0) == pytest.approx(4.0 / 64)


def test_a_pause_longer_than_the_caller_waits_books_nothing() -> None:
    row = plan_throttle(PaceRow(), now=0.0, ceiling=1.0, retry_after=500.0)
    same, booking = plan_booking(row, 1.0, 2, ceiling=1.0, lead=0.0, max_delay=120.0)
    assert booking.count == 0 and same == row


class RoundTripLedger(MemoryLedger):
    """A memory ledger whose bookings yield to the loop, as a database round trip does."""

    async def book(self, *args: object, **kwargs: object):  # type: ignore[override]
        await asyncio.sleep(0)
        return await super().book(*args, **kwargs)  # type: ignore[arg-type]


def test_pacer_sleeps_until_each_slot_and_books_for_all_waiters() -> None:
    clock = FakeClock()
    ledger = RoundTripLedger(clock)
    pacer = SlotPacer("site", ledger, 4.0, clock=clock, sleep=clock.sleep)
    left: list[float] = []

    async def one() -> None:
        await pacer.take()
        left.append(clock.t)

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(4)))

    asyncio.run(main())
    gaps = [b - a for a, b in itertools.pairwise(left)]
    assert len(left) == 4 and min(gaps) >= 1 / 4.0
    assert pacer.bookings <= 3  # four waiters (two slots a booking at 4/s), not four bookings


def test_pacer_forfeits_a_slot_the_loop_woke_too_late_for() -> None:
    clock = FakeClock()
    ledger = MemoryLedger(clock)

    lateness = [0.4]

    async def late_sleep(seconds: float) -> None:
        # a starved event loop: the first wake-up 0.4 s late, then on time
        clock.t += max(0.0, seconds) + (lateness.pop() if lateness else 0.0)

    pacer = SlotPacer("site", ledger, 4.0, clock=clock, sleep=late_sleep)
    asyncio.run(pacer.take())
    assert pacer.forfeited == 1


def test_paused_source_raises_when_the_wait_is_too_long() -> None:
    clock = FakeClock()
    state = MemoryPolicyState(clock=clock, sleep=clock.sleep)
    state.configure("site", 1.0)

    async def main() -> None:
        await state.throttle("site", retry_after=600.0)
        with pytest.raises(Paused):
            await state.acquire("site", max_wait=120.0)
        await state.acquire("site", max_wait=math.inf)  # a patient caller waits it out

    asyncio.run(main())
    assert clock.t >= 1000.0 + 600.0


def test_sql_ledger_books_and_throttles_like_memory(tmp_path: Path) -> None:
    async def main() -> None:
        # in a data folder that does not exist yet (a fresh checkout's first run)
        ledger = SqlLedger(f"sqlite:///{tmp_path / 'fresh' / 'ledger.db'}")
        try:
            a = await ledger.book("s", 3, ceiling=20.0, lead=0.0, max_delay=60)
            b = await ledger.book("s", 1, ceiling=20.0, lead=0.0, max_delay=60)
            assert a.count == 3 and b.start == pytest.approx(a.start + 3 * a.interval)
            assert await ledger.throttle("s", ceiling=20.0, retry_after=None) == 10.0
            c = await ledger.book("s", 1, ceiling=20.0, lead=0.0, max_delay=60)
            assert c.interval == pytest.approx(SPACING_MARGIN / 10.0, rel=0.05)
            assert (await ledger.rows())["s"].version == 4
        finally:
            await ledger.aclose()

    asyncio.run(main())


WORKER = r"""
import asyncio, json, sys, time
from phx_images.net.ledger_sql import SqlLedger
from phx_images.net.state import MemoryPolicyState

async def main(url, n, throttle):
    state = MemoryPolicyState(ledger=SqlLedger(url))
    state.configure("site", 5.0)
    out, throttled = [], []
    async def one(i):
        await state.acquire("site")
        out.append(time.time())
        if throttle and len(out) == 6:
            throttled.append(time.time())
            await state.throttle("site", 2.0)  # a 429 with Retry-After: 2
    await asyncio.gather(*(one(i) for i in range(n)))
    await state.aclose()
    print(json.dumps({"times": out, "throttled": throttled}))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"))
"""


def _run_workers(url: str, n: int, throttle_first: bool) -> list[dict]:
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(n),
                               "1" if throttle_first and i == 0 else "0"],
                              stdout=subprocess.PIPE, text=True) for i in range(3)]
    outs = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        outs.append(json.loads(stdout))
    return outs


@pytest.mark.slow
def test_three_processes_share_one_ceiling(tmp_path: Path) -> None:
    """Three processes, 12 requests each, one 5/s site: together they keep the spacing of one
    process (measured on departure times, which a shared clock on one machine compares)."""
    outs = _run_workers(f"sqlite:///{tmp_path / 'ledger.db'}", 12, throttle_first=False)
    every = sorted(t for out in outs for t in out["times"])
    assert len(every) == 36
    gaps = [b - a for a, b in itertools.pairwise(every)]
    assert min(gaps) >= 1 / 5.0 * 0.5, min(gaps)  # never closer than half the spacing
    assert most_in_window(every, 2.0) <= 5.0 * 2 + 1
    assert all(len(out["times"]) == 12 for out in outs)


@pytest.mark.slow
def test_one_processes_throttle_slows_the_others(tmp_path: Path) -> None:
    """One process sees a 429 with Retry-After: 2 s; the pause is in the shared row, so after
    the slots already booked (at most MAX_AHEAD_S = 1 s of them) no process sends until it
    ends."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    outs = _run_workers(url, 12, throttle_first=True)
    every = sorted(t for out in outs for t in out["times"])
    (throttled_at,) = outs[0]["throttled"]
    quiet = [t for t in every if throttled_at + 1.2 < t < throttled_at + 1.95]
    assert not quiet, [round(t - throttled_at, 2) for t in quiet]
    assert len(every) == 36


def test_a_slow_ledger_round_trip_does_not_forfeit_every_slot() -> None:
    """A 60 ms booking round trip against a 6/s CDN (a departure window of 50 ms): the slots
    must still be usable (once, every one was forfeited and take() never returned)."""

    class SlowLedger(MemoryLedger):
        async def book(self, *args: object, **kwargs: object):  # type: ignore[override]
            await asyncio.sleep(0.06)
            return await super().book(*args, **kwargs)  # type: ignore[arg-type]

    async def main() -> SlotPacer:
        pacer = SlotPacer("cdn", SlowLedger(), 6.0)
        await asyncio.wait_for(asyncio.gather(*(pacer.take() for _ in range(3))), 10)
        return pacer

    pacer = asyncio.run(main())  # raises TimeoutError if every slot was forfeited
    assert pacer.forfeited < pacer.bookings
