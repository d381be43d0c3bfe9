"""Politeness measured by arrival windows: the pure functions, the ring of arrival times, and
``/_sim/stats?ceilings=...`` on a running simulator (docs/simulator.md, Control)."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from curl_cffi import requests

from phx_sim.stats import Stats, peak_in_window, window_ratio


# -- the pure functions ---------------------------------------------------------------------------
def test_no_arrivals_is_zero() -> None:
    assert window_ratio([], 1.0) == 0.0
    assert window_ratio([], 0.0) == 0.0
    assert peak_in_window([], 10.0) == 0


def test_boundary_eleven_allowed_twelfth_over() -> None:
    """Ceiling 1/s over 10 s lets a token bucket (burst 1) through 1 * 10 + 1 = 11 requests."""
    eleven = [i * 0.9 for i in range(11)]  # 0.0 .. 9.0: all inside [0, 10)
    assert peak_in_window(eleven, 10.0) == 11
    assert window_ratio(eleven, 1.0, 10.0) == 1.0
    twelve = [*eleven, 9.5]
    assert window_ratio(twelve, 1.0, 10.0) == pytest.approx(12 / 11)
    assert window_ratio(twelve, 1.0, 10.0) > 1.0


def test_windows_are_half_open() -> None:
    """[t, t + 10): an arrival exactly 10 s after the first starts the next window."""
    arrivals = [float(i) for i in range(11)]  # 0, 1, ..., 10
    assert peak_in_window(arrivals, 10.0) == 10
    assert window_ratio(arrivals, 1.0) == pytest.approx(10 / 11)
    assert peak_in_window([0.0, 10.0], 10.0) == 1
    assert peak_in_window([0.0, 9.999], 10.0) == 2


def test_worst_window_counts_and_order_does_not_matter() -> None:
    slow = [i * 2.0 for i in range(50)]            # 0.5/s for 100 s: 5 per window
    burst = [200.0 + i * 0.01 for i in range(30)]  # 30 in 0.3 s
    arrivals = slow + burst
    assert peak_in_window(arrivals, 10.0) == 30
    assert window_ratio(arrivals, 0.5, 10.0) == pytest.approx(30 / 6)
    assert window_ratio(list(reversed(arrivals)), 0.5, 10.0) == pytest.approx(30 / 6)
    assert window_ratio(slow, 0.5, 10.0) == pytest.approx(5 / 6)
    assert peak_in_window(arrivals, 1.0) == 30
    assert peak_in_window(slow, 1.0) == 1
    # ceiling 0: any request at all is over (1 allowed per window: the burst of one).
    assert window_ratio([5.0], 0.0) == 1.0 and window_ratio([5.0, 6.0], 0.0) == 2.0


@pytest.mark.parametrize("ceiling, window", [(-1.0, 10.0), (math.nan, 10.0), (1.0, 0.0),
                                             (1.0, -5.0), (1.0, math.inf)])
def test_bad_arguments_are_refused(ceiling: float, window: float) -> None:
    with pytest.raises(ValueError):
        window_ratio([1.0, 2.0], ceiling, window)


def test_arrival_ring_drops_the_oldest() -> None:
    stats = Stats(["a", "b"], max_arrivals=5)
    for _ in range(8):
        stats.arrive("a")
    got = stats.arrivals("a")
    assert len(got) == 5 and got == sorted(got)
    snap = stats.snapshot()
    assert snap["a"]["requests"] == 8 and snap["a"]["arrivals_dropped"] == 3
    assert snap["a"]["peak_10s"] == 8 and snap["b"]["peak_10s"] == 0
    assert stats.arrivals("b") == []
    assert stats.window_ratios({"a": 1.0}) == {"a": pytest.approx(5 / 11)}
    with pytest.raises(ValueError, match="unknown site"):
        stats.window_ratios({"c": 1.0})
    stats.reset()
    assert stats.arrivals("a") == [] and stats.snapshot()["a"]["arrivals_dropped"] == 0


# -- over HTTP, on a running simulator ---------------------------------------------------------
def _assessor(sim: Any, n: int) -> None:
    token = sim.env()["PHX_ASSESSOR__TOKEN"]
    with requests.Session() as session:
        for _ in range(n):
            r = session.get(sim.urls["assessor"] + "/parcel/207-22-123",
                            headers={"AUTHORIZATION": token})
            assert r.status_code == 200


def test_stats_with_ceilings(fresh_sim: Any) -> None:
    before = time.monotonic()
    _assessor(fresh_sim, 12)
    arrivals = fresh_sim.arrivals("assessor")
    assert len(arrivals) == 12 and arrivals == sorted(arrivals)
    assert before <= arrivals[0] and arrivals[-1] <= time.monotonic()
    assert fresh_sim.arrivals("zillow") == []

    base = fresh_sim.urls["control"] + "/_sim/stats"
    plain = requests.get(base).json()
    assert "window_ratio" not in plain  # the old shape, unchanged, without ceilings
    assert plain["assessor"]["peak_10s"] == 12 and plain["assessor"]["requests"] == 12

    ceilings = {"assessor": 1, "zillow": 0.5, "zillow_photos": 6}
    r = requests.get(base, params={"ceilings": json.dumps(ceilings)})
    assert r.status_code == 200
    answer = r.json()
    assert answer["assessor"]["requests"] == 12  # the counters are still there
    ratios = answer["window_ratio"]
    assert set(ratios) == set(ceilings)
    assert ratios["assessor"] == pytest.approx(12 / 11)  # 12 requests in well under 10 s
    assert ratios["zillow"] == 0.0 and ratios["zillow_photos"] == 0.0
    assert fresh_sim.window_ratios({"assessor": 1.0}) == {"assessor": pytest.approx(12 / 11)}
    assert fresh_sim.window_ratios({"assessor": 2.0}, window_s=5.0) == {
        "assessor": pytest.approx(12 / 11)}
    wide = requests.get(base, params={"ceilings": '{"assessor": 0.1}', "window_s": "20"}).json()
    assert wide["window_ratio"]["assessor"] == pytest.approx(12 / 3)

    # Control requests are not counted, and a reset forgets the arrivals.
    assert requests.get(fresh_sim.urls["assessor"] + "/_sim/stats").status_code == 200
    assert len(fresh_sim.arrivals("assessor")) == 12
    assert requests.post(fresh_sim.urls["control"] + "/_sim/stats/reset").status_code == 200
    assert fresh_sim.arrivals("assessor") == []
    after = requests.get(base, params={"ceilings": '{"assessor": 1}'}).json()
    assert after["window_ratio"] == {"assessor": 0.0} and after["assessor"]["peak_10s"] == 0
    _assessor(fresh_sim, 2)
    fresh_sim.reset_stats()
    assert fresh_sim.arrivals("assessor") == []


@pytest.mark.parametrize("params, message", [
    ({"ceilings": "{broken"}, "not valid JSON"),
    ({"ceilings": "[1, 2]"}, "must be an object"),
    ({"ceilings": '{"zillow": "fast"}'}, "must be a number"),
    ({"ceilings": '{"zillow": true}'}, "must be a number"),
    ({"ceilings": '{"zillow": -1}'}, ">= 0"),
    ({"ceilings": '{"nowhere": 1}'}, "unknown site 'nowhere'"),
    ({"ceilings": '{"control": 1}'}, "unknown site 'control'"),
    ({"ceilings": '{"zillow": 1}', "window_s": "soon"}, "window_s"),
    ({"ceilings": '{"zillow": 1}', "window_s": "0"}, "window_s"),
    ({"window_s": "10"}, "window_s needs ceilings"),
])
def test_bad_ceilings_answer_400(sim: Any, params: dict[str, str], message: str) -> None:
    r = requests.get(sim.urls["control"] + "/_sim/stats", params=params)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    with pytest.raises(ValueError):
        sim.window_ratios({"nowhere": 1.0})


def test_politeness_bound_is_the_slowest_limit() -> None:
    from phx_sim.stats import politeness_bound

    bound, port = politeness_bound({"zillow": 10, "zillow_photos": 60, "assessor": 3},
                                   {"zillow": 0.5, "zillow_photos": 6.0, "assessor": 1.5})
    assert (bound, port) == (20.0, "zillow")
    assert politeness_bound({}, {"zillow": 0.5}) == (0.0, "")
    with pytest.raises(ValueError):
        politeness_bound({"zillow": 1}, {"zillow": 0.0})
