"""The per-port pipeline: control routes, stats, then the fault knobs around a site.

Why in one place: every site must misbehave the same way (429 with Retry-After, 503, resets,
trickled or corrupted bodies, hostile redirects) and be counted the same way, so the sites
themselves only describe their pages.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any

from phx_sim import control
from phx_sim.context import SimContext
from phx_sim.http import Request, Response, html_response
from phx_sim.sites.cdn import ERROR_HTML, bomb_png, truncate

SiteHandler = Callable[[Request], Awaitable[Response]]


def _hit(rng: random.Random, knobs: dict[str, Any], name: str) -> bool:
    rate = float(knobs.get(name, 0.0))
    return rate > 0 and rng.random() < rate


class Gateway:
    """Wraps one site (or CDN) for one port."""

    def __init__(self, name: str, site: SiteHandler | None, ctx: SimContext) -> None:
        self.name = name
        self.site = site
        self.ctx = ctx

    async def __call__(self, req: Request) -> Response:
        if req.path == "/_sim" or req.path.startswith("/_sim/"):
            return await control.handle(req, self.ctx)
        if self.site is None:
            return html_response("<h1>phx-sim control</h1><p>See /_sim/truth.</p>", 404)
        stats = self.ctx.stats
        stats.arrive(self.name)
        response = await self._faulted(req)
        if response.abort:
            stats.incr(self.name, "resets")
        else:
            stats.respond(self.name, response.status, len(response.body))
        return response

    async def _faulted(self, req: Request) -> Response:
        knobs, bucket_key = self.ctx.faults.effective(self.name)
        if not knobs:
            return await self.site(req)  # type: ignore[misc]
        rng = self.ctx.faults.rng(self.name)
        if _hit(rng, knobs, "reset_rate"):
            return Response(abort=True)
        handshake = knobs.get("handshake_ms")
        if handshake and req.first_on_connection:
            await asyncio.sleep(handshake / 1000.0)
        latency = knobs.get("latency_ms")
        if latency:
            await asyncio.sleep(rng.uniform(latency[0], latency[1]) / 1000.0)
        limit = knobs.get("rate_limit")
        if limit:
            wait = self.ctx.faults.bucket_wait(bucket_key, limit)
            if wait > 0:
                self.ctx.stats.incr(self.name, "rps_violations")
                return html_response(
                    "<h1>Too Many Requests</h1><p>Are you a robot? Please slow down.</p>", 429,
                    [("retry-after", str(max(1, math.ceil(wait))))])
        if _hit(rng, knobs, "error_503_rate"):
            return Response(503, ERROR_HTML, "text/html; charset=utf-8", [("retry-after", "1")])
        if _hit(rng, knobs, "redirect_out_rate"):
            return Response(302, b"", "text/plain",
                            [("location", self.ctx.urls["elsewhere"] + req.target
                              if req.target.startswith("/") else self.ctx.urls["elsewhere"])])
        response = await self.site(req)  # type: ignore[misc]
        if response.is_image and response.status == 200:
            if _hit(rng, knobs, "truncated_image_rate"):
                response.body = truncate(response.body)
            elif _hit(rng, knobs, "html_image_rate"):
                response.body = ERROR_HTML
            elif _hit(rng, knobs, "bomb_image_rate"):
                response.body = bomb_png()
        trickle = knobs.get("trickle")
        if trickle and rng.random() < trickle["rate"]:
            response.trickle_bps = trickle["bytes_per_s"]
        return response
