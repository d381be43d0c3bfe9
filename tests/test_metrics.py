"""The Prometheus exporter against real parts: a Prefect server, ``phx-images setup``, a store
written through the engine, and ``phx-images metrics`` as a subprocess scraped over HTTP.

Every asserted number is one this test put there (runs in given states, a breaker record,
limits from PHX_ settings, a throttle in the request ledger, photo counts in run records), so a
wrong query shows as a wrong value.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flows.metrics import Options, PhxCollector
from flows.stack import Proc, free_port, spawn, wait_http
from phx_images.net.ledger_sql import SqlLedger
from phx_images.net.ratelimit import RECOVERY_S
from phx_images.pipeline import Engine, PropertyReport, SourceReport
from phx_images.settings import Settings
from tests.prefect_stack import ROOT, VENV_BIN, PhxStack

POOL = "phx-process"
STUCK_AFTER_S = 6.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def start_exporter(env: dict[str, str], log: Path, *extra: str) -> tuple[Proc, int]:
    port = free_port()
    proc = spawn("metrics", [str(VENV_BIN / "phx-images"), "metrics", "--port", str(port),
                             *extra], log, env=env, cwd=ROOT)
    wait_http(f"http://127.0.0.1:{port}/metrics", 60, proc)
    return proc, port


def stop_exporter(proc: Proc) -> None:
    """SIGTERM must end it cleanly (exit 0), as under a process supervisor."""
    proc.stop(grace_s=10)
    assert proc.popen.returncode == 0, proc.tail()
    assert "stopped" in proc.log.read_text()


def record(engine: Engine, property_hash: str, error: str | None = None,
           **sources: SourceReport) -> None:
    report = PropertyReport(property_hash=property_hash, address=f"{property_hash} Main St",
                            sources=dict(sources), error=error)
    engine.record_report("run-metrics", report, "pytest")


async def make_runs(api_url: str) -> datetime:
    """Runs in known states; returns the start time of the run that will be stuck."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import (
        Cancelled,
        Completed,
        Crashed,
        Failed,
        Late,
        Pending,
        Running,
        Scheduled,
    )

    @flow(name="phx-metrics-probe")
    def probe() -> None: ...

    @flow(name="phx-metrics-queue")
    def queued() -> None: ...

    @flow(name="phx-metrics-stuck")
    def stuck() -> None: ...

    now = datetime.now(UTC)
    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            stuck_run = await client.create_flow_run(stuck, state=Running(), tags=["child"])
            # as old, but a parent (no `child` tag): parents may run for hours, not stuck
            await client.create_flow_run(stuck, state=Running())
            for state in (Completed(), Completed(), Completed(), Failed(), Crashed(),
                          Cancelled()):
                await client.create_flow_run(probe, state=state)
            for state in (Late(scheduled_time=now - timedelta(hours=1)),  # due and late
                          Scheduled(scheduled_time=now + timedelta(hours=1)),  # not due
                          Pending()):  # taken by a worker, not started
                await client.create_flow_run(queued, state=state, work_pool_name=POOL)
    assert stuck_run.start_time is not None
    return stuck_run.start_time


async def set_policy_state(api_url: str) -> None:
    """Breaker variables (one open, two garbled) and two occupied tag-limit slots."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.variables import Variable

    from phx_images.net.breaker import BreakerRecord

    opened = BreakerRecord(state="open", failures=3, opens=1, version=4,
                           opened_at=time.time(), retry_at=time.time() + 300)
    with temporary_settings({PREFECT_API_URL: api_url}):
        await Variable.aset("phx-breaker-zillow", opened.to_json(), overwrite=True)
        await Variable.aset("phx-breaker-redfin", "{not json", overwrite=True)
        await Variable.aset("phx-breaker-phoenixmls-cdn", {"state": "exploded"},
                            overwrite=True)
        async with get_client() as client:
            await client.increment_concurrency_slots(names=["tag:source:redfin"], slots=2,
                                                     mode="concurrency")


async def late_activity(api_url: str) -> None:
    """Right before the scrape: a fresh Running run (not stuck) and a worker heartbeat."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Running

    @flow(name="phx-metrics-stuck")
    def stuck() -> None: ...

    with temporary_settings({PREFECT_API_URL: api_url}):
        async with get_client() as client:
            await client.create_flow_run(stuck, state=Running(), tags=["child"])
            await client.send_worker_heartbeat(POOL, "w-metrics",
                                               heartbeat_interval_seconds=30)


