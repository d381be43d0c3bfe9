"""Policy for the requests Chromium makes by itself in a policy tab (CDP ``Fetch`` interception).

Why: ``PolicyClient.page`` checks the URL it navigates to, but a loaded page makes requests of
its own: the reload after a JavaScript challenge, favicon.ico, images, scripts, XHR/fetch
(PhoenixMLS's autocomplete), redirects and navigations it starts itself. Unpoliced, those went
to any host and at any pace (a Zillow page load at ``max_rps=0.5`` reached 3 requests in one
second). Here every request of the tab is paused before it leaves (``Fetch.enable`` at the
Request stage) and answered exactly once:

1. resource types the scrapers do not need (:data:`SKIPPED_TYPES`, favicons) are failed;
2. a URL off the source's allowlist (or a name resolving to a private address) is failed with
   ``BlockedByClient``, the same :class:`~phx_images.net.allowlist.Allowlist` logging it;
3. everything else takes a rate slot through the client's pacing path (Retry-After pause,
   then ``PolicyState.acquire`` at the adaptive rate): the site's own origin on the site's
   limit, its CDN origins on the ``<source>-cdn`` limit, as ``fetch`` does. So the site never
   sees more than its ceiling, whoever starts the request.

Search-as-you-type: a widget that fetches on every keystroke (PhoenixMLS's autocomplete) would
queue one slot per character at a ceiling of ~1/s, and its answer would come half a minute
late. So XHR/fetch GETs to one path of one frame wait in a lane, one slot booking at a time,
and a request still waiting when the page asks again with a longer or shorter query (the next
keystroke) is dropped as stale (failed, counted as skipped): the site sees fewer requests and
the last query goes next. Parallel fetches with unrelated queries (``?i=1``, ``?i=2``) all go.

The navigation ``page``/``BrowserPage.navigate`` already paid a slot for is let through once
(:meth:`TabGuard.prepaid`). Fail-closed: an error or a timeout while deciding fails the
request; nothing is ever left paused. No breaker checks here: the page as a whole was admitted,
and refusing its challenge reload while the admission is being recorded would break it.

Closing needs care because Chromium *continues* a request that is still paused when the
DevTools session goes away. So pages declare an empty icon (:data:`NO_FAVICON_JS`: Chromium
fetches /favicon.ico after the load, often while the tab is closing), the tab is sent to
about:blank before it is closed (the page's loaders die with it), and the handler keeps
failing requests until the tab is gone.

Not covered (Chromium does not route them through a page's ``Fetch`` domain): WebSockets,
out-of-process iframes and workers (separate targets), service-worker fetches, preconnects.
The simulated sites use none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from phx_images.net.errors import FetchError, NotAllowed, TransientError
from phx_images.net.redact import get_logger, redact_text, redact_url

if TYPE_CHECKING:
    from phx_images.net.client import PolicyClient, _Source

log = get_logger(__name__)

#: Resource types failed before they leave: adapters read the DOM and JSON, never pixels or
#: layout, so fetching these would only spend the site's rate budget and wake the CDN.
#: (Photos are downloaded later, on purpose, by ``fetch(kind="image")`` under the CDN limit.)
SKIPPED_TYPES = frozenset({"Image", "Media", "Font", "Stylesheet"})
#: Run in every new document of a policed tab: an empty icon, so Chromium does not fetch
#: /favicon.ico by itself (blocking it is not enough if it comes as the tab closes).
NO_FAVICON_JS = """document.addEventListener('DOMContentLoaded', () => {
  const link = document.createElement('link');
  link.rel = 'icon'; link.href = 'data:,';
  (document.head || document.documentElement).appendChild(link);
}, {once: true});"""
#: How long one reply (continue/fail) to Chromium may take before we give up on it.
REPLY_TIMEOUT_S = 5.0
#: A slot is good for the moment it was given. The ceiling is judged where requests arrive,
#: with 0.1 s of slack (``ratelimit.SPACING_MARGIN``); a navigation that leaves later than
#: this after the slot its caller took (Chromium is slow to send a fresh tab's first request)
#: takes a fresh slot instead, so a request following it cannot arrive too close.
PREPAID_GRACE_S = 0.05


def is_unneeded(resource_type: str, url: str, headers: Any) -> bool:
    """True for requests we never make from a tab: :data:`SKIPPED_TYPES` and favicons.

    Chromium fetches favicons itself as type "Other" with an image-only ``Accept``.
    """
    if resource_type in SKIPPED_TYPES:
        return True
    if urlsplit(url).path.endswith("/favicon.ico"):
        return True
    accept = next((str(v) for k, v in dict(headers or {}).items() if k.lower() == "accept"), "")
    return resource_type == "Other" and accept.startswith("image/")


@dataclass
class _Waiting:
    """An XHR/fetch waiting in its lane for a slot (see "Search-as-you-type")."""

    query: str
    stale: bool = False


def _lane_of(event: Any, url: str) -> tuple[str, str] | None:
    """(frame, URL without query) for XHR/fetch GETs, which may be made stale; else None."""
    if event.resource_type.value not in ("XHR", "Fetch") or event.request.method != "GET":
        return None
    parts = urlsplit(url)
    return str(event.frame_id), f"{parts.scheme}://{parts.netloc}{parts.path}"


def _retyped(new: str, old: str) -> bool:
    """True when query ``new`` is ``old`` typed further (or erased back): one a prefix of the
    other, and not the same."""
    return new != old and (new.startswith(old) or old.startswith(new))


class TabGuard:
    """Polices every request of one tab for one source; see the module docstring.

    Use through :func:`policed_tab`. ``refusal`` holds the last :class:`NotAllowed` of a
    main-frame navigation (so ``page`` can report it as a refusal, not a site failure).
    """

    def __init__(self, client: PolicyClient, src: _Source, tab: Any, timeout_s: float) -> None:
        self._client = client
        self._src = src
        self._tab = tab
        self._timeout_s = timeout_s
        self._main_frame = str(getattr(tab.target, "target_id", "") or "")
        self._tasks: set[asyncio.Task[None]] = set()
        self._lanes: dict[tuple[str, str], tuple[asyncio.Lock, list[_Waiting]]] = {}
        self._prepaid_at: float | None = None
        self._closed = False
        self.refusal: NotAllowed | None = None
        self.paused = 0  # requests seen
        self.answered = 0  # replies sent (continue or fail); equals ``paused`` when idle

    async def start(self) -> None:
        import nodriver.cdp as cdp

        self._tab.add_handler(cdp.fetch.RequestPaused, self._on_paused)
        stage = cdp.fetch.RequestStage.REQUEST
        every = cdp.fetch.RequestPattern(url_pattern="*", request_stage=stage)
        commands = [
            cdp.fetch.enable(patterns=[every]),
            cdp.page.enable(),  # needed for scripts on new documents
            cdp.page.add_script_to_evaluate_on_new_document(NO_FAVICON_JS),
        ]
        for command in commands:
            await asyncio.wait_for(self._tab.send(command), timeout=REPLY_TIMEOUT_S)

    @contextlib.contextmanager
    def prepaid(self, slot_at: float) -> Iterator[None]:
        """The caller took a rate slot at ``slot_at`` (the client's clock) for the main-frame
        navigation it starts inside this block: that document request takes no other slot
        if it leaves within :data:`PREPAID_GRACE_S`."""
        self._prepaid_at, self.refusal = slot_at, None
        try:
            yield
        finally:
            self._prepaid_at = None

    def _on_paused(self, event: Any, _connection: Any = None) -> None:
        """nodriver's callback (runs inside its listener: must not block or raise)."""
        try:
            self.paused += 1
            task = asyncio.get_running_loop().create_task(self._handle(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        except Exception as exc:  # pragma: no cover - only if the loop is gone
            log.error("%s: could not handle a paused request: %s", self._src.name, exc)

    async def _handle(self, event: Any) -> None:
        """Decide and reply exactly once; fail the request on any error or timeout."""
        import nodriver.cdp as cdp

        reasons = cdp.network.ErrorReason
        error: Any = reasons.FAILED
        url = str(event.request.url)
        try:
            async with asyncio.timeout(self._timeout_s):
                error = await self._decide(event, url)
        except TimeoutError:
            error = reasons.TIMED_OUT
            log.warning("%s: in-page request not decided in %.0fs (rate slot?), failed (%s)",
                        self._src.name, self._timeout_s, redact_url(url))  # fmt: skip
        except asyncio.CancelledError:
            error = reasons.ABORTED
            raise
        except Exception as exc:
            log.warning("%s: in-page request failed closed: %s (%s)", self._src.name,
                        redact_text(exc), redact_url(url))  # fmt: skip
        finally:
            await self._reply(event, error)

    async def _decide(self, event: Any, url: str) -> Any:
        """None to let the request go, else the ``ErrorReason`` to fail it with."""
        import nodriver.cdp as cdp

        reasons = cdp.network.ErrorReason
        src = self._src
        if self._closed:
            return reasons.BLOCKED_BY_CLIENT
        rtype = event.resource_type.value
        if is_unneeded(rtype, url, event.request.headers):
            src.metrics.skipped += 1
            log.debug("%s: skipped %s request (%s)", src.name, rtype, redact_url(url))
            return reasons.BLOCKED_BY_CLIENT
        main_doc = rtype == "Document" and str(event.frame_id) == self._main_frame
        try:
            origin = await src.allowlist.check(url)  # logs the refusal (redacted)
        except NotAllowed as exc:
            src.metrics.refused += 1
            if main_doc:
                self.refusal = exc
            return reasons.BLOCKED_BY_CLIENT
        except OSError:
            src.metrics.connection_errors += 1
            return reasons.NAME_NOT_RESOLVED
        if main_doc and self._prepaid_at is not None:  # the navigation the caller paid for
            late = self._client._clock() - self._prepaid_at
            self._prepaid_at = None
            if late <= PREPAID_GRACE_S:
                return None
            log.debug("%s: navigation left %.2fs after its slot, takes a fresh one (%s)",
                      src.name, late, redact_url(url))  # fmt: skip
        paced = src if origin == src.base_origin else self._client._source(src.name, assets=True)
        try:
            fresh = await self._slot(event, url, paced)
        except FetchError as exc:  # paused by Retry-After for longer than we wait
            log.info("%s: in-page request refused: %s (%s)", src.name, exc.reason,
                     redact_url(url))  # fmt: skip
            return reasons.BLOCKED_BY_CLIENT
        if not fresh:
            src.metrics.skipped += 1
            log.debug("%s: dropped a stale search-as-you-type request (%s)", src.name,
                      redact_url(url))  # fmt: skip
            return reasons.ABORTED
        paced.metrics.requests += 1
        return None

    async def _slot(self, event: Any, url: str, paced: _Source) -> bool:
        """Take a rate slot for the request; False if it went stale while waiting."""
        lane = _lane_of(event, url)
        if lane is None:
            await self._client._pace(paced, url)
            return True
        lock, waiting = self._lanes.setdefault(lane, (asyncio.Lock(), []))
        me = _Waiting(urlsplit(url).query)
        for other in waiting:
            other.stale = other.stale or _retyped(me.query, other.query)
        waiting.append(me)
        try:
            async with lock:  # one booking at a time: later ones can still be dropped
                if not me.stale:
                    await self._client._pace(paced, url)
                return not me.stale
        finally:
            waiting.remove(me)

    async def _reply(self, event: Any, error: Any) -> None:
        import nodriver.cdp as cdp

        if error is None:
            command = cdp.fetch.continue_request(event.request_id)
        else:
            command = cdp.fetch.fail_request(event.request_id, error)
        self.answered += 1
        try:
            await asyncio.wait_for(self._tab.send(command), timeout=REPLY_TIMEOUT_S)
        except Exception as exc:  # the request is gone already (navigation, tab closing)
            log.debug("%s: reply to a paused request failed: %s", self._src.name,
                      redact_text(exc))  # fmt: skip

    async def stop(self) -> None:
        """Leave the page (about:blank: no network), fail every request still being decided
        and any later one at once; the handler stays until :meth:`detach`, after the tab is
        closed (see the module docstring)."""
        import nodriver.cdp as cdp

        self._closed = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._tab.send(cdp.page.navigate("about:blank")),
                                   timeout=REPLY_TIMEOUT_S)  # fmt: skip
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.shield(asyncio.wait(tasks, timeout=REPLY_TIMEOUT_S + 1))

    def detach(self) -> None:
        """Stop listening (the tab is closed: nothing of it can be paused any more)."""
        import nodriver.cdp as cdp

        self._closed = True
        self._tab.remove_handler(cdp.fetch.RequestPaused, self._on_paused)
        for task in list(self._tasks):
            task.cancel()


@contextlib.asynccontextmanager
async def policed_tab(
    client: PolicyClient, src: _Source, url: str
) -> AsyncIterator[tuple[Any, TabGuard]]:
    """A fresh tab of the client's browser whose every request is policed for ``src``; the
    tab is closed on exit, and the guard answers its requests until it is. An unpoliced tab
    never loads anything: if interception cannot be enabled this raises TransientError (for
    ``url``, the page about to be opened)."""
    guard: TabGuard | None = None
    try:
        async with client.browser().tab() as tab:
            guard = TabGuard(client, src, tab, timeout_s=client.settings.browser.page_timeout_s)
            try:
                await guard.start()
            except Exception as exc:
                raise TransientError(src.name, url, "could not police the browser tab: "
                                     f"{redact_text(exc)}") from None  # fmt: skip
            try:
                yield tab, guard
            finally:
                await guard.stop()
    finally:
        if guard is not None:
            guard.detach()
