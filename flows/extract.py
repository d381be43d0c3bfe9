"""The on-demand extraction flow: what a user runs from the UI or ``prefect deployment run``."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.flows import Flow
from prefect.states import State

from flows.config import load_run_settings
from flows.fanout import cancel_children, fan_out, final_state
from flows.params import ALL_SOURCES, ExtractMode, SourceName
from phx_images.pipeline import RunSummary, known_properties
from phx_images.properties import PropertyList, from_addresses, load_csv


async def _cancel_children_hook(flow: Flow, flow_run: FlowRun, state: State) -> None:
    """On cancellation, stop the child runs at once instead of waiting for the server's
    periodic clean-up. Runs in the supervising process (the worker), so it only uses the API."""
    await cancel_children(flow_run.id)


def resolve_properties(
    addresses: list[str] | None, csv_path: str | None, all_properties: bool, settings: object
) -> PropertyList:
    """Exactly one way of naming properties; anything else is a clear error."""
    chosen = [bool(addresses), bool(csv_path), all_properties]
    if sum(chosen) != 1:
        raise ValueError(
            "give exactly one of: addresses, csv_path, all_properties=true "
            f"(got addresses={bool(addresses)}, csv_path={csv_path!r}, "
            f"all_properties={all_properties})"
        )
    if addresses:
        return from_addresses(addresses)
    if csv_path:
        return load_csv(csv_path)
    return known_properties(settings)  # type: ignore[arg-type]


@flow(
    name="extract-photos",
    description="Find every listing photo of the given properties on every source, "
    "deduplicate, name, categorize and store them.",
    on_cancellation=[_cancel_children_hook],
    on_crashed=[_cancel_children_hook],
)
async def extract_photos(
    addresses: list[str] | None = None,
    csv_path: str | None = None,
    all_properties: bool = False,
    sources: list[SourceName] = ALL_SOURCES,
    mode: ExtractMode = ExtractMode.INCREMENTAL,
    dry_run: bool = False,
    requester: str = "unknown",
) -> RunSummary | State:
    """Extract photos for addresses, a CSV of properties, or every property already known.

    Fans out one child run per property (or small batch) through the child deployment, so the
    work is spread over every worker in the pool; waits, reports progress and sums up.
    """
    logger = get_run_logger()
    settings = await load_run_settings()
    listed = resolve_properties(addresses, csv_path, all_properties, settings)
    for problem in listed.problems:
        logger.warning("skipped: %s", problem)
    if not listed.properties:
        raise ValueError("no usable property in the input: " + "; ".join(listed.problems[:5]))
    if not sources:
        raise ValueError("no source selected")
    logger.info("%d properties, sources %s, mode %s%s, requested by %s",
                len(listed.properties), ", ".join(s.value for s in sources), mode.value,
                " (dry run)" if dry_run else "", requester)
    summary = await fan_out(settings, listed.properties, list(sources), mode, dry_run,
                            requester, listed.problems)
    return final_state(summary)
