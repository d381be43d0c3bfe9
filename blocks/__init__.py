"""Prefect blocks: what operators set per deployment (sources, proxies, storage, secrets).

Each block converts itself into the engine's settings objects, so the engine never imports
Prefect and the same values can come from ``PHX_`` environment variables instead.
"""

from blocks.proxies import ProxyPool
from blocks.results import SharedResultStorage
from blocks.sources import ListingSource
from blocks.storage import ImageStore

BLOCK_TYPES = (ListingSource, ProxyPool, ImageStore, SharedResultStorage)

__all__ = ["BLOCK_TYPES", "ImageStore", "ListingSource", "ProxyPool", "SharedResultStorage"]
