"""One property end to end: discover on each source, fetch each photo, integrate into the store.

The three steps are separate methods because the flows wrap each in its own task (discovery
tagged per source, fetch cached by URL hash, one integration per property); ``extract`` chains
them for callers without Prefect (the CLI's direct mode, tests, benchmarks).

Why fetch and integrate are split: a fetch depends only on the URL (download, validate,
standardize, hash, write the content-addressed blob), so its small result can be cached and
shared across runs and machines; integration depends on the property (dedup against what it
already has, names, manifest) and has a single writer per property.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from phx_images.address import Address
from phx_images.categorize import (
    UNCATEGORIZED,
    Categorizer,
    Category,
    PhotoContext,
    categorizer_from_settings,
)
from phx_images.gallery import write_index, write_property_page
from phx_images.images.download import Downloaded, download
from phx_images.images.hashing import from_hex, perceptual_hashes, to_hex
from phx_images.images.inspect import BadImage, ImageInfo
from phx_images.images.standardize import Standardized, standardize
from phx_images.models import Listing, ListingStatus, PhotoRef, Property
from phx_images.net.client import PolicyClient
from phx_images.net.errors import FetchError
from phx_images.net.state import PolicyState
from phx_images.properties import PropertyList
from phx_images.settings import Settings
from phx_images.sources import get_adapters
from phx_images.store import ImageStore, RunRecord

log = logging.getLogger(__name__)
COMMIT_EVERY = 8  # photos between manifest commits: what a crash can cost, at most


class PhotoFetchFailed(RuntimeError):
    """A photo that could not be fetched; raised by tasks so failures are never cached."""


class PhotoFetch(BaseModel):
    """What fetching one photo's best URL produced: small, JSON, cacheable by URL."""

    source: str
    source_photo_id: str
    url: str
    caption: str | None = None
    ok: bool = True
    reason: str | None = None
    known: bool = False  # already stored for this property: nothing was downloaded
    cached: bool = False  # served from the orchestrator's URL-keyed cache: not downloaded now
    content_sha: str | None = None  # sha256 of the downloaded bytes
    raw_format: str | None = None
    raw_width: int = 0
    raw_height: int = 0
    raw_bytes: int = 0
    blob_sha: str | None = None  # sha256 of the standardized bytes
    std_format: str | None = None
    ext: str | None = None
    width: int = 0
    height: int = 0
    reencoded: bool = False
    phash: str | None = None
    dhash: str | None = None

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise PhotoFetchFailed(f"{self.source} {self.url}: {self.reason}")


LOST_FILES = "its stored files are gone; downloaded again on the next run"


def known_fetch(photo: PhotoRef) -> PhotoFetch:
    """The result for a photo the property already has stored: nothing to download."""
    return PhotoFetch(source=photo.source, source_photo_id=photo.source_photo_id,
                      url=photo.best_url, caption=photo.caption, known=True)


def failed_fetch(photo: PhotoRef, reason: str) -> PhotoFetch:
    return PhotoFetch(source=photo.source, source_photo_id=photo.source_photo_id,
                      url=photo.best_url, caption=photo.caption, ok=False, reason=reason)


class SourceReport(BaseModel):
    source: str
    status: str
    reason: str | None = None
    found: int = 0
    new: int = 0
    duplicate: int = 0
    known: int = 0
    failed: int = 0
    failures: list[str] = Field(default_factory=list)


