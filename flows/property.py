"""The child flow: extract a small batch of properties on whichever worker picks it up.

The parent submits one run of this flow's deployment per batch, so the work pool spreads
properties over every worker on every machine. Within a run ``property_concurrency``
properties go at once on one browser (started once per run, not per property); each
property's sources run side by side, each fetching its photos as soon as its listing is
found, bounded by the per-source tag limits, ``download_concurrency`` and, for every request,
the shared request ledger.
"""

from __future__ import annotations

import asyncio
import os
import socket

from prefect import flow, get_run_logger
from prefect.filesystems import WritableFileSystem
from prefect.results import aresolve_result_storage
from prefect.runtime import flow_run

from flows.engine import current_engine, run_engine
from flows.params import ExtractMode, SourceName
from phx_images.models import Listing, ListingStatus, PhotoRef, Property
from phx_images.pipeline import PhotoFetch, PropertyReport, failed_fetch, known_fetch
from tasks.discover import discover_on
from tasks.photos import fetch_task, usable
from tasks.store import store_property


def worker_name() -> str:
    """The worker's name (set by whoever starts it as PHX_WORKER_NAME), else host and pid."""
    return os.environ.get("PHX_WORKER_NAME") or f"{socket.gethostname()}:{os.getppid()}"


_STORAGE: dict[str, WritableFileSystem] = {}


async def _result_storage(slug: str) -> WritableFileSystem:
    """The download cache's storage, loaded from the API once per process: given the block's
    name instead, every task run would load it again."""
    if slug not in _STORAGE:
        storage = await aresolve_result_storage(slug)
        assert isinstance(storage, WritableFileSystem)
        _STORAGE[slug] = storage
    return _STORAGE[slug]


async def fetch_source(prop: Property, listing: Listing, *, fresh: bool,
                       stored: set[str]) -> list[PhotoFetch]:
    """One source's photos of one property: those the property has stored cost nothing, the
    rest go to one batch task. A cached batch is checked: a photo that failed then, or whose
    blob this store no longer has, is fetched again in a batch that skips the cache."""
    engine = current_engine()
    known = [known_fetch(p) for p in listing.photos if p.best_url in stored]
    wanted = [p for p in listing.photos if p.best_url not in stored]
    if not wanted:
        return known
    settings = engine.settings
    storage = await _result_storage(settings.orchestration.result_storage_block)

    async def run(photos: list[PhotoRef], refresh: bool) -> tuple[list[PhotoFetch], bool]:
        task = fetch_task(listing.source, stale_after_days=settings.images.stale_after_days,
                          result_storage=storage, refresh=refresh)
        state = await task(listing.source, photos, prop.property_hash, settings.store_url,
                           fresh=fresh, return_state=True)
        if not state.is_completed():
            reason = state.message or "fetch failed"
            return [failed_fetch(p, reason) for p in photos], False
        results: list[PhotoFetch] = await state.result()
        if state.name != "Cached":
            return results, False
        return [r.model_copy(update={"cached": True}) for r in results], True

    results, cached = await run(wanted, fresh)
    if cached:
        # a cached batch answers for the same URLs in any order: match by URL
        by_url = {r.url: r for r in results}
        holds = await asyncio.to_thread(
            lambda: {p.best_url: p.best_url in by_url and usable(engine, by_url[p.best_url])
                     for p in wanted})
        again = [p for p in wanted if not holds[p.best_url]]
        if again:
            by_url.update({r.url: r for r in (await run(again, True))[0]})
        results = [by_url[p.best_url].model_copy(update={
            "caption": p.caption, "source_photo_id": p.source_photo_id}) for p in wanted]
    return known + results


async def extract_one(
    prop: Property, sources: list[str], *, fresh: bool, dry_run: bool, run_id: str,
    requester: str,
) -> PropertyReport:
    """Discover on every source and fetch its photos as soon as it answers (a source never
    waits on another's photos), then integrate: one property end to end."""
    logger = get_run_logger()
    engine = current_engine()
    stored: set[str] = set() if fresh or dry_run else await engine.stored_urls(
        prop.property_hash)

    async def one_source(source: str) -> tuple[Listing, list[PhotoFetch]]:
        listing: Listing = await discover_on(source)(source, prop.address)
        detail = f" ({listing.reason})" if listing.reason else ""
        logger.info("%s on %s: %s, %d photos%s", prop.address.full, listing.source,
                    listing.status.value, len(listing.photos), detail)
        if dry_run or listing.status is not ListingStatus.FOUND or not listing.photos:
            return listing, []
        return listing, await fetch_source(prop, listing, fresh=fresh, stored=stored)

    done = await asyncio.gather(*(one_source(s) for s in sources))
    listings = [listing for listing, _ in done]
    if dry_run:
        return PropertyReport.from_discovery(prop, listings, dry_run=True)
    fetches = [f for _, fetched in done for f in fetched]
    report = await store_property(prop, listings, fetches, run_id, requester)
    logger.info("%s: %s", prop.address.full, report.summary_line())
    return report


@flow(name="extract-property", log_prints=True)
async def extract_property(
    properties: list[Property],
    sources: list[SourceName],
    mode: ExtractMode = ExtractMode.INCREMENTAL,
    dry_run: bool = False,
    requester: str = "unknown",
    parent_run_id: str | None = None,
) -> list[PropertyReport]:
    """Extract every property of the batch; one failing property does not stop the others."""
    logger = get_run_logger()
    run_id = parent_run_id or str(flow_run.get_id())
    async with run_engine() as engine:
        gate = asyncio.Semaphore(engine.settings.orchestration.property_concurrency)

        async def one(prop: Property) -> PropertyReport:
            async with gate:
                try:
                    report = await extract_one(
                        prop, [s.value for s in sources], fresh=mode is ExtractMode.FRESH,
                        dry_run=dry_run, run_id=run_id, requester=requester,
                    )
                except Exception as exc:
                    logger.exception("%s failed", prop.address.full)
                    report = PropertyReport.failed(prop, f"{type(exc).__name__}: {exc}")
                report.worker = worker_name()
                await asyncio.to_thread(engine.record_report, run_id, report, requester)
                return report

        return list(await asyncio.gather(*(one(p) for p in properties)))
