"""The scheduled archival: photos no site has shown for long move to cold storage.

Thin: the rules, the order of writes and the report are the engine's
(``phx_images/store/archive.py``). The flow adds what only the orchestrator knows: which
properties an extraction run is working on right now, so the archival (another writer of a
property's manifest) leaves them for next time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.states import Failed, State

from flows.config import load_run_settings
from phx_images.models import Property
from phx_images.store import ImageStore
from phx_images.store.archive import ArchiveReport, archive_old_photos

CHILD_FLOW = "extract-property"  # the flow that writes properties (flows/property.py)
PAGE_SIZE = 200  # flow runs per API read (the API's largest page)


def properties_of(parameters: Iterable[Mapping[str, Any]]) -> set[str]:
    """Property hashes named by extraction runs' ``properties`` parameters."""
    hashes: set[str] = set()
    for params in parameters:
        for raw in params.get("properties") or []:
            try:
                hashes.add(Property.model_validate(raw).property_hash)
            except Exception:
                continue  # not a property: nothing to protect
    return hashes


async def properties_in_flight() -> set[str]:
    """Properties of every extraction child run not finished yet (scheduled ones included:
    they may start while the archival runs).

    Paging over a set that changes while it is read: runs that finish meanwhile leave the
    filtered set, so plain offset pages shift and could skip a run still in flight. So the
    pages are sorted by a stable key (id) and then completed by id: the last queries exclude
    every run already seen (``id.not_any_``, the API has no id range to page from) until one
    returns less than a full page. Every run unfinished both when the read starts and when it
    ends is therefore found; one that finished meanwhile writes nothing any more. Left: a run
    created after the last query (a nightly refresh, a new on-demand run) is not skipped. The
    engine covers that: it never deletes processed copies in the run that archives them, so a
    manifest such a run commits from an older read loses nothing
    (phx_images/store/archive.py). The exclusion list grows with the number of runs in flight
    (one bind parameter each on the server): fine for thousands."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    unfinished = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED,
                  StateType.CANCELLING]
    runs: dict[Any, Any] = {}
    async with get_client() as client:

        async def page(offset: int, exclude: list[Any] | None) -> list[Any]:
            return await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=[CHILD_FLOW])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished)),
                    **({"id": FlowRunFilterId(not_any_=exclude)} if exclude else {})),
                sort=FlowRunSort.ID_DESC, limit=PAGE_SIZE, offset=offset)

        offset = 0
        while True:  # cheap pass: small requests, may miss a run if the set shrinks
            batch = await page(offset, None)
            runs.update((run.id, run) for run in batch)
            offset += len(batch)
            if len(batch) < PAGE_SIZE:
                break
        while offset >= PAGE_SIZE:  # completion: whatever is in flight and not seen yet
            batch = await page(0, sorted(runs))
            runs.update((run.id, run) for run in batch)
            if len(batch) < PAGE_SIZE:
                break
    return properties_of(run.parameters for run in runs.values())


@flow(name="archive-photos",
      description="Move photos no site has shown for long to cold storage (archive/).")
async def archive_photos(older_than_days: float | None = None,
                         dry_run: bool = False) -> ArchiveReport | State:
    """Archive every stored photo whose URLs have all been removed or stale, and last seen,
    for more than ``older_than_days`` (default: the ``archive_after_days`` setting, 90).
    ``dry_run`` only reports what would move. The run fails (with the report) when any
    property could not be archived; the others are archived all the same."""
    logger = get_run_logger()
    settings = await load_run_settings()
    days = (older_than_days if older_than_days is not None
            else settings.orchestration.archive_after_days)
    busy = await properties_in_flight()
    if busy:
        logger.info("left for the next archival, being extracted: %s", ", ".join(sorted(busy)))
    store = ImageStore.from_settings(settings)
    report = await asyncio.to_thread(archive_old_photos, store, older_than_days=days,
                                     dry_run=dry_run, skip=busy)
    logger.info(report.summary_line())
    for key, reasons in report.errors.items():
        for reason in reasons:
            logger.warning("%s: %s", key, reason)
    await acreate_markdown_artifact(markdown=report.markdown(), key="archive-summary",
                                    description=report.summary_line())
    if not report.ok:
        return Failed(message=report.summary_line(), data=report)
    return report
