"""The ``/_sim/*`` control endpoints: truth, stats (optionally judged against ceilings), faults.

Why on every port: a test that only knows one site's URL (or a proxy in between) can still
read the truth and adjust faults. Control requests are never subject to faults and are not
counted in the stats, so observing the simulator does not change what it measures.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from phx_sim.context import SimContext
from phx_sim.faults import FaultError
from phx_sim.http import Request, Response, error_json, json_response
from phx_sim.stats import check_ceilings

_FAULTS_SITE = re.compile(r"^/_sim/faults/(?P<site>[a-z_]{1,40})/?$")


async def handle(req: Request, ctx: SimContext) -> Response:
    path = req.path.rstrip("/") or "/"
    if path == "/_sim/truth":
        if req.method not in ("GET", "HEAD"):
            return error_json(405, "use GET")
        return Response(200, ctx.truth_bytes(), "application/json")
    if path == "/_sim/stats":
        if req.method not in ("GET", "HEAD"):
            return error_json(405, "use GET")
        return await _stats(req, ctx)
    if path == "/_sim/stats/reset":
        if req.method != "POST":
            return error_json(405, "use POST")
        ctx.stats.reset()
        return json_response({"ok": True})
    if path == "/_sim/faults":
        if req.method not in ("GET", "HEAD"):
            return error_json(405, "use GET (or PUT /_sim/faults/{site})")
        return json_response(ctx.faults.snapshot())
    m = _FAULTS_SITE.match(req.path)
    if m:
        if req.method not in ("PUT", "POST"):
            return error_json(405, "use PUT with a JSON object")
        try:
            spec = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return error_json(400, f"body is not valid JSON: {exc}")
        try:
            clean = ctx.faults.set(m["site"], spec)
        except FaultError as exc:
            return error_json(400, str(exc))
        return json_response({"site": m["site"], "faults": clean})
    return error_json(404, f"no control endpoint {req.path[:100]!r}")


async def _stats(req: Request, ctx: SimContext) -> Response:
    """The counters; with ``?ceilings={"site": rps, ...}`` (URL-encoded JSON) also
    ``"window_ratio": {site: ratio}`` over ``window_s`` (default 10) second windows."""
    raw = req.arg("ceilings")
    window_arg = req.arg("window_s")
    if raw is None:
        if window_arg is not None:
            return error_json(400, "window_s needs ceilings")
        return json_response(ctx.stats.snapshot())
    try:
        ceilings = json.loads(raw)
    except ValueError as exc:
        return error_json(400, f"ceilings is not valid JSON: {exc}")
    try:
        window_s = float(window_arg) if window_arg is not None else 10.0
    except ValueError:
        return error_json(400, f"window_s must be a number of seconds, got {window_arg[:40]!r}")
    if not (math.isfinite(window_s) and 0 < window_s <= 86_400):
        return error_json(400, f"window_s must be in (0, 86400] seconds, got {window_arg!r}")
    try:
        clean = check_ceilings(ceilings, ctx.stats.names)
    except ValueError as exc:
        return error_json(400, str(exc)[:300])
    answer: dict[str, Any] = dict(ctx.stats.snapshot())
    # Off the event loop: millions of arrivals take a noticeable fraction of a second.
    answer["window_ratio"] = await asyncio.get_running_loop().run_in_executor(
        None, ctx.stats.window_ratios, clean, window_s)
    return json_response(answer)
