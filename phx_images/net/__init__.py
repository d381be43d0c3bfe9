"""The policy layer: every request of every source goes through here.

Adapters and the image downloader say *what* to fetch; this package decides *whether and how*:
allowlist, adaptive rate with a hard ceiling, circuit breaker, retries, proxies, size caps,
secret redaction, and the shared browser. Keeping it in one place (as Scrapy keeps middlewares
apart from spiders) means a politeness or safety rule is written once and cannot be forgotten
by one adapter. Nothing here imports Prefect.
"""

from phx_images.net.errors import (
    Blocked,
    CircuitOpen,
    FetchError,
    HttpStatusError,
    NotAllowed,
    TooLarge,
    TransientError,
)

__all__ = [
    "Blocked",
    "CircuitOpen",
    "FetchError",
    "HttpStatusError",
    "NotAllowed",
    "TooLarge",
    "TransientError",
]
