"""Optional rotating pool of forward proxies, with benching and health probes.

Why: the real sites block datacenter addresses, so deployments route through (residential)
proxies, and proxies die. A proxy that fails a request is benched with exponential backoff;
when its bench time is over it must pass a health probe before carrying real traffic again,
so a dead proxy costs one cheap probe per bench period instead of one failed request per
rotation. No proxies configured -> direct connections. Proxies configured but all benched ->
:meth:`ProxyPool.pick` raises :class:`NoProxyAvailable` (falling back to direct would expose
the datacenter address the operator chose to hide). Proxy URLs carry passwords: they are
registered as secrets and only ever logged redacted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from phx_images.net.ratelimit import Clock
from phx_images.net.redact import get_logger, redact_url, register_secret

log = get_logger(__name__)

Probe = Callable[[str], Awaitable[bool]]


class NoProxyAvailable(Exception):
    """Every configured proxy is benched (or failed its probe). ``.retry_at`` (monotonic)."""

    def __init__(self, retry_at: float) -> None:
        super().__init__("every proxy is benched")
        self.retry_at = retry_at


@dataclass
class ProxyHealth:
    """Health of one proxy. ``benched_until`` is monotonic time; ``strikes`` consecutive fails."""

    url: str
    strikes: int = 0
    benched_until: float = 0.0
    needs_probe: bool = False
    uses: int = 0
    failures: int = 0


class ProxyPool:
    """Round-robin over healthy proxies; failing ones are benched, then probed before reuse."""

    def __init__(
        self,
        urls: Iterable[str],
        *,
        clock: Clock = time.monotonic,
        bench_base_s: float = 10.0,
        bench_max_s: float = 600.0,
    ) -> None:
        self._proxies = [ProxyHealth(url) for url in urls]
        for proxy in self._proxies:
            register_secret(_password_of(proxy.url))
        self._clock = clock
        self._bench_base_s = bench_base_s
        self._bench_max_s = bench_max_s
        self._next = 0
        self._probe_lock = asyncio.Lock()

    def __bool__(self) -> bool:
        return bool(self._proxies)

    async def pick(self, probe: Probe | None = None) -> str | None:
        """The proxy URL for the next request (None = direct, only when no proxies exist).

        A proxy back from the bench is probed with ``probe(url)`` first (if given); one that
        fails the probe goes back on the bench for longer.
        """
        if not self._proxies:
            return None
        n = len(self._proxies)
        for i in range(n):
            proxy = self._proxies[(self._next + i) % n]
            if proxy.benched_until > self._clock():
                continue
            if proxy.needs_probe and probe is not None:
                async with self._probe_lock:
                    if proxy.needs_probe:
                        ok = await _safe_probe(probe, proxy.url)
                        if not ok:
                            self.report_failure(proxy.url, "health probe failed")
                            continue
                        proxy.needs_probe = False
                        log.info("proxy %s passed its health probe", redact_url(proxy.url))
            self._next = (self._next + i + 1) % n
            proxy.uses += 1
            return proxy.url
        raise NoProxyAvailable(min(p.benched_until for p in self._proxies))

    def report_success(self, url: str | None) -> None:
        """The request through ``url`` reached the site: clear its strikes."""
        proxy = self._find(url)
        if proxy is not None:
            proxy.strikes = 0

    def report_failure(self, url: str | None, reason: str) -> None:
        """The proxy failed (connection reset/refused, 407, CONNECT error): bench it."""
        proxy = self._find(url)
        if proxy is None:
            return
        proxy.strikes += 1
        proxy.failures += 1
        bench = min(self._bench_max_s, self._bench_base_s * 2 ** (proxy.strikes - 1))
        proxy.benched_until = self._clock() + bench
        proxy.needs_probe = True
        log.warning(
            "proxy %s benched for %.0fs after %s", redact_url(proxy.url), bench, reason
        )

    def snapshot(self) -> list[dict[str, object]]:
        """Per-proxy health for operators (URLs redacted)."""
        now = self._clock()
        return [
            {
                "proxy": redact_url(p.url),
                "benched_for_s": round(max(0.0, p.benched_until - now), 1),
                "strikes": p.strikes,
                "uses": p.uses,
                "failures": p.failures,
                "needs_probe": p.needs_probe,
            }
            for p in self._proxies
        ]

    def _find(self, url: str | None) -> ProxyHealth | None:
        return next((p for p in self._proxies if p.url == url), None) if url else None


def _password_of(url: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).password
    except ValueError:
        return None


async def _safe_probe(probe: Probe, url: str) -> bool:
    try:
        return bool(await probe(url))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a probe that crashes is a failed probe, never a crash
        log.warning("proxy probe of %s raised %s", redact_url(url), type(exc).__name__)
        return False
