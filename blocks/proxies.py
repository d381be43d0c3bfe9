"""The proxy pool block: proxy URLs (with credentials) the policy layer rotates through."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class ProxyPool(Block):
    """Proxy URLs such as ``http://user:pass@proxy:8080``; stored as secrets (they carry
    credentials), health-checked and rotated by the engine's policy layer."""

    _block_type_name = "Proxy Pool"
    _block_type_slug = "proxy-pool"
    _description = "Proxy URLs to rotate through; unhealthy ones are benched automatically."

    proxies: list[SecretStr] = Field(default_factory=list)
