"""Photo downloads through the policy layer: reused connections vs a new connection per photo.

    .venv/bin/python -m bench.downloads [--photos 60] [--concurrency 4] [--reps 3]
                                        [--handshake-ms 0,40]

Downloads the same ``--photos`` photo URLs from the simulator's Redfin CDN through
``PolicyClient.fetch`` (allowlist, breaker, rate slot, size cap: the real path), ``concurrency``
at a time, with the rate ceiling lifted so that the network path is what is measured. The
baseline in the same run is the same client with libcurl's connection reuse forbidden (what
the project did before ``PacedSession``). Reported: wall time, photos/s, and the TCP
connections the simulator accepted. The simulator is plain HTTP on loopback, where a new
connection costs a fraction of a millisecond; a real CDN's costs TCP + TLS handshakes (2-3
round trips, tens of ms from Phoenix to a CDN edge). The simulator's ``handshake_ms`` knob
adds that cost to the first answer on each new connection; each value in ``--handshake-ms``
is one scenario (0 = loopback as is).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from typing import Any

from curl_cffi import CurlOpt
from curl_cffi.requests import AsyncSession

from phx_images.net.client import PolicyClient
from phx_images.settings import Settings
from phx_sim import Simulator

SOURCE = "redfin"


class NewConnectionPerRequest(PolicyClient):
    """The baseline: every request on a fresh connection (CURLOPT_FORBID_REUSE)."""

    def _session(self, src: Any) -> Any:
        session = self._sessions.get(src.name)
        if session is None:
            session = AsyncSession(impersonate=src.settings.impersonate,
                                   curl_options={CurlOpt.FORBID_REUSE: 1})
            self._sessions[src.name] = session
        return session


def photo_urls(sim: Simulator, count: int) -> list[str]:
    urls = [photo["best_per_site"][SOURCE] for photo in sim.truth()["photos"]
            if SOURCE in photo.get("best_per_site", {})]
    if len(urls) < count:
        raise SystemExit(f"the simulator has only {len(urls)} {SOURCE} photos")
    return urls[:count]


async def download_all(client: PolicyClient, urls: list[str], concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(url: str) -> None:
        async with gate:
            response = await client.fetch(SOURCE, url, kind="image",
                                          max_bytes=30_000_000)
            assert response.status == 200, (url, response.status)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(u) for u in urls))
    return time.perf_counter() - t0


def settings_for(sim: Simulator, data_dir: str) -> Settings:
    os.environ.update(sim.env())
    os.environ[f"PHX_{SOURCE.upper()}__ASSET_MAX_RPS"] = "1000"
    os.environ[f"PHX_{SOURCE.upper()}__ASSET_MAX_CONCURRENCY"] = "64"
    return Settings(data_dir=data_dir, store_url=os.path.join(data_dir, "store"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--handshake-ms", default="0,40",
                        help="comma-separated connection set-up costs to simulate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Simulator(cache_dir="data/sim-cache") as sim:
        settings = settings_for(sim, tmp)
        urls = photo_urls(sim, args.photos)
        for handshake in (float(x) for x in args.handshake_ms.split(",")):
            sim.set_faults(f"{SOURCE}_photos", {"handshake_ms": handshake} if handshake else {})
            report(sim, settings, urls, args, handshake)


def report(sim: Simulator, settings: Settings, urls: list[str], args: argparse.Namespace,
           handshake: float) -> None:
    results: dict[str, dict[str, list[float]]] = {}
    for rep in range(args.reps + 1):  # rep 0 warms the simulator's render cache
        for name, cls in (("new connection each", NewConnectionPerRequest),
                          ("reused (PacedSession)", PolicyClient)):
            sim.reset_stats()

            async def run(cls: type[PolicyClient] = cls) -> float:
                async with cls(settings) as client:
                    return await download_all(client, urls, args.concurrency)

            elapsed = asyncio.run(run())
            connections = sim.stats()[f"{SOURCE}_photos"]["connections"]
            if rep:
                row = results.setdefault(name, {"s": [], "connections": []})
                row["s"].append(elapsed)
                row["connections"].append(connections)
    print(f"{len(urls)} photos from the {SOURCE} CDN, {args.concurrency} at a time, "
          f"connection set-up {handshake:.0f} ms, median of {args.reps}:")
    base = statistics.median(results["new connection each"]["s"])
    for name, row in results.items():
        s = statistics.median(row["s"])
        print(f"  {name:24s} {s * 1000:7.0f} ms  {len(urls) / s:6.1f} photos/s  "
              f"{statistics.median(row['connections']):4.0f} connections  "
              f"speed-up x{base / s:.2f}")


if __name__ == "__main__":
    main()
