"""Archival of old photos: what no site has shown for long leaves ``processed/`` for ``archive/``.

**Which photos.** A stored photo is archived when *every* URL that showed it is gone, and the
last time any of them showed it is more than ``older_than_days`` ago (default
``OrchestrationSettings.archive_after_days``, 90). A photo's URLs are its sources plus the URL
entries pointing at it. A URL is gone for the photo when its entry is ``removed`` (a complete
read of the listing no longer shows it) or ``stale`` (unconfirmed for ``stale_after_days``), or
when the entry now points at another photo (the URL serves other content; the photo's own
source record says when it was last shown there). An ``active`` entry, or anything unexpected
(a missing or ``rejected`` entry), keeps the photo. Consequences: a property nobody refreshes
any more keeps its photos (its URLs stay ``active``: we never learned they were gone), and
assessor photos are never archived (the assessor source is never marked removed or stale).

**Where they go.** The named photo and its sidecar are copied from ``processed/{property_hash}/``
to ``archive/{property_hash}/`` under the same names; the archive sidecar also carries the whole
photo record. On S3 the archive copy is written in ``storage_class`` (default ``GLACIER_IR``:
cold, but readable at once, which restoring needs; classes that need a restore request first,
GLACIER and DEEP_ARCHIVE, are refused). Locally the copy is a hard link. The manifest moves the
record from ``photos`` to ``archived`` (an :class:`~phx_images.store.models.ArchivedPhoto`: the
record as it was, the archive path, when, the last sighting, the storage class); its URL
entries stay and keep pointing at the photo. The property's ``manifest.updated`` (last check,
which the refresh goes by) is left unchanged. The processed copies are deleted by the *next*
archival run, not this one (see "Crash safety and concurrency").

**Blobs.** Never deleted: another property may share one, a cached fetch result (the flows'
URL-keyed cache) may still point at one, and it is the fallback a restore copies from when an
archive copy is gone. On S3, a blob that only archived photos use (no stored photo of any
property does) is moved in place to ``storage_class`` as well, so the archived bytes are all
cold; it stays readable. This step runs only when every manifest could be read.

**Crash safety and concurrency: deletion in two runs.** Per property, a run (1) copies to
``archive/`` (photo, then sidecar), (2) writes the manifest atomically, (3) rewrites the
property's gallery page (the photo disappears from the gallery), and stops there: the processed
copies of the photos it archived are left in place. The *next* archival run deletes them, and
only for photos that are still ``archived`` in the manifest it reads (read again right before
deleting); the gallery index is rewritten at the end of every run.

Why not delete at once: an extraction run of the same property may have read the manifest
before the archival committed and commit its own version after it (the flow skips properties
with an unfinished extraction run, but that list is read once at the start, and the check that
the manifest is unchanged right before committing is check-then-write). Its commit puts the
photo back into ``photos``; had the archival deleted the processed copy, the manifest would list
a missing file, and the next archival would then sweep the archive copy of that "stored" photo:
the photo lost. With the deletion one run later, such a photo is simply stored again (its
processed copy never left); the next run sweeps its archive copy (or, if it still qualifies,
archives it again). What is left: a writer that read the manifest before one archival run and
commits after the next one deleted the processed copies (an extraction run that outlives the
weekly schedule while unseen by both runs' in-flight checks), or one that restores the photo
between the next run's last read and its delete (a window of one delete call), could still
list a photo whose processed copy is gone. Its blob is never deleted, so the bytes survive.

Killed anywhere, every manifest is valid and every file it lists exists. A rerun finishes what
was cut short: the page of a property with processed copies of archived photos is rewritten
before they are deleted (the extraction's ``gc`` deletes them too, as unlisted), archive copies
of photos that are still stored (an archival that never reached its manifest, or one a
concurrent writer undid) are removed, and a missing archive copy or sidecar is rebuilt from the
processed copy or the blob. An archive file the manifest does not list and that belongs to no
stored photo (e.g. a manifest rewritten by an older version, which drops the ``archived`` list
it does not know) is kept and reported: its sidecar holds the record.

**Seen again.** When a site shows an archived photo's URL again, the extraction restores it
(:meth:`PropertyStore.mark_seen` for a URL known to be stored, :meth:`PropertyStore.add_photo`
when the download matches an archived photo by content or near-duplicate hashes): the record
returns to ``photos`` with its id, name and blob, the file is copied back (from the archive
copy, else from the blob) and the archive copy is deleted after the manifest is written. It is
never stored as a second, new photo. The pipeline counts an archived photo's URLs as stored
(``Engine._read_stored_urls``), so such a URL is not downloaded again: ``mark_seen`` restores
the photo.

**Gallery.** The pages list ``manifest.photos`` only, so archived photos are not shown; the
pages of changed properties and the index are rewritten by the archival. (Thumbnails under
``processed/{hash}/thumbs/`` are left: small, derived, and reused if the photo comes back.)

**Concurrency.** Archiving writes a property's manifest, so it is one of that property's
writers: the flow skips properties an extraction run is working on, right before committing a
property whose manifest changed since it was read is left alone this time (its archive copies
are cleaned up, or reused, next run), and processed copies are deleted one run later (above).
One archival run at a time.

No Prefect here: ``flows/archive.py`` schedules it.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from phx_images.store import ImageStore
from phx_images.store.fs import TMP_MARK, StoreError
from phx_images.store.models import (
    Manifest,
    PhotoRecord,
    UrlStatus,
    utcnow,
)
from phx_images.store.naming import PhotoNameError, parse_name
from phx_images.store.property import PropertyStore

ARCHIVE_STORAGE_CLASS = "GLACIER_IR"
# S3 classes whose objects are read directly (a restore must be able to read the copy at once)
READABLE_STORAGE_CLASSES = frozenset(
    {"STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"})
GONE = frozenset({UrlStatus.REMOVED, UrlStatus.STALE})
BLOBS = "(blobs)"  # report keys for errors that belong to no one property
GALLERY = "(gallery)"


@dataclass
class PropertyArchive:
    """What archiving did (or, in a dry run, would do) in one property."""

    property_hash: str
    archived: list[str] = field(default_factory=list)  # photo names (processed copies kept)
    bytes: int = 0  # of the photos (sidecars not counted)
    finished: int = 0  # photos archived by an earlier run whose processed copies this run removed
    orphans_removed: int = 0  # archive copies of photos that are still stored


@dataclass
class ArchiveReport:
    """The whole run. ``errors`` maps a property hash (or ``(blobs)``, ``(gallery)``) to what
    went wrong there; one property's problem never stops the others."""

    older_than_days: float
    cutoff: datetime  # photos last shown before this are archived
    dry_run: bool = False
    storage_class: str | None = None  # of archive copies (None: local store or not asked)
    properties_scanned: int = 0
    photos_archived: int = 0  # their processed copies are removed by the next run
    bytes_archived: int = 0
    finished: int = 0  # processed copies of photos archived by earlier runs, removed now
    orphans_removed: int = 0
    blobs_cold: int = 0  # blobs moved to ``storage_class`` (S3)
    properties: list[PropertyArchive] = field(default_factory=list)  # those with changes
    skipped: list[str] = field(default_factory=list)  # in use by an extraction run
    errors: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, key: str, reason: str) -> None:
        self.errors.setdefault(key, []).append(reason)

    def summary_line(self) -> str:
        verb = "would archive" if self.dry_run else "archived"
        line = (f"{self.properties_scanned} properties scanned: {verb} {self.photos_archived} "
                f"photos ({_size(self.bytes_archived)}) last shown before "
                f"{self.cutoff:%Y-%m-%d}")
        if self.photos_archived and not self.dry_run:
            line += " (processed copies removed next run)"
        extras = [f"{n} {what}" for n, what in (
            (self.finished, f"processed copies of earlier archivals "
                            f"{'to remove' if self.dry_run else 'removed'}"),
            (self.orphans_removed, "stray archive copies removed"),
            (self.blobs_cold, f"blobs {'to move' if self.dry_run else 'moved'} to "
                              f"{self.storage_class}"),
            (len(self.skipped), "properties skipped (extraction running)"),
            (len(self.errors), "with errors")) if n]
        return line + ("; " + ", ".join(extras) if extras else "")

    def markdown(self) -> str:
        title = "Photo archival" + (" (dry run)" if self.dry_run else "")
        lines = [f"# {title}", "", self.summary_line(), ""]
        if self.properties:
            lines += ["| property | archived | size | earlier archivals' processed copies "
                      f"{'to remove' if self.dry_run else 'removed'} | photo names |",
                      "|---|---|---|---|---|"]
            for p in self.properties:
                names = ", ".join(f"`{n}`" for n in p.archived[:10])
                if len(p.archived) > 10:
                    names += f" and {len(p.archived) - 10} more"
                lines.append(f"| {p.property_hash} | {len(p.archived)} | {_size(p.bytes)} | "
                             f"{p.finished} | {names} |")
            lines.append("")
        if self.errors:
            lines += ["## Errors", ""]
            lines += [f"- **{key}**: {reason}" for key, reasons in self.errors.items()
                      for reason in reasons]
            lines.append("")
        if self.skipped:
            lines += ["## Skipped (extraction running)", "", ", ".join(self.skipped), ""]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines)


