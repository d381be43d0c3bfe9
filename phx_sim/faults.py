"""Fault knobs: validation, and the per-site state they need (random streams, token buckets).

Why strict validation: faults arrive from the CLI and from ``PUT /_sim/faults/{site}``; a typo
such as ``"reset_rate": "0.5"`` silently doing nothing would make a resilience test pass for the
wrong reason. Every knob is checked and a bad one is refused with a message naming it.

Faults are keyed by a source name (``zillow``, ``redfin``, ``phoenixmls``, ``assessor``),
which applies to the site's page port *and* its photo port, or by a port name
(``zillow_photos``, ``elsewhere``, ...), whose knobs override the source's for that port only.
A ``rate_limit`` set on a source is one token bucket shared by its ports, as a real site's
politeness budget covers its CDN too.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any

SOURCES: tuple[str, ...] = ("zillow", "redfin", "phoenixmls", "assessor")
PORT_SOURCE: dict[str, str] = {
    "zillow": "zillow", "zillow_photos": "zillow", "redfin": "redfin",
    "redfin_photos": "redfin", "phoenixmls": "phoenixmls", "phoenixmls_photos": "phoenixmls",
    "assessor": "assessor", "elsewhere": "elsewhere",
}
FAULT_KEYS: tuple[str, ...] = tuple(PORT_SOURCE)

_RATES = ("error_503_rate", "captcha_rate", "reset_rate", "truncated_image_rate",
          "html_image_rate", "bomb_image_rate", "redirect_out_rate")


class FaultError(ValueError):
    """A fault specification that cannot be used; the message says which knob and why."""


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultError(f"{name} must be a number, got {value!r}")
    return float(value)


def _rate(name: str, value: object) -> float:
    x = _number(name, value)
    if not 0.0 <= x <= 1.0:
        raise FaultError(f"{name} must be between 0 and 1, got {value!r}")
    return x


def validate(site: str, spec: object) -> dict[str, Any]:
    """Return a clean copy of one site's faults or raise :class:`FaultError`."""
    if site not in FAULT_KEYS:
        raise FaultError(f"unknown site {site!r}; known: {', '.join(FAULT_KEYS)}")
    if not isinstance(spec, dict):
        raise FaultError(f"faults for {site} must be a JSON object, got {type(spec).__name__}")
    clean: dict[str, Any] = {}
    for key, value in spec.items():
        if key in _RATES:
            clean[key] = _rate(key, value)
        elif key == "latency_ms":
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise FaultError(f"latency_ms must be [lo, hi], got {value!r}")
            lo, hi = (_number("latency_ms", v) for v in value)
            if not 0 <= lo <= hi <= 60_000:
                raise FaultError(f"latency_ms must satisfy 0 <= lo <= hi <= 60000, got {value!r}")
            clean[key] = [lo, hi]
        elif key == "handshake_ms":
            ms = _number(key, value)
            if not 0 <= ms <= 10_000:
                raise FaultError(f"handshake_ms must be in [0, 10000], got {value!r}")
            clean[key] = ms
        elif key == "rate_limit":
            if not isinstance(value, dict) or set(value) - {"rps", "burst"} or "rps" not in value:
                raise FaultError(f"rate_limit must be {{'rps': r, 'burst': b}}, got {value!r}")
            rps = _number("rate_limit.rps", value["rps"])
            burst = _number("rate_limit.burst", value.get("burst", 1))
            if not (0 < rps <= 10_000) or not (1 <= burst <= 10_000) or burst != int(burst):
                raise FaultError(f"rate_limit needs 0 < rps and an integer burst >= 1: {value!r}")
            clean[key] = {"rps": rps, "burst": int(burst)}
        elif key == "captcha_hold_s":
            hold = _number(key, value)
            if not 0 < hold <= 60:
                raise FaultError(f"captcha_hold_s must be in (0, 60], got {value!r}")
            clean[key] = hold
        elif key == "trickle":
            if not isinstance(value, dict) or set(value) - {"rate", "bytes_per_s"}:
                raise FaultError(f"trickle must be {{'rate': x, 'bytes_per_s': n}}, got {value!r}")
            rate = _rate("trickle.rate", value.get("rate", 1.0))
            bps = _number("trickle.bytes_per_s", value.get("bytes_per_s", 1024))
            if not 1 <= bps <= 100_000_000:
                raise FaultError(f"trickle.bytes_per_s must be >= 1, got {value!r}")
            clean[key] = {"rate": rate, "bytes_per_s": int(bps)}
        else:
            raise FaultError(f"unknown fault knob {key!r} for {site}")
    return clean


class TokenBucket:
    """Classic token bucket; ``take`` returns 0 when allowed, else seconds until a token."""

    def __init__(self, rps: float, burst: int) -> None:
        self.rps, self.burst = rps, burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rps)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rps


class Faults:
    """The live fault configuration of one simulator (thread-safe: set from any thread)."""

    def __init__(self, seed: int, initial: object | None = None) -> None:
        self.seed = seed
        self._lock = threading.Lock()
        self._config: dict[str, dict[str, Any]] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._rngs: dict[str, random.Random] = {}
        if initial is not None:
            self.set_all(initial)

    def set_all(self, spec: object) -> None:
        if not isinstance(spec, dict):
            raise FaultError("faults must be a JSON object of site -> knobs")
        clean = {site: validate(site, value) for site, value in spec.items()}
        for site, value in clean.items():
            self.set(site, value)

    def set(self, site: str, spec: object) -> dict[str, Any]:
        clean = validate(site, spec)
        with self._lock:
            self._config[site] = clean
            self._buckets.pop(site, None)
        return clean

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self._config.items() if v}

    def effective(self, port: str) -> tuple[dict[str, Any], str]:
        """Knobs in force on ``port`` and the key that owns its rate limit bucket."""
        source = PORT_SOURCE.get(port, port)
        with self._lock:
            merged = dict(self._config.get(source, {}))
            own = self._config.get(port, {}) if port != source else {}
            merged.update(own)
        bucket_key = port if "rate_limit" in own else source
        return merged, bucket_key

    def rng(self, port: str) -> random.Random:
        """A repeatable random stream per port, seeded by the simulator's seed."""
        with self._lock:
            if port not in self._rngs:
                self._rngs[port] = random.Random(f"phx-sim-faults-{self.seed}-{port}")
            return self._rngs[port]

    def bucket_wait(self, key: str, spec: dict[str, Any]) -> float:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or (bucket.rps, bucket.burst) != (spec["rps"], spec["burst"]):
                bucket = self._buckets[key] = TokenBucket(spec["rps"], spec["burst"])
            return bucket.take()
