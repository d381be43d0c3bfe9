"""Orchestration end to end: real Prefect server, real process worker, real Chromium, simulator.

One stack for the module (server start, setup and deploy cost ~20 s); each test submits runs
through ``prefect deployment run`` exactly as a user would, and checks outcomes in the store,
the Prefect API and the simulator's stats.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import POSTGRES_INSTALLED, postgres_server
from tests.prefect_stack import ROOT, AlertReceiver, PhxStack

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

CEILINGS = {"zillow": 3.0, "redfin": 4.0, "phoenixmls": 4.0, "assessor": 2.0}
ASSET_CEILING = 8.0
ZOMBIE_AFTER_S = 75  # the lowest allowed: 2.5 heartbeats (they come every 30 s)


def chromium_pids() -> set[int]:
    """Chromium processes started by flow runs (they inherit PREFECT__FLOW_RUN_ID), so that
    browsers of other tests or sessions on the machine do not count."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")[0]
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            is_chromium = cmd.endswith(b"chromium") or b"/chromium/chromium" in cmd
            if is_chromium and b"PREFECT__FLOW_RUN_ID=" in environ:
                pids.add(int(entry.name))
    return pids


def read_manifests(store: Path) -> dict[str, dict]:
    out = {}
    for manifest in (store / "processed").glob("*/manifest.json"):
        out[manifest.parent.name] = json.loads(manifest.read_text())
    return out


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def alerts() -> Iterator[AlertReceiver]:
    with AlertReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def database_url() -> Iterator[str | None]:
    """The server's database: PostgreSQL when it is installed (``make test`` installs it),
    else the embedded SQLite (``PHX_TEST_PREFECT_DB=sqlite`` forces it).

    On SQLite, Prefect 3.8's server now and then stops writing for SQLite's 60 s busy
    timeout (seen in CI: every API write, cancels included, waited a minute; the stall ends
    with "database is locked" errors). These tests time cancels and crashes in seconds, so
    they run where the multi-machine profile runs; ``make demo`` keeps exercising SQLite."""
    if not POSTGRES_INSTALLED or os.environ.get("PHX_TEST_PREFECT_DB") == "sqlite":
        yield None
        return
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def phx(sim: object, store_dir: Path, alerts: AlertReceiver, database_url: str | None,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhxStack]:
    env = dict(sim.env())  # type: ignore[attr-defined]
    for source, rps in CEILINGS.items():
        env[f"PHX_{source.upper()}__MAX_RPS"] = str(rps)
        env[f"PHX_{source.upper()}__ASSET_MAX_RPS"] = str(ASSET_CEILING)
    env.update({
        "PHX_STORE_URL": str(store_dir / "property_images"),
        "PHX_DATA_DIR": str(store_dir),
        "PHX_ORCHESTRATION__POLL_INTERVAL_S": "1",
        # one property per child run: these tests follow properties across children and
        # workers (the default batches several per run, on one browser)
        "PHX_ORCHESTRATION__PROPERTIES_PER_CHILD": "1",
        # short thresholds so the crash and stuck-run automations act within a test
        "PHX_ORCHESTRATION__ZOMBIE_AFTER_S": str(ZOMBIE_AFTER_S),
        "PHX_ORCHESTRATION__STUCK_AFTER_S": "20",
        "PHX_ORCHESTRATION__ALERT_WEBHOOK_URL": alerts.url,
    })
    stack = PhxStack(tmp_path_factory.mktemp("prefect-home"), env,
                     database_url=database_url).start()
    stack.worker("w1", limit=3)
    try:
        yield stack
    finally:
        stack.stop()


def _truth_addresses(sim: object, count: int, offset: int = 0) -> list[str]:
    props = [p for p in sim.truth()["properties"]  # type: ignore[attr-defined]
             if {"zillow", "redfin", "phoenixmls"} <= set(p["on_sites"])]
    return [p["full_address"] for p in props[offset : offset + count]]


