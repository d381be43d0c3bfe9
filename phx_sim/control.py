"""The ``/_sim/*`` control endpoints: truth, stats, faults.

Why on every port: a test that only knows one site's URL (or a proxy in between) can still
read the truth and adjust faults. Control requests are never subject to faults and are not
counted in the stats, so observing the simulator does not change what it measures.
"""

from __future__ import annotations

import json
import re

from phx_sim.context import SimContext
from phx_sim.faults import FaultError
from phx_sim.http import Request, Response, error_json, json_response

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
        return json_response(ctx.stats.snapshot())
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
