"""Per-source host allowlist, applied to the first URL and to every redirect hop.

Why: a listing page (or a hostile redirect) must never make us fetch from a host the operator
did not list, and must never turn the scraper into a probe of the internal network (SSRF): a
host given as an IP literal, or a name that resolves to a private/loopback/link-local address,
is refused unless its origin is explicitly allowed (the local simulator is).

Known limit: the check resolves the name itself and curl resolves it again when connecting; a
DNS answer that changes in between (rebinding) is not caught. Through a proxy, the proxy
resolves, and the proxy is the one that would reach the private address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from phx_images.net.errors import NotAllowed
from phx_images.net.redact import get_logger, redact_url

log = get_logger(__name__)

Resolver = Callable[[str, int], Awaitable[list[str]]]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower-case, default port dropped.

    Raises ValueError for a URL without scheme or host.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname
    if not scheme or not host:
        raise ValueError(f"not an absolute URL: {url!r}")
    port = parts.port  # may raise ValueError for a bad port
    hostpart = f"[{host}]" if ":" in host else host
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{hostpart}"
    return f"{scheme}://{hostpart}:{port}"


def _normalise_origins(origins: Iterable[str]) -> frozenset[str]:
    return frozenset(origin_of(o) for o in origins)


def is_private_address(address: str) -> bool:
    """True for loopback, private, link-local, multicast, reserved or unspecified addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, through the event loop's getaddrinfo."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


class Allowlist:
    """The allowlist of one source: its ``origins`` plus the global private-origin exceptions.

    ``resolver`` is injectable so tests can make a public-looking name resolve to 10.0.0.5.
    """

    def __init__(
        self,
        source: str,
        origins: Iterable[str],
        allow_private_origins: Iterable[str] = (),
        *,
        resolver: Resolver | None = None,
    ) -> None:
        self.source = source
        self.origins = _normalise_origins(origins)
        self.private_ok = _normalise_origins(allow_private_origins)
        self._resolve = resolver or system_resolver

    def _refuse(self, url: str, reason: str) -> NotAllowed:
        log.warning("refused %s request: %s (%s)", self.source, reason, redact_url(url))
        return NotAllowed(self.source, url, reason)

    def check_static(self, url: str) -> str:
        """Scheme and origin checks without DNS; returns the origin or raises NotAllowed."""
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme not in ("http", "https"):
                raise self._refuse(url, f"scheme {scheme or '(none)'!r} is not http(s)")
            if parts.username is not None or parts.password is not None:
                raise self._refuse(url, "credentials in the URL are not allowed")
            origin = origin_of(url)
        except ValueError as exc:
            raise self._refuse(url, f"malformed URL ({exc})") from None
        if origin not in self.origins:
            raise self._refuse(url, f"origin {origin} is not on the {self.source} allowlist")
        return origin

    async def check(self, url: str) -> str:
        """Raise NotAllowed unless ``url`` may be fetched for this source; return its origin.

        A DNS failure is not a refusal: it is raised as :class:`OSError` so the caller treats
        it as a connection error (transient), not as a policy decision.
        """
        origin = self.check_static(url)
        if origin in self.private_ok:
            return origin
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            is_literal = False
        else:
            is_literal = True
        if is_literal:
            if is_private_address(host):
                raise self._refuse(url, f"{host} is a private/loopback address")
            return origin
        port = parts.port or _DEFAULT_PORTS[parts.scheme.lower()]
        addresses = await self._resolve(host, port)
        if not addresses:
            raise OSError(f"{host} resolved to no address")
        bad = [a for a in addresses if is_private_address(a)]
        if bad:
            raise self._refuse(url, f"{host} resolves to private address {bad[0]}")
        return origin
