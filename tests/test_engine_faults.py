"""The issue's acceptance criterion, end to end, without Prefect.

"With faults on (429s with Retry-After, 503 bursts, captcha share, connection resets, plus bad
images): the simulator's /_sim/stats shows no source exceeded its configured ceiling, and every
property either completes or is reported with the reason."

The module fixture runs the scenario once, on a simulator of its own, with one
:class:`Engine` (so one Chromium): ``extract`` for five properties, two at a time, while every
site misbehaves, then the faults are switched off and the same properties are extracted again
into the same store. The tests judge by the simulator's own counters, the reports, the
manifests and the files on disk.

The simulator runs in a process of its own here (``phx-sim``, driven over ``/_sim/*``), not in
a thread as ``fresh_sim`` does: arrivals are stamped on the simulator's event loop, and in
our process that loop shares the GIL with the engine's image threads and Chromium's DevTools
traffic; stalls of 0.1-0.4 s were measured that bunch the stamps of requests which left
0.18 s apart. A real site does not share our interpreter, and the ceiling is asserted exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import io
import json
import re
import subprocess
import sys
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

N_PROPERTIES = 5
AT_A_TIME = 2
#: Our ceilings (requests/second): the pages of each source, and each photo CDN.
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
    # A source key covers its page port and its photo port (one shared rate_limit bucket) ...
    "zillow": {**TRANSIENT, "captcha_rate": 0.3, "captcha_hold_s": 2.0},
    "redfin": {**TRANSIENT, "rate_limit": {"rps": 4, "burst": 4}},
    "phoenixmls": dict(TRANSIENT),
    "assessor": {**TRANSIENT, "rate_limit": {"rps": 2, "burst": 1}},
    # ... a port key adds knobs for that port only (merged over the source's).
    "zillow_photos": dict(BAD_IMAGES),
    "redfin_photos": dict(BAD_IMAGES),
    "phoenixmls_photos": {**BAD_IMAGES, "rate_limit": {"rps": 3, "burst": 3}},
}
#: Rate-limit buckets, as the ports that share each one.
BUCKETS = (("redfin", "redfin_photos"), ("assessor",), ("phoenixmls_photos",))
#: A failed photo's reason must name what was wrong: the bad image, or the transient fault
#: that outlasted the retries (HTTP status, a reset or other connection error, a timeout).
REASON_RE = re.compile(
    r"truncated|HTML page|decompression bomb|HTTP (429|50[0-4])|reset|Connection|"
    r"Recv failure|timeout|circuit", re.IGNORECASE)


def allowed_in_10s(max_rps: float) -> float:
    """The ceiling as the simulator judges it: at most ``max_rps x 10 + 1`` requests in any
    10 s window of arrivals (``peak_10s``)."""
    return max_rps * 10 + 1


class ProcessSim:
    """``phx-sim`` in a child process, with the in-process ``Simulator``'s test surface."""

    def __init__(self, cache_dir: Path, env_file: Path) -> None:
        self._env_file = env_file
        self._proc = subprocess.Popen(  # our own child; stopped by its handle in stop()
            [sys.executable, "-c", "import sys; from phx_sim.cli import main; sys.exit(main())",
             "--port", "0", "--seed", "7", "--cache-dir", str(cache_dir),
             "--write-env", str(env_file)],
            stdout=subprocess.PIPE, text=True)
        self.urls: dict[str, str] = {}
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.strip() == "ready":
                break
            name, url = line.split()
            self.urls[name] = url
        else:
            self.stop()
            raise RuntimeError("phx-sim exited before it was ready")

    def _call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.urls["control"] + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as rsp:
            return json.loads(rsp.read() or b"null")

    def env(self) -> dict[str, str]:
        out = {}
        for line in self._env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            out[key] = value[1:-1] if value[:1] == value[-1:] == "'" else value
        return out

    def truth(self) -> dict[str, Any]:
        return self._call("GET", "/_sim/truth")

    def stats(self) -> dict[str, dict[str, Any]]:
        return self._call("GET", "/_sim/stats")

    def reset_stats(self) -> None:
        self._call("POST", "/_sim/stats/reset")

    def set_faults(self, site: str, knobs: dict[str, Any]) -> None:
        self._call("PUT", f"/_sim/faults/{site}", knobs)

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)


@dataclass
class Scenario:
    settings: Settings
    truth: dict[str, Any]
    props: list[tuple[dict[str, Any], Property]]
    first: list[PropertyReport]
    first_stats: dict[str, dict[str, Any]]
    first_metrics: dict[str, dict[str, Any]]
    first_manifests: dict[str, Manifest | None]
    first_files: dict[str, list[str]]
    second: list[PropertyReport]
    second_stats: dict[str, dict[str, Any]]
    second_files: dict[str, list[str]]
    seconds: dict[str, float] = field(default_factory=dict)