def last_shown(manifest: Manifest, photo: PhotoRecord) -> datetime | None:
    """When a site last showed ``photo``, or None while any of its URLs may still show it
    (see the module docstring for which URLs count as gone)."""
    source_seen = {s.url: s.last_seen for s in photo.sources}
    urls = set(source_seen) | {u for u, e in manifest.urls.items() if e.image_id == photo.id}
    latest: datetime | None = None
    for url in urls:
        entry = manifest.urls.get(url)
        if entry is None:
            return None
        if entry.image_id == photo.id:
            if entry.status not in GONE:
                return None
            seen = max(entry.last_seen, source_seen.get(url, entry.last_seen))
        elif url in source_seen:
            seen = source_seen[url]  # the URL shows another photo now
        else:
            return None
        latest = seen if latest is None else max(latest, seen)
    return latest


def archivable(manifest: Manifest, cutoff: datetime) -> list[tuple[PhotoRecord, datetime]]:
    """The stored photos last shown before ``cutoff``, with that time."""
    out = []
    for photo in manifest.photos:
        seen = last_shown(manifest, photo)
        if seen is not None and seen < cutoff:
            out.append((photo, seen))
    return out


def archive_old_photos(
    store: ImageStore,
    *,
    older_than_days: float,
    now: datetime | None = None,
    dry_run: bool = False,
    storage_class: str | None = ARCHIVE_STORAGE_CLASS,
    skip: Collection[str] = (),
    property_hashes: Iterable[str] | None = None,
) -> ArchiveReport:
    """Archive every stored photo no site has shown for more than ``older_than_days``, in
    every property of ``store`` (or ``property_hashes``) except those in ``skip``.

    ``dry_run`` writes nothing and reports what would be archived. ``storage_class`` is used
    on S3 only (None: the bucket's default). Never raises for one property's problem: the
    report says which property and why."""
    if not older_than_days > 0:
        raise ValueError(f"older_than_days must be > 0, got {older_than_days!r}")
    if storage_class is not None and storage_class not in READABLE_STORAGE_CLASSES:
        raise ValueError(f"storage class {storage_class!r} cannot be read without a restore "
                         f"request; use one of {', '.join(sorted(READABLE_STORAGE_CLASSES))}")
    now = now or utcnow()
    report = ArchiveReport(older_than_days=older_than_days,
                           cutoff=now - timedelta(days=older_than_days), dry_run=dry_run,
                           storage_class=storage_class if store.fs.s3 else None)
    hashes = sorted(property_hashes) if property_hashes is not None else store.property_hashes()
    live_blobs: set[str] = set()
    archived_blobs: set[str] = set()
    all_read = True
    for property_hash in hashes:
        report.properties_scanned += 1
        if property_hash in skip:
            report.skipped.append(property_hash)
            try:  # read only, for the blob step
                manifest = store.read_manifest(property_hash)
            except Exception:
                all_read = False
                continue
            if manifest is not None:
                live_blobs |= _blobs(store, manifest.photos)
            continue
        errors: list[str] = []
        try:
            outcome, live, archived = _archive_property(
                store, property_hash, cutoff=report.cutoff, now=now, dry_run=dry_run,
                storage_class=report.storage_class, errors=errors)
        except Exception as exc:
            all_read = False
            report.error(property_hash, f"{type(exc).__name__}: {exc}")
            continue
        finally:
            for reason in errors:
                report.error(property_hash, reason)
        live_blobs |= live
        archived_blobs |= archived
        if outcome.archived or outcome.finished or outcome.orphans_removed:
            report.properties.append(outcome)
        report.photos_archived += len(outcome.archived)
        report.bytes_archived += outcome.bytes
        report.finished += outcome.finished
        report.orphans_removed += outcome.orphans_removed
    if report.storage_class is not None:
        if all_read:
            report.blobs_cold = _cool_blobs(store, archived_blobs - live_blobs,
                                            report.storage_class, dry_run, report)
        else:
            report.notes.append("blobs left in their storage class: not every manifest could "
                                "be read, so a blob might still be used by a stored photo")
    if not dry_run:  # always: an earlier run may have been killed before writing it
        from phx_images.gallery import write_index

        try:
            write_index(store)
        except Exception as exc:
            report.error(GALLERY, f"index not rewritten: {type(exc).__name__}: {exc}")
    return report


