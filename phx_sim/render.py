"""Lazy, disk-cached rendering of photo variants, off the event loop.

Why lazy: 680 photos x 24 variants is ~16,000 files; most tests touch a handful. Each variant
is rendered on first request in a thread pool (so the HTTP loop never blocks on Pillow),
written atomically under ``cache_dir/seed-N/img/`` and served from disk afterwards.
Concurrent requests for the same variant share one render.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from phx_sim import imaging
from phx_sim.catalog import Catalog, atomic_write
from phx_sim.imaging import VARIANTS, Recipe


@functools.lru_cache(maxsize=6)
def _canonical(recipe: Recipe) -> Image.Image:
    return imaging.render_recipe(recipe)


def render_variant_bytes(recipe: Recipe, site: str, vkey: str) -> bytes:
    """The bytes a CDN serves for one variant (pure; used by the renderer and by tests)."""
    spec = VARIANTS[(site, vkey)]
    img = imaging.make_variant(_canonical(recipe), spec)
    return imaging.encode(img, spec.fmt, spec.quality)


class Renderer:
    """Renders and caches variants; one per simulator (the disk cache is shared by seed)."""

    def __init__(self, catalog: Catalog, folder: Path, workers: int = 2) -> None:
        self.catalog = catalog
        self.folder = folder / "img"
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="phx-sim-render")
        self._inflight: dict[tuple[str, str, str], asyncio.Future[bytes]] = {}

    def path_for(self, photo_id: str, site: str, vkey: str) -> Path:
        """Cache path; it names the recipe's digest so a changed catalog never serves stale
        bytes from an older one."""
        recipe = self.catalog.photos[photo_id].recipe
        digest = hashlib.sha1(json.dumps(recipe.to_json()).encode()).hexdigest()[:10]
        return self.folder / f"{photo_id}-{digest}" / f"{site}-{vkey.replace('.', '-')}.bin"

    def _load_or_render(self, photo_id: str, site: str, vkey: str) -> bytes:
        path = self.path_for(photo_id, site, vkey)
        try:
            data = path.read_bytes()
            if data:
                return data
        except OSError:
            pass
        data = render_variant_bytes(self.catalog.photos[photo_id].recipe, site, vkey)
        atomic_write(path, data)
        return data

    async def get(self, photo_id: str, site: str, vkey: str) -> bytes:
        key = (photo_id, site, vkey)
        fut = self._inflight.get(key)
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = asyncio.ensure_future(
                loop.run_in_executor(self.pool, self._load_or_render, photo_id, site, vkey))
            self._inflight[key] = fut
            fut.add_done_callback(lambda _f: self._inflight.pop(key, None))
        return await asyncio.shield(fut)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
