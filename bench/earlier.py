"""The earlier system's schedule on today's engine: the baseline of ``bench/e2e.py``.

What the earlier command-line system did (``shared/notes/sources-and-earlier-system.md``,
"Concurrency"): 3 properties at once, the sources of a property one after another, the
downloads of a source one after another, a new browser for every property and source. Here
that schedule drives the same engine the flows use (``phx_images.pipeline.Engine``), so the
comparison is about the schedule and nothing else:

* a new ``Engine`` (hence a new ``PolicyClient``: new HTTP sessions, a new Chromium when the
  source needs one) per property and source, closed after that source;
* every request still goes through the policy layer with the same ceilings; the engines share
  one in-process policy state, so the three properties at once stay under each site's
  ceiling together, as ours do (the earlier system's fixed sleeps were per process and are not
  reproduced: politeness is held equal, only the schedule differs);
* integration (dedup, naming, manifest) and the run record as the flows do them, once per
  property after its last source; no Prefect anywhere.
"""

from __future__ import annotations

import asyncio

from phx_images.models import Listing, ListingStatus, Property
from phx_images.net.state import MemoryPolicyState
from phx_images.pipeline import Engine, PhotoFetch, PropertyReport
from phx_images.settings import Settings

#: The earlier system's property concurrency.
EARLIER_PROPERTIES_AT_ONCE = 3


async def _one_property(settings: Settings, state: MemoryPolicyState, prop: Property,
                        sources: list[str], run_id: str, requester: str) -> PropertyReport:
    listings: list[Listing] = []
    fetches: list[PhotoFetch] = []
    for source in sources:  # sources one after another, a new "browser" for each
        engine = await Engine.open(settings, state=state)
        try:
            listing = await engine.discover(source, prop.address)
            listings.append(listing)
            if listing.status is ListingStatus.FOUND:
                for photo in listing.photos:  # downloads one after another
                    fetches.append(await engine.fetch_photo(prop.property_hash, photo))
        finally:
            await engine.aclose()
    engine = await Engine.open(settings, state=state)
    try:
        report = await engine.integrate(prop, listings, fetches, run_id=run_id,
                                        requester=requester)
        await asyncio.to_thread(engine.record_report, run_id, report, requester)
        return report
    finally:
        await engine.aclose()


async def earlier_schedule(settings: Settings, properties: list[Property], sources: list[str],
                           *, at_once: int = EARLIER_PROPERTIES_AT_ONCE,
                           run_id: str = "bench-earlier",
                           requester: str = "bench") -> list[PropertyReport]:
    """Extract ``properties`` on the earlier system's schedule; one report per property (a
    property that raised gets a failed report, as in the flows)."""
    state = MemoryPolicyState()
    gate = asyncio.Semaphore(at_once)

    async def one(prop: Property) -> PropertyReport:
        async with gate:
            try:
                return await _one_property(settings, state, prop, sources, run_id, requester)
            except Exception as exc:  # a benchmark keeps going, and says why
                return PropertyReport.failed(prop, f"{type(exc).__name__}: {exc}")

    try:
        return list(await asyncio.gather(*(one(p) for p in properties)))
    finally:
        await state.aclose()