def fault_settings(sim: Any, tmp: Path) -> Settings:
    per_source = {
        name: {"max_rps": rps, "asset_max_rps": ASSET_MAX_RPS, "max_retries": 6,
               # ~20 % transient failures are to be retried through, not to open the breaker
               # for the rest of the module (the breaker has tests of its own).
               "breaker_failures": 8}
        for name, rps in PAGE_MAX_RPS.items()
    }
    # First hold 3 s (the site wants 2 s); a page without content gives up after 10 s, not 30.
    browser = {"max_hold_s": 4.0, "page_timeout_s": 10.0, "max_tabs": 3}
    # Enough downloads of a property in flight to keep its three CDNs busy at once.
    orchestration = {"download_concurrency": 12}
    return settings_for(sim, tmp, browser=browser, orchestration=orchestration, **per_source)


def ceilings(settings: Settings) -> dict[str, float]:
    """Stats port -> requests allowed in any 10 s window."""
    out = {}
    for port, (source, cdn) in PORTS.items():
        cfg = settings.source(source)
        out[port] = allowed_in_10s(cfg.asset_max_rps if cdn else cfg.max_rps)
    return out


def stored_problems(store: ImageStore, property_hash: str) -> list[str]:
    """What is wrong with a property's folder: each photo the manifest lists must be a file
    that decodes at the listed size, whose bytes are its blob, with its kept URL tracked; no
    photo file may be unlisted."""
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
            problems.append(f"{photo.name}: kept URL not tracked for it ({entry})")
    listed = {p.name for p in manifest.photos}
    if len(listed) != len(manifest.photos):
        problems.append("two photos share a file name")
    on_disk = {f.name for f in folder.iterdir() if f.suffix in (".jpg", ".webp", ".png")}
    if on_disk != listed:
        problems.append(f"unlisted files {sorted(on_disk - listed)}, "
                        f"missing files {sorted(listed - on_disk)}")
    return problems


@pytest.fixture(scope="module")
def scenario(sim_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Scenario]:
    tmp = tmp_path_factory.mktemp("engine-faults")
    sim = ProcessSim(sim_cache_dir, tmp / "sim.env")
    try:
        truth = sim.truth()
        settings = fault_settings(sim, tmp)
        props = [(p, Property(address=Address.parse(p["full_address"])))
                 for p in truth["properties"][:N_PROPERTIES]]
        # The simulator builds its decompression bomb on first use (~0.5 s on its event loop,
        # arrivals queue meanwhile and are stamped together): have it built before measuring.
        with urllib.request.urlopen(sim.urls["zillow_photos"] + "/_bad/bomb.png") as rsp:
            assert rsp.status == 200
        # Importing nodriver takes ~0.5 s of the event loop when the browser first starts,
        # while the first fetches are under way: done before measuring, like the bomb.
        importlib.import_module("nodriver")
        with asyncio.Runner() as runner:
            engine = runner.run(Engine.open(settings))

            def run(run_id: str) -> list[PropertyReport]:
                async def all_properties() -> list[PropertyReport]:
                    gate = asyncio.Semaphore(AT_A_TIME)

                    async def one(prop: Property) -> PropertyReport:
                        async with gate:
                            return await engine.extract(prop, list(SOURCE_NAMES),
                                                        run_id=run_id, requester="test")

                    return list(await asyncio.gather(*(one(p) for _, p in props)))

                return runner.run(all_properties())

            try:
                for site, knobs in FAULTS.items():
                    sim.set_faults(site, knobs)
                sim.reset_stats()
                start = time.monotonic()
                first = run("faults-on")
                seconds = {"first": time.monotonic() - start}
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
                second = run("faults-off")
                seconds["second"] = time.monotonic() - start
                second_stats = sim.stats()
                second_files = {p.property_hash: stored_problems(engine.store, p.property_hash)
                                for _, p in props}
            finally:
                runner.run(engine.aclose())
    finally:
        sim.stop()
    yield Scenario(settings, truth, props, first, first_stats, first_metrics, first_manifests,
                   first_files, second, second_stats, second_files, seconds)


# ---- politeness ---------------------------------------------------------------------------


def test_the_faults_really_fired(scenario: Scenario) -> None:
    """Otherwise everything below could pass vacuously."""
    stats = scenario.first_stats
    total = {key: sum(s[key] for s in stats.values())
             for key in ("status_429", "status_503", "resets")}
    assert all(total.values()), total
    for ports in BUCKETS:  # every rate_limit bucket pushed back with 429 + Retry-After
        assert sum(stats[port]["rps_violations"] for port in ports) > 0, ports
    assert stats["zillow"]["captchas_served"] > 0
    assert stats["zillow"]["captchas_passed"] > 0  # a hold the adapter could pass, passed
    metrics = scenario.first_metrics
    assert sum(m.get("throttles", 0) for m in metrics.values()) > 0  # pushback was heeded
    assert sum(m.get("retries", 0) for m in metrics.values()) > 0


