"""``phx-images metrics``: a Prometheus exporter for the business state Prefect does not export.

Prefect's own ``/api/metrics`` carries no queue depth per pool, no breaker or per-source photo
counts, so operators scrape this process instead. It is stateless towards Prefect: every scrape
asks the API a bounded set of questions (aggregate endpoints such as ``/flow_runs/count`` and
``/flow_runs/history``, filters with limit <= 200), so the cost of a scrape does not grow with
the number of runs. The one piece of state is the run-record tally: the store's
``runs/*.json`` are append-only, so each file is parsed once and only new files are read later.
The request rates in force come from the request ledger (the ``phx_pace`` table of the
project's database, ``phx_images/net/ledger_sql.py``): one small ``SELECT`` per scrape.

A scrape never raises: a Prefect section that fails is left out, ``phx_up`` becomes 0 and the
reason is logged once (when it changes, not on every scrape); the store and the ledger have
their own ``phx_store_up`` / ``phx_ledger_up``. Labels carry names only (flows, workers,
sources), never URLs or tokens; log lines go through the policy layer's redaction, and the
database URL (it may hold a password) is never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from phx_images.net.redact import get_logger, redact_text, register_secret

if TYPE_CHECKING:
    from phx_images.net.ratelimit import PaceRow
    from phx_images.settings import Settings
    from phx_images.store import ImageStore

log = get_logger(__name__)

DEFAULT_PORT = 9464  # the exporter port commonly left free for custom exporters
QUERY_LIMIT = 200  # Prefect's default page; we never ask for more in one call
MAX_RECORDS_PER_SCRAPE = 2000  # new run-record files read per scrape; the rest next time
LEDGER_TIMEOUT_S = 1.0  # a ledger read is one SELECT; with Prefect's 8 s, under 10 s in all
STATE_TYPES = ("scheduled", "pending", "running", "completed", "failed", "cancelled",
               "crashed", "paused", "cancelling")


@dataclass(frozen=True)
class Options:
    """What a scrape looks at; fixed for the life of the process."""

    work_pool: str
    window_s: float = 24 * 3600.0
    stuck_after_s: float = 3600.0
    timeout_s: float = 8.0  # under Prometheus' default 10 s scrape_timeout


@dataclass
class PrefectView:
    """Plain numbers read from the Prefect API in one scrape (None: that section failed)."""

    flow_runs: dict[str, Counter[str]] | None = None
    queue: tuple[int, int] | None = None  # (due scheduled + pending, late)
    workers: list[tuple[str, bool, float | None]] | None = None  # name, online, age
    stuck: int | None = None
    breakers: dict[str, tuple[bool, int]] | None = None  # source -> (open, failures)
    limits: list[Any] | None = None  # GlobalConcurrencyLimitResponse
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return not self.problems


class RunRecordTally:
    """Per-source outcome counts over every run record in the store, read incrementally.

    Why keys and totals only: records are append-only with unique names, so a key seen once
    never needs reading again; keeping running totals (not the parsed records) keeps memory at
    one short string per file. A record deleted from the store stays counted until restart,
    which is what a Prometheus counter must do anyway (never go down).
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.totals: Counter[tuple[str, ...]] = Counter()
        self.backlog = 0

    def refresh(self, store: ImageStore) -> None:
        """List ``runs/`` and fold in at most ``MAX_RECORDS_PER_SCRAPE`` unseen files."""
        from phx_images.models import ListingStatus
        from phx_images.pipeline import PropertyReport
        from phx_images.settings import SOURCE_NAMES
        from phx_images.store import RunRecord

        new = [k for k in store.fs.list("runs") if k.endswith(".json") and k not in self.seen]
        self.backlog = max(0, len(new) - MAX_RECORDS_PER_SCRAPE)
        for key in new[:MAX_RECORDS_PER_SCRAPE]:  # sorted by time stamp: oldest first
            try:
                record = RunRecord.model_validate(store.fs.read_json(key))
                raw = record.extra.get("report")
                report = PropertyReport.model_validate(raw) if raw is not None else None
            except Exception as exc:  # a bad file is counted once and never re-read
                log.warning("run record %s unreadable: %s", key, type(exc).__name__)
                self.seen.add(key)
                self.totals["read", "unreadable"] += 1
                continue
            self.seen.add(key)
            self.totals["read", "ok"] += 1
            if report is None:
                continue
            self.totals["property", "error" if report.error else "ok"] += 1
            for src in report.sources.values():
                if src.source not in SOURCE_NAMES:  # bounded label values only
                    continue
                if src.status in set(ListingStatus):
                    self.totals["listing", src.source, src.status] += 1
                for outcome in ("found", "new", "duplicate", "known", "failed"):
                    self.totals["photos", src.source, outcome] += getattr(src, outcome)


