"""The engine a flow run works with: one per flow-run process, shared by its tasks.

Tasks run in the flow's event loop (async tasks awaited with ``asyncio.gather``), so one engine,
with its one browser and its HTTP sessions, serves every task of the run. Tasks find it here
instead of taking it as a parameter: it is not serialisable and must not reach cache keys or the
UI's parameter view.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from flows.config import load_run_settings
from flows.policy_state import PrefectPolicyState
from phx_images.pipeline import Engine

_current: ContextVar[Engine | None] = ContextVar("phx_engine", default=None)


def current_engine() -> Engine:
    """The engine of the running flow; a clear error when a task runs outside one."""
    engine = _current.get()
    if engine is None:
        raise RuntimeError("no engine: phx tasks must run inside a flow opened with run_engine()")
    return engine


@asynccontextmanager
async def run_engine() -> AsyncIterator[Engine]:
    """Open the engine for this flow run and always close it (browser included)."""
    settings = await load_run_settings()
    engine = await Engine.open(settings, state=PrefectPolicyState(settings))
    token = _current.set(engine)
    try:
        yield engine
    finally:
        _current.reset(token)
        await engine.aclose()
