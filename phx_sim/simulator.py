"""``Simulator``: the whole offline web (four sites, CDNs, proxies) in a background thread.

Why a thread with its own event loop: tests and the CLI both drive it from synchronous code,
and the engine under test runs its own loop; sharing none keeps a slow test client from
stalling the sites (and vice versa).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from phx_sim.catalog import load_catalog, seed_dir
from phx_sim.context import DEFAULT_ASSESSOR_TOKEN, SimContext
from phx_sim.extra import DEFAULT_EXTRA_PHOTOS, check_counts
from phx_sim.faults import Faults
from phx_sim.gateway import Gateway
from phx_sim.http import HTTPServer
from phx_sim.proxy import ForwardProxy
from phx_sim.render import Renderer
from phx_sim.sites.assessor import Assessor
from phx_sim.sites.cdn import Elsewhere, PhotoCDN
from phx_sim.sites.phoenixmls import PhoenixMLS
from phx_sim.sites.redfin import Redfin
from phx_sim.sites.zillow import Zillow
from phx_sim.stats import Stats

# Port order: control is P, then P+1 ... P+10 (docs/simulator.md).
PORT_NAMES: tuple[str, ...] = (
    "control", "zillow", "zillow_photos", "redfin", "redfin_photos", "phoenixmls",
    "phoenixmls_photos", "assessor", "elsewhere", "proxy_good", "proxy_bad",
)
STAT_NAMES: list[str] = [n for n in PORT_NAMES if n != "control"]
HOST = "127.0.0.1"


class Simulator:
    """Start with :meth:`start` (or ``with Simulator(...) as sim``); see docs/simulator.md."""

    def __init__(self, seed: int = 7, faults: dict[str, Any] | None = None,
                 cache_dir: str | Path | None = None, port: int = 0,
                 assessor_token: str = DEFAULT_ASSESSOR_TOKEN, extra_properties: int = 0,
                 extra_photos: int = DEFAULT_EXTRA_PHOTOS) -> None:
        if not isinstance(port, int) or not (port == 0 or 1024 <= port <= 65535 - 10):
            raise ValueError(f"port must be 0 or in 1024..65525, got {port!r}")
        if not assessor_token or any(c in assessor_token for c in "\r\n"):
            raise ValueError("assessor_token must be a non-empty single-line string")
        # N generated properties of K photos each after the sample (docs/simulator.md).
        self.extra_properties, self.extra_photos = check_counts(extra_properties, extra_photos)
        self.seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.port = port
        self.assessor_token = assessor_token
        self._faults = Faults(seed, faults)  # validates now: a bad spec fails before start
        self.urls: dict[str, str] = {}
        self._ctx: SimContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[HTTPServer] = []
        self._stats = Stats(STAT_NAMES)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Simulator:
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        catalog = load_catalog(self.seed, self.cache_dir, self.extra_properties,
                               self.extra_photos)
        folder = seed_dir(self.seed, self.cache_dir)
        renderer = Renderer(catalog, folder)
        self._ctx = SimContext(self.seed, catalog, self.urls, self._faults, self._stats,
                               renderer, os.urandom(16), self.assessor_token)
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._bind())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                loop.run_until_complete(self._close_servers())
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._close_servers())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"phx-sim-{self.seed}", daemon=True)
        self._thread.start()
        ready.wait(60)
        if errors:
            self._thread.join(5)
            self._thread = None
            renderer.close()
            raise RuntimeError(f"simulator could not start: {errors[0]}") from errors[0]
        return self

    async def _bind(self) -> None:
        ctx = self._ctx
        assert ctx is not None
        catalog_sites: dict[str, Any] = {
            "zillow": Zillow(ctx), "zillow_photos": PhotoCDN(ctx, "zillow"),
            "redfin": Redfin(ctx), "redfin_photos": PhotoCDN(ctx, "redfin"),
            "phoenixmls": PhoenixMLS(ctx), "phoenixmls_photos": PhotoCDN(ctx, "phoenixmls"),
            "assessor": Assessor(ctx), "elsewhere": Elsewhere(ctx),
        }
        gateways: dict[str, Gateway] = {"control": Gateway("control", None, ctx)}
        for name, site in catalog_sites.items():
            gateways[name] = Gateway(name, site.handle, ctx)
        by_port: dict[int, Gateway] = {}
        for i, name in enumerate(PORT_NAMES):
            want = self.port + i if self.port else 0
            if name == "proxy_good":
                server = HTTPServer(ForwardProxy(ctx, by_port))
            elif name == "proxy_bad":
                server = HTTPServer(gateways["control"], reset_all=True)
                server.on_reset = self._bad_proxy_hit
            else:
                server = HTTPServer(gateways[name])
            if name in STAT_NAMES:
                server.on_connection = functools.partial(self._stats.incr, name, "connections")
            self._servers.append(server)
            port = await server.start(HOST, want)
            self.urls[name] = f"http://{HOST}:{port}"
            if name in gateways and name != "control":
                by_port[port] = gateways[name]

    def _bad_proxy_hit(self) -> None:
        self._stats.arrive("proxy_bad")
        self._stats.incr("proxy_bad", "resets")

    async def _close_servers(self) -> None:
        for server in self._servers:
            await server.close()
        self._servers.clear()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
        self._thread = None
        self._loop = None
        if self._ctx is not None:
            self._ctx.renderer.close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- inspection and control --------------------------------------------------------------
    def _context(self) -> SimContext:
        if self._ctx is None:
            raise RuntimeError("simulator not started")
        return self._ctx

    def truth(self) -> dict[str, Any]:
        return self._context().truth()

    def stats(self) -> dict[str, dict[str, Any]]:
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters and forget the arrival times."""
        self._stats.reset()

    def arrivals(self, site: str) -> list[float]:
        """Arrival times (``time.monotonic()`` of this process) of ``site``'s requests since
        the last reset, oldest first (at most the newest 2,000,000; see ``arrivals_dropped``).
        ``site`` is a stats name: ``zillow``, ``zillow_photos``, ``assessor``, ..."""
        return self._stats.arrivals(site)

    def window_ratios(self, ceilings: dict[str, float],
                      window_s: float = 10.0) -> dict[str, float]:
        """Per site in ``ceilings`` (stats name -> allowed requests per second): the worst
        ``window_s`` window's ``count / (ceiling * window_s + 1)`` (<= 1.0: polite). Raises
        ValueError for an unknown site, a negative ceiling or a non-positive window."""
        return self._stats.window_ratios(ceilings, window_s)

    def set_faults(self, site: str, faults: dict[str, Any]) -> dict[str, Any]:
        """Replace one site's faults (raises ``FaultError``, a ValueError, if invalid)."""
        return self._faults.set(site, faults)

    def faults(self) -> dict[str, dict[str, Any]]:
        return self._faults.snapshot()

    def env(self) -> dict[str, str]:
        """The ``PHX_...`` settings that point the engine at this instance."""
        u = self.urls
        if not u:
            raise RuntimeError("simulator not started")
        origins = [u[n] for n in ("zillow", "zillow_photos", "redfin", "redfin_photos",
                                  "phoenixmls", "phoenixmls_photos", "assessor")]
        return {
            "PHX_ZILLOW__BASE_URL": u["zillow"],
            "PHX_ZILLOW__ASSET_URLS": json.dumps([u["zillow_photos"]]),
            "PHX_REDFIN__BASE_URL": u["redfin"],
            "PHX_REDFIN__ASSET_URLS": json.dumps([u["redfin_photos"]]),
            "PHX_PHOENIXMLS__BASE_URL": u["phoenixmls"],
            "PHX_PHOENIXMLS__ASSET_URLS": json.dumps([u["phoenixmls_photos"]]),
            "PHX_ASSESSOR__BASE_URL": u["assessor"],
            "PHX_ASSESSOR__TOKEN": self.assessor_token,
            "PHX_ALLOW_PRIVATE_ORIGINS": json.dumps(origins),
        }

    def proxy_urls(self) -> dict[str, str]:
        return {"good": self.urls["proxy_good"], "bad": self.urls["proxy_bad"]}
