"""Job-control latency: submitting an extraction run and reading its status.

The seeds' targets: submission returns in < 100 ms and a status read takes < 50 ms at the
median. Measured here the way ``phx-images extract --async`` and ``phx-images status`` talk to
the server (one open client: create a run of the on-demand deployment; read a flow run), under
load: a process worker limited to 3 runs executes the submitted runs against the simulator
while we submit 40 runs 0.1 s apart. The baseline in the same run is the server's
``/api/health`` round trip, so the ratios say what the orchestration adds.

    .venv/bin/python -m bench.prefect_latency [--postgres] [--runs 40] [--idle | --split-cores]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

from flows.stack import Stack, free_port

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(api_url: str, runs: int) -> dict[str, list[float]]:
    import httpx
    from prefect.client.orchestration import get_client

    out: dict[str, list[float]] = {"health": [], "submit": [], "status": []}
    async with get_client() as client, httpx.AsyncClient() as http:
        deployment = await client.read_deployment_by_name("extract-photos/on-demand")
        ids = []
        for i in range(runs):
            t0 = time.perf_counter()
            await http.get(f"{api_url}/health")
            out["health"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run = await client.create_flow_run_from_deployment(
                deployment.id, parameters={"csv_path": str(ROOT / "data" / "phx_homes.csv"),
                                           "dry_run": True, "requester": f"bench-{i}"})
            out["submit"].append(time.perf_counter() - t0)
            ids.append(run.id)
            t0 = time.perf_counter()
            await client.read_flow_run(ids[i // 2])
            out["status"].append(time.perf_counter() - t0)
            await asyncio.sleep(0.1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--idle", action="store_true",
                        help="no worker: the server's own cost, without a busy machine")
    parser.add_argument("--split-cores", action="store_true",
                        help="server, database and client on core 0, the worker and its flow "
                        "runs on core 1: two 1-core machines, as in the multi-machine profile")
    args = parser.parse_args()
    from phx_sim import Simulator

    if args.split_cores:
        os.sched_setaffinity(0, {0})  # inherited by the database and server started below
    with contextlib.ExitStack() as stack_ctx:
        database_url = None
        if args.postgres:
            from tests.postgres import postgres_server

            database_url = stack_ctx.enter_context(postgres_server())
        sim = stack_ctx.enter_context(Simulator(seed=7))
        home = Path(stack_ctx.enter_context(tempfile.TemporaryDirectory()))
        stack = Stack(home=home / "prefect", port=free_port(), database_url=database_url)
        stack_ctx.callback(stack.stop)
        env = {**sim.env(), "PHX_STORE_URL": str(home / "store"), "PHX_DATA_DIR": str(home)}
        stack.start_server(timeout_s=120)
        venv = ROOT / ".venv" / "bin"
        stack.run([str(venv / "phx-images"), "setup"], cwd=ROOT, extra_env=env)
        stack.run([str(venv / "prefect"), "--no-prompt", "deploy", "--all"], cwd=ROOT,
                  extra_env=env)
        if not args.idle:
            worker = stack.start_worker("phx-process", 3, ROOT, "bench", extra_env=env)
            if args.split_cores:
                os.sched_setaffinity(worker.pid, {1})  # its flow-run processes inherit it
        os.environ.update({"PREFECT_API_URL": stack.api_url, "PREFECT_HOME": str(stack.home)})
        results = asyncio.run(measure(stack.api_url, args.runs))
    backend = "PostgreSQL" if args.postgres else "SQLite"
    base = statistics.median(results["health"])
    load = "no worker (idle)" if args.idle else "worker --limit 3 busy with them"
    if args.split_cores and not args.idle:
        load += ", on its own core"
    print(f"job control latency, Prefect server on {backend}, {args.runs} runs 0.1 s apart, "
          f"{load}")
    for name in ("health", "submit", "status"):
        values = results[name]
        p50, p95 = statistics.median(values), pct(values, 0.95)
        print(f"  {name:7s} p50 {p50 * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  "
              f"max {max(values) * 1000:7.1f} ms  p50/health {p50 / base:5.1f}x")
    print(f"  targets: submit p50 < 100 ms: {statistics.median(results['submit']) < 0.1}; "
          f"status p50 < 50 ms: {statistics.median(results['status']) < 0.05}")


if __name__ == "__main__":
    main()
