"""Integration of one property's photos into the store: dedupe, categorize, name, write."""

from __future__ import annotations

from prefect import task

from flows.engine import current_engine
from phx_images.models import Listing, Property
from phx_images.pipeline import PhotoFetch, PropertyReport


@task(name="store-property", task_run_name="store {prop.address.street}")
async def store_property(
    prop: Property, listings: list[Listing], fetches: list[PhotoFetch], run_id: str,
    requester: str,
) -> PropertyReport:
    """Write the deduplicated, named photo set and its manifests atomically (one writer per
    property at a time: the child flow run that owns it)."""
    return await current_engine().integrate(
        prop, listings, fetches, run_id=run_id, requester=requester
    )