def test_deployment_run_completes_and_caches_across_runs(phx: PhxStack, sim: object,
                                                         store_dir: Path) -> None:
    addresses = _truth_addresses(sim, 2)
    sim.reset_stats()  # type: ignore[attr-defined]
    run_id = phx.submit(addresses=addresses, requester="test")
    run = phx.wait_final(run_id, timeout_s=600)
    assert run["state_type"] == "COMPLETED", run["state"]

    # every child ran on the pool and stored photos; artifacts describe the run
    children = phx.children(run_id)
    assert len(children) == 2 and all(c["state_type"] == "COMPLETED" for c in children)
    manifests = read_manifests(store_dir / "property_images")
    assert len(manifests) == 2 and all(m["photos"] for m in manifests.values())
    artifacts = phx.artifacts(run_id)
    assert artifacts["extraction-progress"]["data"] == pytest.approx(100.0)
    assert "extraction-results" in artifacts and "extraction-summary" in artifacts
    # the result storage block is loaded once per property, not by each of its photo tasks
    for child in children:
        assert 1 <= phx.event_count("prefect.block.local-file-system.loaded",
                                    f"prefect.flow-run.{child['id']}") <= 2

    # per-source ceilings held: every 10 s window of arrivals at the simulator
    ceilings = {**CEILINGS, **{f"{s}_photos": ASSET_CEILING for s in CEILINGS
                               if s != "assessor"}}
    ratios = sim.window_ratios(ceilings)  # type: ignore[attr-defined]
    assert max(ratios.values()) <= 1.0, ratios
    stats = sim.stats()  # type: ignore[attr-defined]

    # second run: nothing is fetched from the CDNs; photos the property has stored need no
    # task at all, and the other property, whose store record we drop (as if the store were
    # restored from an older backup), gets its photos from the cache: one Cached batch task
    # per source (its URLs unchanged), not a task per photo.
    lost = sorted(manifests)[0]
    shutil.rmtree(store_dir / "property_images" / "processed" / lost)
    photo_hits_before = {s: stats[s]["requests"] for s in stats if s.endswith("_photos")}
    run2 = phx.wait_final(phx.submit(addresses=addresses, requester="test"), timeout_s=600)
    assert run2["state_type"] == "COMPLETED"
    stats2 = sim.stats()  # type: ignore[attr-defined]
    assert {s: stats2[s]["requests"] for s in photo_hits_before} == photo_hits_before
    sources = {u["source"] for u in manifests[lost]["urls"].values()}
    fetches = phx.task_runs([c["id"] for c in phx.children(run2["id"])], "fetch ",
                            len(sources))
    assert len(fetches) == len(sources)
    assert all(t["state_name"] == "Cached" for t in fetches)
    assert read_manifests(store_dir / "property_images")[lost]["photos"]
    summary = phx.artifacts(run2["id"])["extraction-summary"]["data"]
    assert "nothing new was downloaded" in summary