class PhxCollector(Collector):
    """Queries Prefect and the store at scrape time and turns the answers into metrics."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._lock = threading.Lock()  # one scrape at a time: the tally is not thread-safe
        self._settings: Settings | None = None  # run settings (blocks), once Prefect answered
        self._store_url: str | None = None
        self._store: ImageStore | None = None
        self._tally = RunRecordTally()
        self._logged: dict[str, str] = {}

    def describe(self) -> list[Metric]:
        """Nothing: registering must not trigger a scrape against Prefect."""
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            started = time.monotonic()
            try:
                view = asyncio.run(self._read_prefect())
            except Exception as exc:  # a bug here must not turn into an HTTP 500
                view = PrefectView(problems={"prefect": _why(exc)})
            metrics = list(self._prefect_metrics(view))
            metrics += self._ledger_metrics()
            metrics += self._store_metrics()
            self._report(view.problems)
            up = GaugeMetricFamily("phx_up", "1 if every Prefect API query of this scrape "
                                   "answered, 0 if any failed (see the exporter's log)")
            up.add_metric([], 1.0 if view.up else 0.0)
            took = GaugeMetricFamily("phx_scrape_duration_seconds",
                                     "Time this scrape took (Prefect queries and store)")
            took.add_metric([], time.monotonic() - started)
        yield up
        yield from metrics
        yield took

    # ---- Prefect -------------------------------------------------------------------------
    async def _read_prefect(self) -> PrefectView:
        from prefect.client.orchestration import get_client
        from prefect.settings import get_current_settings

        view = PrefectView()
        if not get_current_settings().api.url:  # else get_client would start its own server
            view.problems["prefect"] = "PREFECT_API_URL is not set"
            return view
        try:  # the client's own timeout is a minute per request: far too long for a scrape
            await asyncio.wait_for(self._query(get_client, view), self.options.timeout_s)
        except TimeoutError:
            view.problems["prefect"] = f"queries took over {self.options.timeout_s:g}s"
        return view

    async def _query(self, get_client: Callable[[], Any], view: PrefectView) -> None:
        """Health first (a down API fails once, fast), then each section on its own, so one
        failing query does not hide the others."""
        async with get_client() as client:
            error = await client.api_healthcheck()
            if error is not None:
                view.problems["prefect"] = f"API unreachable: {_why(error)}"
                return
            await self._sections(client, view)

    async def _sections(self, client: Any, view: PrefectView) -> None:
        now = datetime.now(UTC)
        sections: dict[str, Callable[[], Awaitable[Any]]] = {
            "settings": self._load_settings,
            "flow_runs": lambda: self._flow_runs(client, now),
            "queue": lambda: self._queue(client, now),
            "workers": lambda: self._workers(client, now),
            "stuck": lambda: self._stuck(client, now),
            "breakers": lambda: self._breakers(client),
            "limits": lambda: client.read_global_concurrency_limits(limit=QUERY_LIMIT),
        }
        for name, query in sections.items():
            try:
                result = await query()
            except Exception as exc:
                view.problems[name] = _why(exc)
                continue
            if name != "settings":
                setattr(view, name, result)

    async def _load_settings(self) -> None:
        """The deployment's run settings (the store block wins over PHX_STORE_URL), so the
        exporter reads the same store the workers write; loaded once, then kept."""
        if self._settings is None:
            from flows.config import load_run_settings

            self._settings = await load_run_settings()

    async def _flow_runs(self, client: Any, now: datetime) -> dict[str, Counter[str]]:
        """Runs expected to start in the window, per flow and current state type: one
        aggregate ``/flow_runs/history`` query per flow that has runs in the window."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterExpectedStartTime,
        )

        start = now - timedelta(seconds=self.options.window_s)
        flows = await client.read_flows(
            flow_run_filter=FlowRunFilter(
                expected_start_time=FlowRunFilterExpectedStartTime(after_=start, before_=now)),
            limit=QUERY_LIMIT)
        out: dict[str, Counter[str]] = {}
        for flow in flows:
            response = await client.request("POST", "/flow_runs/history", json={
                "history_start": start.isoformat(), "history_end": now.isoformat(),
                "history_interval_seconds": self.options.window_s,
                "flows": {"id": {"any_": [str(flow.id)]}},
            })
            counts: Counter[str] = Counter()
            for bucket in response.json():
                for state in bucket["states"]:
                    counts[str(state["state_type"]).lower()] += int(state["count_runs"])
            out[flow.name] = counts
        return out

    async def _queue(self, client: Any, now: datetime) -> tuple[int, int]:
        """Runs of the pool waiting for a worker: scheduled ones that are due (Late
        included) plus pending ones (a worker took them but they have not started)."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterNextScheduledStartTime,
            FlowRunFilterState,
            FlowRunFilterStateName,
            FlowRunFilterStateType,
            WorkPoolFilter,
            WorkPoolFilterName,
        )
        from prefect.client.schemas.objects import StateType

        pool = WorkPoolFilter(name=WorkPoolFilterName(any_=[self.options.work_pool]))

        async def count(flow_run_filter: FlowRunFilter) -> int:
            return int(await client.count_flow_runs(flow_run_filter=flow_run_filter,
                                                    work_pool_filter=pool))

        due = await count(FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=now)))
        pending = await count(FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING]))))
        late = await count(FlowRunFilter(
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Late"]))))
        return due + pending, late

    async def _workers(self, client: Any, now: datetime
                       ) -> list[tuple[str, bool, float | None]]:
        from prefect.client.schemas.objects import WorkerStatus

        workers = await client.read_workers_for_work_pool(self.options.work_pool,
                                                          limit=QUERY_LIMIT)
        return [(w.name, w.status == WorkerStatus.ONLINE,
                 (now - w.last_heartbeat_time).total_seconds() if w.last_heartbeat_time
                 else None) for w in workers]

    async def _stuck(self, client: Any, now: datetime) -> int:
        """Property runs (tag ``child``, as the stuck-run automation watches) Running since
        before the threshold; parents legitimately run for hours over long lists."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterStartTime,
            FlowRunFilterState,
            FlowRunFilterStateType,
            FlowRunFilterTags,
        )
        from prefect.client.schemas.objects import StateType

        from flows.automations import CHILD_TAG

        before = now - timedelta(seconds=self.options.stuck_after_s)
        return int(await client.count_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
            start_time=FlowRunFilterStartTime(before_=before),
            tags=FlowRunFilterTags(all_=[CHILD_TAG]))))

    async def _breakers(self, client: Any) -> dict[str, tuple[bool, int]]:
        """Every known source closed unless its ``phx-breaker-<source>`` variable says
        otherwise; one filter query for all. A garbled variable is logged by name and its
        source left out (an unknown state must not read as closed)."""
        from flows.policy_state import breaker_variable
        from phx_images.net.breaker import BreakerRecord

        out = {name: (False, 0) for name in _policy_names()}
        by_variable = {breaker_variable(source): source for source in out}
        response = await client.request("POST", "/variables/filter", json={
            "variables": {"name": {"like_": breaker_variable("")}}, "limit": QUERY_LIMIT})
        for variable in response.json():
            name = str(variable.get("name", ""))
            source = by_variable.get(name)
            if source is None:
                continue
            try:
                record = BreakerRecord.from_json(variable.get("value"))
                if record.state not in ("closed", "open", "half_open"):
                    raise ValueError("unknown state")
                out[source] = (record.state != "closed", int(record.failures))
                self._logged.pop(f"breaker:{name}", None)
            except Exception as exc:
                self._log_once(f"breaker:{name}",
                               f"breaker variable {name} unreadable ({type(exc).__name__}); "
                               f"{source} left out")
                del out[source]
        return out

    def _prefect_metrics(self, view: PrefectView) -> Iterator[Metric]:
        window_h = self.options.window_s / 3600
        pool = self.options.work_pool
        if view.flow_runs is not None:
            runs = GaugeMetricFamily(
                "phx_flow_runs", f"Flow runs expected to start in the last {window_h:g} h, "
                "by flow and current state type", labels=["flow", "state"])
            ratio = GaugeMetricFamily(
                "phx_flow_run_success_ratio", f"completed / (completed + failed + crashed) "
                f"over the last {window_h:g} h; absent without finished runs", labels=["flow"])
            for flow, counts in sorted(view.flow_runs.items()):
                for state in STATE_TYPES:
                    runs.add_metric([flow, state], counts[state])
                finished = counts["completed"] + counts["failed"] + counts["crashed"]
                if finished:
                    ratio.add_metric([flow], counts["completed"] / finished)
            yield runs
            yield ratio
        if view.queue is not None:
            depth = GaugeMetricFamily("phx_queue_depth", "Flow runs waiting for a worker: "
                                      "scheduled and due (late included) plus pending",
                                      labels=["work_pool"])
            depth.add_metric([pool], view.queue[0])
            late = GaugeMetricFamily("phx_queue_late", "Flow runs in state Late (not picked "
                                     "up in time)", labels=["work_pool"])
            late.add_metric([pool], view.queue[1])
            yield depth
            yield late
        if view.workers is not None:
            online = GaugeMetricFamily("phx_worker_online", "1 if Prefect sees the worker "
                                       "online (recent heartbeat), else 0",
                                       labels=["work_pool", "worker"])
            age = GaugeMetricFamily("phx_worker_heartbeat_age_seconds",
                                    "Seconds since the worker's last heartbeat",
                                    labels=["work_pool", "worker"])
            for name, is_online, seconds in sorted(view.workers, key=lambda w: w[0]):
                online.add_metric([pool, name], 1.0 if is_online else 0.0)
                if seconds is not None:
                    age.add_metric([pool, name], seconds)
            yield online
            yield age
        if view.stuck is not None:
            stuck = GaugeMetricFamily("phx_stuck_runs", "Flow runs Running for longer than "
                                      f"{self.options.stuck_after_s:g} s (property runs)")
            stuck.add_metric([], view.stuck)
            yield stuck
        if view.breakers is not None:
            is_open = GaugeMetricFamily("phx_source_breaker_open", "1 if the source's "
                                        "circuit breaker is open or half-open (requests "
                                        "refused), 0 if closed", labels=["source"])
            failures = GaugeMetricFamily("phx_source_breaker_failures", "Consecutive failed "
                                         "requests in the source's breaker record",
                                         labels=["source"])
            for source, (opened, count) in sorted(view.breakers.items()):
                is_open.add_metric([source], 1.0 if opened else 0.0)
                failures.add_metric([source], count)
            yield is_open
            yield failures
        if view.limits is not None:
            yield from _limit_metrics(view.limits)

    # ---- request ledger ------------------------------------------------------------------
    def _ledger_metrics(self) -> list[Metric]:
        """Per policy name: the configured ceiling, the rate in force (a throttle halves it,
        then it climbs back) and the Retry-After pause left. A ledger that cannot be read is
        logged once and its gauges left out (an unknown rate must not read as the ceiling);
        the ceilings are still reported."""
        from phx_images.net.ratelimit import PaceRow, effective_rate
        from phx_images.settings import Settings

        up = GaugeMetricFamily("phx_ledger_up", "1 if the request ledger (the project's "
                               "database) could be read in this scrape")
        ceiling = GaugeMetricFamily("phx_source_rate_ceiling_rps", "Configured ceiling, "
                                    "requests/second to the source across all workers "
                                    "(max_rps; asset_max_rps for a -cdn)", labels=["source"])
        rps = GaugeMetricFamily("phx_source_rate_limit_rps", "Requests/second in force for "
                                "the source across all workers: the ceiling, or less after a "
                                "throttle (429/503) while it climbs back", labels=["source"])
        paused = GaugeMetricFamily("phx_source_paused_seconds", "Seconds left of a "
                                   "Retry-After pause of the source (0: not paused)",
                                   labels=["source"])
        url = ""
        try:
            settings = self._settings or Settings()
            url = settings.database()
            ceilings = {name: _ceiling(settings, name) for name in _policy_names()}
            for name, value in ceilings.items():
                ceiling.add_metric([name], value)
            rows = asyncio.run(_read_ledger(url, LEDGER_TIMEOUT_S))
        except Exception as exc:
            self._log_once("ledger", f"request ledger unreadable: {_why(exc, hide=url)}")
            up.add_metric([], 0.0)
            return [up, ceiling]
        if self._logged.pop("ledger", None) is not None:
            log.info("request ledger recovered")
        up.add_metric([], 1.0)
        now = time.time()  # the ledger's clock (SQLite's is this machine's)
        for name, value in ceilings.items():
            row = rows.get(name, PaceRow())
            rps.add_metric([name], effective_rate(row, now, value))
            paused.add_metric([name], max(0.0, row.paused_until - now))
        return [up, ceiling, rps, paused]

    # ---- store ---------------------------------------------------------------------------
    def _store_metrics(self) -> list[Metric]:
        from phx_images.settings import Settings
        from phx_images.store import ImageStore

        up = GaugeMetricFamily("phx_store_up", "1 if the image store's run records could be "
                               "listed and read in this scrape")
        try:
            settings = self._settings or Settings()
            if self._store is None or settings.store_url != self._store_url:
                self._store = ImageStore.from_settings(settings)  # another store: count
                self._tally, self._store_url = RunRecordTally(), settings.store_url  # afresh
            self._tally.refresh(self._store)
        except Exception as exc:
            self._log_once("store", f"store unreadable: {_why(exc)}")
            up.add_metric([], 0.0)
        else:
            self._logged.pop("store", None)
            up.add_metric([], 1.0)
        return [up, *self._tally_metrics()]

    def _tally_metrics(self) -> list[Metric]:
        totals = self._tally.totals
        photos = CounterMetricFamily(
            "phx_source_photos", "Photos per source and outcome over all run records: found "
            "in listings, new, duplicate (folded), known (already stored), failed",
            labels=["source", "outcome"])
        listings = CounterMetricFamily(
            "phx_source_listings", "Property lookups per source by listing status "
            "(found, not_found, blocked, failed, skipped)", labels=["source", "status"])
        props = CounterMetricFamily("phx_property_reports", "Property reports by result "
                                    "(ok, error)", labels=["result"])
        reads = CounterMetricFamily("phx_run_records_read", "Run-record files parsed by this "
                                    "exporter (each once)", labels=["result"])
        for key, value in sorted(totals.items()):
            kind, *labels = key
            {"photos": photos, "listing": listings, "property": props,
             "read": reads}[kind].add_metric(labels, value)
        backlog = GaugeMetricFamily("phx_run_records_backlog", "Run-record files listed but "
                                    "not read yet (read over the next scrapes)")
        backlog.add_metric([], self._tally.backlog)
        return [photos, listings, props, reads, backlog]

    # ---- logging -------------------------------------------------------------------------
    def _log_once(self, key: str, message: str) -> None:
        """Log a problem when it appears or changes, not on every scrape."""
        if self._logged.get(key) != message:
            self._logged[key] = message
            log.warning("%s", message)

    def _report(self, problems: dict[str, str]) -> None:
        for section, why in problems.items():
            self._log_once(f"prefect:{section}", f"prefect {section}: {why}")
        for key in [k for k in self._logged if k.startswith("prefect:")]:
            if key.removeprefix("prefect:") not in problems:
                del self._logged[key]
                log.info("%s recovered", key)


