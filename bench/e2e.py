"""End-to-end throughput (issue #9): the real deployment path against the politeness bound.

    .venv/bin/python -m bench.e2e [--quick] [--sizes sample,100] [--scale 100,1000]
                                  [--out bench/results/e2e-<date>.json]

For each size (``sample``: the 35 rows of the simulator's sample CSV; ``sample:K``: its first K
rows; ``N``: N generated properties of 3 photos each) against one simulator (a separate
process; faults off, its default latency plus ``--handshake-ms`` (40) of connection set-up on
every site and CDN, standing in for real TCP + TLS):

* **ours**: a Prefect server (SQLite, the embedded default), ``phx-images setup``,
  ``prefect deploy --all``, ONE process worker ``--limit 3`` (as ``make demo``), one run of
  ``extract-photos/on-demand`` over the CSV, timed from the submit API call to the final
  state; fresh store, result storage and request ledger, simulator stats reset;
* **politeness bound** of that run: for each rate limit (each source's pages, each photo
  CDN), the requests the simulator served for it over its ceiling; the largest. Target:
  wall / bound <= 1.25;
* **no Prefect**: the same engine over the same properties with the same ceilings in this
  process, shaped like the flows (batches of ``properties_per_child``, ``property_concurrency``
  at a time in each, as many batches at once as the worker runs children (limit - 1: the
  parent holds a slot), one ``Engine`` per batch, the per-source tag limits, each source
  fetching its photos as soon as its listing is found, ``download_concurrency`` per source,
  one shared policy state standing in for the request ledger), into a fresh store. Prefect's
  share = (ours - no Prefect) / ours. Target <= 10 %;
* **rerun**: the same on-demand run again over the same store: it must download nothing (no
  CDN request at all); its wall / its own bound (its page requests only);
* **baseline** (for a ``sample`` size): the earlier system's schedule (``bench/earlier.py``)
  over the same properties; reported as baseline wall / ours.

``--scale 100,1000``: one on-demand run over each number of generated properties on a Prefect
server on PostgreSQL (``tests/postgres.py``; ``scripts/setup.sh --postgres`` installs it), a
fresh server and worker for each, with the ceilings raised (``--scale-max-rps`` 50 for pages,
``--scale-asset-max-rps`` 200 for CDNs) so orchestration dominates. Reported: seconds per
property, the prefect database's committed transactions per property
(``pg_stat_database.xact_commit``; read after 11 s of quiet, as idle backends flush their
counters up to 10 s late; the idle rate is measured and shown too), and the peak memory
(``VmHWM``, sampled from /proc) of the server, the worker and the flow-run processes the
worker starts (the parent run and the property runs, reported apart; Chromium, their child,
in the tree figure); none should grow from the smallest size to the largest.

The scale pass's request ledger is a SQLite file in the run's data folder by default (one
machine); ``--scale-ledger postgres`` puts it in the ``phx`` database of the same PostgreSQL
server, as the multi-machine profile does.

A run whose figures would mislead is flagged, not reported as fast: a property that failed, a
(property, source) discovery that failed or was blocked (the run still ends Completed), a first
run that downloaded nothing. Each Prefect run also records where its time went, from the
server's timestamps (the parent's wait for the worker, which polls every
``PREFECT_WORKER_QUERY_SECONDS`` = 2 s (``flows/stack.py``) unless ``--worker-poll-s``; the
children's waits and run times; the parent's tail). Memory "tree" figures add up the VmRSS
of a process and its descendants, shared pages counted in each.

Every run has a timeout; every process started is stopped by its pid (``flows/stack.py``);
logs stay under ``.run/bench-e2e/<stamp>/``; stores are deleted after they are measured unless
``--keep``. The JSON (machine, date, every figure) goes to ``--out``; a markdown table is
printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.earlier import earlier_schedule
from flows.stack import Proc, Stack, free_port, spawn
from phx_images.models import ListingStatus, Property
from phx_images.net.state import MemoryPolicyState
from phx_images.pipeline import (
    Engine,
    PhotoFetch,
    PropertyReport,
    known_fetch,
    read_run_reports,
)
from phx_images.properties import load_csv
from phx_images.settings import PHOTO_SOURCES, SOURCE_NAMES, Settings

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SIM_CACHE = ROOT / "data" / "sim-cache"
SOURCES = list(SOURCE_NAMES)  # the on-demand deployment's default: every source
WORKER_LIMIT = 3  # as make demo
EXTRA_PHOTOS = 3
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
TARGET_WALL_OVER_BOUND = 1.25
TARGET_PREFECT_SHARE = 0.10
MEMORY_GROWTH_LIMIT = 1.25  # "does not grow": peak at the largest size <= 1.25 x the smallest
PG_SETTLE_S = 11.0


def log(message: str) -> None:
    print(f"[e2e {datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------- machine, sizes


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"nproc": os.cpu_count(),
                            "usable_cpus": len(os.sched_getaffinity(0)),
                            "python": platform.python_version(), "platform": platform.platform()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_mib"] = round(int(line.split()[1]) / 1024)
    info["load_average_at_start"] = list(os.getloadavg())
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        info["prefect"] = version("prefect")
    with contextlib.suppress(Exception):
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        info["git_commit"] = head + ("+dirty" if dirty else "")
    return info


@dataclass
class Size:
    """``sample`` (the 35 sample rows), ``sample:K`` (the first K) or ``N`` generated."""

    label: str
    extra: int = 0  # generated properties the simulator must carry
    first: int | None = None  # sample: only the first K rows

    @property
    def slug(self) -> str:
        return self.label.replace(":", "-")

    @property
    def is_sample(self) -> bool:
        return self.extra == 0

    @classmethod
    def parse(cls, text: str) -> Size:
        text = text.strip()
        if text == "sample":
            return cls("sample")
        if text.startswith("sample:"):
            k = int(text.split(":", 1)[1])
            if k < 1:
                raise ValueError(f"bad size {text!r}")
            return cls(text, first=k)
        n = int(text)
        if n < 1:
            raise ValueError(f"bad size {text!r}")
        return cls(text, extra=n)


def parse_list(text: str | None) -> list[str]:
    if not text or text.strip().lower() in ("none", "no", "0", "-"):
        return []
    return [t for t in (x.strip() for x in text.split(",")) if t]


def size_csv(size: Size, extra_in_sim: int) -> str:
    """The CSV text of a size (the simulator's own CSV, cut to the size's rows)."""
    from phx_sim.catalog import load_csv_text

    text = load_csv_text(7, SIM_CACHE, extra_in_sim, EXTRA_PHOTOS)
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    if size.is_sample:
        sample_rows = len(body) - extra_in_sim
        chosen = body[:sample_rows][: size.first or sample_rows]
    else:
        generated = body[len(body) - extra_in_sim:]
        chosen = generated[: size.extra]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([header, *chosen])
    return out.getvalue()


# ---------------------------------------------------------------------------- the simulator


class SimProc:
    """``phx-sim`` as its own process (so it never shares a GIL with what is measured)."""

    def __init__(self, workdir: Path, extra: int, handshake_ms: float) -> None:
        self.workdir = workdir
        self.extra = extra
        self.handshake_ms = handshake_ms
        self.proc: Proc | None = None
        self.env: dict[str, str] = {}
        self.control = ""

    def start(self, timeout_s: float = 900) -> SimProc:
        env_file = self.workdir / "sim.env"
        faults = {s: {"handshake_ms": self.handshake_ms} for s in SOURCE_NAMES} \
            if self.handshake_ms else {}
        argv = [sys.executable, "-m", "phx_sim.cli", "--port", "0", "--cache-dir", str(SIM_CACHE),
                "--write-env", str(env_file), "--faults", json.dumps(faults)]
        if self.extra:
            argv += ["--extra-properties", str(self.extra), "--extra-photos", str(EXTRA_PHOTOS)]
        log_path = self.workdir / f"simulator-{self.extra}.log"
        self.proc = spawn("simulator", argv, log_path, cwd=ROOT)
        deadline = time.monotonic() + timeout_s
        while True:
            text = log_path.read_text(errors="replace") if log_path.exists() else ""
            lines = text.splitlines()
            if "ready" in lines:
                break
            if not self.proc.alive():
                raise RuntimeError(f"simulator exited early:\n{self.proc.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"simulator not ready after {timeout_s:.0f}s")
            time.sleep(0.3)
        for line in lines:
            name, _, url = line.partition(" ")
            if name == "control":
                self.control = url.strip().rstrip("/")
        for line in env_file.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                self.env[key.strip()] = "".join(shlex.split(value))
        if not self.control:
            self.control = self.env["PHX_ASSESSOR__BASE_URL"].rstrip("/")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace_s=10)

    def get(self, path: str, timeout_s: float = 120) -> Any:
        with urllib.request.urlopen(self.control + path, timeout=timeout_s) as response:
            return json.loads(response.read())

    def reset_stats(self) -> None:
        request = urllib.request.Request(self.control + "/_sim/stats/reset", method="POST",
                                         data=b"")
        with urllib.request.urlopen(request, timeout=30):
            pass

    def stats(self, ceilings: dict[str, float]) -> dict[str, Any]:
        query = urllib.parse.urlencode({"ceilings": json.dumps(ceilings)})
        return self.get(f"/_sim/stats?{query}")

    def warm(self, addresses: set[str], threads: int = 4) -> int:
        """Fetch every best photo of these properties once, so the simulator's lazy renders
        (cached on disk) are not paid inside the first measured run."""
        import httpx

        truth = self.get("/_sim/truth", timeout_s=300)
        photo_ids = {pid for p in truth["properties"] if p["full_address"] in addresses
                     for pid in p["photo_ids"]}
        urls = sorted({u for ph in truth["photos"] if ph["id"] in photo_ids
                       for u in (ph.get("best_per_site") or {}).values()})
        local = threading.local()

        def one(url: str) -> None:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(timeout=120)
            client.get(url).raise_for_status()

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, urls))
        return len(urls)


def ceilings_of(settings: Settings) -> dict[str, float]:
    """Stats name -> configured ceiling (requests/s): pages per source, CDN per photo source."""
    out = {s: settings.source(s).max_rps for s in SOURCE_NAMES}
    out.update({f"{s}_photos": settings.source(s).asset_max_rps for s in PHOTO_SOURCES})
    return out


def politeness(stats: dict[str, Any], ceilings: dict[str, float]) -> dict[str, Any]:
    """The politeness bound of a run: max over rate limits of requests / ceiling."""
    requests = {n: int(stats.get(n, {}).get("requests", 0)) for n in ceilings}
    per = {n: requests[n] / ceilings[n] for n in ceilings}
    by = max(per, key=lambda n: per[n])
    ratios = stats.get("window_ratio") or {}
    return {"bound_s": per[by], "bound_by": by, "per_limit_s": per, "requests": requests,
            "status_429": {n: int(stats.get(n, {}).get("status_429", 0)) for n in ceilings},
            "connections": {n: int(stats.get(n, {}).get("connections", 0)) for n in ceilings},
            "max_window_ratio": max(ratios.values()) if ratios else None,
            "window_ratio": ratios}


def cdn_requests(pol: dict[str, Any]) -> int:
    return sum(v for n, v in pol["requests"].items() if n.endswith("_photos"))


@contextlib.contextmanager
def patched_environ(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings_for(env: dict[str, str]) -> Settings:
    with patched_environ(env):
        return Settings()


def totals(reports: list[PropertyReport], missing: int = 0) -> dict[str, Any]:
    """Photo counts, failed properties, and each (property, source) outcome by status: a run
    whose sources all failed still ends Completed, and must not pass for a fast run."""
    keys = ("downloaded", "reused", "new", "duplicate", "failed_photos", "photos_total")
    out: dict[str, Any] = {k: sum(getattr(r, k) for r in reports) for k in keys}
    out["failed_properties"] = sum(1 for r in reports if r.error) + missing
    statuses: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for report in reports:
        for src in report.sources.values():
            statuses[src.status] = statuses.get(src.status, 0) + 1
            if src.status in ("failed", "blocked") and src.reason:
                reasons[src.reason[:160]] = reasons.get(src.reason[:160], 0) + 1
    out["source_status"] = statuses
    out["source_failures"] = dict(sorted(reasons.items(), key=lambda kv: -kv[1])[:5])
    return out


def check_run(name: str, t: dict[str, Any], *, expect_downloads: bool) -> str | None:
    """Why a run's figures must not be read as a measurement, or None."""
    bad = t["source_status"].get("failed", 0) + t["source_status"].get("blocked", 0)
    if t["failed_properties"]:
        return f"{name}: {t['failed_properties']} properties failed"
    if bad:
        first = next(iter(t["source_failures"]), "?")
        return f"{name}: {bad} property-source discoveries failed or blocked ({first})"
    if expect_downloads and not t["downloaded"]:
        return f"{name}: nothing was downloaded"
    return None


