"""The static gallery, opened in real headless Chromium: images load, content is escaped."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from phx_images.categorize import Category
from phx_images.gallery import build_gallery
from phx_images.images import Downloaded, inspect, perceptual_hashes, standardize
from phx_images.settings import ImageSettings
from phx_images.store import ImageStore
from tests.image_helpers import encode, photo

S = ImageSettings()
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def _fill(store: ImageStore) -> None:
    ps = store.open_property("abcdef01", f"1 Main St {HOSTILE}, Phoenix, AZ 85001")
    now = datetime(2025, 3, 1, tzinfo=UTC)
    base = photo(1, (1600, 1067))
    for i, (data, source, url) in enumerate([
        (encode(base, "JPEG"), "zillow", "https://z.example/1.jpg"),
        (encode(base.resize((1280, 853)), "JPEG"), "redfin", "javascript:alert(1)"),
        (encode(photo(2, (1200, 800)), "JPEG"), "phoenixmls", "https://m.example/2-o.jpg"),
    ]):
        ps.add_photo(source=source, url=url,
                     downloaded=Downloaded(url, url, data, hashlib.sha256(data).hexdigest(),
                                           inspect(data, max_pixels=S.max_pixels)),
                     standardized=standardize(data, S), hashes=perceptual_hashes(data),
                     category=Category.of(["kitchen", "kitchen", "pool"][i], 80),
                     caption=HOSTILE, now=now)
    ps.commit()


async def _inspect_pages(urls: list[str]) -> list[dict]:
    import json

    import nodriver

    for attempt in range(3):  # a loaded machine can miss nodriver's ~3 s start window
        try:
            browser = await nodriver.start(
                browser_executable_path="/usr/bin/chromium", headless=True, sandbox=False,
                browser_args=["--disable-background-networking", "--disable-component-update",
                              "--disable-sync", "--no-first-run", "--disable-gpu",
                              "--allow-file-access-from-files"])
            break
        except Exception:
            from nodriver.core import util

            for stale in list(util.get_registered_instances()):  # the Chromium that was late
                stale.stop()
                util.get_registered_instances().discard(stale)
            if attempt == 2:
                raise
            await asyncio.sleep(1)
    results = []
    try:
        for url in urls:
            results.append(json.loads(await _inspect(await browser.get(url))))
    finally:
        browser.stop()
        await asyncio.sleep(0.5)  # let the browser process be reaped inside the loop
    return results


async def _inspect(tab: Any) -> str:
    for _ in range(100):
        done = await tab.evaluate(
            "Array.from(document.images).every(i => i.complete) && document.readyState"
            " === 'complete'")
        if done:
            break
        await asyncio.sleep(0.1)
    return await tab.evaluate(
        "JSON.stringify({imgs: Array.from(document.images).map(i => i.naturalWidth),"
        " text: document.body.innerText, pwned: window.pwned || 0,"
        " scripts: document.scripts.length,"
        " links: Array.from(document.links).map(a => a.getAttribute('href'))})",
        return_by_value=True)


@pytest.mark.browser
def test_gallery_in_chromium(tmp_path: Path) -> None:
    store = ImageStore(str(tmp_path / "store"))
    _fill(store)
    build_gallery(store)
    root = tmp_path / "store"
    index, page = asyncio.run(_inspect_pages([
        (root / "index.html").as_uri(),
        (root / "processed" / "abcdef01" / "index.html").as_uri()]))
    assert index["imgs"] and all(w > 0 for w in index["imgs"])
    assert "1 Main St" in index["text"] and "<script>" in index["text"]  # shown, as text
    assert "processed/abcdef01/index.html" in index["links"]

    assert len(page["imgs"]) == 2 and all(w > 0 for w in page["imgs"])  # duplicate folded
    assert page["pwned"] == 0 and page["scripts"] == 0
    assert "kitchen" in page["text"] and "pool" in page["text"]
    assert "1 duplicate copy folded in" in page["text"]
    assert "https://z.example/1.jpg" in page["links"]
    assert "javascript:alert(1)" not in page["links"]  # shown as text only
    assert "../../index.html" in page["links"]
