"""The engine's data model: what flows between adapters, the image pipeline and the store.

Plain pydantic models so that every boundary (adapter output, task results, manifests) is
validated and serialisable to JSON, which Prefect needs for task results and artifacts.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from phx_images.address import Address


class PhotoVariant(BaseModel):
    """One size/format of a photo as the site offers it."""

    url: str
    width: int | None = None
    height: int | None = None
    format: str | None = None  # "jpeg", "webp", ...
    kind: str | None = None  # site-specific label: "cc_ft_1536", "bigphoto", "-o", ...


class PhotoRef(BaseModel):
    """One photo of a listing, with every variant the site offers, grouped by the site's own id.

    ``best_url`` is the variant chosen for download (largest, uncropped, then best format), so
    only one file per photo per site is ever fetched.
    """

    source: str
    source_photo_id: str
    best_url: str
    variants: list[PhotoVariant] = Field(default_factory=list)
    caption: str | None = None
    position: int = 0


class ListingStatus(StrEnum):
    FOUND = "found"
    NOT_FOUND = "not_found"  # the site clearly has no listing for this address
    BLOCKED = "blocked"  # a challenge we could not pass, or the source refused us
    FAILED = "failed"  # anything else: network, parse error (with the reason)
    SKIPPED = "skipped"  # source disabled or its circuit breaker is open


class Listing(BaseModel):
    """What one source says about one property."""

    source: str
    status: ListingStatus
    reason: str | None = None
    url: str | None = None
    listing_id: str | None = None
    facts: dict[str, object] = Field(default_factory=dict)
    photos: list[PhotoRef] = Field(default_factory=list)


class Property(BaseModel):
    """A property on the buyer's list (a row of the CSV, or an address typed in)."""

    address: Address
    price: int | None = None
    beds: float | None = None
    baths: float | None = None
    sqft: int | None = None

    @property
    def property_hash(self) -> str:
        return self.address.property_hash