def test_cache_records_hold_only_while_their_blobs_exist_and_fresh_downloads(
        phx: PhxStack, sim: object, store_dir: Path) -> None:
    """A store that lost its files downloads again (the cache points at blobs that are
    gone); fresh mode downloads again and leaves the cache usable for the next run."""
    address = _truth_addresses(sim, 1, offset=6)
    first = phx.wait_final(phx.submit(addresses=address, requester="test"), timeout_s=600)
    assert first["state_type"] == "COMPLETED", first["state"]
    store = store_dir / "property_images"
    (phash,) = [h for h, m in read_manifests(store).items() if m.get("address") == address[0]]
    photos = len(read_manifests(store)[phash]["photos"])

    def photo_requests() -> int:
        stats = sim.stats()  # type: ignore[attr-defined]
        return sum(v["requests"] for k, v in stats.items() if k.endswith("_photos"))

    # a new user deletes the store to start over: the cache's records point at lost blobs
    shutil.rmtree(store)
    before = photo_requests()
    again = phx.wait_final(phx.submit(addresses=address, requester="test"), timeout_s=600)
    assert again["state_type"] == "COMPLETED", again["state"]
    assert photo_requests() - before >= photos
    assert len(read_manifests(store)[phash]["photos"]) == photos

    # fresh: every photo downloaded again
    before = photo_requests()
    fresh = phx.wait_final(phx.submit(addresses=address, mode="fresh", requester="test"),
                           timeout_s=600)
    assert fresh["state_type"] == "COMPLETED", fresh["state"]
    assert photo_requests() - before >= photos
    # and the next incremental run downloads nothing (the cache was not poisoned)
    before = photo_requests()
    last = phx.wait_final(phx.submit(addresses=address, requester="test"), timeout_s=600)
    assert last["state_type"] == "COMPLETED"
    assert photo_requests() == before

    # per-URL records on their own: without the batch records (as for a listing that gained
    # a photo: another batch key) and without the property's manifest, nothing is downloaded
    results = store_dir / "prefect-results"
    batches = list(results.glob("photos-*"))
    assert batches and list(results.glob("photo-*"))
    for path in batches:
        path.unlink()
    shutil.rmtree(store / "processed" / phash)
    per_url = phx.wait_final(phx.submit(addresses=address, requester="test"), timeout_s=600)
    assert per_url["state_type"] == "COMPLETED", per_url["state"]
    assert photo_requests() == before
    assert len(read_manifests(store)[phash]["photos"]) == photos


def test_bad_parameters_fail_with_a_clear_message(phx: PhxStack) -> None:
    run = phx.wait_final(phx.submit(addresses=["not an address"]), timeout_s=120)
    assert run["state_type"] == "FAILED"
    assert "cannot parse address" in (run["state"]["message"] or "")


