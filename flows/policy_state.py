"""Policy state shared across workers and machines.

The engine's policy layer keeps request slots and breaker records behind ``PolicyState``. In a
flow run:
- request slots come from the request ledger in the project's database (``PHX_DATABASE_URL``:
  SQLite on one machine, PostgreSQL on several; ``phx_images/net/ledger_sql.py``), so each
  source's ceiling holds across every worker with one database write per batch of requests
  and no Prefect API call per request; a throttle seen by one worker slows them all;
- circuit-breaker records live in Prefect variables ``phx-breaker-<source>``, so a breaker opened
  by one worker is seen by all; reads are cached for a couple of seconds to keep API traffic low.
"""

from __future__ import annotations

import contextlib
import time

from prefect.variables import Variable

from phx_images.net.ledger_sql import SqlLedger
from phx_images.net.state import BreakerRecord, MemoryPolicyState, StaleRecord
from phx_images.settings import Settings

BREAKER_CACHE_S = 2.0


def breaker_variable(source: str) -> str:
    return f"phx-breaker-{source}"


class PrefectPolicyState(MemoryPolicyState):
    """Slots from the shared ledger plus breakers shared through Prefect variables."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(ledger=SqlLedger(settings.database()))
        self._settings = settings
        self._breakers: dict[str, tuple[float, BreakerRecord]] = {}

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
