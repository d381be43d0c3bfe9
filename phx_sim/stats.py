"""Per-port request counters and arrival times, served at ``/_sim/stats``.

Why: politeness is a requirement, so tests and benchmarks must be able to *measure* how the
engine treated each site (peak requests per second, 429s provoked, challenges passed) rather
than trust the engine's own accounting. A one-second peak alone punishes a client for the
one-request burst a token bucket legitimately allows, so every arrival time is kept too and
:func:`window_ratio` judges a whole run against a ceiling over longer windows.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

COUNTERS = ("requests", "peak_rps", "peak_10s", "rps_violations", "status_429", "status_503",
            "challenges_served", "challenges_passed", "captchas_served", "captchas_passed",
            "bytes", "resets", "connections", "arrivals_dropped")
MAX_ARRIVALS = 2_000_000  # per site; the oldest are dropped beyond this (``arrivals_dropped``)
PEAK_WINDOW_S = 10.0      # the window of ``peak_10s``


def _sorted_array(arrivals: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(arrivals, dtype=np.float64).ravel()
    if arr.size > 1 and bool(np.any(arr[1:] < arr[:-1])):
        arr = np.sort(arr)
    return arr


def _check_window(window_s: float) -> float:
    window = float(window_s)
    if not math.isfinite(window) or window <= 0:
        raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
    return window


def peak_in_window(arrivals: Sequence[float] | np.ndarray, window_s: float) -> int:
    """The most arrivals in any half-open window ``[t, t + window_s)``.

    Windows starting at each arrival suffice: sliding a window's start forward to its first
    arrival never loses one. Arrivals need not be sorted.
    """
    window = _check_window(window_s)
    arr = _sorted_array(arrivals)
    if arr.size == 0:
        return 0
    ends = np.searchsorted(arr, arr + window, side="left")
    return int(np.max(ends - np.arange(arr.size)))


def window_ratio(arrivals: Sequence[float] | np.ndarray, ceiling: float,
                 window_s: float = 10.0) -> float:
    """The worst window's share of what a polite client may send: the maximum over every
    window ``[t, t + window_s)`` of ``count / (ceiling * window_s + 1)``; 0.0 for no arrivals.

    ``ceiling * window_s + 1`` is what a token bucket of ``ceiling`` requests per second and a
    burst of one lets through in ``window_s`` seconds, so a run that respected the ceiling
    scores <= 1.0 and anything above 1.0 sent more than the ceiling allows. Example: a 10 s
    window with ceiling 1 allows 11 arrivals (ratio 1.0); a 12th makes it 12/11.
    """
    window = _check_window(window_s)
    limit = float(ceiling)
    if not math.isfinite(limit) or limit < 0:
        raise ValueError(f"ceiling must be a finite number >= 0, got {ceiling!r}")
    peak = peak_in_window(arrivals, window)
    return peak / (limit * window + 1.0) if peak else 0.0


class _Arrivals:
    """Arrival times of one site: a ring of at most ``cap`` doubles (8 bytes each, not a
    Python float object each), oldest overwritten first."""

    __slots__ = ("buf", "cap", "dropped", "start")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buf = array("d")
        self.start = 0  # index of the oldest entry once the ring is full
        self.dropped = 0

    def add(self, t: float) -> None:
        if len(self.buf) < self.cap:
            self.buf.append(t)
            return
        self.buf[self.start] = t
        self.start = (self.start + 1) % self.cap
        self.dropped += 1

    def ordered(self) -> np.ndarray:
        """A copy, oldest first."""
        arr = np.frombuffer(self.buf, dtype=np.float64) if len(self.buf) else np.zeros(0)
        if self.start:
            return np.concatenate((arr[self.start:], arr[:self.start]))
        return arr.copy()


class Stats:
    """Thread-safe counters keyed by port name (``zillow``, ``zillow_photos``, ...)."""

    def __init__(self, names: list[str], max_arrivals: int = MAX_ARRIVALS) -> None:
        if max_arrivals < 1:
            raise ValueError("max_arrivals must be >= 1")
        self._lock = threading.Lock()
        self._names = list(names)
        self._max_arrivals = max_arrivals
        self._data: dict[str, dict[str, Any]] = {}
        self._windows: dict[str, deque[float]] = {}
        self._windows_10s: dict[str, deque[float]] = {}
        self._arrivals: dict[str, _Arrivals] = {}
        self.reset()

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def reset(self) -> None:
        with self._lock:
            self._data = {n: {**dict.fromkeys(COUNTERS, 0), "by_status": {}}
                          for n in self._names}
            self._windows = {n: deque() for n in self._names}
            self._windows_10s = {n: deque() for n in self._names}
            self._arrivals = {n: _Arrivals(self._max_arrivals) for n in self._names}

    def arrive(self, name: str) -> None:
        """Count a request, record its arrival time and update the sliding windows of
        ``peak_rps`` (1 s) and ``peak_10s``."""
        with self._lock:
            now = time.monotonic()  # read under the lock: arrivals are recorded in order
            site = self._data[name]
            site["requests"] += 1
            for span, windows, key in ((1.0, self._windows, "peak_rps"),
                                       (PEAK_WINDOW_S, self._windows_10s, "peak_10s")):
                window = windows[name]
                while window and now - window[0] >= span:
                    window.popleft()
                window.append(now)
                if len(window) > site[key]:
                    site[key] = len(window)
            arrivals = self._arrivals[name]
            arrivals.add(now)
            site["arrivals_dropped"] = arrivals.dropped

    def respond(self, name: str, status: int, nbytes: int) -> None:
        with self._lock:
            site = self._data[name]
            key = str(status)
            site["by_status"][key] = site["by_status"].get(key, 0) + 1
            site["bytes"] += nbytes
            if status == 429:
                site["status_429"] += 1
            elif status == 503:
                site["status_503"] += 1

    def incr(self, name: str, counter: str, n: int = 1) -> None:
        with self._lock:
            self._data[name][counter] += n

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {n: {**v, "by_status": dict(v["by_status"])} for n, v in self._data.items()}

    def arrival_array(self, name: str) -> np.ndarray:
        """Arrival times (``time.monotonic()``) of ``name``'s requests since the last reset,
        oldest first, as a float64 array (a copy)."""
        if name not in self._arrivals:
            raise ValueError(f"unknown site {name!r}; known: {', '.join(self._names)}")
        with self._lock:
            return self._arrivals[name].ordered()

    def arrivals(self, name: str) -> list[float]:
        return self.arrival_array(name).tolist()

    def window_ratios(self, ceilings: Mapping[str, float],
                      window_s: float = 10.0) -> dict[str, float]:
        """:func:`window_ratio` of each site in ``ceilings`` (site -> requests per second)."""
        clean = check_ceilings(ceilings, self._names)
        window = _check_window(window_s)
        return {name: window_ratio(self.arrival_array(name), ceiling, window)
                for name, ceiling in clean.items()}


def check_ceilings(ceilings: Any, names: Sequence[str]) -> dict[str, float]:
    """Validate ``{site: requests per second}``; raises ValueError naming the problem."""
    if not isinstance(ceilings, Mapping):
        raise ValueError("ceilings must be an object of site -> requests per second, got "
                         f"{type(ceilings).__name__}")
    clean: dict[str, float] = {}
    for site, value in ceilings.items():
        if site not in names:
            raise ValueError(f"unknown site {site!r} in ceilings; known: {', '.join(names)}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"ceiling of {site!r} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"ceiling of {site!r} must be a finite number >= 0, got {value!r}")
        clean[site] = float(value)
    return clean


def politeness_bound(requests: dict[str, int], ceilings: dict[str, float]) -> tuple[float, str]:
    """The shortest time in which the requests a run made could have been served at the given
    ceilings: for each rate-limited port, its requests divided by its ceiling; the largest,
    and which port it is. A run's wall time over this is its distance from politeness."""
    worst, name = 0.0, ""
    for port, ceiling in ceilings.items():
        if ceiling <= 0:
            raise ValueError(f"{port}: ceiling must be > 0")
        seconds = requests.get(port, 0) / ceiling
        if seconds > worst:
            worst, name = seconds, port
    return worst, name