def _archive_property(store: ImageStore, property_hash: str, *, cutoff: datetime,
                      now: datetime, dry_run: bool, storage_class: str | None,
                      errors: list[str]) -> tuple[PropertyArchive, set[str], set[str]]:
    """One property; returns what was done and the blob keys of its stored and archived
    photos afterwards. Raises for what stops the whole property (an unreadable manifest);
    appends to ``errors`` what stops only part of it.

    The photos archived here keep their processed copies; those of photos archived by an
    earlier run (and still archived) are deleted here (see the module docstring: the race
    with an extraction run that committed a manifest read before the archival)."""
    ps = store.open_property(property_hash)  # refuses an invalid manifest: StoreError
    before = ps.manifest.model_dump(mode="json")
    out = PropertyArchive(property_hash)
    processed = store.fs.list_details(ps.folder)
    archive_files = set(store.fs.list_details(ps.archive_folder))
    candidates = archivable(ps.manifest, cutoff)
    live_names = {p.name for p in ps.photos}
    # archived by an earlier run, processed copies still there: this run deletes them
    leftover_ids = {a.photo.id for a in ps.archived if a.photo.name not in live_names
                    and {f"{ps.folder}/{a.photo.name}", f"{ps.folder}/{_sidecar(a.photo.name)}"}
                    & processed.keys()}

    def size(photo: PhotoRecord) -> int:
        return int(processed.get(f"{ps.folder}/{photo.name}", {}).get("size", 0))

    if dry_run:
        out.archived = [p.name for p, _ in candidates]
        out.bytes = sum(size(p) for p, _ in candidates)
        out.finished = len(leftover_ids)
        moving = {p.id for p, _ in candidates}
        return (out, _blobs(store, (p for p in ps.photos if p.id not in moving)),
                _blobs(store, [*(a.photo for a in ps.archived), *(p for p, _ in candidates)]))

    # 1. archive copies of photos that are still stored (an archival that never reached its
    #    manifest, or that a concurrent writer undid): removed, except the candidates'
    #    (overwritten just below)
    out.orphans_removed = _sweep(ps, archive_files, errors,
                                 overwritten={p.name for p, _ in candidates})
    # 2. copy, then commit (unless another writer changed the manifest meanwhile)
    moved: list[PhotoRecord] = []
    for photo, seen in candidates:
        try:
            ps.archive_photo(photo.id, last_seen=seen, storage_class=storage_class, now=now)
        except (StoreError, OSError) as exc:
            errors.append(f"{photo.name}: not archived: {type(exc).__name__}: {exc}")
            continue
        moved.append(photo)
    if moved:
        current = store.read_manifest(property_hash)
        if current is None or current.model_dump(mode="json") != before:
            raise StoreError(f"the manifest of {property_hash} changed while archiving "
                             "(another writer); nothing committed, the next run retries")
        try:
            ps.commit(touch=False)
        except StoreError as exc:  # committed or not? the stored manifest says
            errors.append(f"archival cut short: {exc}; the next run finishes it")
            committed = store.read_manifest(property_hash)
            if committed is None:
                return out, set(), set()
            ids = {a.photo.id for a in committed.archived}
            out.archived = [p.name for p in moved if p.id in ids]
            out.bytes = sum(size(p) for p in moved if p.id in ids)
            return (out, _blobs(store, committed.photos),
                    _blobs(store, (a.photo for a in committed.archived)))
        out.archived = [p.name for p in moved]
        out.bytes = sum(size(p) for p in moved)
    # 3. photos archived before whose archive copy is incomplete (an archival cut short, or a
    #    lost object): rebuild it, from the processed copy if still there, else the blob
    moved_ids = {p.id for p in moved}
    finish: list[PhotoRecord] = []  # archived by an earlier run: processed copies to delete
    for entry in ps.archived:
        if entry.photo.id in moved_ids:
            continue
        missing_photo = entry.path not in archive_files
        missing_sidecar = _sidecar(entry.path) not in archive_files
        try:
            if missing_photo or missing_sidecar:
                ps.write_archive_copy(entry, photo=missing_photo, sidecar=missing_sidecar)
        except (StoreError, OSError) as exc:
            errors.append(f"{entry.photo.name}: archive copy not completed: "
                          f"{type(exc).__name__}: {exc}")
            continue  # its processed copy, if any, is kept
        if entry.photo.id in leftover_ids:
            finish.append(entry.photo)
    # 4. the gallery page: the photos archived now leave the gallery (their processed copies
    #    stay until the next run); it is rewritten again before earlier archivals' copies are
    #    deleted, in case the run that archived them was killed before writing it
    if moved or finish:
        from phx_images.gallery import write_property_page

        try:
            write_property_page(store, ps.manifest)
        except Exception as exc:
            errors.append(f"gallery page not rewritten: {type(exc).__name__}: {exc}")
    # 5. the processed copies of photos archived by an earlier run, if still archived in the
    #    manifest as stored right now (a concurrent writer may have put one back in photos)
    for photo in _still_archived(store, property_hash, finish, errors):
        try:
            ps.fs.delete(f"{ps.folder}/{photo.name}")
            ps.fs.delete(f"{ps.folder}/{_sidecar(photo.name)}")
        except StoreError as exc:
            errors.append(f"{photo.name}: archived, but its processed copy is not deleted "
                          f"yet: {exc}; the next run finishes it")
            continue
        out.finished += 1
    return (out, _blobs(store, ps.photos), _blobs(store, (a.photo for a in ps.archived)))


