"""Zillow's PerimeterX-style press & hold, on a simulator of the test's own (faults set).

One client (one Chromium) for both cases. The order matters: the BLOCKED case runs first,
while the browser has no ``_px3`` cookie; the passing case then earns the cookie.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from phx_images.address import Address
from phx_images.models import ListingStatus
from phx_images.sources import ADAPTERS
from tests.conftest import settings_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def setup(fresh_sim: Any, tmp_path: Any) -> Iterator[tuple[Any, Any, asyncio.Runner]]:
    from phx_images.net.client import PolicyClient

    settings = settings_for(fresh_sim, tmp_path)
    settings.zillow.max_rps = 10.0
    client = PolicyClient(settings)
    with asyncio.Runner() as runner:
        try:
            yield fresh_sim, client, runner
        finally:
            runner.run(client.aclose())


def test_press_and_hold(setup: tuple[Any, Any, asyncio.Runner]) -> None:
    sim, client, runner = setup
    prop = next(p for p in sim.truth()["properties"] if "zillow" in p["on_sites"])
    address = Address.parse(prop["full_address"])

    # A hold the site needs (3 s) longer than we may hold (1.5 s): BLOCKED, not "no photos".
    sim.set_faults("zillow", {"captcha_rate": 1.0, "captcha_hold_s": 3.0})
    client.settings.browser.max_hold_s = 1.5
    listing = runner.run(ADAPTERS["zillow"].discover(client, address))
    assert listing.status == ListingStatus.BLOCKED, listing.reason
    assert listing.reason.startswith("zillow: press-and-hold challenge not passed")
    assert not listing.photos
    stats = sim.stats()["zillow"]
    assert stats["captchas_served"] >= 1 and stats["captchas_passed"] == 0

    # Every detail visit challenged, 2 s hold: passed by holding, photos found.
    sim.set_faults("zillow", {"captcha_rate": 1.0, "captcha_hold_s": 2.0})
    client.settings.browser.max_hold_s = 4.0
    listing = runner.run(ADAPTERS["zillow"].discover(client, address))
    assert listing.status == ListingStatus.FOUND, listing.reason
    assert listing.photos and listing.listing_id == str(prop["ids"]["zpid"])
    assert sim.stats()["zillow"]["captchas_passed"] == 1
