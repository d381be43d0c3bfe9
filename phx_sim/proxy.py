"""Forward proxies: one that works, one that resets every connection.

Why in-process forwarding: the good proxy only ever needs to reach the simulator's own ports,
so it hands the request to that port's pipeline directly (faults and stats still apply) and
refuses every other target, so it can never become an open proxy on the machine.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from phx_sim.context import SimContext
from phx_sim.gateway import Gateway
from phx_sim.http import Request, Response, error_json, parse_target


class ForwardProxy:
    """An HTTP forward proxy for absolute-form requests to the simulator's own origins."""

    name = "proxy_good"

    def __init__(self, ctx: SimContext, targets: dict[int, Gateway]) -> None:
        self.ctx = ctx
        self.targets = targets

    async def __call__(self, req: Request) -> Response:
        if req.method == "CONNECT":
            return error_json(405, "CONNECT is not supported by this proxy; use http:// URLs")
        if req.target.startswith("/"):
            if req.path.startswith("/_sim/"):
                gateway = next(iter(self.targets.values()))
                return await gateway(req)
            return error_json(400, "not a proxy request: expected an absolute-form target")
        parts = urlsplit(req.target)
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost") or (
                port not in self.targets):
            return error_json(403, f"proxy refuses target {req.target[:200]!r}")
        self.ctx.stats.arrive(self.name)
        origin_target = parts.path or "/"
        if parts.query:
            origin_target += "?" + parts.query
        path, query = parse_target(origin_target)
        inner = Request(req.method, origin_target, path, query, dict(req.headers), req.body,
                        req.peer)
        inner.headers.pop("proxy-connection", None)
        inner.headers.pop("proxy-authorization", None)
        response = await self.targets[port](inner)
        if not response.abort:
            response.headers.append(("via", "1.1 phx-sim-proxy"))
            self.ctx.stats.respond(self.name, response.status, len(response.body))
        else:
            self.ctx.stats.incr(self.name, "resets")
        return response
