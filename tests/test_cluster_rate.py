"""The cluster-wide rate limit (one Prefect slot with decay) keeps every source under its
ceiling as the engine defines it, whatever the number of workers taking from it."""

from __future__ import annotations

import math

import pytest

from flows.setup import cluster_decay


def most_in_any_window(times: list[float], window: float) -> int:
    """Largest number of ``times`` in any half-open window of ``window`` seconds (how the
    simulator counts ``peak_rps``)."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.mark.parametrize("max_rps", [0.3, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0, 20.0])
def test_one_slot_with_this_decay_never_exceeds_the_ceiling(max_rps: float) -> None:
    decay = cluster_decay(max_rps)
    # the fastest any set of workers can get slots: one slot, free again after 1/decay s
    times = [k / decay for k in range(300)]
    ceiling = max(1, math.floor(max_rps))
    assert most_in_any_window(times, 1.1) <= ceiling
    assert most_in_any_window(times, 1.0) <= ceiling
    assert decay <= max_rps
    # and not needlessly slow: within a few % of what the ceiling allows
    assert decay >= min(max_rps, ceiling / 1.1) * 0.97