async def throttle_in_ledger(url: str, name: str, ceiling: float,
                             retry_after: float) -> None:
    """What a worker does on a 429 with Retry-After: book a slot, then throttle the name."""
    ledger = SqlLedger(url)
    try:
        booking = await ledger.book(name, 1, ceiling=ceiling, lead=0.0, max_delay=60)
        assert booking.count == 1
        await ledger.throttle(name, ceiling=ceiling, retry_after=retry_after)
    finally:
        await ledger.aclose()


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("metrics-store")


@pytest.fixture(scope="module")
def phx(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhxStack]:
    env = {
        "PHX_STORE_URL": str(store_dir / "property_images"),
        "PHX_DATA_DIR": str(store_dir),
        # a nested source from the environment is a whole object: it needs its base_url
        "PHX_ZILLOW__BASE_URL": "https://www.zillow.com",
        "PHX_ZILLOW__MAX_RPS": "2.5",
        "PHX_ZILLOW__BURST": "3",
        "PHX_REDFIN__BASE_URL": "https://www.redfin.com",
        "PHX_REDFIN__MAX_CONCURRENCY": "5",
    }
    stack = PhxStack(tmp_path_factory.mktemp("metrics-prefect-home"), env)
    stack.stack.start_server(timeout_s=120)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.mark.prefect
