"""Where request slots and breaker records live: this process by default, pluggable.

Why an interface: one process keeps its politeness promises on its own, but several flow runs
on several workers hit the same site at once. The orchestration then plugs in a ledger every
worker shares (``phx_images.net.ledger_sql.SqlLedger``) and a shared breaker store, and the
engine stays free of any orchestrator.

Contract for implementers:

* ``configure(source, ceiling)``: the client calls it once per source with the hard ceiling.
* ``acquire(source, max_wait)`` returns at the moment one request of ``source`` may leave,
  under the ceiling across everyone sharing the state (``ratelimit.Paused`` when the source is
  paused for longer than ``max_wait``); ``throttle(source, retry_after)`` slows everyone down
  after a 429, 503 or challenge and returns the rate now in force; ``rate(source)`` is the
  last rate seen (for metrics).
* ``breaker_get`` returns the stored :class:`BreakerRecord` (a fresh closed one if none).
* ``breaker_put`` stores it. A shared store should do compare-and-swap on ``version`` (store
  only if ``record.version > stored.version``) and raise :class:`StaleRecord` otherwise; the
  client then re-reads and decides again, so two callers cannot both become the probe.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from phx_images.net.breaker import BreakerRecord
from phx_images.net.ratelimit import Clock, Ledger, MemoryLedger, SlotPacer


class StaleRecord(Exception):
    """``breaker_put`` lost a race: the stored record changed since it was read."""


@runtime_checkable
class PolicyState(Protocol):
    """Shared request slots and breaker records (see module docstring)."""

    def configure(self, source: str, ceiling: float) -> None: ...

    async def acquire(self, source: str, max_wait: float = math.inf) -> None: ...

    async def throttle(self, source: str, retry_after: float | None) -> float: ...

    def rate(self, source: str) -> float | None: ...

    async def breaker_get(self, source: str) -> BreakerRecord: ...

    async def breaker_put(self, source: str, record: BreakerRecord) -> None: ...


class MemoryPolicyState:
    """Slots from a ledger (this process's own by default) and breaker records in memory.

    ``clock``/``sleep`` are injectable so tests can drive it without real time.
    """

    def __init__(
        self,
        *,
        ledger: Ledger | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.ledger: Ledger = ledger or MemoryLedger(clock)
        self._ceilings: dict[str, float] = {}
        self._pacers: dict[str, SlotPacer] = {}
        self._records: dict[str, BreakerRecord] = {}

    def configure(self, source: str, ceiling: float) -> None:
        """Set the hard ceiling (requests/second) of ``source``."""
        self._ceilings[source] = ceiling
        pacer = self._pacers.get(source)
        if pacer is not None and pacer.ceiling != ceiling:
            del self._pacers[source]

    def pacer(self, source: str) -> SlotPacer:
        pacer = self._pacers.get(source)
        if pacer is None:
            if source not in self._ceilings:
                raise KeyError(f"{source}: no ceiling configured")
            pacer = SlotPacer(source, self.ledger, self._ceilings[source], clock=self._clock,
                              sleep=self._sleep)
            self._pacers[source] = pacer
        return pacer

    async def acquire(self, source: str, max_wait: float = math.inf) -> None:
        """Wait for the next slot of ``source`` and return when it starts."""
        await self.pacer(source).take(max_wait)

    async def throttle(self, source: str, retry_after: float | None) -> float:
        return await self.pacer(source).throttle(retry_after)

    def rate(self, source: str) -> float | None:
        pacer = self._pacers.get(source)
        return pacer.rate if pacer is not None else None

    async def aclose(self) -> None:
        await self.ledger.aclose()

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