def _limit_metrics(limits: list[Any]) -> list[Metric]:
    """Task concurrency per source (Prefect's tag limits ``tag:source:<source>``)."""
    from tasks.discover import source_tag

    tag_limits = {f"tag:{source_tag(source)}": source  # Prefect's naming
                  for source in _policy_names()}
    tasks = GaugeMetricFamily("phx_source_concurrency_limit", "Concurrent task runs allowed "
                              "against the source (tag:source:<source>)", labels=["source"])
    tasks_active = GaugeMetricFamily("phx_source_concurrency_active", "Task runs holding a "
                                     "slot of the source's tag limit", labels=["source"])
    for limit in sorted(limits, key=lambda x: x.name):
        if source := tag_limits.get(limit.name):
            tasks.add_metric([source], limit.limit)
            tasks_active.add_metric([source], limit.active_slots)
    return [tasks, tasks_active]


async def _read_ledger(url: str, timeout_s: float) -> dict[str, PaceRow]:
    """Every row of the request ledger at ``url``, within ``timeout_s``. A SQLite file that
    does not exist is an empty ledger (nothing throttled yet) and is not created: the
    exporter only reads."""
    from sqlalchemy.engine import make_url

    from phx_images.net.ledger_sql import SqlLedger

    parsed = make_url(url)
    if parsed.password:  # whatever an error message quotes, the password is masked
        register_secret(parsed.password)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if path in ("", ":memory:") or not Path(path).is_file():
            return {}
    ledger = SqlLedger(url)

    async def read() -> dict[str, PaceRow]:
        try:
            return await ledger.rows()
        finally:
            await asyncio.wait_for(ledger.aclose(), 0.5)

    try:
        return await asyncio.wait_for(read(), timeout_s)
    except TimeoutError:
        raise TimeoutError(f"no answer within {timeout_s:g}s") from None


