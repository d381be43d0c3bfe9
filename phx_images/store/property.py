"""One property's folder: named photos, sidecars, and the manifest that lists them.

Write order is the crash-safety argument: content-addressed blob first, then the named photo
and its sidecar, and the manifest **last**, in one atomic write. A process killed at any point
leaves the previous manifest (valid, and every file it lists present) plus perhaps some
unlisted files, which :meth:`PropertyStore.gc` removes. Files a manifest stops listing (a photo
renamed because a better copy arrived) are deleted only *after* the new manifest is written.

Archived photos (``Manifest.archived``, files in ``archive/{property_hash}/``, see
phx_images/store/archive.py) follow the same order both ways: :meth:`PropertyStore.archive_photo`
and :meth:`PropertyStore.restore_photo` copy first, the manifest moves the record on commit, and
the copy left behind is deleted only after that. A URL of an archived photo that a site shows
again restores it (same id, name and blob) instead of storing it as a new photo.

One writer per property at a time (the flows run one child per property); nothing here is
shared with another property's writer except write-once blobs.
"""

from __future__ import annotations

import hashlib
import logging
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
    ArchivedPhoto,
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
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddResult:
    """What :meth:`PropertyStore.add_photo` did with a download."""

    action: Literal["new", "duplicate", "replaced"]
    photo: PhotoRecord
    restored: bool = False  # the photo was archived and is stored (shown) again


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
        # archived photos are indexed too: a download matching one restores it
        for photo in _records(manifest):
            self._index.add(photo.id, from_hex(photo.phash), from_hex(photo.dhash))
            for copy in photo.copies:
                self._index.add(photo.id, from_hex(copy.phash), from_hex(copy.dhash))
        return manifest

    @property
    def photos(self) -> list[PhotoRecord]:
        return list(self.manifest.photos)

    def photo(self, image_id: str) -> PhotoRecord | None:
        return next((p for p in self.manifest.photos if p.id == image_id), None)

    @property
    def archived(self) -> list[ArchivedPhoto]:
        return list(self.manifest.archived)

    def archived_photo(self, image_id: str) -> ArchivedPhoto | None:
        return next((a for a in self.manifest.archived if a.photo.id == image_id), None)

    def url_entry(self, url: str) -> UrlEntry | None:
        return self.manifest.urls.get(url)

    def needs_download(self, url: str) -> bool:
        """False when ``url``'s content is already stored, or archived (so a rerun fetches
        nothing again; :meth:`mark_seen` restores an archived one)."""
        entry = self.manifest.urls.get(url)
        if entry is None or entry.status == UrlStatus.REJECTED:
            return True
        return entry.image_id is None or (self.photo(entry.image_id) is None
                                          and self.archived_photo(entry.image_id) is None)

    # ---- changing ------------------------------------------------------------------------
    def mark_seen(self, source: str, url: str, *, source_photo_id: str | None = None,
                  caption: str | None = None, now: datetime | None = None) -> bool:
        """Record that ``source`` still shows ``url``; True if its photo is stored (no
        download needed). An archived photo is restored first (shown again)."""
        now = now or utcnow()
        entry = self.manifest.urls.get(url)
        if entry is None or self.needs_download(url):
            return False
        if self.photo(entry.image_id or "") is None and (
                self._restore_or_forget(entry.image_id or "", now) is None):
            return False  # its files are gone: download it again
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
        same = next((p for p in _records(self.manifest)
                     if any(c.content_sha == downloaded.sha256 for c in p.copies)), None)
        matches = [same.id] if same else self._index.query(phash, dhash)
        found: PhotoRecord | None = None
        restored = False
        for image_id in sorted(matches, key=lambda i: self.photo(i) is None):  # stored first
            found = self.photo(image_id)
            if found is None and self.archived_photo(image_id) is not None:
                found = self._restore_or_forget(image_id, now)
                restored = found is not None
            if found is not None:
                break
        if found is not None:
            photo = found
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
            result = AddResult(action, photo, restored)
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

    def commit(self, *, touch: bool = True) -> bool:
        """Write the manifest atomically (then the lookup entry, then delete files the manifest
        no longer lists). True if anything was written. ``touch=False`` keeps
        ``manifest.updated`` (archiving is no check of the property; the refresh picks
        properties by that time)."""
        if not self._dirty:
            return False
        if touch:
            self.manifest.updated = utcnow()
        self.fs.write_json(self.manifest_key, self.manifest.model_dump(mode="json"))
        if self.manifest.address:
            self.store.put_lookup(self.manifest.address, self.property_hash)
        listed = {f"{self.folder}/{name}" for name in self.listed_files()}
        for archived in self.manifest.archived:
            listed |= {archived.path, _sidecar(archived.path)}
        for key in self._delete_after_commit:
            if key not in listed:
                self.fs.delete(key)
        self._delete_after_commit.clear()
        self._dirty = False
        return True

    def listed_files(self) -> set[str]:
        """File names in the property folder that the manifest accounts for (archived photos
        live in ``archive/{property_hash}/``, not here)."""
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

    # ---- archive -------------------------------------------------------------------------
    @property
    def archive_folder(self) -> str:
        return f"archive/{self.property_hash}"

    def archive_photo(self, image_id: str, *, last_seen: datetime,
                      storage_class: str | None = None,
                      now: datetime | None = None) -> ArchivedPhoto:
        """Move a stored photo to ``archive/{property_hash}/`` under the same names: the photo
        is copied now (in ``storage_class`` on S3) and its archive sidecar written (it carries
        the whole record, so the folder describes itself); the manifest lists it under
        ``archived`` on commit. The processed copies are then no longer listed; archive.py
        deletes them in its next run, not this one, so an extraction that read the manifest
        before this commit and writes it back after still finds its files (:meth:`gc` of a
        later extraction may delete them first, which is just as safe)."""
        now = now or utcnow()
        photo = self.photo(image_id)
        if photo is None:
            raise StoreError(f"{self.property_hash}: no stored photo {image_id!r} to archive")
        entry = ArchivedPhoto(photo=photo, path=f"{self.archive_folder}/{photo.name}",
                              archived_at=now, last_seen=last_seen,
                              storage_class=storage_class if self.fs.s3 else None)
        self.write_archive_copy(entry)
        self.manifest.photos.remove(photo)
        self.manifest.archived.append(entry)
        self._dirty = True
        return entry

    def write_archive_copy(self, entry: ArchivedPhoto, *, photo: bool = True,
                           sidecar: bool = True) -> None:
        """Write an archived photo's files in ``archive/``: the photo (copied from the
        processed copy, else from its blob) and then its sidecar, which carries the whole
        record (so the archive folder describes itself)."""
        if photo:
            self._copy_photo([f"{self.folder}/{entry.photo.name}", self._blob_key(entry.photo)],
                             entry.path, entry.storage_class)
        if sidecar:
            self.fs.write_json(_sidecar(entry.path), self._sidecar_record(entry.photo)
                               | {"archive": entry.model_dump(mode="json")})

    def restore_photo(self, image_id: str, *, now: datetime | None = None) -> PhotoRecord:
        """Bring an archived photo back into the property folder (same id and blob; same name
        unless another photo took it): copied from the archive copy, or from its
        content-addressed blob if that copy is gone; listed on commit, the archive copy deleted
        after. FileNotFoundError if neither exists."""
        now = now or utcnow()
        entry = self.archived_photo(image_id)
        if entry is None:
            raise StoreError(f"{self.property_hash}: no archived photo {image_id!r}")
        photo = entry.photo
        if photo.name in {p.name for p in self.manifest.photos}:
            source = next((c.source for c in photo.copies if c.url == photo.kept_url),
                          "unknown")
            photo.name = self._unique_name(photo, source)
        self._copy_photo([entry.path, self._blob_key(photo)], f"{self.folder}/{photo.name}",
                         None)
        photo.updated = now
        self._write_sidecar(photo)
        self.manifest.archived.remove(entry)
        self.manifest.photos.append(photo)
        self._delete_after_commit += [entry.path, _sidecar(entry.path)]
        self._dirty = True
        return photo

    def _restore_or_forget(self, image_id: str, now: datetime) -> PhotoRecord | None:
        """Restore an archived photo; one whose archive copy and blob are both gone cannot be
        restored and is dropped from the manifest (logged), so it is downloaded again."""
        if self.archived_photo(image_id) is None:
            return None
        try:
            return self.restore_photo(image_id, now=now)
        except FileNotFoundError:
            entry = self.archived_photo(image_id)
            log.warning("%s: archived photo %s is gone (archive copy and blob missing); "
                        "it is stored again from a new download", self.property_hash,
                        entry.photo.name if entry else image_id)
            if entry is not None:
                self.manifest.archived.remove(entry)
                self._dirty = True
            return None

    def _copy_photo(self, sources: list[str], dst: str, storage_class: str | None) -> None:
        """Copy the first of ``sources`` that exists to ``dst``."""
        for src in sources[:-1]:
            try:
                self.fs.copy(src, dst, storage_class=storage_class)
                return
            except FileNotFoundError:
                continue
        self.fs.copy(sources[-1], dst, storage_class=storage_class)

    def _blob_key(self, photo: PhotoRecord) -> str:
        return self.store.blob_key(photo.blob_sha, photo.ext)

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
        # archived names stay taken, so restoring one never collides
        taken = {p.name for p in _records(self.manifest) if p.id != photo.id}
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
        self.fs.write_json(f"{self.folder}/{_sidecar(photo.name)}", self._sidecar_record(photo))

    @staticmethod
    def _sidecar_record(photo: PhotoRecord) -> dict[str, object]:
        return {
            "id": photo.id, "name": photo.name, "loc": photo.loc, "subject": photo.subject,
            "confidence": photo.confidence, "categorizer": photo.categorizer,
            "blob_sha": photo.blob_sha,
        }


def _records(manifest: Manifest) -> list[PhotoRecord]:
    """Every photo record of the manifest: the stored ones first, then the archived ones."""
    return [*manifest.photos, *(a.photo for a in manifest.archived)]


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
