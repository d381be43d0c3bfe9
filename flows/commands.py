"""``phx-images extract | status | cancel | setup``: the earlier CLI's verbs on Prefect runs.

``extract`` submits a run of the on-demand deployment (``--async`` prints its id at once;
``--wait``, the default, follows it like the earlier blocking CLI did). ``status`` and ``cancel``
take that id. Prefect is imported inside the commands so other subcommands stay fast.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any
from uuid import UUID

ON_DEMAND = "extract-photos/on-demand"
SOURCES = ("zillow", "redfin", "phoenixmls", "assessor")


def _sources(text: str) -> list[str]:
    names = [s.strip().lower() for s in text.split(",") if s.strip()]
    if names == ["all"]:
        return list(SOURCES)
    unknown = [n for n in names if n not in SOURCES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown source(s) {', '.join(unknown) or '(none)'}; choose from "
            f"{', '.join(SOURCES)} or all"
        )
    return names


def _run_id(text: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a flow run id: {text!r}") from None


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--all", action="store_true", help="every property already known")
    what.add_argument("--address", action="append", help="an address (repeatable)")
    what.add_argument("--csv", help="a CSV in the earlier system's columns")
    parser.add_argument("--sources", type=_sources, default=list(SOURCES),
                        help="comma-separated sources, or all (default)")
    parser.add_argument("--fresh", action="store_true", help="download again, ignore caches")
    parser.add_argument("--dry-run", action="store_true", help="discover only; store nothing")
    parser.add_argument("--requester", default=getpass.getuser(), help="who asks (audit trail)")
    parser.add_argument("--deployment", default=ON_DEMAND)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--async", dest="wait", action="store_false",
                      help="print the run id and return at once")
    mode.add_argument("--wait", dest="wait", action="store_true", default=True,
                      help="follow the run to its end (default)")


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", type=_run_id)
    parser.add_argument("--json", action="store_true")


def add_cancel_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", type=_run_id)


def add_setup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = "Create the work pool, per-source limits and blocks (idempotent)."


def run_extract(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.csv and not Path(args.csv).is_file():
        print(f"phx-images extract: CSV not found: {args.csv}", file=sys.stderr)
        return 2
    parameters: dict[str, Any] = {
        "addresses": args.address,
        "csv_path": str(Path(args.csv).resolve()) if args.csv else None,
        "all_properties": bool(args.all),
        "sources": args.sources,
        "mode": "fresh" if args.fresh else "incremental",
        "dry_run": args.dry_run,
        "requester": args.requester,
    }
    return asyncio.run(_extract(args.deployment, parameters, args.wait))


async def _extract(deployment: str, parameters: dict[str, Any], wait: bool) -> int:
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        run = await run_deployment(deployment, parameters=parameters, timeout=0,  # type: ignore[misc]
                                   as_subflow=False,
                                   tags=[f"requester:{parameters['requester']}"])
    except ObjectNotFound:
        print(f"phx-images extract: deployment {deployment!r} not found; run "
              "`phx-images setup` and `prefect deploy --all` first", file=sys.stderr)
        return 2
    print(run.id, flush=True)
    if not wait:
        return 0
    return await _follow(run.id)


async def _follow(run_id: UUID) -> int:
    from prefect.client.orchestration import get_client

    last = ""
    async with get_client() as client:
        while True:
            info = await _status(client, run_id)
            line = f"{info['state']}: {info.get('progress_text') or ''}".rstrip(": ")
            if line != last:
                print(line, file=sys.stderr, flush=True)
                last = line
            if info["final"]:
                if info.get("summary"):
                    print(info["summary"])
                return 0 if info["state"] == "Completed" else 1
            await asyncio.sleep(2)


async def _status(client: Any, run_id: UUID) -> dict[str, Any]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    run = await client.read_flow_run(run_id)
    artifacts = await client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
    )
    info: dict[str, Any] = {
        "id": str(run.id), "name": run.name,
        "state": run.state.name if run.state else "Unknown",
        "final": bool(run.state and run.state.is_final()),
        "message": run.state.message if run.state else None,
        "start_time": str(run.start_time) if run.start_time else None,
        "end_time": str(run.end_time) if run.end_time else None,
    }
    for artifact in artifacts:
        if artifact.key == "extraction-progress":
            info["progress"] = artifact.data
            info["progress_text"] = f"{float(artifact.data or 0):.0f}% ({artifact.description})"
        elif artifact.key == "extraction-summary":
            info["summary"] = artifact.data
    return info


def run_status(args: argparse.Namespace) -> int:
    async def main() -> int:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        async with get_client() as client:
            try:
                info = await _status(client, args.run_id)
            except ObjectNotFound:
                print(f"phx-images status: no run {args.run_id}", file=sys.stderr)
                return 2
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            print(f"{info['name']} ({info['id']}): {info['state']}")
            if info.get("progress_text"):
                print(f"progress: {info['progress_text']}")
            if info.get("message"):
                print(f"message: {info['message']}")
        return 0

    return asyncio.run(main())


def run_cancel(args: argparse.Namespace) -> int:
    async def main() -> int:
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound
        from prefect.states import Cancelled, Cancelling

        async with get_client() as client:
            try:
                run = await client.read_flow_run(args.run_id)
            except ObjectNotFound:
                print(f"phx-images cancel: no run {args.run_id}", file=sys.stderr)
                return 2
            if run.state and run.state.is_final():
                print(f"{run.name}: already {run.state.name}")
                return 0
            state = Cancelled() if run.state and run.state.is_scheduled() else Cancelling()
            await client.set_flow_run_state(args.run_id, state, force=True)
        print(f"{run.name}: cancelling")
        return 0

    return asyncio.run(main())


def run_setup(args: argparse.Namespace) -> int:
    from flows.setup import run_setup as setup

    for line in asyncio.run(setup()):
        print(line)
    return 0
