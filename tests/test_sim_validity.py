"""The catalog is valid by construction: checked here on the bytes the CDNs actually serve.

- a photo's best variants on each site are near-duplicates of each other (pHash <= 8 and
  dHash <= 10), and so is Redfin's cropped mbphotov3;
- hard-negative pairs (overlapping views) are beyond both thresholds;
- distinct photos in a sample are never near-duplicates.
"""

from __future__ import annotations

import io
import itertools
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import imagehash
import pytest
from curl_cffi import requests
from PIL import Image

from phx_sim import imaging

PH, DH = 8, 10


def hashes(data: bytes) -> tuple[imagehash.ImageHash, imagehash.ImageHash]:
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
    return imagehash.phash(rgb), imagehash.dhash(rgb)


def near(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    return (a[0] - b[0]) <= PH and (a[1] - b[1]) <= DH


def fetch_all(urls: list[str]) -> dict[str, bytes]:
    def one(url: str) -> tuple[str, bytes]:
        r = requests.get(url, impersonate="chrome", timeout=60)
        assert r.status_code == 200, url
        return url, r.content

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, urls))


@pytest.fixture(scope="module")
def truth(sim: Any) -> dict[str, Any]:
    return sim.truth()


def test_hard_negatives_apart_on_small_renders(sim: Any, truth: dict[str, Any]) -> None:
    """Every pair, rendered small from its recipe (fast): beyond both thresholds."""
    from phx_sim.catalog import load_catalog

    catalog = load_catalog(7, sim.cache_dir)
    for a, b in truth["hard_negatives"]:
        ha = imaging.hashes(imaging.render_recipe(catalog.photos[a].recipe, (480, 320)))
        hb = imaging.hashes(imaging.render_recipe(catalog.photos[b].recipe, (480, 320)))
        assert imaging.distance(ha[0], hb[0]) > PH and imaging.distance(ha[1], hb[1]) > DH, (
            a, b)
        ra, rb = catalog.photos[a].recipe, catalog.photos[b].recipe
        assert ra.source == rb.source and ra.width == rb.width  # same scene, shifted view


def test_served_variants_are_valid(sim: Any, truth: dict[str, Any]) -> None:
    rng = random.Random(11)
    photos = {p["id"]: p for p in truth["photos"]}
    three = [p for p in truth["photos"] if len(p["best_per_site"]) == 3]
    two = [p for p in truth["photos"] if len(p["best_per_site"]) == 2]
    sample = rng.sample(three, 8) + rng.sample(two, 4)
    sample += [photos[i] for i in truth["shared_photos"]]
    negatives = rng.sample(truth["hard_negatives"], 8)
    urls: list[str] = []
    for photo in sample:
        urls += list(photo["best_per_site"].values())
        urls += [v["url"] for v in photo["variants"] if v["kind"] in ("mbphotov3", "t")]
    for a, b in negatives:
        urls += [photos[a]["best"], photos[b]["best"]]
    bodies = fetch_all(sorted(set(urls)))
    h = {url: hashes(data) for url, data in bodies.items()}

    for photo in sample:
        mine = list(photo["best_per_site"].values()) + [
            v["url"] for v in photo["variants"] if v["kind"] in ("mbphotov3", "t")]
        for x, y in itertools.combinations(mine, 2):
            assert near(h[x], h[y]), (photo["id"], x, y, h[x][0] - h[y][0], h[x][1] - h[y][1])
        for variant in photo["variants"]:
            if variant["url"] in bodies:  # served size and format are what the truth says
                with Image.open(io.BytesIO(bodies[variant["url"]])) as img:
                    assert img.size == (variant["width"], variant["height"]), variant
                    assert img.format.lower() == variant["format"], variant
    for p, q in itertools.combinations(sample, 2):
        for x, y in itertools.product(p["best_per_site"].values(), q["best_per_site"].values()):
            assert not near(h[x], h[y]), (p["id"], q["id"])
    for a, b in negatives:
        ha, hb = h[photos[a]["best"]], h[photos[b]["best"]]
        assert ha[0] - hb[0] > PH and ha[1] - hb[1] > DH, (a, b)
