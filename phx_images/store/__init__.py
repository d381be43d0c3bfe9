"""The image store: fsspec-backed (local disk or S3), safe with several writers.

Layout under the root (``Settings.store_url``)::

    blobs/{sha[:2]}/{sha}.{ext}                 standardized bytes, content-addressed, write-once
    processed/{property_hash}/manifest.json     photos + URL tracker (one writer: that property)
    processed/{property_hash}/{name}.{ext}      the named photo (see naming.py)
    processed/{property_hash}/{name}.json       its sidecar: category, id, blob
    metadata/address_folder_lookup/{hash}.json  {"address", "property_hash"}: one per property
    metadata/address_folder_lookup.json         derived snapshot (written by one coordinator)
    runs/{YYYYmmddTHHMMSSZ}_{run_id}[_{part}].json   run records, append-only, unique names

Why this shape: no two writers ever read-modify-write the same object. A property is written by
one worker at a time; blobs are identical whoever writes them; global views (the address
lookup) are one small file per property, merged by listing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from phx_images.store.fs import StoreError, StoreFS
from phx_images.store.models import (
    Manifest,
    PhotoCopy,
    PhotoRecord,
    PhotoSource,
    RunRecord,
    UrlEntry,
    UrlStatus,
)
from phx_images.store.naming import PhotoName, PhotoNameError, make_name, parse_name
from phx_images.store.property import AddResult, PropertyStore

_SAFE_PART = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_EXTS = ("jpg", "webp", "png")


class ImageStore:
    """Entry point: blobs, per-property stores, lookup, run records."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None, *,
                 phash_threshold: int = 8, dhash_threshold: int = 10) -> None:
        self.fs = StoreFS(url, storage_options)
        self.phash_threshold = phash_threshold
        self.dhash_threshold = dhash_threshold

    @classmethod
    def from_settings(cls, settings: Any) -> ImageStore:
        """From ``phx_images.settings.Settings`` (store_url, store_options, image thresholds)."""
        return cls(settings.store_url, settings.store_options,
                   phash_threshold=settings.images.phash_threshold,
                   dhash_threshold=settings.images.dhash_threshold)

    def __repr__(self) -> str:
        return f"ImageStore({self.fs.url!r})"

    # ---- blobs ---------------------------------------------------------------------------
    @staticmethod
    def blob_key(sha: str, ext: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", sha) or ext not in _EXTS:
            raise StoreError(f"bad blob id {sha!r}.{ext!r}")
        return f"blobs/{sha[:2]}/{sha}.{ext}"

    def has_blob(self, sha: str, ext: str) -> bool:
        return self.fs.exists(self.blob_key(sha, ext))

    def put_blob(self, data: bytes, ext: str) -> str:
        """Store ``data`` under its sha256 (skipped if already there); returns the sha."""
        sha = hashlib.sha256(data).hexdigest()
        self.fs.put_once(self.blob_key(sha, ext), data)
        return sha

    def read_blob(self, sha: str, ext: str) -> bytes:
        return self.fs.read_bytes(self.blob_key(sha, ext))

    # ---- properties ----------------------------------------------------------------------
    def open_property(self, property_hash: str, address: str | None = None) -> PropertyStore:
        """Load (or start) one property's manifest. One writer per property at a time."""
        return PropertyStore(self, property_hash, address, phash_threshold=self.phash_threshold,
                             dhash_threshold=self.dhash_threshold)

    def property_hashes(self) -> list[str]:
        return [k.rstrip("/").rsplit("/", 1)[-1] for k in self.fs.list("processed")
                if k.endswith("/")]

    def read_manifest(self, property_hash: str) -> Manifest | None:
        try:
            return Manifest.model_validate(
                self.fs.read_json(f"processed/{property_hash}/manifest.json"))
        except FileNotFoundError:
            return None

    # ---- address lookup ------------------------------------------------------------------
    def put_lookup(self, address: str, property_hash: str) -> None:
        key = f"metadata/address_folder_lookup/{property_hash}.json"
        record = {"address": address, "property_hash": property_hash}
        try:
            if self.fs.read_json(key) == record:
                return
        except (FileNotFoundError, StoreError):
            pass
        self.fs.write_json(key, record)

    def address_folder_lookup(self) -> dict[str, str]:
        """address -> property hash, merged from the per-property files."""
        lookup: dict[str, str] = {}
        for key in self.fs.list("metadata/address_folder_lookup"):
            if not key.endswith(".json"):
                continue
            try:
                record = self.fs.read_json(key)
                lookup[str(record["address"])] = str(record["property_hash"])
            except (FileNotFoundError, StoreError, KeyError, TypeError):
                continue  # one bad file must not hide the others
        return lookup

    def write_lookup_snapshot(self) -> dict[str, str]:
        """Write ``metadata/address_folder_lookup.json`` (the earlier system's single file),
        derived from the per-property files. Call from one coordinator only."""
        lookup = self.address_folder_lookup()
        self.fs.write_json("metadata/address_folder_lookup.json", lookup)
        return lookup

    # ---- run records ---------------------------------------------------------------------
    def write_run_record(self, record: RunRecord, part: str | None = None) -> str:
        """Append one run record under a unique name; returns its key."""
        for value in (record.run_id, part):
            if value is not None and not _SAFE_PART.match(value):
                raise StoreError(f"unsafe run id/part {value!r}")
        stamp = record.started.strftime("%Y%m%dT%H%M%SZ")
        key = f"runs/{stamp}_{record.run_id}" + (f"_{part}" if part else "") + ".json"
        self.fs.write_json(key, record.model_dump(mode="json"))
        return key

    def run_records(self, run_id: str | None = None) -> list[RunRecord]:
        """Every run record, or only ``run_id``'s: those are picked by name, so a run's
        summary reads its own files, not the whole history."""
        records = []
        for key in self.fs.list("runs"):
            if run_id is not None and f"_{run_id}" not in key.rsplit("/", 1)[-1]:
                continue
            if key.endswith(".json"):
                try:
                    records.append(RunRecord.model_validate(self.fs.read_json(key)))
                except Exception:
                    continue
        return records


__all__ = [
    "AddResult", "ImageStore", "Manifest", "PhotoCopy", "PhotoName", "PhotoNameError",
    "PhotoRecord", "PhotoSource", "PropertyStore", "RunRecord", "StoreError", "StoreFS",
    "UrlEntry", "UrlStatus", "make_name", "parse_name",
]
