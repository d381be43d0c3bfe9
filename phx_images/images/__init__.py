"""Image pipeline: download, inspect, standardize, hash, near-duplicate index.

Each step is a small module with one job; the pipeline (phx_images/pipeline.py) strings them
together. Pure functions except :func:`download`, which goes through the policy layer.
"""

from phx_images.images.dedup_index import (
    CopyQuality,
    NearDuplicateIndex,
    group_near_duplicates,
    is_better_copy,
    is_near_duplicate,
)
from phx_images.images.download import Downloaded, download
from phx_images.images.hashing import from_hex, hamming, perceptual_hashes, to_hex
from phx_images.images.inspect import BadImage, ImageInfo, inspect, sniff_format
from phx_images.images.standardize import Standardized, standardize

__all__ = [
    "BadImage", "CopyQuality", "Downloaded", "ImageInfo", "NearDuplicateIndex", "Standardized",
    "download", "from_hex", "group_near_duplicates", "hamming", "inspect", "is_better_copy",
    "is_near_duplicate", "perceptual_hashes", "sniff_format", "standardize", "to_hex",
]