@pytest.mark.slow
def test_exporter_reports_prefect_policy_and_store(phx: PhxStack, store_dir: Path) -> None:
    api_url = phx.stack.api_url
    phx.cli(["phx-images", "setup"])
    stuck_started = asyncio.run(make_runs(api_url))
    asyncio.run(set_policy_state(api_url))

    settings = Settings(store_url=str(store_dir / "property_images"), data_dir=store_dir)
    engine = asyncio.run(Engine.open(settings))
    record(engine, "aaaa1111",
           zillow=SourceReport(source="zillow", status="found", found=10, new=6, duplicate=2,
                               known=1, failed=1),
           redfin=SourceReport(source="redfin", status="not_found"))
    record(engine, "bbbb2222", error="RuntimeError: boom")
    bad = store_dir / "property_images" / "runs" / "20200101T000000Z_garbled.json"
    bad.write_text("{ this is not a run record")

    log = phx.stack.home / "metrics.log"
    proc, port = start_exporter(phx.stack.env(phx.engine_env), log,
                                "--stuck-after-s", str(STUCK_AFTER_S))
    try:
        while datetime.now(UTC) - stuck_started < timedelta(seconds=STUCK_AFTER_S + 1):
            time.sleep(0.2)
        asyncio.run(late_activity(api_url))
        # a throttle right before the scrape: zillow halved (2.5 -> 1.25/s), paused for 30 s
        throttled = time.time()
        asyncio.run(throttle_in_ledger(f"sqlite:///{store_dir / 'phx.db'}", "zillow",
                                       ceiling=2.5, retry_after=30))
        m = scrape(port)
        since = time.time() - throttled

        assert value(m, "phx_up") == 1.0
        # flow runs in the window, by current state type, and the success ratio
        probe = {s: value(m, "phx_flow_runs", flow="phx-metrics-probe", state=s)
                 for s in ("completed", "failed", "crashed", "cancelled", "running")}
        assert probe == {"completed": 3, "failed": 1, "crashed": 1, "cancelled": 1,
                         "running": 0}
        assert value(m, "phx_flow_run_success_ratio", flow="phx-metrics-probe") == 0.6
        assert value(m, "phx_flow_runs", flow="phx-metrics-queue", state="scheduled") == 1
        assert value(m, "phx_flow_runs", flow="phx-metrics-queue", state="pending") == 1
        assert value(m, "phx_flow_runs", flow="phx-metrics-stuck", state="running") == 3
        assert value(m, "phx_flow_run_success_ratio", flow="phx-metrics-stuck") is None
        # queue: the late run and the pending one; the future one is not due
        assert value(m, "phx_queue_depth", work_pool=POOL) == 2
        assert value(m, "phx_queue_late", work_pool=POOL) == 1
        # workers and stuck runs
        assert value(m, "phx_worker_online", work_pool=POOL, worker="w-metrics") == 1
        age = value(m, "phx_worker_heartbeat_age_seconds", work_pool=POOL, worker="w-metrics")
        assert age is not None and 0 <= age < 30
        assert value(m, "phx_stuck_runs") == 1
        # breakers: open one, closed ones (no variable), garbled ones left out
        assert value(m, "phx_source_breaker_open", source="zillow") == 1
        assert value(m, "phx_source_breaker_failures", source="zillow") == 3
        assert value(m, "phx_source_breaker_open", source="assessor") == 0
        assert value(m, "phx_source_breaker_open", source="zillow-cdn") == 0
        assert value(m, "phx_source_breaker_open", source="redfin") is None
        assert value(m, "phx_source_breaker_open", source="phoenixmls-cdn") is None
        text = log.read_text()
        assert "phx-breaker-redfin unreadable" in text
        assert "phx-breaker-phoenixmls-cdn unreadable" in text
        # request rates from the ledger: zillow halved and climbing back to its ceiling
        # (2.5/s over RECOVERY_S) since the throttle, paused; the others at their ceilings
        assert value(m, "phx_ledger_up") == 1
        rate = value(m, "phx_source_rate_limit_rps", source="zillow")
        assert rate is not None and 1.25 - 1e-3 <= rate <= 1.25 + since * 2.5 / RECOVERY_S
        paused = value(m, "phx_source_paused_seconds", source="zillow")
        assert paused is not None and 30 - since - 1e-3 <= paused <= 30
        assert value(m, "phx_source_rate_ceiling_rps", source="zillow") == 2.5
        assert value(m, "phx_source_rate_ceiling_rps", source="zillow-cdn") == 6.0
        assert value(m, "phx_source_rate_limit_rps", source="zillow-cdn") == 6.0
        assert value(m, "phx_source_paused_seconds", source="zillow-cdn") == 0
        assert value(m, "phx_source_rate_ceiling_rps", source="redfin") == 1.0
        assert value(m, "phx_source_rate_limit_rps", source="redfin") == 1.0
        assert value(m, "phx_source_paused_seconds", source="redfin") == 0
        assert not any(name == "phx_source_rate_limit_active_slots" for name, _ in m)
        # tag limits as `phx-images setup` created them from the PHX_ settings
        assert value(m, "phx_source_concurrency_limit", source="redfin") == 5
        assert value(m, "phx_source_concurrency_active", source="redfin") == 2
        assert value(m, "phx_source_concurrency_active", source="zillow") == 0
        # photo outcomes from the run records
        assert value(m, "phx_store_up") == 1
        photos = {o: value(m, "phx_source_photos_total", source="zillow", outcome=o)
                  for o in ("found", "new", "duplicate", "known", "failed")}
        assert photos == {"found": 10, "new": 6, "duplicate": 2, "known": 1, "failed": 1}
        assert value(m, "phx_source_photos_total", source="redfin", outcome="found") == 0
        assert value(m, "phx_source_listings_total", source="zillow", status="found") == 1
        assert value(m, "phx_source_listings_total", source="redfin", status="not_found") == 1
        assert value(m, "phx_property_reports_total", result="ok") == 1
        assert value(m, "phx_property_reports_total", result="error") == 1
        assert value(m, "phx_run_records_read_total", result="ok") == 2
        assert value(m, "phx_run_records_read_total", result="unreadable") == 1

        # a new record is added to the totals; the files already read are not read again
        time.sleep(1.1)  # record names carry the second; a new second, a new file
        record(engine, "cccc3333",
               zillow=SourceReport(source="zillow", status="found", found=4, new=4))
        m2 = scrape(port)
        assert value(m2, "phx_source_photos_total", source="zillow", outcome="new") == 10
        assert value(m2, "phx_source_photos_total", source="zillow", outcome="found") == 14
        assert value(m2, "phx_source_listings_total", source="zillow", status="found") == 2
        assert value(m2, "phx_run_records_read_total", result="ok") == 3
        assert value(m2, "phx_run_records_read_total", result="unreadable") == 1
        assert value(m2, "phx_run_records_backlog") == 0
        assert value(m2, "phx_up") == 1.0
    finally:
        asyncio.run(engine.aclose())
        stop_exporter(proc)


