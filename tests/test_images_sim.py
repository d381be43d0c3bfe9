"""Against the simulator: its bad images are refused; dedup of its photo set matches truth.

Downloads go straight through curl_cffi here (not the policy layer) on purpose: this tests the
image pipeline's definition of "the same photo" against the simulator's ground truth.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict

import pytest

from phx_images.images import BadImage, group_near_duplicates, inspect, perceptual_hashes
from phx_images.settings import ImageSettings

S = ImageSettings()

BAD = {
    "bomb.png": "decompression bomb",
    "truncated.jpg": "truncated",
    "html.jpg": "HTML",
    "empty.jpg": "empty",
    "huge.png": "huge dimensions",
}


async def _fetch_all(urls: list[str], concurrency: int = 8) -> dict[str, bytes]:
    from curl_cffi.requests import AsyncSession

    semaphore = asyncio.Semaphore(concurrency)
    out: dict[str, bytes] = {}
    async with AsyncSession() as session:
        async def one(url: str) -> None:
            async with semaphore:
                response = await session.get(url, timeout=60, allow_redirects=False)
                out[url] = response.content
        await asyncio.gather(*(one(u) for u in urls))
    return out


@pytest.fixture(scope="module")
def truth(sim: object) -> dict:
    return sim.truth()  # type: ignore[attr-defined]


def test_simulator_bad_images_refused(sim: object) -> None:
    urls = sim.urls  # type: ignore[attr-defined]
    for port in ("zillow_photos", "redfin_photos", "phoenixmls_photos"):
        bodies = asyncio.run(_fetch_all([f"{urls[port]}/_bad/{n}" for n in BAD]))
        for name, reason in BAD.items():
            with pytest.raises(BadImage) as info:
                inspect(bodies[f"{urls[port]}/_bad/{name}"], max_pixels=S.max_pixels)
            assert reason.lower() in info.value.reason.lower(), (port, name, info.value.reason)


@pytest.mark.slow
def test_dedup_matches_truth(truth: dict) -> None:
    owner: dict[str, str] = {}  # url -> canonical photo id
    for photo in truth["photos"]:
        for url in photo["best_per_site"].values():
            owner[url] = photo["id"]
    bodies = asyncio.run(_fetch_all(sorted(owner)))
    items = []
    for url, data in bodies.items():
        phash, dhash = perceptual_hashes(data)
        items.append((url, phash, dhash))
    groups = group_near_duplicates(items, S.phash_threshold, S.dhash_threshold)
    group_of = {url: i for i, group in enumerate(groups) for url in group}

    truth_pairs, predicted_pairs = set(), set()
    by_photo: dict[str, list[str]] = defaultdict(list)
    for url, pid in owner.items():
        by_photo[pid].append(url)
    for urls in by_photo.values():
        truth_pairs |= {tuple(sorted(p)) for p in itertools.combinations(urls, 2)}
    for group in groups:
        predicted_pairs |= {tuple(sorted(p)) for p in itertools.combinations(group, 2)}
    hits = len(truth_pairs & predicted_pairs)
    recall = hits / len(truth_pairs)
    precision = hits / len(predicted_pairs) if predicted_pairs else 1.0
    print(f"\nsim dedup: {len(owner)} downloads of {len(by_photo)} photos, {len(groups)} groups, "
          f"pair precision {precision:.4f}, pair recall {recall:.4f}")

    missed = [pid for pid, urls in by_photo.items()
              if len({group_of.get(u, -1 - i) for i, u in enumerate(urls)}) != 1]
    assert not missed, f"variant groups not joined: {missed[:10]}"
    assert recall == 1.0
    joined_negatives = []
    for a, b in truth["hard_negatives"]:
        ga = {group_of.get(u) for u in by_photo[a]} - {None}
        gb = {group_of.get(u) for u in by_photo[b]} - {None}
        if ga & gb:
            joined_negatives.append((a, b))
    assert not joined_negatives, f"hard negatives joined: {joined_negatives}"