class PropertyReport(BaseModel):
    """One property's outcome in one run (what the table artifact and the CLI show)."""

    property_hash: str
    address: str
    sources: dict[str, SourceReport] = Field(default_factory=dict)
    downloaded: int = 0
    reused: int = 0
    new: int = 0
    duplicate: int = 0
    failed_photos: int = 0
    photos_total: int = 0
    error: str | None = None
    dry_run: bool = False
    worker: str | None = None  # which worker (machine) did it: shows how a run was spread

    @classmethod
    def from_discovery(cls, prop: Property, listings: Iterable[Listing], *,
                       dry_run: bool = False) -> PropertyReport:
        report = cls(property_hash=prop.property_hash, address=prop.address.full,
                     dry_run=dry_run)
        for listing in listings:
            report.sources[listing.source] = SourceReport(
                source=listing.source, status=listing.status.value, reason=listing.reason,
                found=len(listing.photos))
        return report

    @classmethod
    def failed(cls, prop: Property, reason: str) -> PropertyReport:
        return cls(property_hash=prop.property_hash, address=prop.address.full, error=reason)

    def summary_line(self) -> str:
        if self.error:
            return f"failed: {self.error}"
        if self.dry_run:
            found = ", ".join(f"{s.source} {s.status} {s.found}" for s in self.sources.values())
            return f"dry run: {found}"
        return (f"{self.photos_total} photos stored ({self.new} new, {self.duplicate} "
                f"duplicates folded); {self.downloaded} downloaded, {self.reused} reused, "
                f"{self.failed_photos} failed")


