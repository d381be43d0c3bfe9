"""Circuit breaker transitions (pure, fake clock) and the record's JSON form."""

from __future__ import annotations

import asyncio
import json

import pytest

from phx_images.net.breaker import BreakerRecord, CircuitBreaker, Denied, Ticket
from phx_images.net.state import MemoryPolicyState, StaleRecord


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def make(failures: int = 3, reset_s: float = 300.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(failures=failures, reset_s=reset_s, probe_lease_s=60, clock=clock), clock


def fail(cb: CircuitBreaker, rec: BreakerRecord, n: int) -> BreakerRecord:
    for _ in range(n):
        ticket, new = cb.admit(rec)
        assert isinstance(ticket, Ticket)
        rec = new or rec
        rec = cb.on_failure(rec, ticket, "HTTP 503") or rec
    return rec


def test_opens_after_n_consecutive_failures_only() -> None:
    cb, _ = make(failures=3)
    rec = fail(cb, BreakerRecord(), 2)
    assert rec.state == "closed" and rec.failures == 2
    ticket, _ = cb.admit(rec)
    rec = cb.on_success(rec, ticket) or rec  # a success resets the count
    assert rec.failures == 0
    rec = fail(cb, rec, 3)
    assert rec.state == "open" and rec.opens == 1


def test_open_denies_until_reset_then_exactly_one_probe() -> None:
    cb, clock = make(failures=1, reset_s=300)
    rec = fail(cb, BreakerRecord(), 1)
    decision, _ = cb.admit(rec)
    assert isinstance(decision, Denied) and decision.retry_at == pytest.approx(clock.t + 300)
    clock.t += 299
    assert isinstance(cb.admit(rec)[0], Denied)
    clock.t += 2
    probe, rec2 = cb.admit(rec)
    assert isinstance(probe, Ticket) and probe.probe_id and rec2 is not None
    assert rec2.state == "half_open"
    # every other caller, while the probe is in flight, is refused
    for _ in range(10):
        other, new = cb.admit(rec2)
        assert isinstance(other, Denied) and new is None


def test_probe_success_closes_and_failure_reopens() -> None:
    cb, clock = make(failures=1, reset_s=10)
    rec = fail(cb, BreakerRecord(), 1)
    clock.t += 11
    probe, rec = cb.admit(rec)
    assert rec is not None
    closed = cb.on_success(rec, probe)
    assert closed is not None and closed.state == "closed" and closed.failures == 0

    probe, rec = cb.admit(rec)  # rec is still half-open: lease held, denied
    assert isinstance(probe, Denied)
    rec0 = fail(cb, BreakerRecord(), 1)
    clock.t += 11
    probe, rec1 = cb.admit(rec0)
    assert rec1 is not None and isinstance(probe, Ticket)
    reopened = cb.on_failure(rec1, probe, "HTTP 500")
    assert reopened is not None and reopened.state == "open"
    assert reopened.retry_at == pytest.approx(clock.t + 10)


def test_only_the_probe_result_counts_in_half_open() -> None:
    cb, clock = make(failures=1, reset_s=10)
    old_ticket = Ticket(generation=0)  # admitted before the breaker opened
    rec = fail(cb, BreakerRecord(), 1)
    clock.t += 11
    _probe, rec = cb.admit(rec)
    assert rec is not None
    assert cb.on_success(rec, old_ticket) is None  # a late success cannot close it
    assert cb.on_failure(rec, Ticket(rec.generation, "someone-else"), "x") is None


def test_stale_probe_is_replaced_after_its_lease() -> None:
    cb, clock = make(failures=1, reset_s=10)
    rec = fail(cb, BreakerRecord(), 1)
    clock.t += 11
    _probe, rec = cb.admit(rec)
    assert rec is not None
    clock.t += 61  # the probing process died: lease ran out
    probe2, rec2 = cb.admit(rec)
    assert isinstance(probe2, Ticket) and rec2 is not None and rec2.probe_id == probe2.probe_id


def test_abandoned_probe_is_released_at_once() -> None:
    cb, clock = make(failures=1, reset_s=10)
    rec = fail(cb, BreakerRecord(), 1)
    clock.t += 11
    probe, rec = cb.admit(rec)
    assert rec is not None and isinstance(probe, Ticket)
    released = cb.on_abandon(rec, probe)
    assert released is not None and released.state == "open"
    assert isinstance(cb.admit(released)[0], Ticket)  # next caller may probe immediately


def test_record_round_trips_through_json() -> None:
    cb, _ = make(failures=1)
    rec = fail(cb, BreakerRecord(), 1)
    raw = rec.to_json()
    assert json.loads(raw)["state"] == "open"
    assert BreakerRecord.from_json(raw) == rec
    assert BreakerRecord.from_dict({**rec.to_dict(), "future_field": 1}) == rec


def test_memory_state_rejects_a_stale_put() -> None:
    state = MemoryPolicyState()

    async def go() -> None:
        rec = await state.breaker_get("zillow")
        cb, _ = make(failures=1)
        a = cb.on_failure(rec, Ticket(0), "x")
        b = cb.on_failure(rec, Ticket(0), "y")
        assert a is not None and b is not None
        await state.breaker_put("zillow", a)
        with pytest.raises(StaleRecord):
            await state.breaker_put("zillow", b)  # both read version 0: second one loses
        assert state.snapshot()["zillow"]["last_error"] == "x"

    asyncio.run(go())
