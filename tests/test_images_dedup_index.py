"""The index finds exactly what a brute-force scan finds, including LSH's blind spot."""

from __future__ import annotations

import numpy as np
import pytest

from phx_images.images import (
    CopyQuality,
    NearDuplicateIndex,
    group_near_duplicates,
    is_better_copy,
    is_near_duplicate,
)


def _flip(value: int, bits: list[int]) -> int:
    for b in bits:
        value ^= 1 << int(b)
    return value


def test_one_bit_per_band_pair_is_found() -> None:
    """The earlier 8x8-bit LSH never compared this pair (no band shared): distance 8."""
    base_p, base_d = 0x0123456789ABCDEF, 0x0F0F0F0F0F0F0F0F
    twin_p = _flip(base_p, [band * 8 for band in range(8)])  # one bit in every band
    twin_d = _flip(base_d, [band * 8 + 3 for band in range(8)])
    index: NearDuplicateIndex[str] = NearDuplicateIndex()
    index.add("a", base_p, base_d)
    assert index.query(twin_p, twin_d) == ["a"]


@pytest.mark.parametrize("seed", [1, 2])
def test_exact_recall_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    p = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n,
                                                                               dtype=np.uint64)
    d = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)
    ids = list(range(n))
    index: NearDuplicateIndex[int] = NearDuplicateIndex()
    index.add_many(ids, p, d)
    # queries near stored entries at every distance around the thresholds
    for q in range(200):
        i = int(rng.integers(0, n))
        qp = _flip(int(p[i]), list(rng.choice(64, int(rng.integers(0, 12)), replace=False)))
        qd = _flip(int(d[i]), list(rng.choice(64, int(rng.integers(0, 14)), replace=False)))
        brute = {j for j in ids if is_near_duplicate((qp, qd), (int(p[j]), int(d[j])))}
        assert set(index.query(qp, qd)) == brute, q


def test_both_thresholds_must_hold_and_are_inclusive() -> None:
    index: NearDuplicateIndex[str] = NearDuplicateIndex(8, 10)
    index.add("x", 0, 0)
    assert index.query((1 << 8) - 1, (1 << 10) - 1) == ["x"]  # 8 and 10: in
    assert index.query((1 << 9) - 1, 0) == []  # pHash 9: out
    assert index.query(0, (1 << 11) - 1) == []  # dHash 11: out


def test_ids_deduplicated_nearest_first_and_growth() -> None:
    index: NearDuplicateIndex[str] = NearDuplicateIndex(capacity=1)
    for k in range(100):
        index.add(f"far{k}", (1 << 64) - 1 - k, (1 << 64) - 1)
    index.add("b", 0b111, 0)
    index.add("a", 0b1, 0)
    index.add("a", 0b11, 0)
    assert len(index) == 103
    assert index.query(0, 0) == ["a", "b"]


def test_groups_are_transitive_components() -> None:
    items = [("a", 0, 0), ("b", 0b1111, 0), ("c", 0b11111111, 0), ("z", (1 << 64) - 1, 0),
             ("y", (1 << 64) - 2, 0), ("lonely", 0xFFFF0000FFFF0000, 0xFFFF)]
    assert group_near_duplicates(items) == [["a", "b", "c"], ["z", "y"]]


def test_best_copy_rule() -> None:
    big = CopyQuality(1600, 1067, 400_000, "JPEG")
    small = CopyQuality(1536, 1024, 500_000, "JPEG")
    assert is_better_copy(big, small) and not is_better_copy(small, big)
    less_compressed = CopyQuality(1600, 1067, 600_000, "JPEG")
    assert is_better_copy(less_compressed, big)
    webp = CopyQuality(1600, 1067, 900_000, "WEBP")
    assert not is_better_copy(webp, big) and not is_better_copy(big, webp)  # stable