def _ceiling(settings: Settings, name: str) -> float:
    """The configured ceiling of a policy name: ``max_rps``, or ``asset_max_rps`` for a CDN."""
    from phx_images.net.client import asset_source_name
    from phx_images.settings import SOURCE_NAMES

    for source in SOURCE_NAMES:
        if name == source:
            return settings.source(source).max_rps
        if name == asset_source_name(source):
            return settings.source(source).asset_max_rps
    raise KeyError(name)


def _policy_names() -> list[str]:
    """Every policy name with its own breaker and limits: the sources and their CDNs."""
    from phx_images.net.client import asset_source_name
    from phx_images.settings import SOURCE_NAMES

    return [n for s in SOURCE_NAMES for n in (s, asset_source_name(s))]


def _why(exc: BaseException, hide: str = "") -> str:
    """An exception as one redacted line (its text may carry URLs); ``hide`` (the database
    URL) is cut out wherever the text quotes it."""
    text = str(exc)
    if hide:
        text = text.replace(hide, "<database url>")
    text = text.splitlines()[0][:300] if text else ""
    return redact_text(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


# ---- command line ----------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Serve Prometheus metrics (queue depth, workers, run outcomes, "
                          "source breakers, limits and photo counts) until SIGTERM/SIGINT.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default loopback; the endpoint has no auth)")
    parser.add_argument("--window-hours", type=_positive, default=24.0,
                        help="flow-run window for phx_flow_runs (default 24)")
    parser.add_argument("--stuck-after-s", type=_positive, default=None,
                        help="a run Running longer than this counts as stuck (default: "
                        "PHX_ORCHESTRATION__STUCK_AFTER_S, else 3600)")
    parser.add_argument("--timeout-s", type=_positive, default=8.0,
                        help="longest a scrape waits for Prefect (default 8)")


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def run(args: argparse.Namespace) -> int:
    import logging

    from prometheus_client import start_http_server

    from phx_images.settings import Settings

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call otherwise
    import prefect.client.orchestration  # noqa: F401  (pay the import before the first scrape)

    orchestration = Settings().orchestration
    stuck_after_s = args.stuck_after_s or orchestration.stuck_after_s
    options = Options(work_pool=orchestration.work_pool,
                      window_s=max(1.0, args.window_hours * 3600),
                      stuck_after_s=stuck_after_s, timeout_s=args.timeout_s)
    registry = CollectorRegistry()
    registry.register(PhxCollector(options))
    try:
        server, _ = start_http_server(args.port, addr=args.host, registry=registry)
    except OSError as exc:
        print(f"phx-images metrics: cannot listen on {args.host}:{args.port}: {exc}",
              file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("serving http://%s:%d/metrics (work pool %s)", args.host, args.port,
             options.work_pool)
    while not stop.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
    log.info("stopped")
    return 0
