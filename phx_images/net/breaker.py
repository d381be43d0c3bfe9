"""Per-source circuit breaker with a *real* half-open state: exactly one probe.

The earlier system's "half-open" let all traffic through after the reset time, so a site that
was still down got the full load again. Here:

* closed -> open after ``failures`` consecutive failed requests;
* open: every caller gets CircuitOpen until ``reset_s`` has passed;
* then the first caller becomes the single probe (half-open); everyone else, concurrently,
  still gets CircuitOpen;
* the probe's success closes the breaker; its failure re-opens it for another ``reset_s``;
* a probe whose process died (no result within ``probe_lease_s``) is replaced by a new one.

State is a plain, JSON-serialisable :class:`BreakerRecord` so it can live in a shared store
(:mod:`phx_images.net.state`); the transitions are pure functions of (record, now, ticket).
``now`` is wall-clock time (epoch seconds) because records may be shared across machines.
A result only counts if it belongs to the record's current ``generation``: a slow request
admitted before the breaker opened cannot close it by succeeding late.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

State = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class BreakerRecord:
    """The serialisable state of one source's breaker (see module docstring).

    ``version`` increases on every write; a shared store can use it for compare-and-swap
    (reject a put whose version is not the stored one + 1).
    """

    state: State = "closed"
    failures: int = 0
    generation: int = 0
    opened_at: float | None = None
    retry_at: float | None = None
    probe_id: str | None = None
    probe_deadline: float | None = None
    last_error: str | None = None
    opens: int = 0
    version: int = 0
    updated_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (all values are str/int/float/None)."""
        return asdict(self)

    def to_json(self) -> str:
        """The record as a JSON string (for variable/KV stores)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | dict[str, Any]) -> BreakerRecord:
        """Inverse of :meth:`to_json` (also accepts an already-decoded dict)."""
        return cls.from_dict(json.loads(raw) if isinstance(raw, str | bytes) else raw)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BreakerRecord:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (forward compatibility)."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Ticket:
    """What an admitted request carries back to report its result."""

    generation: int
    probe_id: str | None = None


@dataclass(frozen=True)
class Denied:
    """Admission refused; ``retry_at`` is when a probe may next be tried (epoch seconds)."""

    retry_at: float
    reason: str


@dataclass
class CircuitBreaker:
    """The transition rules of one source's breaker. Stateless: state lives in records."""

    failures: int = 3
    reset_s: float = 300.0
    probe_lease_s: float = 120.0
    clock: Callable[[], float] = time.time
    _new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)

    def _bump(self, rec: BreakerRecord, **changes: Any) -> BreakerRecord:
        return replace(rec, version=rec.version + 1, updated_at=self.clock(), **changes)

    def admit(self, rec: BreakerRecord) -> tuple[Ticket | Denied, BreakerRecord | None]:
        """Decide whether a request may go; return (ticket or denial, record to store or None)."""
        now = self.clock()
        if rec.state == "closed":
            return Ticket(rec.generation), None
        if rec.state == "open":
            retry_at = rec.retry_at if rec.retry_at is not None else now
            if now < retry_at:
                return Denied(retry_at, f"circuit open after {rec.failures} failures"), None
            probe = self._new_id()
            new = self._bump(
                rec, state="half_open", probe_id=probe, probe_deadline=now + self.probe_lease_s
            )
            return Ticket(rec.generation, probe), new
        # half_open: one probe in flight; replace it only if its lease ran out.
        deadline = rec.probe_deadline if rec.probe_deadline is not None else now
        if now < deadline:
            return Denied(deadline, "circuit half-open: a probe is in flight"), None
        probe = self._new_id()
        new = self._bump(rec, probe_id=probe, probe_deadline=now + self.probe_lease_s)
        return Ticket(rec.generation, probe), new

    def on_success(self, rec: BreakerRecord, ticket: Ticket) -> BreakerRecord | None:
        """A request answered (any non-failure outcome). Returns the record to store, if any."""
        if ticket.generation != rec.generation:
            return None
        if rec.state == "half_open":
            if ticket.probe_id != rec.probe_id:
                return None
            return self._bump(
                rec, state="closed", failures=0, retry_at=None, probe_id=None,
                probe_deadline=None, opened_at=None, generation=rec.generation + 1,
            )  # fmt: skip
        if rec.state == "closed" and rec.failures:
            return self._bump(rec, failures=0)
        return None

    def on_failure(
        self, rec: BreakerRecord, ticket: Ticket, reason: str
    ) -> BreakerRecord | None:
        """A request failed (5xx, connection error, timeout, block). Record to store, if any."""
        if ticket.generation != rec.generation:
            return None
        now = self.clock()
        if rec.state == "half_open":
            if ticket.probe_id != rec.probe_id:
                return None
            return self._open(rec, now, rec.failures + 1, reason)
        if rec.state == "open":
            return None
        failures = rec.failures + 1
        if failures >= self.failures:
            return self._open(rec, now, failures, reason)
        return self._bump(rec, failures=failures, last_error=reason)

    def on_abandon(self, rec: BreakerRecord, ticket: Ticket) -> BreakerRecord | None:
        """No verdict (cancelled, our proxy failed, our browser failed): if this was the probe,
        release it so the next caller may probe at once instead of waiting for the lease."""
        if (
            rec.state == "half_open"
            and ticket.generation == rec.generation
            and ticket.probe_id == rec.probe_id
        ):
            return self._bump(rec, state="open", retry_at=self.clock(), probe_id=None,
                              probe_deadline=None)  # fmt: skip
        return None

    def _open(self, rec: BreakerRecord, now: float, failures: int, reason: str) -> BreakerRecord:
        return self._bump(
            rec, state="open", failures=failures, opened_at=now, retry_at=now + self.reset_s,
            probe_id=None, probe_deadline=None, last_error=reason, opens=rec.opens + 1,
            generation=rec.generation + 1,
        )  # fmt: skip
