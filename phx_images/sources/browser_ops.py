"""The few browser operations adapters need, expressed over the policy layer's browser helpers.

Why a module of its own: adapters must never drive nodriver directly (the policy layer owns the
browser: allowlist, rate, breaker, tab limits). This file is the single seam between the
adapters and the net layer's ``BrowserPage`` (``get_html``, ``wait_for``, ``press_and_hold``);
if the net layer renames one, only this file changes. Polling the HTML with a predicate works
for a JavaScript challenge that reloads the page, a captcha, and a widget that renders late.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from phx_images.sources.base import ParseError


class WaitTimeout(TimeoutError):
    """A page did not reach the awaited state in time; ``.html`` is what it showed last."""

    def __init__(self, what: str, html: str) -> None:
        self.html = html
        super().__init__(f"timed out waiting for {what}")


async def html(page: Any) -> str:
    """The page's current serialised DOM."""
    return await page.get_html()


async def wait_html(page: Any, predicate: Callable[[str], bool], timeout_s: float, *,
                    what: str, interval_s: float = 0.2) -> str:
    """Poll the DOM until ``predicate(html)`` holds; raise :class:`WaitTimeout` otherwise.

    Reading the DOM while the page navigates (a challenge reloading it) can fail: such an
    error is retried until the deadline. The DOM is only read once the document is parsed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last = ""
    while True:
        with contextlib.suppress(Exception):  # fails while a navigation is in progress
            # Only a fully parsed document counts: a DOM read mid-parse (after a challenge
            # reloaded the page) can hold half a <script> whose JSON is cut off.
            if await page.evaluate("document.readyState") in ("interactive", "complete"):
                last = await html(page)
        if predicate(last):
            return last
        if loop.time() >= deadline:
            raise WaitTimeout(what, last)
        await asyncio.sleep(interval_s)


async def wait_selector(page: Any, selector: str, timeout_s: float, *, source: str) -> Any:
    """The element matching ``selector`` once it appears; a missing one is a layout change,
    reported loudly as a :class:`ParseError` naming the source and the selector."""
    try:
        return await page.wait_for(selector, timeout=timeout_s)
    except TimeoutError:
        raise ParseError(source, f"page has no {selector} after {timeout_s:g}s") from None


async def type_text(page: Any, selector: str, text: str, *, source: str,
                    timeout_s: float = 10.0) -> None:
    """Type ``text`` into the element as key events (the page's input handlers see them).

    The element comes from the net layer's ``wait_for``; typing uses the element's own
    ``send_keys`` (CDP key events), the one interaction net/ does not wrap.
    """
    element = await wait_selector(page, selector, timeout_s, source=source)
    await element.send_keys(text)


async def press_and_hold(page: Any, selector: str, seconds: float) -> None:
    """Hold the primary mouse button on ``selector`` (trusted CDP events, net layer)."""
    await page.press_and_hold(selector, seconds)