# ---------------------------------------------------------------------------- no Prefect


async def flow_shaped(settings: Settings, properties: list[Property], sources: list[str], *,
                      children: int, shape: str = "pipelined", run_id: str = "bench-direct",
                      requester: str = "bench") -> list[PropertyReport]:
    """The engine over ``properties`` with the flows' concurrency shape, without Prefect.

    ``children`` batches of ``properties_per_child`` at once (what one worker with
    ``--limit 3`` runs beside the parent), ``property_concurrency`` properties at once in each
    batch on one ``Engine`` (one browser) opened for the batch, like ``extract_property``.
    ``shape="pipelined"`` mirrors ``flows/property.py``: per-source tag limits on discovery
    (``max_concurrency``) and on each source's photo batch (``asset_max_concurrency``), each
    source fetching as soon as its listing is found, ``download_concurrency`` per source, then
    integration; ``shape="extract"`` calls ``Engine.extract`` for each property instead.
    Engines share one policy state, as the flows' processes share the request ledger."""
    orch = settings.orchestration
    state = MemoryPolicyState()
    discovery_gates = {s: asyncio.Semaphore(settings.source(s).max_concurrency) for s in sources}
    cdn_gates = {s: asyncio.Semaphore(settings.source(s).asset_max_concurrency)
                 for s in PHOTO_SOURCES}
    size = orch.properties_per_child
    batches = deque(properties[i:i + size] for i in range(0, len(properties), size))
    reports: list[PropertyReport] = []

    async def pipelined(engine: Engine, prop: Property) -> PropertyReport:
        stored = await engine.stored_urls(prop.property_hash)

        async def one_source(source: str) -> tuple[Any, list[PhotoFetch]]:
            async with discovery_gates[source]:
                listing = await engine.discover(source, prop.address)
            if listing.status is not ListingStatus.FOUND or not listing.photos:
                return listing, []
            known = [known_fetch(p) for p in listing.photos if p.best_url in stored]
            wanted = [p for p in listing.photos if p.best_url not in stored]
            if not wanted:
                return listing, known
            downloads = asyncio.Semaphore(orch.download_concurrency)

            async def get(photo: Any) -> PhotoFetch:
                async with downloads:
                    return await engine.fetch_photo(prop.property_hash, photo)

            async with cdn_gates.get(source) or contextlib.nullcontext():
                fetched = await asyncio.gather(*(get(p) for p in wanted))
            return listing, known + list(fetched)

        done = await asyncio.gather(*(one_source(s) for s in sources))
        listings = [listing for listing, _ in done]
        fetches = [f for _, got in done for f in got]
        return await engine.integrate(prop, listings, fetches, run_id=run_id,
                                      requester=requester)

    async def slot() -> None:
        while batches:
            batch = batches.popleft()
            engine = await Engine.open(settings, state=state)
            try:
                gate = asyncio.Semaphore(orch.property_concurrency)

                async def one(prop: Property, engine: Engine = engine,
                              gate: asyncio.Semaphore = gate) -> PropertyReport:
                    async with gate:
                        try:
                            if shape == "extract":  # records its report itself
                                return await engine.extract(prop, sources, run_id=run_id,
                                                            requester=requester)
                            report = await pipelined(engine, prop)
                        except Exception as exc:  # as the child flow does
                            report = PropertyReport.failed(prop, f"{type(exc).__name__}: {exc}")
                        await asyncio.to_thread(engine.record_report, run_id, report,
                                                requester)
                        return report

                reports.extend(await asyncio.gather(*(one(p) for p in batch)))
            finally:
                await engine.aclose()

    try:
        await asyncio.gather(*(slot() for _ in range(max(1, children))))
    finally:
        await state.aclose()
    # the parent's last step: gather the reports and write the gallery index
    await asyncio.to_thread(read_run_reports, settings, run_id, properties, [])
    return reports


