"""Every adapter against the running simulator (faults off), compared with ``/_sim/truth``.

One PolicyClient (so one Chromium) serves the whole module: every property of
data/phx_homes.csv is discovered on every source once, in the module fixture, and the tests
check the results. Rates are raised for the test (the simulator has no rate limit with faults
off), so the run is bounded by the browser, not by politeness sleeps.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phx_images.address import Address
from phx_images.models import Listing, ListingStatus
from phx_images.settings import SOURCE_NAMES, Settings
from phx_images.sources import ADAPTERS
from tests.conftest import settings_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CSV = Path(__file__).resolve().parent.parent / "data" / "phx_homes.csv"
PHOTO_SITES = ("zillow", "redfin", "phoenixmls")


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as run:
        yield run


def fast_settings(sim: Any, tmp: Path) -> Settings:
    settings = settings_for(sim, tmp)
    for name in SOURCE_NAMES:
        settings.source(name).max_rps = 20.0
    return settings


@pytest.fixture(scope="module")
def client(sim: Any, runner: asyncio.Runner,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from phx_images.net.client import PolicyClient

    client = PolicyClient(fast_settings(sim, tmp_path_factory.mktemp("sources")))
    try:
        yield client
    finally:
        runner.run(client.aclose())
    manager = client._browser
    if manager is not None:  # the browser's whole process tree is gone
        assert not manager.running and manager.pid is None


@pytest.fixture(scope="module")
def truth(sim: Any) -> dict[str, Any]:
    return sim.truth()


def csv_addresses() -> list[str]:
    with CSV.open(newline="") as fh:
        return [row["full_address"] for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def results(client: Any, runner: asyncio.Runner) -> dict[tuple[str, str], Listing]:
    """(full address, source) -> Listing for every CSV address and every source."""
    limit = asyncio.Semaphore(3)

    async def one(full: str) -> list[tuple[tuple[str, str], Listing]]:
        address = Address.parse(full)
        async with limit:
            found = await asyncio.gather(
                *(ADAPTERS[name].discover(client, address) for name in SOURCE_NAMES))
        return [((full, item.source), item) for item in found]

    async def run_all() -> dict[tuple[str, str], Listing]:
        pairs = await asyncio.gather(*(one(full) for full in csv_addresses()))
        return dict(p for group in pairs for p in group)

    return runner.run(run_all())


def expected_photos(truth: dict[str, Any], prop: dict[str, Any], site: str
                    ) -> dict[str, list[str]]:
    """best_per_site URL -> sorted variant URLs of that site, for the property's photos."""
    ids = set(prop["photo_ids"])
    out = {}
    for photo in truth["photos"]:
        if photo["id"] in ids and site in photo["best_per_site"]:
            out[photo["best_per_site"][site]] = sorted(
                v["url"] for v in photo["variants"] if v["site"] == site)
    return out


def test_csv_covers_the_catalog(truth: dict[str, Any]) -> None:
    known = {p["full_address"] for p in truth["properties"]}
    addresses = set(csv_addresses())
    assert known <= addresses
    assert set(truth["unknown_addresses"]) <= addresses


@pytest.mark.parametrize("site", PHOTO_SITES)
def test_photos_equal_truth(site: str, results: dict, truth: dict[str, Any]) -> None:
    """Same photos as the truth: best URL per photo, all variants grouped, nothing else."""
    problems = []
    for prop in truth["properties"]:
        listing = results[(prop["full_address"], site)]
        if site not in prop["on_sites"]:
            if listing.status != ListingStatus.NOT_FOUND:
                problems.append(f"{prop['key']}: {listing.status} {listing.reason}")
            continue
        if listing.status != ListingStatus.FOUND:
            problems.append(f"{prop['key']}: {listing.status} {listing.reason}")
            continue
        want = expected_photos(truth, prop, site)
        got = {p.best_url: sorted(v.url for v in p.variants) for p in listing.photos}
        if got != want:
            problems.append(f"{prop['key']}: {len(got)} photos, want {len(want)}; "
                            f"missing {sorted(set(want) - set(got))[:2]}, "
                            f"extra {sorted(set(got) - set(want))[:2]}")
        own = {u for urls in want.values() for u in urls}
        foreign = set(truth["carousel_urls"].get(site, [])) - own
        taken = {v.url for p in listing.photos for v in p.variants} & foreign
        if taken:
            problems.append(f"{prop['key']}: took carousel URLs {sorted(taken)[:2]}")
        if len({p.source_photo_id for p in listing.photos}) != len(listing.photos):
            problems.append(f"{prop['key']}: photo ids not unique")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("site", SOURCE_NAMES)