def _still_archived(store: ImageStore, property_hash: str, photos: list[PhotoRecord],
                    errors: list[str]) -> list[PhotoRecord]:
    """Those of ``photos`` that the stored manifest, read now, lists as archived and whose
    name no stored photo uses: their processed copies may go (none if it cannot be read)."""
    if not photos:
        return []
    try:
        current = store.read_manifest(property_hash)
    except Exception as exc:
        errors.append(f"processed copies of archived photos kept: manifest not read again: "
                      f"{type(exc).__name__}: {exc}")
        return []
    if current is None:
        return []
    archived = {a.photo.id: a.photo.name for a in current.archived}
    live_ids = {p.id for p in current.photos}
    live_names = {p.name for p in current.photos}
    return [p for p in photos if archived.get(p.id) == p.name and p.id not in live_ids
            and p.name not in live_names]


def _blobs(store: ImageStore, photos: Iterable[PhotoRecord]) -> set[str]:
    return {store.blob_key(p.blob_sha, p.ext) for p in photos}


def _sweep(ps: PropertyStore, archive_files: set[str], errors: list[str], *,
           overwritten: set[str]) -> int:
    """Delete the archive files of ours that the manifest does not list and that are copies
    of photos still stored (their sidecar names a stored photo), or that have no sidecar (an
    archival always writes it before its commit: without one it never committed). Any other
    unlisted file is kept and reported. Files named ``overwritten`` are left (about to be
    written again). Returns how many photos were removed."""
    listed = {k for a in ps.archived for k in (a.path, _sidecar(a.path))}
    live_ids = {p.id for p in ps.photos}
    stems: dict[str, list[str]] = {}
    for key in sorted(archive_files - listed):
        leaf = key.rsplit("/", 1)[-1]
        if _ours(leaf):
            stems.setdefault(leaf.rsplit(".", 1)[0], []).append(key)
    removed = 0
    for stem, keys in sorted(stems.items()):
        sidecar = f"{ps.archive_folder}/{stem}.json"
        photo_keys = [k for k in keys if k != sidecar]
        if any(k.rsplit("/", 1)[-1] in overwritten for k in photo_keys):
            continue
        image_id = None
        if sidecar in keys:
            try:
                image_id = ps.fs.read_json(sidecar).get("id")
            except (FileNotFoundError, StoreError, AttributeError):
                image_id = None
        if sidecar not in keys or (image_id is not None and image_id in live_ids):
            for key in photo_keys + ([sidecar] if sidecar in keys else []):
                ps.fs.delete(key)
            removed += bool(photo_keys)
        else:
            errors.append(f"{', '.join(keys)}: in the archive but not in the manifest (kept; "
                          f"its sidecar holds the record of photo {image_id or '?'})")
    if ps.fs.local:  # temp files of a killed local copy are hidden from listings
        folder = ps.fs.path(ps.archive_folder)
        for leaf in os.listdir(folder) if os.path.isdir(folder) else []:
            if TMP_MARK in leaf:
                os.unlink(os.path.join(folder, leaf))
    return removed


