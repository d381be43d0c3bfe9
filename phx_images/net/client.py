"""``PolicyClient``: the one door through which every source's requests leave the process.

Each HTTP hop goes through, in this order:

1. allowlist (scheme, origin, private addresses) - every redirect hop too, followed by hand;
2. a read-only breaker check (fail fast without waiting for a rate slot);
3. breaker admission (half-open: exactly one probe);
4. proxy choice (rotation, benching, health probe);
5. a request slot (``PolicyState.acquire``): the source's pause (Retry-After) and its adaptive
   rate, under the hard ``max_rps`` ceiling across every worker sharing the state;
6. the request on curl_cffi (browser TLS fingerprint, connection reuse per source), with the
   per-source token header added here (adapters never see tokens), a timeout, and the body
   streamed and cut at the size cap;
7. the verdict: breaker, adaptive rate, proxy health and counters are updated, and transient
   failures are retried with full-jitter backoff (Retry-After as a floor).

Why the order: refusals that need no network come first and cost nothing; the slot comes
last because a request must leave inside its slot (``ratelimit.SlotPacer``), so nothing that
may wait on I/O (a shared breaker read, a proxy probe) sits between the slot and the send;
the verdict is recorded before any retry sleeps so concurrent callers see it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from curl_cffi.requests.exceptions import RequestException

from phx_images.net.allowlist import Allowlist, Resolver, origin_of
from phx_images.net.breaker import BreakerRecord, CircuitBreaker, Denied, Ticket
from phx_images.net.browser import BrowserManager, navigate, press_and_hold, wait_for
from phx_images.net.browser import get_html as _get_html
from phx_images.net.errors import (
    Blocked,
    CircuitOpen,
    FetchError,
    HttpStatusError,
    NotAllowed,
    TooLarge,
    TransientError,
)
from phx_images.net.interception import TabGuard, policed_tab
from phx_images.net.proxies import NoProxyAvailable, ProxyPool
from phx_images.net.ratelimit import Paused
from phx_images.net.redact import get_logger, redact_text, redact_url, register_secret
from phx_images.net.retry import THROTTLE_STATUSES, RetryPolicy, parse_retry_after
from phx_images.net.session import PacedSession, resend_refused
from phx_images.net.state import MemoryPolicyState, PolicyState, StaleRecord
from phx_images.settings import Settings, SourceSettings

log = get_logger(__name__)

Kind = Literal["page", "api", "image"]
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: Body markers of anti-bot pages (PerimeterX, Redfin's robot page, generic captchas).
CHALLENGE_MARKERS: tuple[bytes, ...] = (
    b"px-captcha",
    b"access to this page has been denied",
    b"press & hold",
    b"are you a robot",
    b"captcha",
    b"zsim_js",
    b"checking your browser",
)


class _Headers(Mapping[str, str]):
    """Case-insensitive, read-only response headers (last value wins for repeats)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._data = {k.lower(): v for k, v in items}

    def __getitem__(self, key: str) -> str:
        return self._data[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"_Headers({self._data!r})"


@dataclass
class Response:
    """A finished response: final URL (after redirects), status, headers, whole body."""

    url: str
    status: int
    headers: Mapping[str, str]
    content: bytes

    def text(self) -> str:
        """Body decoded with the Content-Type charset (UTF-8 if none), never raising."""
        ctype = self.headers.get("content-type", "")
        charset = "utf-8"
        for part in ctype.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip("\"'")
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """Body parsed as JSON (raises ValueError on invalid JSON)."""
        return jsonlib.loads(self.text())


@dataclass
class SourceMetrics:
    """Counters of one source, exported by the orchestration (Prefect artifacts/events)."""

    requests: int = 0
    bytes: int = 0
    status: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    throttles: int = 0
    redirects: int = 0
    refused: int = 0
    circuit_open: int = 0
    too_large: int = 0
    connection_errors: int = 0
    resends_refused: int = 0  # libcurl's silent re-sends stopped (net/session.py)
    pages: int = 0
    skipped: int = 0  # in-page requests not made: images, fonts, ... (net/interception.py)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "bytes": self.bytes,
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "retries": self.retries,
            "throttles": self.throttles,
            "redirects": self.redirects,
            "refused": self.refused,
            "circuit_open": self.circuit_open,
            "too_large": self.too_large,
            "connection_errors": self.connection_errors,
            "resends_refused": self.resends_refused,
            "pages": self.pages,
            "skipped": self.skipped,
        }


