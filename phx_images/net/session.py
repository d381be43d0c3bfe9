"""curl_cffi sessions that reuse connections without libcurl's silent re-sends.

Connection reuse (and HTTP/2 where a site offers it over TLS) is what makes a 60-photo
property cheap: one handshake per CDN instead of one per photo. libcurl has one behaviour that
breaks our pacing when it reuses a connection: if that connection dies before the first answer
byte (a reset), libcurl sends the same request again on a fresh connection, up to five times,
at once and without telling the caller. A site that reset us under load would see the request
and its twins within milliseconds, past every rate slot we took.

There is no option to turn that off, but libcurl calls the pre-request callback
(``CURLOPT_PREREQFUNCTION``) before every request it puts on a connection, re-sends included.
Each transfer here allows exactly one: a second call aborts the transfer before anything is
sent, curl reports ``CURLE_ABORTED_BY_CALLBACK``, and the policy layer retries it like any
other reset, after a new rate slot and its backoff. curl_cffi does not wrap this callback, so
it is installed with cffi directly on each handle as it leaves the pool.
"""

from __future__ import annotations

from typing import Any

from curl_cffi import CurlOpt
from curl_cffi._wrapper import ffi, lib
from curl_cffi.curl import Curl
from curl_cffi.requests import AsyncSession

PREREQ_OK = 0  # CURL_PREREQFUNC_OK
PREREQ_ABORT = 1  # CURL_PREREQFUNC_ABORT
ABORTED_BY_CALLBACK = 42  # CURLE_ABORTED_BY_CALLBACK
PREREQ_SIGNATURE = "int(*)(void *, char *, char *, int, int)"


class OneSendPerRequest:
    """The pre-request guard of one curl handle: lets the first send of a transfer through and
    refuses any re-send. One per handle (cffi callbacks are executable closures: allocate
    them once, not per request); :meth:`arm` before each transfer."""

    def __init__(self) -> None:
        self.sends = 0
        self.c_callback = ffi.callback(PREREQ_SIGNATURE, self._prereq)

    def _prereq(self, _clientp: Any, _ip: Any, _local_ip: Any, _port: int, _lport: int) -> int:
        self.sends += 1
        return PREREQ_OK if self.sends == 1 else PREREQ_ABORT

    def arm(self, curl: Curl) -> None:
        """Reset the count and (re)install the callback: curl_cffi resets a handle when it
        returns to the pool, which clears the option."""
        self.sends = 0
        code = lib._curl_easy_setopt(curl._curl, CurlOpt.PREREQFUNCTION,
                                     ffi.cast("void *", self.c_callback))
        if code != 0:
            raise RuntimeError(f"libcurl refused CURLOPT_PREREQFUNCTION (code {code})")


class PacedSession(AsyncSession):
    """An ``AsyncSession`` (its connection pool, cookies and fingerprint) whose every transfer
    is armed with its handle's :class:`OneSendPerRequest` guard.

    Every request path of curl_cffi's AsyncSession (``request``, ``stream``, ``ws_connect``)
    takes its handle through ``pop_curl``, so arming there covers them all; the handle keeps
    a reference to its guard so the C callback lives as long as the handle.
    """

    async def pop_curl(self) -> Curl:
        curl = await super().pop_curl()
        try:
            guard = getattr(curl, "phx_guard", None)
            if guard is None:
                guard = OneSendPerRequest()
                curl.phx_guard = guard  # type: ignore[attr-defined]
            guard.arm(curl)
        except BaseException:
            self.push_curl(curl)  # never shrink the pool
            raise
        return curl


def resend_refused(exc: BaseException) -> bool:
    """True when a curl error is our guard refusing libcurl's silent re-send."""
    return getattr(exc, "code", None) == ABORTED_BY_CALLBACK and "pre-request" in str(exc)
