"""The policy layer against the offline simulator: the sites' own counters are the judge."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from phx_images.net.client import PolicyClient
from phx_images.net.errors import NotAllowed
from tests.conftest import settings_for

AUTOCOMPLETE = "/stingray/do/location-autocomplete"


def test_ceiling_and_retry_after_against_a_rate_limited_site(
    fresh_sim, tmp_path: Path
) -> None:
    """The sim's Redfin allows 1 request/s (429 + Retry-After over it); we are configured to
    3/s. Every request must still succeed, we must slow down, and the site-side peak must
    never exceed our ceiling."""
    fresh_sim.set_faults("redfin", {"rate_limit": {"rps": 1, "burst": 1}})
    settings = settings_for(fresh_sim, tmp_path)
    settings.redfin.max_rps = 3.0
    settings.redfin.max_retries = 4

    async def go() -> PolicyClient:
        async with PolicyClient(settings, retry_base_s=0.05) as client:
            base = settings.redfin.base_url
            calls = [
                client.fetch("redfin", base + AUTOCOMPLETE, params={"location": f"{i} W", "v": 2},
                             kind="api")
                for i in range(4)
            ]  # fmt: skip
            responses = await asyncio.gather(*calls)
            assert all(r.status == 200 and r.text().startswith("{}&&") for r in responses)
            return client

    client = asyncio.run(go())
    stats = fresh_sim.stats()["redfin"]
    assert fresh_sim.window_ratios({"redfin": 3.0})["redfin"] <= 1.0
    assert stats["status_429"] >= 1  # the site did push back ...
    metrics = client.metrics()["redfin"]
    assert metrics["throttles"] == stats["status_429"]  # ... and every push-back was heard
    assert metrics["rate_rps"] < 3.0


def test_hostile_redirects_from_the_cdn_are_refused(sim, tmp_path: Path) -> None:
    settings = settings_for(sim, tmp_path)
    photos = settings.zillow.asset_urls[0]
    before = sim.stats()["elsewhere"]["requests"]

    async def go() -> None:
        async with PolicyClient(settings) as client:
            for path in ("/_bad/redirect-out.jpg", "/_bad/redirect-private.jpg"):
                with pytest.raises(NotAllowed):
                    await client.fetch("zillow", photos + path, kind="image")
            with pytest.raises(NotAllowed):  # elsewhere itself is on no allowlist
                await client.fetch("zillow", sim.urls["elsewhere"] + "/x.jpg", kind="image")

    asyncio.run(go())
    assert sim.stats()["elsewhere"]["requests"] == before


def test_proxy_rotation_and_token_against_the_sim(fresh_sim, tmp_path: Path, caplog) -> None:
    proxies = fresh_sim.proxy_urls()
    settings = settings_for(fresh_sim, tmp_path, proxies=[proxies["bad"], proxies["good"]])
    settings.assessor.max_rps = 20.0
    token = settings.assessor.token.get_secret_value()

    async def go() -> None:
        async with PolicyClient(settings, retry_base_s=0.01) as client:
            for _ in range(4):
                resp = await client.fetch(
                    "assessor", settings.assessor.base_url + "/search/property/",
                    params={"q": "4732 W Davis Rd"}, kind="api",
                )  # fmt: skip
                assert resp.json()["TotalPropertyResults"] >= 1  # token accepted

    with caplog.at_level(logging.DEBUG):
        asyncio.run(go())
    stats = fresh_sim.stats()
    assert stats["proxy_bad"]["resets"] == 1  # tried once, then benched
    assert stats["assessor"]["requests"] == 4
    assert token not in caplog.text
