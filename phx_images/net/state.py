"""Where rate-limit slots and breaker records live: in memory by default, pluggable.

Why an interface: one process keeps its politeness promises with in-memory state, but several
flow runs on several workers hit the same site at once. The orchestration can then plug in a
shared implementation (Prefect global concurrency limits with slot decay for ``acquire``, a
shared JSON record for the breaker) without the engine importing Prefect.

Contract for implementers:

* ``acquire(source, rate)`` returns when one request of ``source`` may leave, at no more than
  ``rate`` requests/second (``rate`` changes between calls: it is the adaptive rate, always
  <= the source's ``max_rps``).
* optional ``configure(source, ceiling, burst)``: the client calls it once per source, if the
  state has it, to pass the hard ceiling and burst (``MemoryPolicyState`` has it).
* ``breaker_get`` returns the stored :class:`BreakerRecord` (a fresh closed one if none).
* ``breaker_put`` stores it. A shared store should do compare-and-swap on ``version`` (store
  only if ``record.version > stored.version``) and raise :class:`StaleRecord` otherwise; the
  client then re-reads and decides again, so two callers cannot both become the probe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from phx_images.net.breaker import BreakerRecord
from phx_images.net.ratelimit import Clock, Pacer


class StaleRecord(Exception):
    """``breaker_put`` lost a race: the stored record changed since it was read."""


@runtime_checkable
class PolicyState(Protocol):
    """Shared rate-limit slots and breaker records (see module docstring)."""

    async def acquire(self, source: str, rate: float) -> None: ...

    async def breaker_get(self, source: str) -> BreakerRecord: ...

    async def breaker_put(self, source: str, record: BreakerRecord) -> None: ...


class MemoryPolicyState:
    """In-process implementation: one :class:`Pacer` and one record per source.

    ``clock``/``sleep`` are injectable so tests can drive it without real time.
    """

    def __init__(
        self,
        *,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._pacers: dict[str, Pacer] = {}
        self._limits: dict[str, tuple[float, int]] = {}
        self._records: dict[str, BreakerRecord] = {}

    def configure(self, source: str, ceiling: float, burst: int = 1) -> None:
        """Set the hard ceiling (requests/second) and burst of ``source``."""
        self._limits[source] = (ceiling, burst)

    def _pacer(self, source: str, rate: float) -> Pacer:
        ceiling, burst = self._limits.get(source, (rate, 1))
        pacer = self._pacers.get(source)
        if pacer is None or pacer.ceiling != ceiling or pacer.burst != burst:
            old = pacer
            pacer = Pacer(ceiling, burst, clock=self._clock)
            if old is not None:  # limits changed: keep the spacing history
                pacer._last, pacer._recent = old._last, old._recent
            self._pacers[source] = pacer
        return pacer

    async def acquire(self, source: str, rate: float) -> None:
        """Book the next slot for ``source`` and sleep until it."""
        pacer = self._pacer(source, rate)
        start = pacer.reserve(rate)
        delay = start - self._clock()
        if delay > 0:
            await self._sleep(delay)

    async def breaker_get(self, source: str) -> BreakerRecord:
        return self._records.get(source) or BreakerRecord()

    async def breaker_put(self, source: str, record: BreakerRecord) -> None:
        current = self._records.get(source) or BreakerRecord()
        if record.version <= current.version:
            raise StaleRecord(f"{source}: version {record.version} after {current.version}")
        self._records[source] = record

    def snapshot(self) -> dict[str, dict]:
        """Every stored breaker record as a JSON-ready dict (for operators)."""
        return {source: rec.to_dict() for source, rec in self._records.items()}
