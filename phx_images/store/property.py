"""One property's folder: named photos, sidecars, and the manifest that lists them.

Write order is the crash-safety argument: content-addressed blob first, then the named photo
and its sidecar, and the manifest **last**, in one atomic write. A process killed at any point
leaves the previous manifest (valid, and every file it lists present) plus perhaps some
unlisted files, which :meth:`PropertyStore.gc` removes. Files a manifest stops listing (a photo
renamed because a better copy arrived) are deleted only *after* the new manifest is written.

One writer per property at a time (the flows run one child per property); nothing here is
shared with another property's writer except write-once blobs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from phx_images.categorize.vocabulary import Category
from phx_images.images.dedup_index import CopyQuality, NearDuplicateIndex, is_better_copy
from phx_images.images.download import Downloaded
from phx_images.images.hashing import from_hex, to_hex
from phx_images.images.standardize import Standardized
from phx_images.store.fs import TMP_MARK, StoreError
from phx_images.store.models import (
    Manifest,
    PhotoCopy,
    PhotoRecord,
    PhotoSource,
    UrlEntry,
    UrlStatus,
    utcnow,
)
from phx_images.store.naming import PhotoNameError, make_name, parse_name

if TYPE_CHECKING:
    from phx_images.store import ImageStore

_HASH = re.compile(r"^[0-9a-f]{8}$")


@dataclass(frozen=True)
class AddResult:
    """What :meth:`PropertyStore.add_photo` did with a download."""

    action: Literal["new", "duplicate", "replaced"]
    photo: PhotoRecord


class PropertyStore:
    """Read and change one property's manifest; nothing is visible until :meth:`commit`."""

    def __init__(self, store: ImageStore, property_hash: str, address: str | None = None,
                 *, phash_threshold: int = 8, dhash_threshold: int = 10) -> None:
        if not _HASH.match(property_hash):
            raise StoreError(f"property hash must be 8 lower-case hex, got {property_hash!r}")
        self.store = store
        self.fs = store.fs
        self.property_hash = property_hash
        self.folder = f"processed/{property_hash}"
        self.manifest_key = f"{self.folder}/manifest.json"
        self._index: NearDuplicateIndex[str] = NearDuplicateIndex(phash_threshold,
                                                                  dhash_threshold)
        self._delete_after_commit: list[str] = []
        self.manifest = self._load(address)
        self._dirty = False

    # ---- reading -------------------------------------------------------------------------
    def _load(self, address: str | None) -> Manifest:
        try:
            raw = self.fs.read_json(self.manifest_key)
        except FileNotFoundError:
            return Manifest(property_hash=self.property_hash, address=address)
        except StoreError as exc:
            raise StoreError(f"{exc}; refusing to overwrite it") from exc
        try:
            manifest = Manifest.model_validate(raw)
        except Exception as exc:
            # Never overwrite what we cannot read: that would lose every photo it lists.
            raise StoreError(f"manifest {self.manifest_key!r} in {self.fs.url!r} is invalid; "
                             f"refusing to overwrite it: {exc}") from exc
        if manifest.property_hash != self.property_hash:
            raise StoreError(f"manifest {self.manifest_key!r} belongs to "
                             f"{manifest.property_hash!r}")
        if address and not manifest.address:
            manifest.address = address
        for photo in manifest.photos:
            self._index.add(photo.id, from_hex(photo.phash), from_hex(photo.dhash))
            for copy in photo.copies:
                self._index.add(photo.id, from_hex(copy.phash), from_hex(copy.dhash))
        return manifest

    @property
    def photos(self) -> list[PhotoRecord]:
        return list(self.manifest.photos)

    def photo(self, image_id: str) -> PhotoRecord | None:
        return next((p for p in self.manifest.photos if p.id == image_id), None)

    def url_entry(self, url: str) -> UrlEntry | None:
        return self.manifest.urls.get(url)

    def needs_download(self, url: str) -> bool:
        """False when ``url``'s content is already stored (so a rerun fetches nothing again)."""
        entry = self.manifest.urls.get(url)
        if entry is None or entry.status == UrlStatus.REJECTED:
            return True
        return entry.image_id is None or self.photo(entry.image_id) is None

    # ---- changing ------------------------------------------------------------------------
    def mark_seen(self, source: str, url: str, *, source_photo_id: str | None = None,
                  caption: str | None = None, now: datetime | None = None) -> bool:
        """Record that ``source`` still shows ``url``; True if its photo is stored (no
        download needed)."""
        now = now or utcnow()
        entry = self.manifest.urls.get(url)
        if entry is None or self.needs_download(url):
            return False
        entry.last_seen = now
        entry.status = UrlStatus.ACTIVE
        entry.reason = None
        photo = self.photo(entry.image_id or "")
        if photo is not None:
            self._touch_source(photo, source, url, source_photo_id, caption, now)
        self._dirty = True
        return True

    def reject_url(self, source: str, url: str, reason: str, *,
                   now: datetime | None = None) -> None:
        """Remember that ``url`` gave no acceptable image (it is retried on the next run)."""
        now = now or utcnow()
        entry = self.manifest.urls.get(url)
        if entry is None:
            entry = UrlEntry(url=url, source=source, first_seen=now, last_seen=now)
            self.manifest.urls[url] = entry
        if entry.image_id and self.photo(entry.image_id):
            return  # a stored photo is not lost because one later download failed
        entry.last_seen = now
        entry.status = UrlStatus.REJECTED
        entry.reason = reason[:500]
        self._dirty = True

    def add_photo(self, *, source: str, url: str, downloaded: Downloaded,
                  standardized: Standardized, hashes: tuple[int, int], category: Category,
                  categorizer: str = "captions", source_photo_id: str | None = None,
                  caption: str | None = None, now: datetime | None = None) -> AddResult:
        """Store one downloaded photo: fold it into a near-duplicate already here (keeping the
        better copy) or add it as a new photo. Files are written now, the manifest on commit."""
        now = now or utcnow()
        phash, dhash = hashes
        copy = PhotoCopy(
            url=url, source=source, content_sha=downloaded.sha256,
            width=downloaded.info.width, height=downloaded.info.height,
            size_bytes=downloaded.info.size_bytes, format=downloaded.info.format,
            phash=to_hex(phash), dhash=to_hex(dhash),
        )
        same = next((p for p in self.manifest.photos
                     if any(c.content_sha == downloaded.sha256 for c in p.copies)), None)
        matches = [same.id] if same else self._index.query(phash, dhash)
        if matches:
            photo = self.photo(matches[0])
            assert photo is not None
            action: Literal["duplicate", "replaced"] = "duplicate"
            if not any(c.content_sha == copy.content_sha for c in photo.copies):
                kept = next((c for c in photo.copies if c.url == photo.kept_url),
                            photo.copies[0] if photo.copies else None)
                photo.copies.append(copy)
                if kept is None or is_better_copy(_quality(copy), _quality(kept)):
                    self._write_files(photo, standardized, copy, source, now)
                    action = "replaced"
            if category.confidence > photo.confidence and category.subject != "unknown":
                self._recategorize(photo, category, categorizer, now)
            self._touch_source(photo, source, url, source_photo_id, caption, now)
            self._index.add(photo.id, phash, dhash)
            result = AddResult(action, photo)
        else:
            photo = PhotoRecord(
                id="i" + hashlib.sha256(downloaded.sha256.encode()).hexdigest()[:15],
                name="", blob_sha="", ext=standardized.ext, width=0, height=0,
                phash=copy.phash, dhash=copy.dhash, loc=category.loc, subject=category.subject,
                confidence=category.confidence, categorizer=categorizer, copies=[copy],
                kept_url=url, added=now, updated=now,
            )
            self._touch_source(photo, source, url, source_photo_id, caption, now)
            self._write_files(photo, standardized, copy, source, now)
            self.manifest.photos.append(photo)
            self._index.add(photo.id, phash, dhash)
            result = AddResult("new", photo)
        self.manifest.urls[url] = UrlEntry(
            url=url, source=source, first_seen=getattr(self.manifest.urls.get(url),
                                                       "first_seen", now),
            last_seen=now, content_sha=downloaded.sha256, image_id=photo.id,
        )
        self._dirty = True
        return result

    def finish_source(self, source: str, seen_urls: set[str] | list[str], *, complete: bool,
                      stale_after_days: int = 7, now: datetime | None = None) -> None:
        """After reading ``source``: its URLs not seen are ``removed`` if the read was complete
        (the listing was found), else ``stale`` once unconfirmed for ``stale_after_days``."""
        now = now or utcnow()
        seen = set(seen_urls)
        for url, entry in self.manifest.urls.items():
            if entry.source != source or url in seen or entry.status == UrlStatus.REJECTED:
                continue
            if complete:
                entry.status = UrlStatus.REMOVED
            elif now - entry.last_seen >= timedelta(days=stale_after_days):
                entry.status = UrlStatus.STALE
            self._dirty = True

    def touch(self) -> None:
        """Record that the property was checked now (``manifest.updated`` on the next commit),
        even if nothing changed: the scheduled refresh picks properties by that time."""
        self._dirty = True

    def commit(self) -> bool:
        """Write the manifest atomically (then the lookup entry, then delete files the manifest
        no longer lists). True if anything was written."""
        if not self._dirty:
            return False
        self.manifest.updated = utcnow()
        self.fs.write_json(self.manifest_key, self.manifest.model_dump(mode="json"))
        if self.manifest.address:
            self.store.put_lookup(self.manifest.address, self.property_hash)
        listed = self.listed_files()
        for key in self._delete_after_commit:
            if key.rsplit("/", 1)[-1] not in listed:
                self.fs.delete(key)
        self._delete_after_commit.clear()
        self._dirty = False
        return True

    def listed_files(self) -> set[str]:
        """File names in the property folder that the manifest accounts for."""
        names = {"manifest.json"}
        for photo in self.manifest.photos:
            names.add(photo.name)
            names.add(_sidecar(photo.name))
        return names

    def gc(self) -> list[str]:
        """Delete our files in the folder that the committed manifest does not list (left by a
        crash between writing a photo and committing). Returns the deleted keys."""
        listed = self.listed_files()
        deleted = []
        for key in self.fs.list(self.folder):
            leaf = key.rsplit("/", 1)[-1]
            if key.endswith("/") or leaf in listed:
                continue
            if not (_is_photo_name(leaf) or _is_our_sidecar(leaf)):
                continue  # not ours: never delete what we did not write
            self.fs.delete(key)
            deleted.append(key)
        # temp files are hidden from list(); a killed local writer may leave them
        if self.fs.local:
            import os

            folder = self.fs.path(self.folder)
            for leaf in os.listdir(folder) if os.path.isdir(folder) else []:
                if TMP_MARK in leaf:
                    os.unlink(os.path.join(folder, leaf))
                    deleted.append(f"{self.folder}/{leaf}")
        return deleted

    # ---- internals -----------------------------------------------------------------------
    def _touch_source(self, photo: PhotoRecord, source: str, url: str,
                      source_photo_id: str | None, caption: str | None, now: datetime) -> None:
        for existing in photo.sources:
            if existing.url == url:
                existing.last_seen = now
                existing.source_photo_id = existing.source_photo_id or source_photo_id
                existing.caption = caption or existing.caption
                return
        photo.sources.append(PhotoSource(source=source, url=url,
                                         source_photo_id=source_photo_id, caption=caption,
                                         first_seen=now, last_seen=now))

    def _unique_name(self, photo: PhotoRecord, source: str) -> str:
        taken = {p.name for p in self.manifest.photos if p.id != photo.id}
        category = Category(photo.loc, photo.subject, photo.confidence)
        seq = None
        while True:
            name = make_name(self.property_hash, category, source, photo.added, photo.ext, seq)
            if name not in taken:
                return name
            seq = 2 if seq is None else seq + 1

    def _write_files(self, photo: PhotoRecord, standardized: Standardized, copy: PhotoCopy,
                     source: str, now: datetime) -> None:
        """Blob, then named photo, then sidecar; the old name is deleted after commit."""
        blob_sha = self.store.put_blob(standardized.data, standardized.ext)
        old_name = photo.name
        photo.blob_sha, photo.ext = blob_sha, standardized.ext
        photo.width, photo.height = standardized.width, standardized.height
        photo.phash, photo.dhash = copy.phash, copy.dhash
        photo.kept_url, photo.updated = copy.url, now
        photo.name = self._unique_name(photo, source)
        self.fs.write_bytes(f"{self.folder}/{photo.name}", standardized.data)
        self._write_sidecar(photo)
        self._retire(old_name, photo.name)

    def _recategorize(self, photo: PhotoRecord, category: Category, categorizer: str,
                      now: datetime) -> None:
        old_name = photo.name
        photo.loc, photo.subject, photo.confidence = (category.loc, category.subject,
                                                      category.confidence)
        photo.categorizer, photo.updated = categorizer, now
        source = next((c.source for c in photo.copies if c.url == photo.kept_url), "unknown")
        photo.name = self._unique_name(photo, source)
        if photo.name != old_name:
            self.fs.write_bytes(f"{self.folder}/{photo.name}",
                                self.fs.read_bytes(f"{self.folder}/{old_name}"))
            self._retire(old_name, photo.name)
        self._write_sidecar(photo)

    def _retire(self, old_name: str, new_name: str) -> None:
        if old_name and old_name != new_name:
            self._delete_after_commit += [f"{self.folder}/{old_name}",
                                          f"{self.folder}/{_sidecar(old_name)}"]

    def _write_sidecar(self, photo: PhotoRecord) -> None:
        self.fs.write_json(f"{self.folder}/{_sidecar(photo.name)}", {
            "id": photo.id, "name": photo.name, "loc": photo.loc, "subject": photo.subject,
            "confidence": photo.confidence, "categorizer": photo.categorizer,
            "blob_sha": photo.blob_sha,
        })


def _sidecar(name: str) -> str:
    return name.rsplit(".", 1)[0] + ".json"


def _is_photo_name(leaf: str) -> bool:
    try:
        parse_name(leaf)
        return True
    except PhotoNameError:
        return False


def _is_our_sidecar(leaf: str) -> bool:
    if not leaf.endswith(".json"):
        return False
    stem = leaf[: -len(".json")]
    for ext in ("jpg", "webp", "png"):
        try:
            parse_name(f"{stem}.{ext}")
            return True
        except PhotoNameError:
            continue
    return False


def _quality(copy: PhotoCopy) -> CopyQuality:
    return CopyQuality(copy.width, copy.height, copy.size_bytes, copy.format)