def _cool_blobs(store: ImageStore, keys: set[str], storage_class: str, dry_run: bool,
                report: ArchiveReport) -> int:
    """Move blobs only archived photos use to ``storage_class`` in place (S3); returns how
    many were (or, in a dry run, would be) moved. One listing per blob folder."""
    folders: dict[str, list[str]] = {}
    for key in sorted(keys):
        folders.setdefault(key.rsplit("/", 1)[0], []).append(key)
    moved = 0
    for folder, folder_keys in folders.items():
        try:
            details = store.fs.list_details(folder)
        except Exception as exc:
            report.error(BLOBS, f"{folder}: not listed: {type(exc).__name__}: {exc}")
            continue
        for key in folder_keys:
            info = details.get(key)
            if info is None or info["storage_class"] == storage_class:
                continue  # a missing blob is not needed: the archive copy is the photo
            if not dry_run:
                try:
                    store.fs.copy(key, key, storage_class=storage_class)
                except (StoreError, OSError) as exc:
                    report.error(BLOBS, f"{key}: {type(exc).__name__}: {exc}")
                    continue
            moved += 1
    return moved


def _sidecar(name: str) -> str:
    return name.rsplit(".", 1)[0] + ".json"


def _ours(leaf: str) -> bool:
    """A photo name of ours, or the sidecar of one."""
    stem, _, ext = leaf.rpartition(".")
    for candidate in ([leaf] if ext != "json" else [f"{stem}.{e}" for e in ("jpg", "webp", "png")]):
        try:
            parse_name(candidate)
            return True
        except PhotoNameError:
            continue
    return False


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


__all__ = [
    "ARCHIVE_STORAGE_CLASS", "READABLE_STORAGE_CLASSES", "ArchiveReport", "PropertyArchive",
    "archivable", "archive_old_photos", "last_shown",
]
