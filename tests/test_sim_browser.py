"""The simulator in real Chromium (nodriver): the JS gate, press & hold, the JS search box.

One browser for the module (each start costs seconds); each test gets its own simulator, whose
fresh signing secret invalidates the cookies earlier tests left in the browser.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from phx_images.net.browser import wait_for as wait_for_element

nodriver = pytest.importorskip("nodriver")

pytestmark = pytest.mark.browser

ARGS = ["--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-gpu"]
ITEMS_JS = ("JSON.stringify([...document.querySelectorAll('[role=treeitem]')]"
            ".map(e => e.dataset.url))")


@pytest.fixture(scope="module")
def browser() -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    loop = asyncio.new_event_loop()
    b = loop.run_until_complete(nodriver.start(
        browser_executable_path="/usr/bin/chromium", headless=True, sandbox=False,
        browser_args=ARGS))
    try:
        yield loop, b
    finally:
        b.stop()
        loop.run_until_complete(asyncio.sleep(0.2))
        loop.close()


async def wait_for(tab: Any, needle: str, timeout: float = 10.0) -> str:
    html = ""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        html = await tab.get_content()
        if needle in html:
            return html
        await asyncio.sleep(0.15)
    return html


async def press(tab: Any, hold_s: float) -> None:
    box = json.loads(await tab.evaluate(
        "JSON.stringify(document.getElementById('px-captcha').getBoundingClientRect())"))
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    inp = nodriver.cdp.input_
    await tab.send(inp.dispatch_mouse_event("mouseMoved", x=x, y=y))
    await tab.send(inp.dispatch_mouse_event("mousePressed", x=x, y=y,
                                            button=inp.MouseButton.LEFT, click_count=1))
    await asyncio.sleep(hold_s)
    await tab.send(inp.dispatch_mouse_event("mouseReleased", x=x, y=y,
                                            button=inp.MouseButton.LEFT, click_count=1))


def detail_url(sim: Any, index: int = 0) -> str:
    p = [q for q in sim.truth()["properties"] if "zillow" in q["on_sites"]][index]
    return f"{sim.urls['zillow']}/homedetails/{p['slug']}/{p['ids']['zpid']}_zpid/"


def test_js_gate_passes_in_chromium(browser: Any, fresh_sim: Any) -> None:
    loop, b = browser

    async def run() -> str:
        tab = await b.get(detail_url(fresh_sim))
        return await wait_for(tab, "__NEXT_DATA__")

    html = loop.run_until_complete(run())
    assert "__NEXT_DATA__" in html and "gdpClientCache" in html
    stats = fresh_sim.stats()["zillow"]
    assert stats["challenges_served"] >= 1 and stats["challenges_passed"] == 1


def test_press_and_hold(browser: Any, fresh_sim: Any) -> None:
    loop, b = browser
    fresh_sim.set_faults("zillow", {"captcha_rate": 1.0, "captcha_hold_s": 1.0})

    async def run() -> tuple[str, str]:
        tab = await b.get(detail_url(fresh_sim, 1))
        html = await wait_for(tab, "px-captcha")
        assert "Access to this page has been denied" in html
        assert "Press &amp; Hold to confirm you are a human" in html
        label = await tab.evaluate(
            "document.getElementById('px-captcha').shadowRoot.textContent")
        assert "Press & Hold" in label
        await press(tab, 0.3)  # too short: nothing happens
        await asyncio.sleep(1.5)
        after_short = await tab.get_content()
        await press(tab, 1.0)
        return after_short, await wait_for(tab, "__NEXT_DATA__")

    after_short, after_hold = loop.run_until_complete(run())
    assert "px-captcha" in after_short and "__NEXT_DATA__" not in after_short
    assert "__NEXT_DATA__" in after_hold
    stats = fresh_sim.stats()["zillow"]
    assert stats["captchas_served"] == 1 and stats["captchas_passed"] == 1


def test_redfin_refuses_headless_and_pmls_search_box(browser: Any, fresh_sim: Any) -> None:
    loop, b = browser

    async def run() -> tuple[str, list[str], list[str]]:
        tab = await b.get(fresh_sim.urls["redfin"] + "/")
        redfin = await tab.get_content()
        tab = await b.get(fresh_sim.urls["phoenixmls"] + "/simple-search/")
        # the project's wait_for retries while the page is still loading: nodriver's select
        # raced the load ("Could not find node with given id") about half the time under load
        box = await wait_for_element(tab, "#search-input")
        await box.send_keys("47")
        await asyncio.sleep(0.8)
        short = json.loads(await tab.evaluate(ITEMS_JS))
        await box.send_keys("32 W Dav")
        await wait_for(tab, 'role="treeitem"')
        items = json.loads(await tab.evaluate(ITEMS_JS))
        return redfin, short, items

    redfin, short, items = loop.run_until_complete(run())
    assert "Access denied" in redfin  # nodriver's default user agent says HeadlessChrome
    assert short == []
    assert items == ["/mls/4732-w-davis-rd-glendale-az-85306-mls_6937912"]
