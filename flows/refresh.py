"""The scheduled refresh: re-extract every known property not checked for a while."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.states import State

from flows.config import load_run_settings
from flows.fanout import fan_out, final_state
from flows.params import ALL_SOURCES, ExtractMode, SourceName
from phx_images.pipeline import RunSummary, stale_properties


@flow(name="refresh-photos", description="Re-extract properties not checked recently.")
async def refresh_photos(
    max_age_hours: float | None = None,
    sources: list[SourceName] = ALL_SOURCES,
    requester: str = "scheduler",
) -> RunSummary | State | None:
    """Pick properties whose last check is older than ``max_age_hours`` (default from
    settings) and extract them incrementally: new photos are added, removed ones marked."""
    logger = get_run_logger()
    settings = await load_run_settings()
    age = max_age_hours or settings.orchestration.refresh_max_age_hours
    properties = stale_properties(settings, max_age_hours=age)
    if not properties:
        logger.info("every known property was checked within %.1f h; nothing to do", age)
        return None
    logger.info("%d properties not checked within %.1f h", len(properties), age)
    summary = await fan_out(settings, properties, list(sources), ExtractMode.INCREMENTAL,
                            False, requester, [])
    return final_state(summary)