def timed_direct(label: str, coro_fn: Any, timeout_s: float) -> tuple[float, list[Any]]:
    async def run() -> list[Any]:
        return await asyncio.wait_for(coro_fn(), timeout=timeout_s)

    log(f"{label}: starting")
    t0 = time.monotonic()
    reports = asyncio.run(run())
    wall = time.monotonic() - t0
    log(f"{label}: {wall:.1f}s")
    return wall, reports


# ---------------------------------------------------------------------------- memory


def _ppid_table() -> dict[int, int]:
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        table[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return table


def _status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _flow_run_id(pid: int) -> str | None:
    try:
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if item.startswith(b"PREFECT__FLOW_RUN_ID="):
                return item.split(b"=", 1)[1].decode()
    except OSError:
        return None
    return None


class MemorySampler:
    """Samples VmHWM of the server and the worker, and of each process the worker starts
    (one per flow run), plus the summed VmRSS of each such process's tree (Chromium)."""

    def __init__(self, server_pid: int, worker_pid: int, interval_s: float = 0.5) -> None:
        self.server_pid = server_pid
        self.worker_pid = worker_pid
        self.interval_s = interval_s
        self.peak_kb: dict[str, int] = {"server": 0, "server_tree_rss": 0, "worker": 0}
        self.runs: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _tree(self, table: dict[int, int], root: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for pid, ppid in table.items():
            children.setdefault(ppid, []).append(pid)
        out, todo = [], [root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def sample(self) -> None:
        table = _ppid_table()
        for role, pid in (("server", self.server_pid), ("worker", self.worker_pid)):
            hwm = _status_kb(pid, "VmHWM")
            if hwm:
                self.peak_kb[role] = max(self.peak_kb[role], hwm)
        tree_rss = sum(_status_kb(p, "VmRSS") or 0 for p in self._tree(table, self.server_pid))
        self.peak_kb["server_tree_rss"] = max(self.peak_kb["server_tree_rss"], tree_rss)
        for pid, ppid in table.items():
            if ppid != self.worker_pid:
                continue
            run = self.runs.get(pid)
            if run is None:
                run = self.runs[pid] = {"flow_run_id": _flow_run_id(pid), "hwm_kb": 0,
                                        "tree_rss_kb": 0}
            hwm = _status_kb(pid, "VmHWM") or 0
            run["hwm_kb"] = max(run["hwm_kb"], hwm)
            rss = sum(_status_kb(p, "VmRSS") or 0 for p in self._tree(table, pid))
            run["tree_rss_kb"] = max(run["tree_rss_kb"], rss)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.sample()
            self._stop.wait(self.interval_s)

    def report(self, parent_run_id: str | None, child_run_ids: set[str]) -> dict[str, Any]:
        """Peaks in MiB; flow-run processes are told apart by their PREFECT__FLOW_RUN_ID
        (a process of another run, e.g. the previous run's last child still exiting, is
        left out)."""
        parent = [r for r in self.runs.values() if r["flow_run_id"] == parent_run_id]
        children = [r for r in self.runs.values() if r["flow_run_id"] in child_run_ids]

        def mib(kb: int | None) -> float | None:
            return round(kb / 1024, 1) if kb else None

        return {
            "server_peak_mib": mib(self.peak_kb["server"]),
            "server_tree_peak_rss_mib": mib(self.peak_kb["server_tree_rss"]),
            "worker_peak_mib": mib(self.peak_kb["worker"]),
            "parent_run_peak_mib": mib(max((r["hwm_kb"] for r in parent), default=0)),
            "property_run_peak_mib": mib(max((r["hwm_kb"] for r in children), default=0)),
            "property_run_tree_peak_rss_mib": mib(
                max((r["tree_rss_kb"] for r in children), default=0)),
            "property_run_processes_seen": len(children),
            "property_run_peaks_mib": sorted(mib(r["hwm_kb"]) or 0 for r in children),
            "other_processes_seen": len(self.runs) - len(parent) - len(children),
        }


# ---------------------------------------------------------------------------- Prefect


class PrefectStack:
    """Server (SQLite, or PostgreSQL with ``database_url``), setup, deploy, one worker."""

    def __init__(self, home: Path, env: dict[str, str], database_url: str | None = None,
                 worker_env: dict[str, str] | None = None) -> None:
        self.stack = Stack(home=home, port=free_port(), database_url=database_url)
        self.env = env
        self.worker_env = worker_env or {}
        self.server: Proc | None = None
        self.worker: Proc | None = None

    def start(self) -> PrefectStack:
        t0 = time.monotonic()
        self.server = self.stack.start_server(timeout_s=180)
        self.stack.run([str(VENV_BIN / "phx-images"), "setup"], cwd=ROOT, timeout_s=600,
                       extra_env=self.env)
        self.stack.run([str(VENV_BIN / "prefect"), "--no-prompt", "deploy", "--all"], cwd=ROOT,
                       timeout_s=600, extra_env=self.env)
        self.worker = self.stack.start_worker("phx-process", WORKER_LIMIT, ROOT, "bench-e2e",
                                              extra_env={**self.env, **self.worker_env})
        log(f"Prefect stack up on {self.stack.api_url} in {time.monotonic() - t0:.0f}s")
        return self

    def setup_again(self, env: dict[str, str]) -> None:
        """``phx-images setup`` with new settings (a fresh store for the next run)."""
        self.env = env
        self.stack.run([str(VENV_BIN / "phx-images"), "setup"], cwd=ROOT, timeout_s=600,
                       extra_env=env)

    def stop(self, keep_db: bool = False) -> None:
        """Stop the worker and the server; keep their logs, drop the SQLite database."""
        self.stack.stop()
        if not keep_db:
            for db in self.stack.home.glob("prefect.db*"):
                db.unlink(missing_ok=True)

    def api(self, method: str, path: str, body: Any = None, timeout_s: float = 30) -> Any:
        request = urllib.request.Request(
            f"{self.stack.api_url}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read() or b"null")

    def children(self, run_id: str) -> list[dict[str, Any]]:
        """The child (property) runs of a parent run, every page."""
        out: list[dict[str, Any]] = []
        while True:
            page = self.api("POST", "/flow_runs/filter", {
                "flow_runs": {"parent_flow_run_id": {"any_": [run_id]}},
                "limit": 200, "offset": len(out), "sort": "ID_DESC"}, timeout_s=60)
            out += page
            if len(page) < 200:
                return out

    def run_on_demand(self, csv_path: Path, timeout_s: float) -> dict[str, Any]:
        """Submit ``extract-photos/on-demand`` over the CSV; time it from the submit call to
        the first read of a final state (polled every 0.5 s)."""
        deployment = self.api("GET", "/deployments/name/extract-photos/on-demand")
        t0 = time.monotonic()
        run = self.api("POST", f"/deployments/{deployment['id']}/create_flow_run",
                       {"parameters": {"csv_path": str(csv_path), "requester": "bench-e2e"}})
        submit_s = time.monotonic() - t0
        run_id = run["id"]
        deadline = t0 + timeout_s
        state = run.get("state_type") or "SCHEDULED"
        while True:
            if self.worker is not None and not self.worker.alive():
                raise RuntimeError(f"the worker died:\n{self.worker.tail()}")
            try:
                run = self.api("GET", f"/flow_runs/{run_id}")
                state = run["state_type"]
            except (TimeoutError, OSError):
                pass
            if state in FINAL:
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(Exception):
                    self.api("POST", f"/flow_runs/{run_id}/set_state",
                             {"state": {"type": "CANCELLING", "name": "Cancelling"},
                              "force": True})
                raise TimeoutError(f"run {run_id} not final after {timeout_s:.0f}s "
                                   f"(state {state}); cancelled")
            time.sleep(0.5)
        wall = time.monotonic() - t0
        out = {"flow_run_id": run_id, "wall_s": wall, "submit_s": submit_s,
               "state": run.get("state_name"),
               "state_message": (run.get("state") or {}).get("message")}
        try:
            children = self.children(run_id)
            out["child_run_ids"] = sorted(c["id"] for c in children)
            out["child_states"] = {}
            for child in children:
                name = child.get("state_name") or "?"
                out["child_states"][name] = out["child_states"].get(name, 0) + 1
            out["timeline"] = timeline(run, children)
        except Exception as exc:  # the figures above stand without it
            out["timeline_error"] = f"{type(exc).__name__}: {exc}"
            out["child_run_ids"] = []
        return out


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"mean": sum(values) / len(values), "p50": ordered[len(ordered) // 2],
            "max": ordered[-1]}


def timeline(parent: dict[str, Any], children: list[dict[str, Any]]) -> dict[str, Any]:
    """Where a run's time went, from the server's timestamps: how long the parent waited for
    the worker, how long children waited to start, ran, and what the parent did after the
    last child ended."""
    created, start, end = (_ts(parent.get(k)) for k in ("created", "start_time", "end_time"))
    out: dict[str, Any] = {"children": len(children)}
    if created and start:
        out["parent_start_delay_s"] = start - created
    if start and end:
        out["parent_running_s"] = end - start
    waits, runs, ends, made = [], [], [], []
    for child in children:
        c_created, c_start, c_end = (_ts(child.get(k)) for k in
                                     ("created", "start_time", "end_time"))
        if c_created:
            made.append(c_created)
        if c_created and c_start:
            waits.append(c_start - c_created)
        if c_start and c_end:
            runs.append(c_end - c_start)
        if c_end:
            ends.append(c_end)
    if made and start:
        out["first_child_submitted_after_parent_start_s"] = min(made) - start
        out["children_submitted_over_s"] = max(made) - min(made)
    out["child_start_delay_s"] = _stats(waits)
    out["child_run_s"] = _stats(runs)
    if ends and end:
        out["parent_tail_after_last_child_s"] = end - max(ends)
    return out


async def _xact_commit(pg_url: str) -> int:
    import asyncpg

    plain = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    admin = plain.rsplit("/", 1)[0] + "/postgres"  # our reads are not counted on prefect's
    conn = await asyncpg.connect(admin, timeout=10)
    try:
        return int(await conn.fetchval(
            "select xact_commit from pg_stat_database where datname = 'prefect'"))
    finally:
        await conn.close()


def xact_commit(pg_url: str) -> int:
    return asyncio.run(_xact_commit(pg_url))


# ---------------------------------------------------------------------------- the passes


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    out: Path
    results: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str) + "\n")
        os.replace(tmp, self.out)

    def fresh(self, name: str, env: dict[str, str]) -> tuple[Path, dict[str, str]]:
        """A fresh data folder (store, result storage, ledger) and the env naming it."""
        folder = self.workdir / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder, {**env, "PHX_DATA_DIR": str(folder),
                        "PHX_STORE_URL": str(folder / "store"),
                        "PHX_ORCHESTRATION__RESULT_STORAGE_URL": str(folder / "prefect-results")}

    def drop(self, folder: Path) -> None:
        if not self.args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    def timeout_for(self, n: int) -> float:
        return self.args.timeout_base_s + self.args.timeout_per_property_s * n

    def worker_env(self) -> dict[str, str]:
        env = {}
        if self.args.worker_poll_s:
            env["PREFECT_WORKER_QUERY_SECONDS"] = str(self.args.worker_poll_s)
        return env

    # ---- one size: ours, no Prefect, rerun, baseline --------------------------------------

    def run_size(self, size: Size, baseline: bool) -> dict[str, Any]:
        result: dict[str, Any] = {"size": size.label}
        sim = SimProc(self.workdir, size.extra, self.args.handshake_ms)
        prefect: PrefectStack | None = None
        try:
            log(f"size {size.label}: starting the simulator")
            sim.start()
            csv_path = self.workdir / f"size-{size.slug}.csv"
            csv_path.write_text(size_csv(size, size.extra))
            listed = load_csv(csv_path)
            props = listed.properties
            result["properties"] = len(props)
            base_env = {**sim.env, **self.args.overrides}
            settings0 = settings_for(base_env)
            ceilings = ceilings_of(settings0)
            result["ceilings"] = ceilings
            if not self.args.no_warm:
                t0 = time.monotonic()
                count = sim.warm({p.address.full for p in props})
                log(f"size {size.label}: simulator warmed ({count} photos, "
                    f"{time.monotonic() - t0:.0f}s)")
            timeout = self.timeout_for(len(props))

            # no Prefect
            folder, env = self.fresh(f"direct-{size.slug}", base_env)
            settings = settings_for(env)
            sim.reset_stats()
            wall, reports = timed_direct(
                f"size {size.label}: no Prefect",
                lambda: flow_shaped(settings, props, SOURCES, children=WORKER_LIMIT - 1,
                                    shape=self.args.direct_shape), timeout)
            pol = politeness(sim.stats(ceilings), ceilings)
            result["no_prefect"] = {"wall_s": wall, **pol, "wall_over_bound": wall / pol[
                "bound_s"] if pol["bound_s"] else None, "totals": totals(reports),
                "shape": self.args.direct_shape, "children": WORKER_LIMIT - 1}
            problem = check_run("no Prefect", result["no_prefect"]["totals"],
                                expect_downloads=True)
            if problem:
                result.setdefault("problems", []).append(problem)
            self.drop(folder)
            self.save()

            # ours, then the rerun over the same store
            folder, env = self.fresh(f"ours-{size.slug}", base_env)
            settings = settings_for(env)
            prefect = PrefectStack(self.workdir / f"prefect-{size.slug}",
                                   env, worker_env=self.worker_env()).start()
            assert prefect.server is not None and prefect.worker is not None
            for key in ("ours", "rerun"):
                sim.reset_stats()
                log(f"size {size.label}: {key}: on-demand run over {len(props)} properties")
                with MemorySampler(prefect.server.pid, prefect.worker.pid) as sampler:
                    run = prefect.run_on_demand(csv_path, timeout)
                pol = politeness(sim.stats(ceilings), ceilings)
                summary = read_run_reports(settings, run["flow_run_id"], props, [])
                run.update(pol)
                run["wall_over_bound"] = run["wall_s"] / pol["bound_s"] if pol["bound_s"] \
                    else None
                run["totals"] = totals(summary.properties, len(summary.missing))
                problem = check_run(key, run["totals"], expect_downloads=key == "ours")
                if problem:
                    result.setdefault("problems", []).append(problem)
                run["memory"] = sampler.report(run["flow_run_id"],
                                               set(run.pop("child_run_ids")))
                run["cdn_requests"] = cdn_requests(pol)
                result[key] = run
                log(f"size {size.label}: {key}: {run['state']} in {run['wall_s']:.1f}s, "
                    f"bound {pol['bound_s']:.1f}s ({pol['bound_by']}), "
                    f"{run['totals']['downloaded']} downloaded")
                self.save()
            prefect.stop()
            prefect = None
            self.drop(folder)
            ours, direct, rerun = result["ours"], result["no_prefect"], result["rerun"]
            result["prefect_share"] = (ours["wall_s"] - direct["wall_s"]) / ours["wall_s"]
            result["rerun"]["downloads_nothing"] = (rerun["cdn_requests"] == 0
                                                    and rerun["totals"]["downloaded"] == 0)

            if baseline:
                folder, env = self.fresh(f"earlier-{size.slug}", base_env)
                settings = settings_for(env)
                sim.reset_stats()
                wall, reports = timed_direct(
                    f"size {size.label}: baseline (earlier schedule)",
                    lambda: earlier_schedule(settings, props, SOURCES),
                    self.args.baseline_timeout_factor * timeout)
                pol = politeness(sim.stats(ceilings), ceilings)
                result["baseline"] = {"wall_s": wall, **pol, "totals": totals(reports),
                                      "over_ours": wall / ours["wall_s"]}
                problem = check_run("baseline", result["baseline"]["totals"],
                                    expect_downloads=True)
                if problem:
                    result.setdefault("problems", []).append(problem)
                self.drop(folder)
            for problem in result.get("problems", []):
                log(f"size {size.label}: PROBLEM: {problem}")
            return result
        except Exception as exc:  # keep the figures so far, say what failed
            result["error"] = f"{type(exc).__name__}: {exc}"
            log(f"size {size.label}: FAILED: {result['error']}")
            return result
        finally:
            if prefect is not None:
                prefect.stop()
            sim.stop()

    # ---- the scale pass on PostgreSQL ------------------------------------------------------

    def run_scale(self, counts: list[int]) -> dict[str, Any]:
        from tests.postgres import POSTGRES_INSTALLED

        out: dict[str, Any] = {"runs": []}
        if not POSTGRES_INSTALLED:
            out["error"] = ("PostgreSQL is not installed: run scripts/setup.sh --postgres "
                            "(make test does)")
            log(out["error"])
            return out
        raised: dict[str, str] = {}
        for s in SOURCE_NAMES:
            raised[f"PHX_{s.upper()}__MAX_RPS"] = str(self.args.scale_max_rps)
        for s in PHOTO_SOURCES:
            raised[f"PHX_{s.upper()}__ASSET_MAX_RPS"] = str(self.args.scale_asset_max_rps)
        out["env"] = raised
        largest = max(counts)
        sim = SimProc(self.workdir, largest, self.args.handshake_ms)
        try:
            log(f"scale: starting the simulator with {largest} generated properties")
            sim.start()
            for n in counts:
                out["runs"].append(self._scale_one(sim, n, largest, raised))
                self.results["scale"] = out
                self.save()
        finally:
            sim.stop()
        ok_runs = [r for r in out["runs"] if "error" not in r and not r.get("problems")]
        if len(ok_runs) >= 2:
            first, last = ok_runs[0], ok_runs[-1]
            growth = {}
            for key in ("server_peak_mib", "worker_peak_mib", "parent_run_peak_mib",
                        "property_run_peak_mib"):
                a, b = first["memory"].get(key), last["memory"].get(key)
                growth[key] = round(b / a, 3) if a and b else None
            out["memory_growth"] = {
                "from": first["properties"], "to": last["properties"], "ratio": growth,
                "limit": MEMORY_GROWTH_LIMIT,
                "grows": sorted(k for k, v in growth.items()
                                if v is not None and v > MEMORY_GROWTH_LIMIT)}
        return out

    def _scale_one(self, sim: SimProc, n: int, in_sim: int,
                   raised: dict[str, str]) -> dict[str, Any]:
        from tests.postgres import postgres_server

        result: dict[str, Any] = {"properties": n}
        size = Size(str(n), extra=n)
        try:
            csv_path = self.workdir / f"scale-{n}.csv"
            csv_path.write_text(size_csv(size, in_sim))
            props = load_csv(csv_path).properties
            if not self.args.no_warm:
                t0 = time.monotonic()
                count = sim.warm({p.address.full for p in props})
                log(f"scale {n}: simulator warmed ({count} photos, "
                    f"{time.monotonic() - t0:.0f}s)")
            with postgres_server() as pg_url:
                ledger = {}
                if self.args.scale_ledger == "postgres":  # the multi-machine profile's
                    ledger["PHX_DATABASE_URL"] = pg_url.replace(
                        "postgresql+asyncpg://", "postgresql://").rsplit("/", 1)[0] + "/phx"
                folder, env = self.fresh(f"scale-{n}", {**sim.env, **raised, **ledger})
                result["ledger"] = self.args.scale_ledger
                settings = settings_for(env)
                ceilings = ceilings_of(settings)
                result["ceilings"] = ceilings
                prefect = PrefectStack(self.workdir / f"prefect-pg-{n}", env,
                                       database_url=pg_url, worker_env=self.worker_env())
                try:  # the Prefect stack stops before its database does
                    prefect.start()
                    assert prefect.server is not None and prefect.worker is not None
                    with MemorySampler(prefect.server.pid, prefect.worker.pid) as sampler:
                        x0 = xact_commit(pg_url)
                        time.sleep(PG_SETTLE_S)
                        x1 = xact_commit(pg_url)
                        idle_rate = (x1 - x0) / PG_SETTLE_S
                        sim.reset_stats()
                        log(f"scale {n}: on-demand run over {n} properties (PostgreSQL)")
                        run = prefect.run_on_demand(csv_path, self.timeout_for(n))
                        time.sleep(PG_SETTLE_S)
                        x2 = xact_commit(pg_url)
                        memory = sampler.report(run["flow_run_id"],
                                                set(run.pop("child_run_ids")))
                finally:
                    prefect.stop()
            pol = politeness(sim.stats(ceilings), ceilings)
            summary = read_run_reports(settings, run["flow_run_id"], props, [])
            xacts = x2 - x1
            result.update(run)
            result.update({
                "s_per_property": run["wall_s"] / n,
                "xact_commit": xacts,
                "xact_per_property": xacts / n,
                "idle_xact_per_s": idle_rate,
                "xact_per_property_net_of_idle": (
                    xacts - idle_rate * (run["wall_s"] + PG_SETTLE_S)) / n,
                "bound_s": pol["bound_s"], "bound_by": pol["bound_by"],
                "requests": pol["requests"], "max_window_ratio": pol["max_window_ratio"],
                "wall_over_bound": run["wall_s"] / pol["bound_s"] if pol["bound_s"] else None,
                "totals": totals(summary.properties, len(summary.missing)),
                "memory": memory})
            problem = check_run(f"scale {n}", result["totals"], expect_downloads=True)
            if problem:
                result["problems"] = [problem]
                log(f"scale {n}: PROBLEM: {problem}")
            log(f"scale {n}: {run['state']} in {run['wall_s']:.1f}s "
                f"({result['s_per_property']:.2f} s/property, "
                f"{result['xact_per_property']:.0f} xact/property)")
            self.drop(folder)
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
            log(f"scale {n}: FAILED: {result['error']}")
        return result


# ---------------------------------------------------------------------------- report


def _f(value: Any, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def timeline_line(t: dict[str, Any]) -> str:
    def stat(key: str) -> str:
        v = t.get(key)
        return f"p50 {v['p50']:.1f} s, max {v['max']:.1f} s" if v else "-"

    first = t.get("first_child_submitted_after_parent_start_s")
    return (f"the parent waited {_f(t.get('parent_start_delay_s'))} s for the worker, submitted "
            f"{t['children']} children from {_f(first)} s after its start; children waited "
            f"to start {stat('child_start_delay_s')}, ran "
            f"{stat('child_run_s')}; the parent ended "
            f"{_f(t.get('parent_tail_after_last_child_s'))} s after the last child")


def markdown(results: dict[str, Any]) -> str:
    lines = []
    m = results["machine"]
    lines.append(f"End-to-end throughput, {results['date']}: {m.get('nproc')} cores "
                 f"({m.get('cpu_model', '?')}), {m.get('memory_mib')} MiB; one worker "
                 f"--limit {WORKER_LIMIT}, connection set-up {results['config']['handshake_ms']}"
                 " ms")
    overrides = results["config"].get("settings_overrides")
    if overrides:
        lines.append(f"Settings overridden for every size: {overrides}")
    lines.append("")
    if results.get("sizes"):
        lines += [
            "| size | properties | downloaded | ours | bound (limit) | wall ÷ bound | "
            "no Prefect | Prefect's share | rerun | rerun bound | rerun wall ÷ bound | "
            "rerun CDN requests |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in results["sizes"]:
            if "ours" not in r or "rerun" not in r:
                lines.append(f"| {r['size']} | {r.get('properties', '-')} | failed: "
                             f"{r.get('error', '?')} |||||||||")
                continue
            o, d, rr = r["ours"], r["no_prefect"], r["rerun"]
            wb = o["wall_over_bound"]
            share = r["prefect_share"]
            lines.append(
                f"| {r['size']} | {r['properties']} | {o['totals']['downloaded']} | "
                f"{o['wall_s']:.1f} s ({o['state']}) | {o['bound_s']:.1f} s ({o['bound_by']}) | "
                f"{_f(wb, '{:.2f}')} {'ok' if wb and wb <= TARGET_WALL_OVER_BOUND else 'MISS'}"
                f" | {d['wall_s']:.1f} s | {share * 100:.1f} % "
                f"{'ok' if share <= TARGET_PREFECT_SHARE else 'MISS'} | "
                f"{rr['wall_s']:.1f} s ({rr['state']}) | {rr['bound_s']:.1f} s "
                f"({rr['bound_by']}) | {_f(rr['wall_over_bound'], '{:.2f}')} | "
                f"{rr['cdn_requests']} {'ok' if rr.get('downloads_nothing') else 'MISS'} |")
        for r in results["sizes"]:
            for problem in r.get("problems", []):
                lines.append(f"**{r['size']}: not a valid measurement: {problem}**  ")
        lines.append("")
        lines.append(f"Targets: wall ÷ bound <= {TARGET_WALL_OVER_BOUND}, Prefect's share <= "
                     f"{TARGET_PREFECT_SHARE:.0%}, a rerun downloads nothing.")
        for r in results["sizes"]:
            for key in ("ours", "rerun"):
                t = (r.get(key) or {}).get("timeline")
                if t:
                    lines.append(f"{r['size']} {key}: {timeline_line(t)}.")
        for r in results["sizes"]:
            if "baseline" in r:
                b = r["baseline"]
                lines.append(
                    f"Baseline (earlier schedule: 3 properties at once, sources and downloads "
                    f"one after another, a new engine per property and source) over "
                    f"{r['size']} ({r['properties']} properties): {b['wall_s']:.1f} s, "
                    f"{b['over_ours']:.2f}x ours ({r['ours']['wall_s']:.1f} s).")
        lines.append("")
    scale = results.get("scale")
    if scale:
        lines.append(f"Scale pass (PostgreSQL, ceilings raised: {scale.get('env', {})})")
        lines.append("")
        if scale.get("error"):
            lines.append(f"not run: {scale['error']}")
        lines += [
            "| properties | wall | s/property | bound | xact/property (net of idle) | "
            "server peak | worker peak | parent run peak | property run peak (tree) |",
            "|---|---|---|---|---|---|---|---|---|"]
        for r in scale.get("runs", []):
            if "error" in r:
                lines.append(f"| {r['properties']} | failed: {r['error']} ||||||||")
                continue
            mem = r["memory"]
            lines.append(
                f"| {r['properties']} | {r['wall_s']:.1f} s ({r['state']}) | "
                f"{r['s_per_property']:.2f} | {r['bound_s']:.2f} s | "
                f"{r['xact_per_property']:.0f} ({r['xact_per_property_net_of_idle']:.0f}) | "
                f"{_f(mem['server_peak_mib'])} MiB | {_f(mem['worker_peak_mib'])} MiB | "
                f"{_f(mem['parent_run_peak_mib'])} MiB | {_f(mem['property_run_peak_mib'])} "
                f"MiB ({_f(mem['property_run_tree_peak_rss_mib'])} MiB) |")
        for r in scale.get("runs", []):
            for problem in r.get("problems", []):
                lines.append(f"**not a valid measurement: {problem}**  ")
        growth = scale.get("memory_growth")
        if growth:
            ratios = ", ".join(f"{k.removesuffix('_peak_mib')} x{_f(v, '{:.2f}')}"
                               for k, v in growth["ratio"].items())
            verdict = ("none grows" if not growth["grows"] else
                       f"GROWS: {', '.join(growth['grows'])}")
            lines.append("")
            lines.append(f"Peak memory from {growth['from']} to {growth['to']} properties: "
                         f"{ratios} ({verdict}; limit x{growth['limit']}).")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    from tests.postgres import POSTGRES_INSTALLED

    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: --sizes sample:3, no scale pass (unless given)")
    parser.add_argument("--sizes", default=None,
                        help="comma list of sample | sample:K | N (generated); default "
                        "sample,100 ('none' for none)")
    parser.add_argument("--scale", default=None,
                        help="comma list of generated-property counts on PostgreSQL; default "
                        "100,1000 when PostgreSQL is installed ('none' for none)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the earlier system's schedule")
    parser.add_argument("--set", action="append", default=[], metavar="PHX_KEY=VALUE",
                        help="a setting for every run of the sizes (setup, worker, no-Prefect "
                        "and baseline runs alike), e.g. --set PHX_ZILLOW__MAX_RPS=0.3; "
                        "repeatable (the scale pass takes its own ceilings)")
    parser.add_argument("--handshake-ms", type=float, default=40.0)
    parser.add_argument("--scale-max-rps", type=float, default=50.0)
    parser.add_argument("--scale-asset-max-rps", type=float, default=200.0)
    parser.add_argument("--scale-ledger", choices=("sqlite", "postgres"), default="sqlite",
                        help="the request ledger of the scale pass: a SQLite file in the run's "
                        "data folder (default; one machine) or the 'phx' database on the same "
                        "PostgreSQL server (the multi-machine profile)")
    parser.add_argument("--direct-shape", choices=("pipelined", "extract"), default="pipelined",
                        help="the no-Prefect run: the flows' per-source pipelining "
                        "(default) or Engine.extract per property")
    parser.add_argument("--worker-poll-s", type=float, default=None,
                        help="PREFECT_WORKER_QUERY_SECONDS for the worker (2 s when not "
                        "given, as flows/stack.py starts workers)")
    parser.add_argument("--timeout-base-s", type=float, default=300.0)
    parser.add_argument("--timeout-per-property-s", type=float, default=20.0,
                        help="each run's timeout is base + this x properties")
    parser.add_argument("--baseline-timeout-factor", type=float, default=3.0)
    parser.add_argument("--no-warm", action="store_true",
                        help="do not pre-render the simulator's photos before measuring")
    parser.add_argument("--keep", action="store_true", help="keep the stores after measuring")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    sizes_text = args.sizes if args.sizes is not None else (
        "sample:3" if args.quick else "sample,100")
    scale_text = args.scale if args.scale is not None else (
        "none" if args.quick or not POSTGRES_INSTALLED else "100,1000")
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("PHX_"):
            parser.error(f"--set wants PHX_KEY=VALUE, got {item!r}")
        overrides[key] = value
    args.overrides = overrides
    sizes = [Size.parse(s) for s in parse_list(sizes_text)]
    scale = sorted(int(s) for s in parse_list(scale_text))
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "bench" / "results" / (
        f"e2e-{'quick-' if args.quick else ''}{stamp}.json")
    workdir = ROOT / ".run" / "bench-e2e" / stamp
    workdir.mkdir(parents=True, exist_ok=True)

    def on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds every finally: processes are stopped

    signal.signal(signal.SIGTERM, on_signal)
    bench = Bench(args, workdir, out)
    bench.results = {
        "benchmark": "bench.e2e", "date": now.isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv, "machine": machine(),
        "config": {"handshake_ms": args.handshake_ms, "worker_limit": WORKER_LIMIT,
                   "children_at_once": WORKER_LIMIT - 1, "sources": SOURCES,
                   "extra_photos": EXTRA_PHOTOS, "direct_shape": args.direct_shape,
                   "worker_poll_s": args.worker_poll_s or "2 (flows/stack.py)",
                   "scale_ledger": args.scale_ledger, "settings_overrides": overrides,
                   "orchestration": Settings().orchestration.model_dump(mode="json"),
                   "logs": str(workdir)},
        "sizes": [], "scale": None,
    }
    bench.save()
    log(f"results -> {out}; logs -> {workdir}")
    baseline_done = args.no_baseline
    try:
        for size in sizes:
            want_baseline = not baseline_done and size.is_sample
            bench.results["sizes"].append(bench.run_size(size, want_baseline))
            baseline_done = baseline_done or want_baseline
            bench.save()
        if not baseline_done:
            bench.results["baseline_note"] = "no sample size was run: no baseline"
        if scale:
            bench.results["scale"] = bench.run_scale(scale)
            bench.save()
    finally:
        bench.results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        bench.save()
    print()
    print(markdown(bench.results))
    print(f"\nJSON: {out}")
    failed = [r["size"] for r in bench.results["sizes"] if "error" in r or r.get("problems")]
    if bench.results.get("scale"):
        failed += [f"scale {r['properties']}" for r in bench.results["scale"]["runs"]
                   if "error" in r or r.get("problems")]
        if bench.results["scale"].get("error"):
            failed.append("scale")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
