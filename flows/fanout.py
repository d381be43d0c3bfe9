"""Fan-out: one child deployment run per batch of properties, then wait, report progress, sum up.

Child runs go through the work pool, so every worker on every machine takes a share. The parent
only submits, watches (one API read per poll for all children) and aggregates; it holds no
browser and downloads nothing.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    acreate_markdown_artifact,
    acreate_progress_artifact,
    acreate_table_artifact,
    aupdate_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment
from prefect.runtime import flow_run
from prefect.states import Failed, State

from flows.params import ExtractMode, SourceName
from phx_images.models import Property
from phx_images.pipeline import RunSummary, read_run_reports
from phx_images.settings import Settings


def _batches(items: list[Property], size: int) -> list[list[Property]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def fan_out(
    settings: Settings,
    properties: list[Property],
    sources: list[SourceName],
    mode: ExtractMode,
    dry_run: bool,
    requester: str,
    problems: list[str],
) -> RunSummary:
    """Submit the children, follow them to the end, publish artifacts, return the summary."""
    logger = get_run_logger()
    run_id = str(flow_run.get_id())
    orchestration = settings.orchestration
    batches = _batches(properties, orchestration.properties_per_child)
    progress_id = await acreate_progress_artifact(
        progress=0.0, key="extraction-progress",
        description=f"Properties done of {len(properties)}",
    )
    children: dict[UUID, list[Property]] = {}
    for batch in batches:
        child = await run_deployment(  # type: ignore[misc]
            name=orchestration.child_deployment,
            parameters={
                "properties": [p.model_dump(mode="json") for p in batch],
                "sources": [s.value for s in sources],
                "mode": mode.value,
                "dry_run": dry_run,
                "requester": requester,
                "parent_run_id": run_id,
            },
            flow_run_name=batch[0].address.street
            + (f" +{len(batch) - 1}" if len(batch) > 1 else ""),
            timeout=0,
            tags=[f"requester:{requester}"],
        )
        children[child.id] = batch
    logger.info("submitted %d child runs for %d properties", len(children), len(properties))

    done: dict[UUID, str] = {}
    async with get_client() as client:
        while len(done) < len(children):
            await asyncio.sleep(orchestration.poll_interval_s)
            pending = [c for c in children if c not in done]
            runs = []
            for start in range(0, len(pending), 200):  # the API's largest page
                runs += await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        id=FlowRunFilterId(any_=pending[start : start + 200])),
                    limit=200,
                )
            finished_now = 0
            for run in runs:
                if run.id not in done and run.state is not None and run.state.is_final():
                    done[run.id] = run.state.name
                    finished_now += len(children[run.id])
                    if not run.state.is_completed():
                        logger.warning("child run %s ended %s: %s", run.name, run.state.name,
                                       run.state.message or "")
            if finished_now:
                finished = sum(len(children[c]) for c in done)
                await aupdate_progress_artifact(
                    progress_id, progress=100.0 * finished / max(1, len(properties)),
                    description=f"{finished} of {len(properties)} properties done",
                )
    summary = read_run_reports(settings, run_id, properties, problems, child_states=done)
    await acreate_table_artifact(
        table=summary.table_rows(), key="extraction-results",
        description="Per property and source: found, new, duplicate, failed, with reasons",
    )
    await acreate_markdown_artifact(markdown=summary.markdown(), key="extraction-summary",
                                    description="Run summary")
    logger.info(summary.summary_line())
    return summary


def final_state(summary: RunSummary) -> RunSummary | State:
    """The run fails, with the summary as its message, when any property failed outright;
    properties that no site lists are not failures (their reasons are in the table)."""
    if summary.failed_properties():
        return Failed(message=summary.summary_line(), data=summary)
    return summary


async def cancel_children(parent_run_id: UUID) -> int:
    """Cancel every unfinished child of a parent run; returns how many were asked to stop.

    Used from the parent's cancellation hook, which runs in the supervising process: it can
    reach the API but not the flow's objects, and that is all it needs."""
    from prefect.client.schemas.filters import FlowRunFilterParentFlowRunId
    from prefect.states import Cancelled, Cancelling

    asked = 0
    async with get_client() as client:
        runs, page = [], 200  # the API's largest page
        while True:
            batch = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_run_id])
                ),
                limit=page, offset=len(runs),
            )
            runs += batch
            if len(batch) < page:
                break
        for run in runs:
            if run.state is not None and not run.state.is_final():
                # A run no worker has taken yet has nothing to stop: cancel it outright.
                state = Cancelled() if run.state.is_scheduled() else Cancelling()
                await client.set_flow_run_state(run.id, state, force=True)
                asked += 1
    return asked
