"""The issue's acceptance criterion, end to end, without Prefect.

"With faults on (429s with Retry-After, 503 bursts, captcha share, connection resets, plus bad
images): the simulator's /_sim/stats shows no source exceeded its configured ceiling, and every
property either completes or is reported with the reason."

One module fixture runs the scenario once on a simulator of its own (faults set, exact stats)
with one :class:`Engine` (so one Chromium): ``extract`` for a few properties, two at a time,
with every site misbehaving; then the faults are switched off and the same properties are
extracted again into the same store. The tests then judge by the simulator's own counters,
the reports, the manifests and the files on disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from phx_images.address import Address
from phx_images.models import ListingStatus, Property
from phx_images.pipeline import Engine, PropertyReport
from phx_images.settings import SOURCE_NAMES, Settings
from phx_images.store import ImageStore
from phx_images.store.models import Manifest, UrlStatus
from tests.conftest import settings_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

N_PROPERTIES = 6
#: Our configured ceilings (requests/second): pages per source, and each photo CDN.
PAGE_MAX_RPS = {"zillow": 2.5, "redfin": 3.0, "phoenixmls": 3.0, "assessor": 4.0}
ASSET_MAX_RPS = 6.0
#: Stats port -> (source, is its photo CDN).
PORTS = {
    "zillow": ("zillow", False), "zillow_photos": ("zillow", True),
    "redfin": ("redfin", False), "redfin_photos": ("redfin", True),
    "phoenixmls": ("phoenixmls", False), "phoenixmls_photos": ("phoenixmls", True),
    "assessor": ("assessor", False),
}
TRANSIENT = {"error_503_rate": 0.15, "reset_rate": 0.05, "latency_ms": [5, 60]}
BAD_IMAGES = {"truncated_image_rate": 0.05, "html_image_rate": 0.05, "bomb_image_rate": 0.05}
FAULTS: dict[str, dict[str, Any]] = {
    # Source keys cover the page port and the photo port (one shared rate_limit bucket).
    "zillow": {**TRANSIENT, "captcha_rate": 0.3, "captcha_hold_s": 2.0},
    "redfin": {**TRANSIENT, "rate_limit": {"rps": 4, "burst": 4}},
    "phoenixmls": dict(TRANSIENT),
    "assessor": {**TRANSIENT, "rate_limit": {"rps": 2, "burst": 2}},
    # Port keys override the source's knobs for that port only (merged with them).
    "zillow_photos": dict(BAD_IMAGES),
    "redfin_photos": dict(BAD_IMAGES),
    "phoenixmls_photos": {**BAD_IMAGES, "rate_limit": {"rps": 3, "burst": 3}},
}
#: What a failed photo's reason must name: a bad image, or the transient fault that outlasted
#: the retries (HTTP status, connection reset/error, timeout, an open breaker).
REASON_RE = re.compile(
    r"truncated|HTML page|decompression bomb|HTTP (429|50[0-4])|reset|Connection|"
    r"Recv failure|timeout|circuit", re.IGNORECASE)


def ceiling_per_second(max_rps: float) -> int:
    """What ``net/ratelimit.Pacer`` guarantees where the requests arrive: at most
    ``max(1, floor(max_rps))`` in any one-second window (exactly the sim's ``peak_rps``)."""
    return max(1, math.floor(max_rps))


@dataclass
class Scenario:
    settings: Settings
    truth: dict[str, Any]
    props: list[tuple[dict[str, Any], Property]]
    first: list[PropertyReport]
    first_stats: dict[str, dict[str, Any]]
    first_metrics: dict[str, dict[str, Any]]
    first_manifests: dict[str, Manifest]
    first_files: dict[str, list[str]]
    second: list[PropertyReport]
    second_stats: dict[str, dict[str, Any]]
    second_files: dict[str, list[str]]
    timings: dict[str, float] = field(default_factory=dict)


def fault_settings(sim: Any, tmp: Path) -> Settings:
    per_source = {
        name: {"max_rps": rps, "burst": 2, "asset_max_rps": ASSET_MAX_RPS, "max_retries": 6,
               # The breaker has its own tests; here ~20 % transient failures must be
               # retried through, not open it for the rest of the module.
               "breaker_failures": 8}
        for name, rps in PAGE_MAX_RPS.items()
    }
    # A hold of 3 s first (the site wants 2 s); pages that never show content give up
    # after 10 s instead of 30 (the run stays short; the simulator answers in milliseconds).
    browser = {"max_hold_s": 4.0, "page_timeout_s": 10.0}
    # Downloads of one property in flight at once: enough to keep all three CDNs busy.
    orchestration = {"download_concurrency": 12}
    return settings_for(sim, tmp, browser=browser, orchestration=orchestration, **per_source)


def stored_problems(store: ImageStore, property_hash: str) -> list[str]:
    """What is wrong with a property's folder: every photo the manifest lists must be a
    decodable file of the listed size whose bytes are its blob, and no photo file may be
    unlisted."""
    manifest = store.read_manifest(property_hash)
    if manifest is None:
        return ["no manifest"]
    problems = []
    folder = Path(store.fs.path(f"processed/{property_hash}"))
    for photo in manifest.photos:
        try:
            data = (folder / photo.name).read_bytes()
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                size = (im.width, im.height)
        except Exception as exc:
            problems.append(f"{photo.name}: {type(exc).__name__}: {exc}")
            continue
        if size != (photo.width, photo.height):
            problems.append(f"{photo.name}: {size}, manifest says {photo.width}x{photo.height}")
        if hashlib.sha256(data).hexdigest() != photo.blob_sha:
            problems.append(f"{photo.name}: bytes are not blob {photo.blob_sha[:12]}")
        if not store.has_blob(photo.blob_sha, photo.ext):
            problems.append(f"{photo.name}: blob missing")
        entry = manifest.urls.get(photo.kept_url)
        if entry is None or entry.image_id != photo.id or entry.status != UrlStatus.ACTIVE:
            problems.append(f"{photo.name}: kept URL not tracked as active for it ({entry})")
    listed = {p.name for p in manifest.photos}
    if len(listed) != len(manifest.photos):
        problems.append("two photos share a file name")
    on_disk = {f.name for f in folder.iterdir() if f.suffix in (".jpg", ".webp", ".png")}
    if on_disk != listed:
        problems.append(f"files not in the manifest: {sorted(on_disk - listed)}; "
                        f"listed but missing: {sorted(listed - on_disk)}")
    return problems


@pytest.fixture(scope="module")
def scenario(sim_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Scenario]:
    from phx_sim import Simulator

    with Simulator(seed=7, cache_dir=sim_cache_dir) as sim, asyncio.Runner() as runner:
        truth = sim.truth()
        settings = fault_settings(sim, tmp_path_factory.mktemp("engine-faults"))
        props = [(p, Property(address=Address.parse(p["full_address"])))
                 for p in truth["properties"][:N_PROPERTIES]]
        engine = runner.run(Engine.open(settings))
        timings: dict[str, float] = {}

        async def run_all(run_id: str) -> list[PropertyReport]:
            gate = asyncio.Semaphore(3)

            async def one(prop: Property) -> PropertyReport:
                async with gate:
                    return await engine.extract(prop, list(SOURCE_NAMES), run_id=run_id,
                                                requester="test")

            return list(await asyncio.gather(*(one(p) for _, p in props)))

        try:
            # The simulator builds its decompression bomb on first use, ~0.5 s on its event
            # loop, while arrivals queue and are then stamped together: build it before
            # measuring, so peak_rps measures us, not the simulator's own stall.
            with urllib.request.urlopen(sim.urls["zillow_photos"] + "/_bad/bomb.png") as rsp:
                assert rsp.status == 200
            for site, knobs in FAULTS.items():
                sim.set_faults(site, knobs)
            sim.reset_stats()
            start = time.monotonic()
            first = runner.run(run_all("faults-on"))
            timings["first"] = time.monotonic() - start
            first_stats = sim.stats()
            first_metrics = engine.client.metrics()
            first_manifests = {p.property_hash: engine.store.read_manifest(p.property_hash)
                               for _, p in props}
            first_files = {p.property_hash: stored_problems(engine.store, p.property_hash)
                           for _, p in props}
            for site in FAULTS:
                sim.set_faults(site, {})
            sim.reset_stats()
            start = time.monotonic()
            second = runner.run(run_all("faults-off"))
            timings["second"] = time.monotonic() - start
            second_stats = sim.stats()
            second_files = {p.property_hash: stored_problems(engine.store, p.property_hash)
                            for _, p in props}
        finally:
            runner.run(engine.aclose())
        yield Scenario(settings, truth, props, first, first_stats, first_metrics,
                       first_manifests, first_files, second, second_stats, second_files,
                       timings)


def ceilings(settings: Settings) -> dict[str, int]:
    out = {}
    for port, (source, cdn) in PORTS.items():
        cfg = settings.source(source)
        out[port] = ceiling_per_second(cfg.asset_max_rps if cdn else cfg.max_rps)
    return out


# ---- the politeness half ----------------------------------------------------------------------


def test_faults_really_fired(scenario: Scenario) -> None:
    """Without this the rest could pass vacuously."""
    stats = scenario.first_stats
    total = {key: sum(s[key] for s in stats.values())
             for key in ("status_429", "status_503", "resets", "rps_violations")}
    assert total["status_429"] > 0 and total["rps_violations"] > 0, total
    assert total["status_503"] > 0, total
    assert total["resets"] > 0, total
    assert stats["zillow"]["captchas_served"] > 0
    assert stats["zillow"]["captchas_passed"] > 0  # the hold was passable, and we passed it
    # Every rate_limit bucket did bite (a source's bucket covers its page and photo ports).
    for ports in (("redfin", "redfin_photos"), ("assessor",), ("phoenixmls_photos",)):
        assert sum(stats[port]["status_429"] for port in ports) > 0, ports
    metrics = scenario.first_metrics
    assert sum(m.get("throttles", 0) for m in metrics.values()) > 0  # we heard Retry-After
    assert sum(m.get("retries", 0) for m in metrics.values()) > 0


@pytest.mark.parametrize("run", ["first", "second"])
def test_no_port_exceeded_its_ceiling(scenario: Scenario, run: str) -> None:
    stats = scenario.first_stats if run == "first" else scenario.second_stats
    limits = ceilings(scenario.settings)
    over = {port: (stats[port]["peak_rps"], limit) for port, limit in limits.items()
            if stats[port]["peak_rps"] > limit}
    assert not over, f"peak_rps over the ceiling (peak, allowed): {over}"
    assert all(stats[port]["requests"] > 0 for port in limits)  # every port was exercised


# ---- the reporting half -----------------------------------------------------------------------


def test_every_property_completes_or_says_why(scenario: Scenario) -> None:
    """Each source of each property is found, or its status comes with a reason that names
    the source; a listing the truth says exists is never reported as "not listed"; and every
    photo a found listing showed is accounted for (stored, folded, or failed)."""
    problems = []
    for (truth_prop, prop), report in zip(scenario.props, scenario.first, strict=True):
        key = truth_prop["key"]
        assert report.property_hash == prop.property_hash
        assert report.error is None, report.error
        assert set(report.sources) == set(SOURCE_NAMES)
        for name, src in report.sources.items():
            if src.status == ListingStatus.FOUND.value:
                if src.new + src.duplicate + src.known + src.failed != src.found:
                    problems.append(f"{key} {name}: {src.found} photos found, but "
                                    f"{src.new}+{src.duplicate}+{src.known}+{src.failed} "
                                    "new+dup+known+failed")
                continue
            if not (src.reason and src.reason.startswith(f"{name}: ")):
                problems.append(f"{key} {name}: {src.status} without a reason ({src.reason!r})")
            if name in truth_prop["on_sites"] and src.status == ListingStatus.NOT_FOUND.value:
                problems.append(f"{key} {name}: a fault passed for 'not listed' ({src.reason})")
        assert report.downloaded == report.new + report.duplicate
    assert not problems, "\n".join(problems)


def test_every_failed_photo_says_what_was_wrong(scenario: Scenario) -> None:
    reasons: list[str] = []
    for (_, prop), report in zip(scenario.props, scenario.first, strict=True):
        assert report.failed_photos == sum(s.failed for s in report.sources.values())
        manifest = scenario.first_manifests[prop.property_hash]
        assert manifest is not None
        rejected = {u: e for u, e in manifest.urls.items() if e.status == UrlStatus.REJECTED}
        assert len(rejected) == report.failed_photos
        for src in report.sources.values():
            assert len(src.failures) == src.failed
            for line in src.failures:
                photo_id, _, reason = line.partition(": ")
                assert photo_id and reason and reason != "None", line
                assert REASON_RE.search(reason), f"{src.source} {line}"
                reasons.append(reason)
        assert all(e.reason and REASON_RE.search(e.reason) for e in rejected.values())
    # Every kind of bad image was met, recognised and named.
    for kind in ("truncated", "HTML page", "decompression bomb"):
        assert any(kind in r for r in reasons), (kind, reasons)


@pytest.mark.parametrize("run", ["first", "second"])
def test_stored_photos_are_valid_files_listed_in_the_manifest(scenario: Scenario,
                                                              run: str) -> None:
    files = scenario.first_files if run == "first" else scenario.second_files
    reports = scenario.first if run == "first" else scenario.second
    assert sum(r.photos_total for r in reports) > 0
    problems = {h: p for h, p in files.items() if p}
    assert not problems, problems


# ---- the rerun ----------------------------------------------------------------------------


def test_rerun_without_faults_fetches_only_what_failed(scenario: Scenario) -> None:
    store = ImageStore.from_settings(scenario.settings)
    for (truth_prop, prop), first, second in zip(scenario.props, scenario.first,
                                                 scenario.second, strict=True):
        key = truth_prop["key"]
        for name, src in second.sources.items():
            want = (ListingStatus.FOUND if name in truth_prop["on_sites"]
                    else ListingStatus.NOT_FOUND)
            assert src.status == want.value, (key, name, src.status, src.reason)
        assert second.failed_photos == 0, (key, second.sources)
        # Photos of sources the first run could not read are new to the store.
        unseen = sum(s.found for n, s in second.sources.items()
                     if first.sources[n].status != ListingStatus.FOUND.value)
        assert second.downloaded == first.failed_photos + unseen, (key, first, second)
        assert second.reused == first.downloaded, key
        manifest = store.read_manifest(prop.property_hash)
        assert manifest is not None and len(manifest.photos) == second.photos_total
        assert not [u for u, e in manifest.urls.items() if e.status == UrlStatus.REJECTED]