@pytest.mark.parametrize("run", ["first", "second"])
def test_no_port_exceeded_its_ceiling(scenario: Scenario, run: str) -> None:
    stats = scenario.first_stats if run == "first" else scenario.second_stats
    limits = ceilings(scenario.settings)
    over = {port: (stats[port]["peak_10s"], allowed) for port, allowed in limits.items()
            if stats[port]["peak_10s"] > allowed}
    assert not over, f"peak_10s over the ceiling, (peak, allowed): {over}"
    if run == "first":
        assert all(stats[port]["requests"] > 0 for port in limits)  # every port was used


# ---- reporting ----------------------------------------------------------------------------


def test_every_property_completes_or_says_why(scenario: Scenario) -> None:
    """Each source of each property is found or has a reason that names the source; a listing
    the truth says exists is never reported as "not listed"; every photo a found listing
    showed is accounted for (stored new, folded into a duplicate, or failed)."""
    problems = []
    for (truth_prop, prop), report in zip(scenario.props, scenario.first, strict=True):
        key = truth_prop["key"]
        assert report.property_hash == prop.property_hash
        assert report.error is None, report.error
        assert set(report.sources) == set(SOURCE_NAMES)
        for name, src in report.sources.items():
            if src.status == ListingStatus.FOUND.value:
                if src.new + src.duplicate + src.known + src.failed != src.found:
                    problems.append(f"{key} {name}: {src.found} photos found, but new+dup+"
                                    f"known+failed = {src.new}+{src.duplicate}+{src.known}+"
                                    f"{src.failed}")
                continue
            if not (src.reason and src.reason.startswith(f"{name}: ")):
                problems.append(f"{key} {name}: {src.status} without a reason ({src.reason!r})")
            if name in truth_prop["on_sites"] and src.status == ListingStatus.NOT_FOUND.value:
                problems.append(f"{key} {name}: a fault passed for 'not listed' ({src.reason})")
        assert report.downloaded == report.new + report.duplicate
        assert report.failed_photos == sum(s.failed for s in report.sources.values())
    assert not problems, "\n".join(problems)


def test_every_failed_photo_says_what_was_wrong(scenario: Scenario) -> None:
    reasons: list[str] = []
    for (_, prop), report in zip(scenario.props, scenario.first, strict=True):
        for src in report.sources.values():
            assert len(src.failures) == src.failed
            for line in src.failures:
                photo_id, _, reason = line.partition(": ")
                assert photo_id and REASON_RE.search(reason), f"{src.source} {line}"
                reasons.append(reason)
        # The manifest remembers each failure with its reason (retried on the next run).
        manifest = scenario.first_manifests[prop.property_hash]
        assert manifest is not None
        rejected = [e for e in manifest.urls.values() if e.status == UrlStatus.REJECTED]
        assert len(rejected) == report.failed_photos
        assert all(e.reason and REASON_RE.search(e.reason) for e in rejected)
    for kind in ("truncated", "HTML page", "decompression bomb"):  # each bad image was met
        assert any(kind in r for r in reasons), (kind, reasons)


@pytest.mark.parametrize("run", ["first", "second"])
def test_stored_photos_are_valid_files_listed_in_the_manifest(scenario: Scenario,
                                                              run: str) -> None:
    files = scenario.first_files if run == "first" else scenario.second_files
    reports = scenario.first if run == "first" else scenario.second
    assert all(r.photos_total > 0 for r in reports)
    problems = {h: p for h, p in files.items() if p}
    assert not problems, problems


# ---- the rerun ----------------------------------------------------------------------------


def test_rerun_without_faults_completes_and_fetches_only_what_failed(
        scenario: Scenario) -> None:
    for (truth_prop, _), first, second in zip(scenario.props, scenario.first,
                                              scenario.second, strict=True):
        key = truth_prop["key"]
        for name, src in second.sources.items():
            want = ListingStatus.FOUND if name in truth_prop["on_sites"] else (
                ListingStatus.NOT_FOUND)
            assert src.status == want.value, (key, name, src.status, src.reason)
        assert second.failed_photos == 0, (key, second.sources)
        # What the first run stored is reused by URL; downloaded are exactly its failures
        # plus the photos of sources it could not read at all.
        unseen = sum(s.found for n, s in second.sources.items()
                     if first.sources[n].status != ListingStatus.FOUND.value)
        assert second.downloaded == first.failed_photos + unseen, (key, first, second)
        assert second.reused == first.downloaded, key
        assert second.photos_total >= first.photos_total, key