def test_facts_equal_truth(site: str, results: dict, truth: dict[str, Any]) -> None:
    keys = {"zillow": ("price", "beds", "baths", "sqft", "year_built", "lot_sqft", "pool",
                       "hoa_monthly"),
            "redfin": ("price", "beds", "baths", "sqft", "year_built", "lot_sqft"),
            "phoenixmls": ("price", "beds", "baths", "sqft", "year_built", "lot_sqft",
                           "pool", "sewer"),
            "assessor": ("sqft", "beds", "baths", "year_built", "lot_sqft", "pool")}[site]
    problems = []
    for prop in truth["properties"]:
        listing = results[(prop["full_address"], site)]
        if listing.status != ListingStatus.FOUND:
            continue
        for key in keys:
            want, got = prop["facts"][key], listing.facts.get(key)
            if key == "lot_sqft" and prop["facts"]["lot_acres"] is not None and got is not None:
                ok = abs(got - want) <= 0.01 * 43560  # acres shown with 2 decimals
            else:
                ok = got == want
            if not ok:
                problems.append(f"{prop['key']} {key}: got {got!r}, want {want!r}")
    assert not problems, "\n".join(problems[:20])


def test_phoenixmls_typed_facts(results: dict, truth: dict[str, Any]) -> None:
    for prop in truth["properties"]:
        listing = results[(prop["full_address"], "phoenixmls")]
        if listing.status != ListingStatus.FOUND:
            continue
        f = prop["facts"]
        assert listing.facts["garage"] == f["garage_spaces"]
        assert listing.facts["hoa_monthly"] == f["hoa_monthly"]
        assert listing.facts["schools"] == {"elementary": f["elementary_school"],
                                            "middle": f["middle_school"],
                                            "high": f["high_school"]}


def test_unknown_addresses_not_found(results: dict, truth: dict[str, Any]) -> None:
    for full in truth["unknown_addresses"]:
        for site in SOURCE_NAMES:
            listing = results[(full, site)]
            assert listing.status == ListingStatus.NOT_FOUND, (site, listing.reason)
            assert listing.reason and listing.reason.startswith(f"{site}: ")


def test_every_known_property_found_on_its_sites(results: dict, truth: dict[str, Any]) -> None:
    for prop in truth["properties"]:
        for site in SOURCE_NAMES:
            status = results[(prop["full_address"], site)].status
            assert (status == ListingStatus.FOUND) == (site in prop["on_sites"]), (
                prop["key"], site, status)


def test_assessor_token_rejected(sim: Any, tmp_path: Path) -> None:
    """A wrong token: FAILED with "assessor: token rejected", and the token is never echoed."""
    from pydantic import SecretStr

    from phx_images.net.client import PolicyClient

    settings = settings_for(sim, tmp_path)
    settings.assessor.token = SecretStr("wrong-token-123")

    async def go() -> Listing:
        async with PolicyClient(settings) as client:
            return await ADAPTERS["assessor"].discover(
                client, Address.parse(sim.truth()["properties"][0]["full_address"]))

    listing = asyncio.run(go())
    assert listing.status == ListingStatus.FAILED
    assert listing.reason == "assessor: token rejected"
    assert "wrong-token-123" not in listing.model_dump_json()