def asset_source_name(source: str) -> str:
    """The policy name of a source's photo CDN (its own rate limit and breaker)."""
    return f"{source}-cdn"


@dataclass
class _Source:
    name: str
    settings: SourceSettings
    allowlist: Allowlist
    breaker: CircuitBreaker
    retry: RetryPolicy
    base_origin: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    metrics: SourceMetrics = field(default_factory=SourceMetrics)


class _Retryable(Exception):
    """Internal: this attempt failed transiently; the retry loop decides what next."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None,
                 *, site_failure: bool = True):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        #: False when the attempt says nothing about the site's (or proxy's) health
        self.site_failure = site_failure


def _with_params(url: str, params: Mapping[str, Any] | None) -> str:
    """``url`` with ``params`` appended to its query (so allowlist and logs see the real URL)."""
    if not params:
        return url
    parts = urlsplit(url)
    extra = urlencode([(k, v) for k, v in params.items() if v is not None], doseq=True)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def looks_like_challenge(status: int, body: bytes) -> bool:
    """True when a 403/429/503 body is an anti-bot page rather than a plain error."""
    if status not in (403, 429, 503):
        return False
    head = body[:65536].lower()
    return any(marker in head for marker in CHALLENGE_MARKERS)


class PolicyClient:
    """One per process (or per flow run); owns the curl_cffi sessions and the browser.

    ``clock``/``wall_clock``/``sleep``/``resolver``/``rng`` are injectable for tests;
    production code passes only ``settings`` (and optionally a shared ``state``).
    """

    def __init__(
        self,
        settings: Settings,
        state: PolicyState | None = None,
        *,
        browser: BrowserManager | None = None,
        resolver: Resolver | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
        retry_base_s: float = 0.5,
        max_wait_s: float = 120.0,
        probe_lease_s: float | None = None,
        rng: Any = None,
    ) -> None:
        self.settings = settings
        self.state: PolicyState = state or MemoryPolicyState(clock=clock, sleep=sleep)
        self._browser = browser
        self._resolver = resolver
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._retry_base_s = retry_base_s
        self._max_wait_s = max_wait_s
        self._probe_lease_s = probe_lease_s
        self._rng = rng
        self._sources: dict[str, _Source] = {}
        self._sessions: dict[str, Any] = {}
        self._breaker_cache: dict[str, BreakerRecord] = {}
        self._closed = False
        proxies = [p.get_secret_value() for p in settings.proxies]
        self.proxies = ProxyPool(proxies, clock=clock)
        for name in ("zillow", "redfin", "phoenixmls", "assessor"):
            token = settings.source(name).token
            if token is not None:
                register_secret(token.get_secret_value())
        if settings.vision_api_key is not None:
            register_secret(settings.vision_api_key.get_secret_value())

    # ------------------------------------------------------------------ per-source machinery

    def _source(self, name: str, *, assets: bool = False) -> _Source:
        """The policy state of ``name``; with ``assets``, of its photo CDN, which is paced and
        broken separately (``asset_max_rps``): a CDN is built for many more requests than the
        site's pages, and photos failing there must not close the site itself."""
        key = asset_source_name(name) if assets else name
        src = self._sources.get(key)
        if src is not None:
            return src
        try:
            cfg = self.settings.source(name)
        except KeyError as exc:
            raise NotAllowed(name, "", str(exc)) from None
        if assets:
            cfg = cfg.model_copy(update={"max_rps": cfg.asset_max_rps})
        import random

        src = _Source(
            name=key,
            settings=cfg,
            allowlist=Allowlist(
                name, cfg.origins, self.settings.allow_private_origins, resolver=self._resolver
            ),
            breaker=CircuitBreaker(
                failures=cfg.breaker_failures,
                reset_s=cfg.breaker_reset_s,
                probe_lease_s=self._probe_lease_s or max(60.0, 3 * cfg.timeout_s),
                clock=self._wall_clock,
            ),
            base_origin=origin_of(cfg.base_url),
            retry=RetryPolicy(
                max_retries=cfg.max_retries,
                base_s=self._retry_base_s,
                max_wait_s=self._max_wait_s,
                rng=self._rng or random.Random(),
            ),
        )
        self.state.configure(key, cfg.max_rps)
        self._sources[key] = src
        return src

    def _session(self, src: _Source) -> Any:
        """One AsyncSession per source: connection reuse, and cookies never cross sources
        (in the simulator every site is 127.0.0.1, and cookies ignore ports)."""
        session = self._sessions.get(src.name)
        if session is None:
            # PacedSession: keep-alive and HTTP/2, but never libcurl's silent re-send of a
            # request whose reused connection died (see phx_images/net/session.py)
            session = PacedSession(impersonate=src.settings.impersonate)
            self._sessions[src.name] = session
        return session

    def _headers(self, src: _Source, origin: str, extra: Mapping[str, str] | None) -> dict:
        headers = {
            k: v
            for k, v in (extra or {}).items()
            if k.lower() not in ("authorization", "proxy-authorization")
        }
        token = src.settings.token
        if token is not None and origin == src.base_origin:
            headers["AUTHORIZATION"] = token.get_secret_value()
        return headers

    # ------------------------------------------------------------------ breaker bookkeeping

    async def _breaker_read(self, name: str) -> BreakerRecord:
        rec = await self.state.breaker_get(name)
        self._breaker_cache[name] = rec
        return rec

    async def _breaker_precheck(self, src: _Source, url: str) -> None:
        rec = await self._breaker_read(src.name)
        now = self._wall_clock()
        if rec.state == "open" and rec.retry_at is not None and now < rec.retry_at:
            self._deny(src, url, Denied(rec.retry_at, "circuit open"))
        if rec.state == "half_open" and rec.probe_deadline and now < rec.probe_deadline:
            self._deny(src, url, Denied(rec.probe_deadline, "circuit half-open: probe in flight"))

    def _deny(self, src: _Source, url: str, denied: Denied) -> None:
        src.metrics.circuit_open += 1
        log.info("%s: %s, retry at %.0f (%s)", src.name, denied.reason, denied.retry_at,
                 redact_url(url))  # fmt: skip
        raise CircuitOpen(src.name, url, denied.reason, retry_at=denied.retry_at)

    async def _admit(self, src: _Source, url: str) -> Ticket:
        async with src.lock:
            for _ in range(10):
                rec = await self._breaker_read(src.name)
                decision, new = src.breaker.admit(rec)
                if new is not None:
                    try:
                        await self.state.breaker_put(src.name, new)
                    except StaleRecord:
                        continue
                    self._breaker_cache[src.name] = new
                    log.warning("%s: circuit half-open, one probe goes (%s)", src.name,
                                redact_url(url))  # fmt: skip
                if isinstance(decision, Denied):
                    self._deny(src, url, decision)
                assert isinstance(decision, Ticket)
                return decision
        self._deny(src, url, Denied(self._wall_clock() + 1.0, "breaker store contended"))
        raise AssertionError("unreachable")

    async def _verdict(
        self, src: _Source, ticket: Ticket, outcome: Literal["ok", "fail", "none"], reason: str
    ) -> None:
        """Record an attempt's outcome on the breaker ("none": no verdict, release a probe)."""
        async with src.lock:
            for _ in range(10):
                rec = await self._breaker_read(src.name)
                if outcome == "ok":
                    new = src.breaker.on_success(rec, ticket)
                elif outcome == "fail":
                    new = src.breaker.on_failure(rec, ticket, redact_text(reason))
                else:
                    new = src.breaker.on_abandon(rec, ticket)
                if new is None:
                    return
                try:
                    await self.state.breaker_put(src.name, new)
                except StaleRecord:
                    continue
                self._breaker_cache[src.name] = new
                if new.state != rec.state:
                    log.warning("%s: circuit %s -> %s (%s)", src.name, rec.state, new.state,
                                redact_text(reason))  # fmt: skip
                return

    # ------------------------------------------------------------------ pacing

    async def _pace(self, src: _Source, url: str) -> None:
        """Return when this request may leave: its slot, shared with every worker."""
        try:
            await self.state.acquire(src.name, self._max_wait_s)
        except Paused as exc:
            raise TransientError(src.name, url, f"source {exc}",
                                 retry_after=exc.remaining) from None
        except Exception as exc:  # the shared ledger is down: no slot, so no request
            raise TransientError(src.name, url, "request ledger unavailable: "
                                 f"{type(exc).__name__}") from None

    async def _throttled(self, src: _Source, url: str, status: int, challenge: bool,
                         retry_after: float | None) -> None:
        """Slow every worker of this source down (and pause it on a Retry-After)."""
        src.metrics.throttles += 1
        rate = await self.state.throttle(src.name, retry_after)
        log.warning("%s: throttled (HTTP %d%s), rate now %.3f/s%s (%s)", src.name, status,
                    ", challenge" if challenge else "", rate,
                    f", paused {retry_after:.1f}s" if retry_after else "",
                    redact_url(url))  # fmt: skip

    # ------------------------------------------------------------------ fetch

    async def fetch(
        self,
        source: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        kind: Kind = "page",
        max_bytes: int | None = None,
    ) -> Response:
        """GET ``url`` for ``source`` under every policy; the final 2xx response.

        Raises NotAllowed, CircuitOpen, Blocked, HttpStatusError, TooLarge, TransientError
        (all FetchError). Redirects are followed by hand (max 5), each hop re-checked.
        """
        if self._closed:
            raise FetchError(source, url, "client is closed")
        src = self._source(source)
        if not src.settings.enabled:
            raise NotAllowed(source, url, "source is disabled in settings")
        if kind == "image" and origin_of(url) != src.base_origin:
            src = self._source(source, assets=True)
        if max_bytes is not None:
            cap = max_bytes
        elif kind == "image":
            cap = src.settings.max_image_bytes
        else:
            cap = src.settings.max_page_bytes
        current = _with_params(url, params)
        retries = [0]  # shared by every hop of this fetch
        for _hop in range(MAX_REDIRECTS + 1):
            resp = await self._with_retries(src, current, headers, cap, retries)
            location = resp.headers.get("location")
            if resp.status in REDIRECT_STATUSES and location:
                nxt = urljoin(current, location.strip())
                src.metrics.redirects += 1
                log.info("%s: redirect %d %s -> %s", source, resp.status, redact_url(current),
                         redact_url(nxt))  # fmt: skip
                current = nxt
                continue
            if 200 <= resp.status < 300:
                return resp
            raise HttpStatusError(source, current, f"HTTP {resp.status}", status=resp.status)
        src.metrics.refused += 1
        raise NotAllowed(source, url, f"more than {MAX_REDIRECTS} redirects")

    async def _with_retries(
        self,
        src: _Source,
        url: str,
        headers: Mapping[str, str] | None,
        cap: int,
        retries: list[int],
    ) -> Response:
        while True:
            try:
                return await self._attempt(src, url, headers, cap)
            except _Retryable as exc:
                done = retries[0]
                if not src.retry.should_retry(done):
                    raise TransientError(
                        src.name, url, f"{exc.reason}; gave up after {done + 1} attempts",
                        status=exc.status, retry_after=exc.retry_after, attempts=done + 1,
                    ) from None  # fmt: skip
                delay = src.retry.delay(done, exc.retry_after)
                if delay is None:
                    raise TransientError(
                        src.name, url, f"{exc.reason}; Retry-After {exc.retry_after:.0f}s is "
                        f"longer than the {self._max_wait_s:.0f}s we wait in one fetch",
                        status=exc.status, retry_after=exc.retry_after, attempts=done + 1,
                    ) from None  # fmt: skip
                retries[0] += 1
                src.metrics.retries += 1
                log.info("%s: retry %d/%d in %.2fs after %s (%s)", src.name, done + 1,
                         src.retry.max_retries, delay, exc.reason, redact_url(url))  # fmt: skip
                await self._sleep(delay)

    async def _check_allowed(self, src: _Source, url: str) -> str:
        try:
            return await src.allowlist.check(url)
        except NotAllowed:
            src.metrics.refused += 1
            raise
        except OSError as exc:
            src.metrics.connection_errors += 1
            raise _Retryable(f"DNS resolution failed: {redact_text(exc)}") from None

    async def _attempt(
        self, src: _Source, url: str, headers: Mapping[str, str] | None, cap: int
    ) -> Response:
        origin = await self._check_allowed(src, url)
        await self._breaker_precheck(src, url)
        ticket = await self._admit(src, url)
        outcome: Literal["ok", "fail", "none"] = "none"
        reason = "cancelled"
        try:
            try:
                proxy = await self.proxies.pick(self._proxy_probe(src))
            except NoProxyAvailable:
                reason = "every proxy is benched"
                raise _Retryable(reason) from None
            await self._pace(src, url)
            try:
                resp = await self._send(src, url, self._headers(src, origin, headers), proxy, cap)
            except TooLarge:
                outcome, reason = "ok", "too large"
                raise
            except _Retryable as exc:
                reason = exc.reason
                if not exc.site_failure:
                    pass
                elif proxy is not None:
                    # Through a proxy, a connection failure is the proxy's until proven
                    # otherwise: bench it, leave the site's breaker alone.
                    self.proxies.report_failure(proxy, exc.reason)
                else:
                    outcome = "fail"
                raise
            self.proxies.report_success(proxy)
            outcome, reason, error = await self._classify(src, url, resp)
            if error is not None:
                raise error
            return resp
        finally:
            await asyncio.shield(self._verdict(src, ticket, outcome, reason))

    async def _classify(
        self, src: _Source, url: str, resp: Response
    ) -> tuple[Literal["ok", "fail"], str, Exception | None]:
        """Verdict for a response, adjusting the adaptive rate: (outcome, reason, error).

        ``error`` is what the attempt raises: _Retryable for 429/5xx, Blocked for 403 and
        challenges, None for a usable answer (2xx, 3xx, or a definite 4xx fetch reports).
        429 proves the site is up: retried, but not a breaker failure.
        """
        status = resp.status
        retry_after = parse_retry_after(resp.headers.get("retry-after"), now=self._wall_clock())
        challenge = looks_like_challenge(status, resp.content)
        if status in THROTTLE_STATUSES or challenge:
            await self._throttled(src, url, status, challenge, retry_after)
        if status == 403 or (challenge and status != 429):
            what = "anti-bot challenge" if challenge else "HTTP 403 forbidden"
            return "fail", what, Blocked(src.name, url, what, status=status)
        if status == 429:
            return "ok", "HTTP 429", _Retryable("HTTP 429", status, retry_after)
        if status in (500, 502, 503, 504):
            reason = f"HTTP {status}"
            return "fail", reason, _Retryable(reason, status, retry_after)
        return "ok", f"HTTP {status}", None

    async def _send(
        self, src: _Source, url: str, headers: dict, proxy: str | None, cap: int
    ) -> Response:
        """One GET on curl_cffi, streamed and cut at ``cap`` bytes; no redirects followed."""
        session = self._session(src)
        timeout = src.settings.timeout_s
        src.metrics.requests += 1
        rsp = None
        try:
            async with asyncio.timeout(timeout + 5.0):
                rsp = await session.request(
                    "GET", url, headers=headers, timeout=timeout, allow_redirects=False,
                    stream=True, proxy=proxy,
                )  # fmt: skip
                src.metrics.status[rsp.status_code] += 1
                announced = rsp.headers.get("content-length")
                if announced and announced.isdigit() and int(announced) > cap:
                    src.metrics.too_large += 1
                    raise TooLarge(
                        src.name, url, f"announced {int(announced)} bytes > cap {cap}", limit=cap
                    )
                chunks: list[bytes] = []
                total = 0
                async for chunk in rsp.aiter_content():
                    total += len(chunk)
                    src.metrics.bytes += len(chunk)
                    if total > cap:
                        src.metrics.too_large += 1
                        raise TooLarge(src.name, url, f"body over cap {cap} bytes", limit=cap)
                    chunks.append(chunk)
                items = list(rsp.headers.multi_items())
                return Response(url=url, status=rsp.status_code, headers=_Headers(items),
                                content=b"".join(chunks))  # fmt: skip
        except TimeoutError:
            src.metrics.connection_errors += 1
            raise _Retryable(f"timeout after {timeout:.0f}s") from None
        except RequestException as exc:
            src.metrics.connection_errors += 1
            if resend_refused(exc):
                # A kept-alive connection that died under us (idle close racing our send, an
                # HTTP/2 GOAWAY taking every stream on it): retried, paced, but no mark
                # against the site; if the site really resets, the retry on a fresh
                # connection fails like any reset and counts.
                src.metrics.resends_refused += 1
                raise _Retryable("kept-alive connection reset before an answer",
                                 site_failure=False) from None
            kind = type(exc).__name__
            raise _Retryable(f"{kind}: {redact_text(exc)}"[:300]) from None
        finally:
            if rsp is not None:
                quit_now = getattr(rsp, "quit_now", None)
                if quit_now is not None:
                    quit_now.set()  # stop curl writing: the rest of the body is dropped
                with contextlib.suppress(Exception):
                    await asyncio.shield(rsp.aclose())

    def _proxy_probe(self, src: _Source) -> Callable[[str], Any]:
        """Health probe for a proxy back from the bench: one small GET of the source's base
        URL through it, paced like any request. Any HTTP answer means the proxy works."""

        async def probe(proxy: str) -> bool:
            await self._pace(src, src.settings.base_url)
            session = self._session(src)
            src.metrics.requests += 1
            try:
                rsp = await session.request(
                    "GET", src.settings.base_url, timeout=min(10.0, src.settings.timeout_s),
                    allow_redirects=False, proxy=proxy,
                )  # fmt: skip
            except RequestException:
                return False
            src.metrics.status[rsp.status_code] += 1
            return rsp.status_code < 500

        return probe

    # ------------------------------------------------------------------ browser

    def browser(self) -> BrowserManager:
        """The process's browser manager (Chromium starts on the first ``page``)."""
        if self._browser is None:
            self._browser = BrowserManager(self.settings.browser)
        return self._browser

    @contextlib.asynccontextmanager
    async def page(self, source: str, url: str) -> AsyncIterator[BrowserPage]:
        """A fresh tab on the shared browser, navigated to ``url``, closed on exit.

        Same allowlist, rate and breaker checks as ``fetch`` for the navigation itself, and
        every request the tab then makes by itself is policed too (``net/interception.py``:
        allowlist, the same rate slots, no images/fonts/stylesheets). A failed navigation is a
        breaker failure and raises TransientError; a redirect off the allowlist raises
        NotAllowed; what the adapter does inside the block does not touch the breaker.
        """
        if self._closed:
            raise FetchError(source, url, "client is closed")
        src = self._source(source)
        if not src.settings.enabled:
            raise NotAllowed(source, url, "source is disabled in settings")
        await self._open_checks(src, url)
        ticket: Ticket | None = None
        recorded = False
        try:
            async with policed_tab(self, src, url) as (tab, guard):
                # The slot is taken once the tab is ready, right before the request leaves:
                # starting Chromium takes seconds, and a slot booked before that would let the
                # page's own next request (a challenge reload) follow the first too closely.
                ticket = await self._admit(src, url)
                await self._pace(src, url)
                slot_at = self._clock()
                src.metrics.pages += 1
                src.metrics.requests += 1
                outcome: Literal["ok", "fail", "none"] = "none"
                reason = "cancelled"
                try:
                    with guard.prepaid(slot_at):
                        await navigate(tab, url, timeout=self.settings.browser.page_timeout_s)
                except (Exception, TimeoutError) as exc:
                    if guard.refusal is not None:  # redirected off the allowlist: our refusal
                        reason = "navigation refused by the allowlist"
                        raise guard.refusal from None
                    outcome, reason = "fail", f"browser navigation failed: {redact_text(exc)}"
                    raise TransientError(source, url, reason) from None
                else:
                    outcome, reason = "ok", "page loaded"
                finally:
                    recorded = True
                    await asyncio.shield(self._verdict(src, ticket, outcome, reason))
                yield BrowserPage(self, src, tab, guard)
        finally:
            if ticket is not None and not recorded:  # browser failed or cancelled: no verdict
                await asyncio.shield(self._verdict(src, ticket, "none", "browser unavailable"))

    async def _open_checks(self, src: _Source, url: str) -> None:
        try:
            await src.allowlist.check(url)
        except NotAllowed:
            src.metrics.refused += 1
            raise
        except OSError as exc:
            raise TransientError(src.name, url, f"DNS resolution failed: {exc}") from None
        await self._breaker_precheck(src, url)

    # ------------------------------------------------------------------ operators

    def breaker_snapshot(self) -> dict[str, dict]:
        """Last known breaker record of every source (JSON-ready), for operators."""
        out: dict[str, dict] = {}
        for name in ("zillow", "redfin", "phoenixmls", "assessor"):
            rec = self._breaker_cache.get(name, BreakerRecord())
            out[name] = rec.to_dict()
        return out

    def metrics(self) -> dict[str, dict[str, Any]]:
        """Per-source counters plus the current adaptive rate and pause (JSON-ready)."""
        out: dict[str, dict[str, Any]] = {}
        for name, src in self._sources.items():
            data = src.metrics.to_dict()
            data["rate_rps"] = round(self.state.rate(name) or src.settings.max_rps, 4)
            data["max_rps"] = src.settings.max_rps
            data["breaker"] = self._breaker_cache.get(name, BreakerRecord()).state
            out[name] = data
        if self.proxies:
            out["_proxies"] = {"pool": self.proxies.snapshot()}
        return out

    async def aclose(self) -> None:
        """Close the HTTP sessions and the browser (idempotent)."""
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            with contextlib.suppress(Exception):
                await session.close()
        if self._browser is not None:
            await self._browser.close()
        aclose = getattr(self.state, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()

    async def __aenter__(self) -> PolicyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class BrowserPage:
    """A tab handed to an adapter by :meth:`PolicyClient.page`.

    ``tab`` is the raw nodriver Tab for anything not wrapped here; ``navigate`` goes through
    the same policy checks as ``page`` (allowlist, rate, breaker). The module helpers of
    :mod:`phx_images.net.browser` (``get_html``, ``wait_for``, ``press_and_hold``) accept it.
    """

    is_browser_page = True

    def __init__(self, client: PolicyClient, src: _Source, tab: Any, guard: TabGuard) -> None:
        self._client = client
        self._src = src
        self._guard = guard
        self.tab = tab
        self.source = src.name

    @property
    def url(self) -> str:
        """The tab's current URL."""
        return str(getattr(self.tab.target, "url", "") or "")

    async def get_html(self) -> str:
        return await _get_html(self.tab)

    async def wait_for(self, selector: str, timeout: float | None = None) -> Any:
        return await wait_for(
            self.tab, selector, self._client.settings.browser.page_timeout_s
            if timeout is None else timeout,
        )  # fmt: skip

    async def press_and_hold(self, selector: str, seconds: float) -> None:
        """Trusted press-and-hold, capped at ``settings.browser.max_hold_s``."""
        await press_and_hold(
            self.tab, selector, min(seconds, self._client.settings.browser.max_hold_s)
        )

    async def evaluate(self, expression: str) -> Any:
        return await self.tab.evaluate(expression)

    async def navigate(self, url: str) -> None:
        """Navigate this tab to ``url`` after the allowlist/rate/breaker checks."""
        client, src = self._client, self._src
        await client._open_checks(src, url)
        ticket = await client._admit(src, url)
        outcome: Literal["ok", "fail", "none"] = "none"
        reason = "cancelled"
        try:
            await client._pace(src, url)
        except BaseException:
            await asyncio.shield(client._verdict(src, ticket, "none", "no slot"))
            raise
        slot_at = client._clock()
        src.metrics.requests += 1
        try:
            with self._guard.prepaid(slot_at):
                await navigate(self.tab, url, timeout=client.settings.browser.page_timeout_s)
            outcome, reason = "ok", "page loaded"
        except (Exception, TimeoutError) as exc:
            if self._guard.refusal is not None:  # redirected off the allowlist: our refusal
                reason = "navigation refused by the allowlist"
                raise self._guard.refusal from None
            outcome, reason = "fail", f"browser navigation failed: {redact_text(exc)}"
            raise TransientError(src.name, url, reason) from None
        finally:
            await asyncio.shield(client._verdict(src, ticket, outcome, reason))
