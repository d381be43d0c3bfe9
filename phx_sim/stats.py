"""Per-port request counters, served at ``/_sim/stats``.

Why: politeness is a requirement, so tests and benchmarks must be able to *measure* how the
engine treated each site (peak requests per second, 429s provoked, challenges passed) rather
than trust the engine's own accounting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

COUNTERS = ("requests", "peak_rps", "rps_violations", "status_429", "status_503",
            "challenges_served", "challenges_passed", "captchas_served", "captchas_passed",
            "bytes", "resets", "connections")


class Stats:
    """Thread-safe counters keyed by port name (``zillow``, ``zillow_photos``, ...)."""

    def __init__(self, names: list[str]) -> None:
        self._lock = threading.Lock()
        self._names = list(names)
        self._data: dict[str, dict[str, Any]] = {}
        self._windows: dict[str, deque[float]] = {}
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._data = {n: {**dict.fromkeys(COUNTERS, 0), "by_status": {}}
                          for n in self._names}
            self._windows = {n: deque() for n in self._names}

    def arrive(self, name: str) -> None:
        """Count a request and update the sliding one-second window for ``peak_rps``."""
        now = time.monotonic()
        with self._lock:
            site = self._data[name]
            site["requests"] += 1
            window = self._windows[name]
            while window and now - window[0] >= 1.0:
                window.popleft()
            window.append(now)
            site["peak_rps"] = max(site["peak_rps"], len(window))

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
