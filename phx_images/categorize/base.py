"""The categorizer interface: any way of saying where a photo was taken and what it shows.

Why a protocol: the default works offline from captions (fast, free, deterministic); a hosted
vision model is better on uncaptioned photos but costs money and needs a key. The pipeline
only sees ``await categorizer.categorize(photo)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from phx_images.categorize.vocabulary import Category


@dataclass(frozen=True)
class PhotoContext:
    """Everything known about one photo. All text fields are hostile input."""

    source: str = "unknown"
    caption: str | None = None
    alt_text: str | None = None
    position: int | None = None  # 0 = the listing's first (cover) photo
    listing_text: str | None = None  # the listing description
    facts: dict[str, object] = field(default_factory=dict)
    image: bytes | None = None  # standardized bytes (the vision categorizer needs them)
    image_format: str = "jpeg"


@runtime_checkable
class Categorizer(Protocol):
    name: str

    async def categorize(self, photo: PhotoContext) -> Category:
        """(loc, subject, confidence 0-99); never raises for a photo it cannot place: it
        answers ``unknown`` with a low confidence."""
        ...
