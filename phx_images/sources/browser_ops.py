"""The few browser operations adapters need, expressed over the policy layer's browser helpers.

Why a module of its own: adapters must never drive nodriver directly (the policy layer owns the
browser: allowlist, rate, breaker, tab limits). This file is the single seam between the
adapters and the net layer's ``BrowserPage`` (``get_html``, ``wait_for``, ``press_and_hold``);
if the net layer renames one, only this file changes. Polling the HTML with a predicate works
for a JavaScript challenge that reloads the page, a captcha, and a widget that renders late.

Transient failures: ``fetch`` retries 429/5xx and dropped connections itself, but a browser
visit only learns of them from the page. A document (or a widget's XHR) answered 429/5xx is
:class:`PageHttpError`, raised as soon as it is seen instead of waiting out the timeout for
content that cannot come; :func:`with_retries` runs a whole visit again (a fresh, policed tab)
on that and on a failed navigation, so a 503 burst is neither "blocked" nor "not listed".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from phx_images.sources.base import ParseError

T = TypeVar("T")
#: Answers worth another visit (as ``net.retry.TRANSIENT_STATUSES``).
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
#: HTTP status of the tab's current document (Navigation Timing; 0 when unknown).
DOCUMENT_STATUS_JS = "(performance.getEntriesByType('navigation')[0] || {}).responseStatus || 0"


class PageHttpError(Exception):
    """The document or an XHR the page needs was answered with a transient HTTP error (or, for
    an XHR, failed without an answer: ``status`` 0)."""

    def __init__(self, status: int, what: str) -> None:
        self.status = status
        self.what = what
        answer = f"HTTP {status}" if status else "no answer (connection failed)"
        super().__init__(f"{what}: {answer}")


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
        status = await document_status(page)
        if status in TRANSIENT_STATUSES:
            raise PageHttpError(status, what)
        if loop.time() >= deadline:
            raise WaitTimeout(what, last)
        await asyncio.sleep(interval_s)


async def document_status(page: Any) -> int:
    """HTTP status of the page's current document (0 while unknown, e.g. mid-navigation)."""
    with contextlib.suppress(Exception):
        return int(await asyncio.wait_for(page.evaluate(DOCUMENT_STATUS_JS), 5.0) or 0)
    return 0


async def last_request_status(page: Any, path: str) -> int | None:
    """HTTP status of the page's latest finished request whose URL contains ``path`` (0: it
    failed without an answer or was cancelled); None if there was none (Resource Timing)."""
    probe = ("(() => { const e = performance.getEntriesByType('resource')"
             f".filter(r => r.name.includes({json.dumps(path)})).pop();"
             " return e ? e.responseStatus : -1; })()")
    with contextlib.suppress(Exception):
        status = int(await asyncio.wait_for(page.evaluate(probe), 5.0))
        return None if status < 0 else status
    return None


async def with_retries(visit: Callable[[], Awaitable[T]], *, retries: int,
                       base_delay_s: float = 1.0) -> T:
    """Run ``visit`` (one whole browser visit) again after :class:`PageHttpError` or a failed
    navigation (the policy layer's ``TransientError``), at most ``retries`` more times, waiting
    ``base_delay_s``, twice that, ... in between (a sim or site 503 says Retry-After 1 s).
    The last failure propagates."""
    from phx_images.net.errors import TransientError

    for attempt in range(retries + 1):
        try:
            return await visit()
        except (PageHttpError, TransientError):
            if attempt >= retries:
                raise
        await asyncio.sleep(min(30.0, base_delay_s * 2**attempt))
    raise AssertionError("unreachable")


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
