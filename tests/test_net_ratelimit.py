"""Adaptive rate and pacer: pure logic driven by a fake clock (no sleeping)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from phx_images.net.ratelimit import AdaptiveRate, Pacer
from phx_images.net.state import MemoryPolicyState


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """Most timestamps within any half-open window [t, t + window)."""
    times = sorted(times)
    best = 0
    j = 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + window:
            j += 1
        best = max(best, j - i)
    return best


def test_adaptive_rate_starts_at_start_rps_and_never_exceeds_max() -> None:
    rate = AdaptiveRate(max_rps=2.0, start_rps=0.5, clock=FakeClock())
    assert rate.rate == 0.5
    for _ in range(100):
        rate.on_success()
    assert rate.rate == 2.0
    assert AdaptiveRate(max_rps=1.0, start_rps=5.0).rate == 1.0  # start above ceiling clamped
    assert AdaptiveRate(max_rps=1.5).rate == 1.5  # no start_rps: start at the ceiling


def test_multiplicative_decrease_and_additive_increase() -> None:
    rate = AdaptiveRate(max_rps=1.0, clock=FakeClock())
    rate.on_throttle()
    assert rate.rate == pytest.approx(0.5)
    rate.on_throttle()
    assert rate.rate == pytest.approx(0.25)
    rate.on_success()
    assert rate.rate == pytest.approx(0.35)  # + max_rps/10
    for _ in range(1000):
        rate.on_throttle()
    assert rate.rate == pytest.approx(1.0 / 64)  # floor: never stops entirely


def test_retry_after_pauses_the_source() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(max_rps=1.0, clock=clock)
    rate.on_throttle(retry_after=30)
    assert rate.pause_remaining() == pytest.approx(30)
    clock.t += 10
    rate.on_throttle(retry_after=5)  # a shorter Retry-After never shortens the pause
    assert rate.pause_remaining() == pytest.approx(20)
    clock.t += 20
    assert rate.pause_remaining() == 0


@pytest.mark.parametrize("ceiling,burst", [(0.5, 1), (1.0, 5), (1.5, 3), (4.0, 10), (3.0, 1)])
def test_pacer_never_exceeds_ceiling_even_in_a_burst(ceiling: float, burst: int) -> None:
    clock = FakeClock()
    pacer = Pacer(ceiling, burst=burst, clock=clock)
    clock.t += 100  # long idle: the bucket is full
    starts = [pacer.reserve(ceiling) for _ in range(60)]  # 60 callers at the same instant
    assert starts == sorted(starts)
    assert max_in_window(starts) <= max(1, int(ceiling))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 1.0 / ceiling - 1e-9
    # long-run average stays at (just under) the ceiling, i.e. the pacer is not absurdly slow
    assert (len(starts) - 1) / (starts[-1] - starts[0]) >= min(ceiling, max(1, int(ceiling))) * 0.9


def test_pacer_follows_a_lower_adaptive_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(4.0, burst=1, clock=clock)
    starts = [pacer.reserve(0.5) for _ in range(5)]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(g == pytest.approx(2.0) for g in gaps)


def test_burst_catches_up_to_the_ceiling_only() -> None:
    clock = FakeClock()
    pacer = Pacer(2.0, burst=4, clock=clock)
    clock.t += 60
    starts = [pacer.reserve(0.25) for _ in range(6)]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # 4 tokens saved while idle go at ceiling spacing (~0.5 s); then the bucket is empty
    # (save what trickled in meanwhile) and the slow rate (one per 4 s) rules
    assert gaps[:3] == pytest.approx([0.55] * 3)
    assert gaps[3] > 2.0
    assert gaps[4] == pytest.approx(4.0)


def test_memory_state_acquire_sleeps_until_the_booked_slot() -> None:
    clock = FakeClock()
    state = MemoryPolicyState(clock=clock, sleep=clock.sleep)
    state.configure("redfin", 2.0, 1)

    async def go() -> list[float]:
        out = []
        for _ in range(5):
            await state.acquire("redfin", 2.0)
            out.append(clock.t)
        return out

    times = asyncio.run(go())
    assert max_in_window(times) <= 2
    assert times[-1] - times[0] >= 4 * 0.5
