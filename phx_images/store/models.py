"""What the store writes: per-property manifest (photos + URL tracker), run records.

Why the URL tracker lives *inside* the manifest: both change together when a photo is stored
(the URL now points at an image id), and one object is written atomically; two objects could be
left disagreeing by a crash. One manifest per property means one writer per object.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

MANIFEST_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class PhotoSource(BaseModel):
    """A place (site + URL) that showed this photo."""

    source: str
    url: str
    source_photo_id: str | None = None
    caption: str | None = None
    first_seen: datetime
    last_seen: datetime


class PhotoCopy(BaseModel):
    """One downloaded copy of the photo (the kept one and every duplicate folded in)."""

    url: str
    source: str
    content_sha: str  # sha256 of the downloaded bytes
    width: int
    height: int
    size_bytes: int
    format: str
    phash: str
    dhash: str


class PhotoRecord(BaseModel):
    """One distinct photo of the property, as stored."""

    id: str  # stable across reruns even when a better copy replaces the blob
    name: str  # file name in processed/{property_hash}/
    blob_sha: str  # sha256 of the standardized bytes (blobs/{sha[:2]}/{sha}.{ext})
    ext: str
    width: int
    height: int
    phash: str  # 16 hex (of the kept copy)
    dhash: str
    loc: str
    subject: str
    confidence: int
    categorizer: str = "captions"
    sources: list[PhotoSource] = Field(default_factory=list)
    copies: list[PhotoCopy] = Field(default_factory=list)
    kept_url: str
    added: datetime
    updated: datetime


class UrlStatus(StrEnum):
    ACTIVE = "active"  # seen in the latest complete look at its source
    REMOVED = "removed"  # the source was read completely and no longer shows it
    STALE = "stale"  # not confirmed for longer than stale_after_days
    REJECTED = "rejected"  # downloaded but not an acceptable image (retried next run)


class UrlEntry(BaseModel):
    url: str
    source: str
    first_seen: datetime
    last_seen: datetime
    content_sha: str | None = None
    image_id: str | None = None
    status: UrlStatus = UrlStatus.ACTIVE
    reason: str | None = None


class ArchivedPhoto(BaseModel):
    """A photo moved out of ``processed/{property_hash}/`` because no site has shown it for
    long (see phx_images/store/archive.py). Its record is kept whole, so it can be restored
    as it was (same id, name and blob) when a site shows it again; its URL entries stay in
    ``Manifest.urls`` and keep pointing at ``photo.id``."""

    photo: PhotoRecord
    path: str  # archive/{property_hash}/{photo.name}; the sidecar is next to it (.json)
    archived_at: datetime
    last_seen: datetime  # the latest time any site showed it, when it was archived
    storage_class: str | None = None  # S3 storage class of the archive copy (None: local)


class Manifest(BaseModel):
    version: int = MANIFEST_VERSION
    property_hash: str
    address: str | None = None
    updated: datetime = Field(default_factory=utcnow)
    photos: list[PhotoRecord] = Field(default_factory=list)  # the stored (shown) photos
    urls: dict[str, UrlEntry] = Field(default_factory=dict)
    archived: list[ArchivedPhoto] = Field(default_factory=list)  # not in ``photos``


class RunRecord(BaseModel):
    """Audit trail of one run: who asked, when, what happened (append-only, one file each)."""

    run_id: str
    requested_by: str | None = None
    started: datetime
    finished: datetime | None = None
    properties: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    errors: list[str] = Field(default_factory=list)
    extra: dict[str, object] = Field(default_factory=dict)
