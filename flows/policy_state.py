"""Policy state shared across workers and machines through the Prefect server.

The engine's policy layer keeps rate and breaker state behind ``PolicyState``. In a flow run:
- the request rate of each source is bounded across every worker by a Prefect global
  concurrency limit ``rate:<source>`` with slot decay (created by ``phx-images setup``), taken
  with ``strict=True`` so a missing limit fails loudly instead of running unlimited; the
  engine's own adaptive limiter still slows this process further on 429/503;
- circuit-breaker records live in Prefect variables ``phx-breaker-<source>``, so a breaker opened
  by one worker is seen by all; reads are cached for a couple of seconds to keep API traffic low.
"""

from __future__ import annotations

import contextlib
import time

from prefect.concurrency.asyncio import rate_limit
from prefect.variables import Variable

from phx_images.net.state import BreakerRecord, MemoryPolicyState, StaleRecord
from phx_images.settings import Settings

BREAKER_CACHE_S = 2.0


def rate_limit_name(source: str) -> str:
    return f"rate:{source}"


def breaker_variable(source: str) -> str:
    return f"phx-breaker-{source}"


class PrefectPolicyState(MemoryPolicyState):
    """Local adaptive spacing (inherited) plus the cluster-wide ceiling and shared breakers."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self._settings = settings
        self._breakers: dict[str, tuple[float, BreakerRecord]] = {}

    async def acquire(self, source: str, rate: float) -> None:
        await super().acquire(source, rate)
        await rate_limit(rate_limit_name(source), strict=True)

    async def breaker_get(self, source: str) -> BreakerRecord:
        cached = self._breakers.get(source)
        if cached and time.monotonic() - cached[0] < BREAKER_CACHE_S:
            return cached[1]
        raw = await Variable.aget(breaker_variable(source), default=None)
        record = BreakerRecord.from_json(raw) if raw else await super().breaker_get(source)
        self._breakers[source] = (time.monotonic(), record)
        return record

    async def breaker_put(self, source: str, record: BreakerRecord) -> None:
        """Store only over an older record (a check-then-write: Prefect variables have no
        compare-and-swap, so two workers racing within one round trip may both win; the
        probe lease bounds what that costs)."""
        raw = await Variable.aget(breaker_variable(source), default=None)
        stored = BreakerRecord.from_json(raw) if raw else None
        if stored is not None and stored.version >= record.version:
            self._breakers[source] = (time.monotonic(), stored)
            raise StaleRecord(f"{source}: version {record.version} after {stored.version}")
        with contextlib.suppress(StaleRecord):
            await super().breaker_put(source, record)
        self._breakers[source] = (time.monotonic(), record)
        await Variable.aset(breaker_variable(source), record.to_json(), overwrite=True)