class RunSummary(BaseModel):
    """A whole run: every property's report plus refused input rows and child-run outcomes."""

    run_id: str
    properties: list[PropertyReport] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)  # properties with no report (child failed)

    def failed_properties(self) -> int:
        """Properties that errored or whose child run left no report."""
        return sum(1 for p in self.properties if p.error) + len(self.missing)

    def totals(self) -> dict[str, int]:
        keys = ("downloaded", "reused", "new", "duplicate", "failed_photos", "photos_total")
        return {k: sum(getattr(p, k) for p in self.properties) for k in keys}

    def summary_line(self) -> str:
        t = self.totals()
        failed_props = self.failed_properties()
        nothing = " (nothing new was downloaded)" if t["downloaded"] == 0 else ""
        return (f"{len(self.properties)} properties: {t['photos_total']} photos stored, "
                f"{t['new']} new, {t['duplicate']} duplicates folded, {t['downloaded']} "
                f"downloaded{nothing}, {t['reused']} reused, {t['failed_photos']} photos failed, "
                f"{failed_props} properties failed")

    def table_rows(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for prop in self.properties:
            if prop.error:
                rows.append({"property": prop.address, "worker": prop.worker or "-",
                             "source": "-", "status": "error",
                             "found": 0, "new": 0, "duplicate": 0, "failed": 0,
                             "reason": prop.error})
            for src in prop.sources.values():
                rows.append({"property": prop.address, "worker": prop.worker or "-",
                             "source": src.source,
                             "status": src.status, "found": src.found, "new": src.new,
                             "duplicate": src.duplicate + src.known, "failed": src.failed,
                             "reason": src.reason or "; ".join(src.failures[:3])})
        for address in self.missing:
            rows.append({"property": address, "worker": "-", "source": "-",
                         "status": "no report",
                         "found": 0, "new": 0, "duplicate": 0, "failed": 0,
                         "reason": "its child run did not complete"})
        return rows

    def markdown(self) -> str:
        lines = [f"# Extraction run `{self.run_id}`", "", self.summary_line(), ""]
        if self.problems:
            lines += ["## Input rows refused", ""] + [f"- {p}" for p in self.problems] + [""]
        lines += ["| property | photos | new | downloaded | reused | failed | note |",
                  "|---|---|---|---|---|---|---|"]
        for p in self.properties:
            note = p.error or ", ".join(f"{s.source}: {s.status}" for s in p.sources.values()
                                        if s.status != ListingStatus.FOUND.value)
            lines.append(f"| {p.address} | {p.photos_total} | {p.new} | {p.downloaded} | "
                         f"{p.reused} | {p.failed_photos} | {note} |")
        return "\n".join(lines)


class Engine:
    """The engine of one process: policy client (HTTP + browser), store and categorizer."""

    def __init__(self, settings: Settings, client: PolicyClient, store: ImageStore,
                 categorizer: Categorizer) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.categorizer = categorizer
        self._stored_urls: dict[str, set[str]] = {}

    @classmethod
    async def open(cls, settings: Settings, state: PolicyState | None = None) -> Engine:
        return cls(settings, PolicyClient(settings, state=state),
                   ImageStore.from_settings(settings), categorizer_from_settings(settings))

    async def aclose(self) -> None:
        await self.client.aclose()
        aclose = getattr(self.categorizer, "aclose", None)
        if aclose is not None:
            await aclose()

    # ---- discovery ---------------------------------------------------------------------
    async def discover(self, source: str, address: Address) -> Listing:
        (adapter,) = get_adapters([source], self.settings)
        return await adapter.discover(self.client, address)

    # ---- fetch -------------------------------------------------------------------------
    async def stored_urls(self, property_hash: str) -> set[str]:
        """URLs whose photo this property already has in the store (read once, then cached
        until the property is integrated again)."""
        if property_hash not in self._stored_urls:
            self._stored_urls[property_hash] = await asyncio.to_thread(
                self._read_stored_urls, property_hash)
        return self._stored_urls[property_hash]

    def _read_stored_urls(self, property_hash: str) -> set[str]:
        manifest = self.store.read_manifest(property_hash)
        if manifest is None:
            return set()
        # an archived photo counts as stored: seeing its URL again restores it (mark_seen)
        ids = {p.id for p in manifest.photos} | {a.photo.id for a in manifest.archived}
        return {u for u, e in manifest.urls.items() if e.image_id in ids}

    async def fetch_photo(self, property_hash: str, photo: PhotoRef, *,
                          fresh: bool = False) -> PhotoFetch:
        """Download, check, standardize, hash and store one photo's best variant.

        A URL this property already has stored is not downloaded again (unless ``fresh``).
        Never raises for a bad photo: the result says why (``ok=False``)."""
        url = photo.best_url
        base = {"source": photo.source, "source_photo_id": photo.source_photo_id, "url": url,
                "caption": photo.caption}
        if not fresh and url in await self.stored_urls(property_hash):
            return known_fetch(photo)
        images = self.settings.images
        source = self.settings.source(photo.source)
        try:
            got = await download(self.client, photo.source, url,
                                 max_bytes=source.max_image_bytes, max_pixels=images.max_pixels)
            std, hashes, blob = await asyncio.to_thread(self._process, got.data)
        except (FetchError, BadImage) as exc:
            return PhotoFetch(**base, ok=False, reason=str(exc))
        except Exception as exc:
            log.warning("photo %s from %s failed: %s", photo.source_photo_id, photo.source, exc)
            return PhotoFetch(**base, ok=False, reason=f"{type(exc).__name__}: {exc}")
        return PhotoFetch(
            **base, content_sha=got.sha256, raw_format=got.info.format,
            raw_width=got.info.width, raw_height=got.info.height, raw_bytes=got.info.size_bytes,
            blob_sha=blob, std_format=std.format, ext=std.ext, width=std.width,
            height=std.height, reencoded=std.reencoded, phash=to_hex(hashes[0]),
            dhash=to_hex(hashes[1]),
        )

    def _process(self, data: bytes) -> tuple[Standardized, tuple[int, int], str]:
        std = standardize(data, self.settings.images)
        hashes = perceptual_hashes(std.data, max_pixels=self.settings.images.max_pixels)
        blob = self.store.put_blob(std.data, std.ext)
        return std, hashes, blob

    # ---- integrate ---------------------------------------------------------------------
    async def integrate(self, prop: Property, listings: list[Listing],
                        fetches: list[PhotoFetch], *, run_id: str,
                        requester: str) -> PropertyReport:
        """Dedupe against what the property has, categorize, name and write; the manifest is
        committed every few photos so a crash loses little, and last."""
        categories = await self._categorize(listings, fetches)
        return await asyncio.to_thread(self._integrate, prop, listings, fetches, categories)

    async def _categorize(self, listings: list[Listing],
                          fetches: list[PhotoFetch]) -> dict[str, Category]:
        texts = {lst.source: str(lst.facts.get("description") or "") for lst in listings}
        facts = {lst.source: lst.facts for lst in listings}
        positions = {(p.source, p.best_url): p.position for lst in listings for p in lst.photos}
        out: dict[str, Category] = {}
        for fetch in fetches:
            if not fetch.ok or fetch.known or fetch.blob_sha is None:
                continue
            image = None
            if self.categorizer.name != "captions" and fetch.ext:
                image = await asyncio.to_thread(self.store.read_blob, fetch.blob_sha, fetch.ext)
            out[fetch.url] = await self.categorizer.categorize(PhotoContext(
                source=fetch.source, caption=fetch.caption, alt_text=fetch.caption,
                position=positions.get((fetch.source, fetch.url)),
                listing_text=texts.get(fetch.source) or None,
                facts=facts.get(fetch.source) or {}, image=image,
                image_format=fetch.std_format or "jpeg",
            ))
        return out

    def _integrate(self, prop: Property, listings: list[Listing], fetches: list[PhotoFetch],
                   categories: dict[str, Category]) -> PropertyReport:
        report = PropertyReport.from_discovery(prop, listings)
        pstore = self.store.open_property(prop.property_hash, prop.address.full)
        pstore.gc()
        facts = {lst.source: lst.facts for lst in listings if lst.facts}
        if facts:
            self.store.fs.write_json(f"processed/{prop.property_hash}/facts.json", facts)
        for count, fetch in enumerate(fetches, start=1):
            if count % COMMIT_EVERY == 0:
                pstore.commit()
            src = report.sources[fetch.source]
            if fetch.known:
                if pstore.mark_seen(fetch.source, fetch.url,
                                    source_photo_id=fetch.source_photo_id,
                                    caption=fetch.caption):
                    src.known += 1
                    report.reused += 1
                else:  # an archived photo whose archive copy and blob were both deleted
                    src.failed += 1
                    src.failures.append(f"{fetch.source_photo_id}: {LOST_FILES}")
                    report.failed_photos += 1
                continue
            if not fetch.ok or fetch.blob_sha is None or fetch.ext is None:
                pstore.reject_url(fetch.source, fetch.url, fetch.reason or "not fetched")
                src.failed += 1
                src.failures.append(f"{fetch.source_photo_id}: {fetch.reason}")
                report.failed_photos += 1
                continue
            if fetch.cached:
                report.reused += 1
            else:
                report.downloaded += 1
            result = pstore.add_photo(
                source=fetch.source, url=fetch.url, downloaded=_downloaded(fetch),
                standardized=_standardized(fetch, self.store.read_blob(fetch.blob_sha,
                                                                       fetch.ext)),
                hashes=(from_hex(fetch.phash or "0"), from_hex(fetch.dhash or "0")),
                category=categories.get(fetch.url, UNCATEGORIZED),
                categorizer=self.categorizer.name,
                source_photo_id=fetch.source_photo_id, caption=fetch.caption,
            )
            if result.action == "new":
                src.new += 1
                report.new += 1
            else:
                src.duplicate += 1
                report.duplicate += 1
        for listing in listings:
            if listing.source in ("assessor",):
                continue
            seen = {p.best_url for p in listing.photos}
            pstore.finish_source(listing.source, seen,
                                 complete=listing.status is ListingStatus.FOUND,
                                 stale_after_days=self.settings.images.stale_after_days)
        pstore.touch()
        pstore.commit()
        self._stored_urls.pop(prop.property_hash, None)  # what it has stored just changed
        report.photos_total = len(pstore.photos)
        write_property_page(self.store, pstore.manifest)
        return report

    def record_report(self, run_id: str, report: PropertyReport, requester: str) -> None:
        """Append this property's report to the run's audit trail (one file per property)."""
        now = datetime.now(UTC)
        self.store.write_run_record(
            RunRecord(run_id=_safe(run_id), requested_by=requester, started=now, finished=now,
                      properties=[report.property_hash],
                      counts={"new": report.new, "downloaded": report.downloaded,
                              "reused": report.reused, "failed": report.failed_photos},
                      errors=[report.error] if report.error else [],
                      extra={"report": report.model_dump(mode="json")}),
            part=report.property_hash,
        )

    # ---- everything --------------------------------------------------------------------
    async def extract(self, prop: Property, sources: list[str], *, fresh: bool = False,
                      dry_run: bool = False, run_id: str = "direct",
                      requester: str = "cli") -> PropertyReport:
        """Discover, fetch and integrate one property without any orchestrator."""
        listings = list(await asyncio.gather(*(self.discover(s, prop.address)
                                               for s in sources)))
        if dry_run:
            return PropertyReport.from_discovery(prop, listings, dry_run=True)
        photos = [p for lst in listings if lst.status is ListingStatus.FOUND
                  for p in lst.photos]
        gate = asyncio.Semaphore(self.settings.orchestration.download_concurrency)

        async def one(photo: PhotoRef) -> PhotoFetch:
            async with gate:
                return await self.fetch_photo(prop.property_hash, photo, fresh=fresh)

        fetches = list(await asyncio.gather(*(one(p) for p in photos)))
        report = await self.integrate(prop, listings, fetches, run_id=run_id,
                                      requester=requester)
        self.record_report(run_id, report, requester)
        return report


def _safe(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in run_id)[:100]


def _downloaded(fetch: PhotoFetch) -> Downloaded:
    info = ImageInfo(format=fetch.raw_format or "JPEG", width=fetch.raw_width,
                     height=fetch.raw_height, mode="RGB", size_bytes=fetch.raw_bytes)
    return Downloaded(fetch.url, fetch.url, b"", fetch.content_sha or "", info)


def _standardized(fetch: PhotoFetch, data: bytes) -> Standardized:
    return Standardized(data=data, format=fetch.std_format or "jpeg", width=fetch.width,
                        height=fetch.height, reencoded=fetch.reencoded,
                        source_format=fetch.raw_format or "", source_width=fetch.raw_width,
                        source_height=fetch.raw_height)


def read_run_reports(settings: Settings, run_id: str, properties: list[Property],
                     problems: list[str], child_states: dict[object, str] | None = None
                     ) -> RunSummary:
    """Gather the per-property reports the children appended for ``run_id``."""
    store = ImageStore.from_settings(settings)
    wanted = {p.property_hash: p for p in properties}
    found: dict[str, PropertyReport] = {}
    for record in store.run_records(_safe(run_id)):
        raw = record.extra.get("report") if record.run_id == _safe(run_id) else None
        if isinstance(raw, dict):
            report = PropertyReport.model_validate(raw)
            if report.property_hash in wanted:
                found[report.property_hash] = report
    write_index(store)
    summary = RunSummary(run_id=run_id, problems=problems)
    for prop in properties:
        if prop.property_hash in found:
            summary.properties.append(found[prop.property_hash])
        else:
            summary.missing.append(prop.address.full)
    return summary


def known_properties(settings: Settings) -> PropertyList:
    """Every property the store knows (by its address lookup)."""
    from phx_images.properties import from_addresses

    lookup = ImageStore.from_settings(settings).address_folder_lookup()
    result = from_addresses(sorted(lookup))
    if not result.properties:
        result.problems.append("the store knows no property yet; run with a CSV or addresses")
    return result


def stale_properties(settings: Settings, *, max_age_hours: float,
                     now: datetime | None = None) -> list[Property]:
    """Known properties whose last check is older than ``max_age_hours``."""
    store = ImageStore.from_settings(settings)
    cutoff = (now or datetime.now(UTC)) - timedelta(hours=max_age_hours)
    due: list[Property] = []
    for prop in known_properties(settings).properties:
        manifest = store.read_manifest(prop.property_hash)
        if manifest is None or manifest.updated < cutoff:
            due.append(prop)
    return due

