"""The errors of the policy layer: one hierarchy, so adapters can map outcomes to statuses.

Why these classes: an adapter must tell "not there" from "we were blocked" from "the breaker
is open" without parsing messages (``discover`` maps them to NOT_FOUND / BLOCKED / SKIPPED /
FAILED). Every message names the source and the URL, and the URL is always redacted here, at
construction, so no caller can forget to.
"""

from __future__ import annotations

from phx_images.net.redact import redact_text, redact_url


class FetchError(Exception):
    """Base of every policy-layer failure. ``.source``, ``.url`` (redacted), ``.reason``."""

    def __init__(self, source: str, url: str, reason: str) -> None:
        self.source = source
        self.url = redact_url(url)
        self.reason = redact_text(reason)
        super().__init__(f"{source}: {self.reason} [{self.url}]")

    def __reduce__(self):  # picklable (Prefect may persist task failures)
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[FetchError], state: dict) -> FetchError:
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    Exception.__init__(obj, f"{obj.source}: {obj.reason} [{obj.url}]")
    return obj


class NotAllowed(FetchError):
    """Host, scheme or redirect hop outside the source's allowlist, or a private address."""


class CircuitOpen(FetchError):
    """The source's breaker is open (or half-open with its one probe in flight).

    ``.retry_at`` is the wall-clock time (epoch seconds) at which a probe may be tried.
    """

    def __init__(self, source: str, url: str, reason: str, *, retry_at: float) -> None:
        super().__init__(source, url, reason)
        self.retry_at = retry_at


class Blocked(FetchError):
    """An anti-bot wall: a challenge that was not passed, or a 403 from the site's bot guard."""

    def __init__(self, source: str, url: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(source, url, reason)
        self.status = status


class HttpStatusError(FetchError):
    """A final non-2xx answer that is not worth retrying (404, 401, 410, ...). ``.status``."""

    def __init__(self, source: str, url: str, reason: str, *, status: int) -> None:
        super().__init__(source, url, reason)
        self.status = status


class TooLarge(FetchError):
    """The body (announced or streamed) went over the cap; the transfer was stopped."""

    def __init__(self, source: str, url: str, reason: str, *, limit: int) -> None:
        super().__init__(source, url, reason)
        self.limit = limit


class TransientError(FetchError):
    """Retries exhausted on 429/5xx/connection errors/timeouts, or the source is paused.

    ``.status`` is the last HTTP status (None for a connection error or timeout);
    ``.retry_after`` the server's last Retry-After in seconds, if any.
    """

    def __init__(
        self,
        source: str,
        url: str,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(source, url, reason)
        self.status = status
        self.retry_after = retry_after
        self.attempts = attempts
