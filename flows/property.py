"""The child flow: extract a small batch of properties on whichever worker picks it up.

The parent submits one run of this flow's deployment per batch, so the work pool spreads
properties over every worker on every machine. Within a run the properties go one after
another (the browser is reused between them) while each property's sources and photos run
concurrently, bounded by the per-source tag limits and ``download_concurrency``.
"""

from __future__ import annotations

import asyncio
import os
import socket

from prefect import flow, get_run_logger
from prefect.results import aresolve_result_storage
from prefect.runtime import flow_run

from flows.engine import current_engine, run_engine
from flows.params import ExtractMode, SourceName
from phx_images.models import Listing, ListingStatus, PhotoRef, Property
from phx_images.pipeline import PhotoFetch, PropertyReport, failed_fetch, known_fetch
from tasks.discover import discover_on
from tasks.photos import fetch_task
from tasks.store import store_property


def worker_name() -> str:
    """The worker's name (set by whoever starts it as PHX_WORKER_NAME), else host and pid."""
    return os.environ.get("PHX_WORKER_NAME") or f"{socket.gethostname()}:{os.getppid()}"


async def _fetch_all(prop: Property, photos: list[PhotoRef], fresh: bool) -> list[PhotoFetch]:
    """Fetch tasks for the photos this property has not stored yet; stored ones cost nothing.

    A cache hit costs a task run's worth of API calls, so photos the property's manifest
    already lists skip the task altogether; the URL-keyed cache then serves what was fetched
    but never integrated (a cancelled run), photos shared with another property, and workers
    whose store lost a manifest."""
    engine = current_engine()
    orchestration = engine.settings.orchestration
    gate = asyncio.Semaphore(orchestration.download_concurrency)
    stored: set[str] = set() if fresh else await engine.stored_urls(prop.property_hash)
    if all(photo.best_url in stored for photo in photos):
        return [known_fetch(photo) for photo in photos]
    # Loaded once here: given the block's name, every task run would load it from the API.
    storage = await aresolve_result_storage(orchestration.result_storage_block)

    async def one(photo: PhotoRef) -> PhotoFetch:
        if photo.best_url in stored:
            return known_fetch(photo)
        task = fetch_task(
            photo.source,
            stale_after_days=engine.settings.images.stale_after_days,
            result_storage=storage,
            fresh=fresh,
        )
        async with gate:
            state = await task(photo, prop.property_hash, return_state=True)
        if state.is_completed():
            result: PhotoFetch = await state.result()
            # a cache hit downloaded nothing now: say so in the counts
            return result.model_copy(update={"cached": state.name == "Cached"})
        return failed_fetch(photo, state.message or "fetch failed")

    return list(await asyncio.gather(*(one(p) for p in photos)))


async def extract_one(
    prop: Property, sources: list[str], *, fresh: bool, dry_run: bool, run_id: str,
    requester: str,
) -> PropertyReport:
    """Discover on every source, fetch every photo, integrate: one property end to end."""
    logger = get_run_logger()
    listings: list[Listing] = list(
        await asyncio.gather(*(discover_on(s)(s, prop.address) for s in sources))
    )
    for listing in listings:
        detail = f" ({listing.reason})" if listing.reason else ""
        logger.info("%s on %s: %s, %d photos%s", prop.address.full, listing.source,
                    listing.status.value, len(listing.photos), detail)
    photos = [p for lst in listings if lst.status is ListingStatus.FOUND for p in lst.photos]
    if dry_run:
        return PropertyReport.from_discovery(prop, listings, dry_run=True)
    fetches = await _fetch_all(prop, photos, fresh)
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
    reports: list[PropertyReport] = []
    async with run_engine() as engine:
        for prop in properties:
            try:
                report = await extract_one(
                    prop, [s.value for s in sources], fresh=mode is ExtractMode.FRESH,
                    dry_run=dry_run, run_id=run_id, requester=requester,
                )
            except Exception as exc:
                logger.exception("%s failed", prop.address.full)
                report = PropertyReport.failed(prop, f"{type(exc).__name__}: {exc}")
            report.worker = worker_name()
            engine.record_report(run_id, report, requester)
            reports.append(report)
    return reports
