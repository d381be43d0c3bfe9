"""Discovery of one property's listing on one source, as a task tagged ``source:<name>``.

The tag carries the per-source concurrency limit (created by ``phx-images setup``), so however
many workers run, no more than the configured number of discoveries hit one site at once.
"""

from __future__ import annotations

from prefect import task

from flows.engine import current_engine
from phx_images.address import Address
from phx_images.models import Listing


def source_tag(source: str) -> str:
    return f"source:{source}"


@task(name="discover-listing", task_run_name="discover {source}: {address.street}", retries=1,
      retry_delay_seconds=10)
async def discover_listing(source: str, address: Address) -> Listing:
    """Find the listing, its facts and photo URLs (the engine never raises for expected
    outcomes; a retry here only covers a crash of the adapter itself)."""
    return await current_engine().discover(source, address)


def discover_on(source: str):
    """The discovery task carrying its source's concurrency tag."""
    return discover_listing.with_options(tags=[source_tag(source)])