def test_cancel_stops_children_and_rerun_resumes(phx: PhxStack, sim: object,
                                                 store_dir: Path) -> None:
    addresses = _truth_addresses(sim, 3, offset=2)
    run_id = phx.submit(addresses=addresses, requester="test")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until a child is really working
        if any(c["state_type"] == "RUNNING" for c in phx.children(run_id)):
            break
        time.sleep(0.5)
    time.sleep(3)
    phx.cli(["phx-images", "cancel", run_id])
    cancelled_at = time.monotonic()
    run = phx.wait_final(run_id, timeout_s=60)
    assert run["state_type"] == "CANCELLED"
    while time.monotonic() - cancelled_at < 60:
        states = {c["state_type"] for c in phx.children(run_id)}
        if states <= {"CANCELLED", "COMPLETED"}:
            break
        time.sleep(0.5)
    assert states <= {"CANCELLED", "COMPLETED"}, states
    assert time.monotonic() - cancelled_at < 45
    time.sleep(2)
    assert not chromium_pids(), "Chromium left running after cancel"
    # every manifest is valid JSON and lists only files that exist
    for phash, manifest in read_manifests(store_dir / "property_images").items():
        folder = store_dir / "property_images" / "processed" / phash
        for photo in manifest["photos"]:
            assert (folder / photo["name"]).is_file()
    # rerun finishes the job
    rerun = phx.wait_final(phx.submit(addresses=addresses, requester="test"), timeout_s=600)
    assert rerun["state_type"] == "COMPLETED"


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (flow-run processes of a worker, their Chromium)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def test_worker_killed_mid_run_then_rerun_completes(phx: PhxStack, sim: object,
                                                    alerts: AlertReceiver) -> None:
    addresses = _truth_addresses(sim, 2, offset=8)
    run_id = phx.submit(addresses=addresses, requester="test")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(c["state_type"] == "RUNNING" for c in phx.children(run_id)):
            break
        time.sleep(0.5)
    time.sleep(2)
    # the machine "crashes": the worker and every flow-run process it started, with kill -9
    # (the worker first, so that it cannot report its runs' deaths itself)
    for worker in [p for p in phx.stack.procs if p.name.startswith("worker-")]:
        for pid in [worker.pid, *descendants(worker.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        worker.popen.wait(timeout=10)
        phx.stack.procs.remove(worker)
    killed_at = time.monotonic()
    running = [r["id"] for r in [phx.flow_run(run_id), *phx.children(run_id)]
               if r["state_type"] == "RUNNING"]
    assert run_id in running and len(running) >= 2
    phx.worker("w2", limit=3)
    rerun = phx.wait_final(phx.submit(addresses=addresses, requester="test"), timeout_s=900)
    assert rerun["state_type"] == "COMPLETED"

    # nobody touched the killed runs: the zombie automation marked them Crashed once their
    # heartbeats (every 30 s) stopped for ZOMBIE_AFTER_S
    deadline = max(time.monotonic(), killed_at + 30 + ZOMBIE_AFTER_S) + 60
    while True:
        states = {rid: phx.flow_run(rid)["state"] for rid in running}
        if all(s["type"] == "CRASHED" for s in states.values()) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert all(s["type"] == "CRASHED" and "no heartbeat" in (s["message"] or "")
               for s in states.values()), {r: (s["type"], s["message"]) for r, s in states.items()}
    # and the killed child stayed Running past the (test's) 20 s stuck threshold: one alert
    killed_children = set(running) - {run_id}
    assert any(rid in text for text in alerts.received for rid in killed_children), \
        alerts.received
    # no concurrency slot stays taken past its lease
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        limits = phx.api("POST", "/v2/concurrency_limits/filter", {})
        if all(lim["active_slots"] == 0 for lim in limits):
            break
        time.sleep(3)
    assert all(lim["active_slots"] == 0 for lim in limits), limits
    assert not chromium_pids()


def test_cli_async_status_and_wait(phx: PhxStack, sim: object) -> None:
    address = _truth_addresses(sim, 1)[0]
    started = time.monotonic()
    out = phx.cli(["phx-images", "extract", "--address", address, "--async", "--dry-run",
                   "--requester", "cli-user"])
    run_id = out.stdout.strip().splitlines()[-1]
    assert len(run_id) == 36
    assert time.monotonic() - started < 60
    final = phx.wait_final(run_id, timeout_s=300)
    assert final["state_type"] == "COMPLETED"
    assert "requester:cli-user" in final["tags"]  # the audit trail is filterable in the UI
    status = json.loads(phx.cli(["phx-images", "status", run_id, "--json"]).stdout)
    assert status["state"] == "Completed" and status["progress"] == pytest.approx(100.0)
    assert ROOT.exists()


def test_nightly_schedule_creates_runs_in_phoenix_time(phx: PhxStack) -> None:
    runs = phx.scheduled_runs("refresh-photos/nightly")
    assert runs, "the nightly cron schedule created no run"
    for run in runs:  # 02:30 in Phoenix (UTC-7 all year) is 09:30 UTC
        assert run["expected_start_time"][11:16] == "09:30", run["expected_start_time"]


def test_more_runs_than_worker_slots_all_complete(phx: PhxStack, sim: object) -> None:
    """Three extraction runs at once on workers with 3 slots: parents wait on children, so
    if all three parents took a slot no child could ever start. The `runs` queue's limit
    (parallel_runs=2) and the `properties` queue's priority keep a slot for children."""
    run_ids = [phx.submit(addresses=[address], sources=["redfin"], dry_run=True,
                          requester="slots")
               for address in _truth_addresses(sim, 3, offset=12)]
    finals = [phx.wait_final(run_id, timeout_s=300) for run_id in run_ids]
    assert [f["state_type"] for f in finals] == ["COMPLETED"] * 3
    queues = {phx.flow_run(run_id)["work_queue_name"] for run_id in run_ids}
    child_queues = {c["work_queue_name"] for run_id in run_ids for c in phx.children(run_id)}
    assert (queues, child_queues) == ({"runs"}, {"properties"})


def test_api_writes_never_stalled(phx: PhxStack) -> None:
    """Last in the module: one API write a second ran through every test above (runs,
    cancels, kill -9); none waited more than 2 s for the server."""
    probe = phx.probe
    assert len(probe.samples) > 30
    assert probe.worst <= 2.0, (probe.summary(), probe.failures[:3])