@pytest.mark.slow
def test_exporter_reports_down_when_prefect_is_unreachable(tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    store = tmp_path / "property_images"
    engine = asyncio.run(Engine.open(Settings(store_url=str(store), data_dir=tmp_path)))
    try:
        record(engine, "dddd4444",
               redfin=SourceReport(source="redfin", status="found", found=3, new=3))
    finally:
        asyncio.run(engine.aclose())
    env: dict[str, Any] = {
        **os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{closed}/api",
        "PREFECT_HOME": str(tmp_path / "prefect-home"), "PHX_STORE_URL": str(store),
        "PHX_DATA_DIR": str(tmp_path),
    }
    log = tmp_path / "metrics.log"
    proc, port = start_exporter(env, log)
    try:
        started = time.monotonic()
        m = scrape(port)
        assert time.monotonic() - started < 10
        assert value(m, "phx_up") == 0.0
        assert value(m, "phx_queue_depth", work_pool=POOL) is None
        assert value(m, "phx_store_up") == 1.0  # the store is read without Prefect
        assert value(m, "phx_source_photos_total", source="redfin", outcome="new") == 3
        assert "API unreachable" in log.read_text()
        # no ledger database yet: nothing throttled, the ceilings are the rates, and the
        # exporter (a reader) did not create the file
        assert value(m, "phx_ledger_up") == 1.0
        assert value(m, "phx_source_rate_limit_rps", source="zillow") == 0.5
        assert value(m, "phx_source_rate_ceiling_rps", source="zillow") == 0.5
        assert value(m, "phx_source_paused_seconds", source="zillow") == 0
        assert value(m, "phx_source_rate_limit_rps", source="redfin-cdn") == 6.0
        assert not (tmp_path / "phx.db").exists()
    finally:
        stop_exporter(proc)


def ledger_scrape(collector: PhxCollector) -> Samples:
    """The ledger section of a scrape, in this process (no Prefect needed)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in collector._ledger_metrics() for s in family.samples}


def test_ledger_failure_is_logged_once_redacted_and_recovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A ledger that cannot be read: phx_ledger_up 0, the ceilings still reported, the rates
    left out (unknown, not the ceiling), one log line until it changes; then it recovers."""
    monkeypatch.setenv("PHX_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PHX_DATABASE_URL", raising=False)
    (tmp_path / "phx.db").write_bytes(b"this is not a database" * 100)
    collector = PhxCollector(Options(work_pool=POOL))
    caplog.set_level(logging.INFO, logger="flows.metrics")

    for _ in range(2):
        m = ledger_scrape(collector)
        assert value(m, "phx_ledger_up") == 0.0
        assert value(m, "phx_source_rate_ceiling_rps", source="assessor") == 1.5
        assert value(m, "phx_source_rate_limit_rps", source="assessor") is None
        assert value(m, "phx_source_paused_seconds", source="assessor") is None
    assert caplog.text.count("request ledger unreadable") == 1
    assert str(tmp_path) not in caplog.text  # the database URL is never logged

    (tmp_path / "phx.db").unlink()
    asyncio.run(throttle_in_ledger(f"sqlite:///{tmp_path / 'phx.db'}", "assessor-cdn",
                                   ceiling=6.0, retry_after=5))
    m = ledger_scrape(collector)
    assert value(m, "phx_ledger_up") == 1.0
    assert 3.0 - 1e-3 <= (value(m, "phx_source_rate_limit_rps", source="assessor-cdn")
                          or 0) < 6.0
    assert 0 < (value(m, "phx_source_paused_seconds", source="assessor-cdn") or 0) <= 5
    assert value(m, "phx_source_rate_limit_rps", source="assessor") == 1.5
    assert "request ledger recovered" in caplog.text


def test_unreachable_ledger_database_is_bounded_and_its_password_never_logged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    password = "ledger-pw-7f3a9c"
    url = f"postgresql://phx:{password}@127.0.0.1:{free_port()}/phx"  # nothing listens
    monkeypatch.setenv("PHX_DATABASE_URL", url)
    monkeypatch.setenv("PHX_DATA_DIR", str(tmp_path))
    collector = PhxCollector(Options(work_pool=POOL))
    caplog.set_level(logging.INFO, logger="flows.metrics")
    started = time.monotonic()
    m = ledger_scrape(collector)
    assert time.monotonic() - started < 3
    assert value(m, "phx_ledger_up") == 0.0
    assert value(m, "phx_source_rate_ceiling_rps", source="zillow") == 0.5
    assert "request ledger unreadable" in caplog.text
    assert password not in caplog.text
    assert url not in caplog.text
