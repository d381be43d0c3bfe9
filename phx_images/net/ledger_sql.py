"""The request ledger every worker shares: one row per rate-limited name in a SQL database.

Why a database of our own and not Prefect's rate limits: Prefect's ``rate_limit()`` costs an
API call (and server writes) per request, and its slot decay is not exact under contention:
a denied request rewrites the limit's ``updated`` time, which restarts the decay clock of the
slots already taken (``prefect/server/models/concurrency_limits_v2.py``,
``bulk_update_denied_slots``), so busy waiters delay each other. Here a booking of several
requests is one compare-and-swap on one row, and the slots it returns never overlap.

The database is SQLite (a file under the data folder) on one machine, PostgreSQL when
workers run on several (``PHX_DATABASE_URL``). Times are the database's own clock, so
machines need not agree on theirs: ``SlotPacer`` maps them with the round trip it measured.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from phx_images.net.ratelimit import Booking, PaceRow, effective_rate, plan_booking, plan_throttle

metadata = sa.MetaData()
pace = sa.Table(
    "phx_pace", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("tat", sa.Float, nullable=False, default=0.0),
    sa.Column("rate", sa.Float, nullable=False, default=0.0),
    sa.Column("rate_at", sa.Float, nullable=False, default=0.0),
    sa.Column("paused_until", sa.Float, nullable=False, default=0.0),
    sa.Column("version", sa.BigInteger, nullable=False, default=0),
)

#: The database's clock in epoch seconds, per dialect (millisecond resolution on SQLite).
_NOW = {
    "sqlite": "(julianday('now') - 2440587.5) * 86400.0",
    "postgresql": "extract(epoch from clock_timestamp())::float8",  # numeric otherwise
}
MAX_CAS_TRIES = 50


def async_url(url: str) -> str:
    """``sqlite:///x.db`` / ``postgresql://...`` with the async driver this project ships."""
    for plain, driver in (("sqlite://", "sqlite+aiosqlite://"),
                          ("postgresql://", "postgresql+asyncpg://")):
        if url.startswith(plain):
            return driver + url[len(plain):]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class SqlLedger:
    """:class:`phx_images.net.ratelimit.Ledger` on a SQL database (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self._engine: AsyncEngine = create_async_engine(self.url, pool_pre_ping=True)
        dialect = self._engine.dialect.name
        if dialect not in _NOW:
            raise ValueError(f"database {dialect!r} is not supported for the request ledger "
                             "(use sqlite:// or postgresql://)")
        if dialect == "sqlite":
            sa.event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
            database = self._engine.url.database
            if database and database != ":memory:":  # a fresh data folder has no file yet
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        self._now = _NOW[dialect]
        self._ready = False
        self._ready_lock = asyncio.Lock()

    async def _ensure(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                try:
                    async with self._engine.begin() as conn:
                        await conn.run_sync(metadata.create_all)
                except (sa.exc.OperationalError, sa.exc.ProgrammingError,
                        sa.exc.IntegrityError):
                    # another process created it between the check and the create
                    async with self._engine.begin() as conn:
                        await conn.run_sync(metadata.create_all)
                self._ready = True

    async def _read(self, name: str) -> tuple[PaceRow, float]:
        async with self._engine.begin() as conn:
            got = (await conn.execute(
                sa.select(pace.c.tat, pace.c.rate, pace.c.rate_at, pace.c.paused_until,
                          pace.c.version, sa.literal_column(self._now).label("now"))
                .where(pace.c.name == name))).first()
            if got is None:
                now = (await conn.execute(sa.select(sa.literal_column(self._now)))).scalar()
                return PaceRow(), float(now or 0.0)
        return (PaceRow(got.tat, got.rate, got.rate_at, got.paused_until, got.version),
                float(got.now))

    async def _swap(self, name: str, old: PaceRow, new: PaceRow) -> bool:
        """Store ``new`` if the row is still ``old`` (its version); False if it moved on."""
        values = {"tat": new.tat, "rate": new.rate, "rate_at": new.rate_at,
                  "paused_until": new.paused_until, "version": new.version}
        async with self._engine.begin() as conn:
            if old.version == 0:
                exists = (await conn.execute(
                    sa.select(pace.c.version).where(pace.c.name == name))).first()
                if exists is None:
                    try:
                        await conn.execute(pace.insert().values(name=name, **values))
                        return True
                    except sa.exc.IntegrityError:
                        return False
            done = await conn.execute(
                pace.update().where(pace.c.name == name, pace.c.version == old.version)
                .values(**values))
            return done.rowcount == 1

    async def book(self, name: str, count: int, *, ceiling: float, lead: float,
                   max_delay: float) -> Booking:
        await self._ensure()
        for _ in range(MAX_CAS_TRIES):
            row, now = await self._read(name)
            new, booking = plan_booking(row, now, count, ceiling, lead, max_delay)
            if booking.count == 0 or await self._swap(name, row, new):
                return booking
        raise RuntimeError(f"request ledger: {name} too contended to book")

    async def throttle(self, name: str, *, ceiling: float, retry_after: float | None) -> float:
        await self._ensure()
        for _ in range(MAX_CAS_TRIES):
            row, now = await self._read(name)
            new = plan_throttle(row, now, ceiling, retry_after)
            if await self._swap(name, row, new):
                return effective_rate(new, now, ceiling)
        raise RuntimeError(f"request ledger: {name} too contended to throttle")

    async def rows(self) -> dict[str, PaceRow]:
        """Every name's row (for operators and tests)."""
        await self._ensure()
        async with self._engine.begin() as conn:
            got = (await conn.execute(sa.select(pace))).all()
        return {r.name: PaceRow(r.tat, r.rate, r.rate_at, r.paused_until, r.version)
                for r in got}

    async def aclose(self) -> None:
        await self._engine.dispose()
