"""Fetch one photo through the policy layer and accept it only if it is a real image.

Why through ``client.fetch``: the policy layer (phx_images/net) owns the host allowlist on every
redirect hop, rate limits, breakers, retries and the streaming size cap; the downloader adds
only what is about images. ``Content-Type`` is ignored on purpose: :func:`inspect` decides by
magic bytes and headers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from phx_images.images.inspect import BadImage, ImageInfo, inspect


class FetchClient(Protocol):
    """The part of ``phx_images.net.PolicyClient`` the downloader uses."""

    async def fetch(self, source: str, url: str, *, kind: str = ..., max_bytes: int | None = ...,
                    **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Downloaded:
    """An accepted image as downloaded (original bytes, before standardizing)."""

    url: str
    final_url: str
    data: bytes
    sha256: str
    info: ImageInfo


async def download(client: FetchClient, source: str, url: str, *, max_bytes: int,
                   max_pixels: int = 60_000_000) -> Downloaded:
    """Download ``url`` for ``source``; raise the policy layer's FetchError for network
    outcomes and :class:`BadImage` (with the url) for bytes that are not an acceptable image."""
    response = await client.fetch(source, url, kind="image", max_bytes=max_bytes)
    data = bytes(response.content or b"")
    final_url = str(getattr(response, "url", None) or url)
    try:
        info = inspect(data, max_pixels=max_pixels)
    except BadImage as exc:
        raise BadImage(exc.reason, url=url) from None
    return Downloaded(url, final_url, data, hashlib.sha256(data).hexdigest(), info)
