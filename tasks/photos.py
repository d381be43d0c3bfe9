"""Photo downloads: one task run per property and source, with a cache record per URL.

Why a batch and not a task per photo: every task run costs the Prefect server 6-10 write
transactions and two tag-slot API calls, a cache hit as much as a download
(``shared/notes/prefect.md``); at a task run per photo the server, not the sites, was the
limit. Caching stays keyed on URL hashes at two levels:

* the task's cache key is the sha256 of the sorted URLs it fetches (and the store they go
  to), so an unchanged batch is one Cached task run;
* inside it, each URL has its own record ``photo-<sha256(url)>`` in the same result storage
  (the shared one on several machines), written through Prefect's result-store API with the
  URL tracker's expiry, so a photo fetched by any run on any machine costs a storage read,
  not a task run and not a download.

A record is a hit only while the blob it points to exists in this run's store: a store that
lost files, a new store URL, or a machine whose store differs from the shared cache's
downloads the photo again. Records are written only for photos really downloaded, never for
failures or for "already stored, not downloaded" answers (``known``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import task
from prefect.context import TaskRunContext
from prefect.filesystems import WritableFileSystem
from prefect.results import ResultStore

from flows.engine import current_engine
from phx_images.models import PhotoRef
from phx_images.net.client import asset_source_name
from phx_images.pipeline import Engine, PhotoFetch
from tasks.discover import source_tag

log = logging.getLogger(__name__)


def photo_record_key(url: str) -> str:
    """``photo-<sha256(url)>``: the same URL is the same download, whoever asks for it."""
    return "photo-" + hashlib.sha256(url.encode()).hexdigest()


def batch_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """``photos-<sha256(sorted URLs, store)>``: an unchanged batch for the same store."""
    urls = sorted(PhotoRef.model_validate(p).best_url for p in parameters["photos"])
    text = "\n".join([*urls, str(parameters["store_url"])])
    return "photos-" + hashlib.sha256(text.encode()).hexdigest()


def usable(engine: Engine, fetch: PhotoFetch) -> bool:
    """A fetched photo whose blob is still in this store (a cached answer may predate a
    store that lost files, or come from another machine's store)."""
    return (fetch.ok and not fetch.known and fetch.blob_sha is not None
            and fetch.ext is not None and engine.store.has_blob(fetch.blob_sha, fetch.ext))


class PhotoRecords:
    """The per-URL records in the result storage (reads and writes, no task run)."""

    def __init__(self, storage: WritableFileSystem, stale_after_days: int) -> None:
        self._store = ResultStore(result_storage=storage, cache_result_in_memory=False)
        self._ttl = timedelta(days=stale_after_days)

    async def read(self, url: str) -> PhotoFetch | None:
        key = photo_record_key(url)
        try:
            if not await self._store.aexists(key):  # also False once expired
                return None
            record = await self._store.aread(key)
        except Exception:  # an unreadable record is a miss, never a failed photo
            return None
        return record.result if isinstance(record.result, PhotoFetch) else None

    async def write(self, url: str, fetch: PhotoFetch) -> None:
        await self._store.awrite(fetch, key=photo_record_key(url),
                                 expiration=datetime.now(UTC) + self._ttl)


@task(name="fetch-photos", task_run_name="fetch {source}: {property_hash}",
      cache_key_fn=batch_cache_key, persist_result=True)
async def fetch_photos(source: str, photos: list[PhotoRef], property_hash: str, store_url: str,
                       fresh: bool = False) -> list[PhotoFetch]:
    """Download, validate, standardize and store the best variant of each photo of one
    source for one property; ``download_concurrency`` at a time, each paced by the policy
    layer. Never raises for a bad photo: its result says why (``ok=False``)."""
    engine = current_engine()
    ctx = TaskRunContext.get()
    assert ctx is not None and ctx.result_store is not None
    storage = ctx.result_store.result_storage
    assert isinstance(storage, WritableFileSystem)
    records = PhotoRecords(storage, engine.settings.images.stale_after_days)
    gate = asyncio.Semaphore(engine.settings.orchestration.download_concurrency)

    async def one(photo: PhotoRef) -> PhotoFetch:
        async with gate:
            if not fresh:
                cached = await records.read(photo.best_url)
                if cached is not None and await asyncio.to_thread(usable, engine, cached):
                    return cached.model_copy(update={
                        "cached": True, "caption": photo.caption,
                        "source_photo_id": photo.source_photo_id})
            result = await engine.fetch_photo(property_hash, photo, fresh=fresh)
            if result.ok and not result.known:
                try:
                    await records.write(photo.best_url, result)
                except Exception as exc:  # a lost record costs a later cache miss, no more
                    log.warning("cache record for %s not written: %s", photo.source_photo_id,
                                type(exc).__name__)
            return result

    return list(await asyncio.gather(*(one(p) for p in photos)))


def fetch_task(source: str, *, stale_after_days: int, result_storage: WritableFileSystem,
               refresh: bool):
    """The batch task for ``source``: its CDN's concurrency tag, the shared result storage,
    the expiry; ``refresh`` runs it even if the batch is cached (fresh mode, or a cached batch
    that no longer holds)."""
    return fetch_photos.with_options(
        tags=[source_tag(asset_source_name(source))],
        cache_expiration=timedelta(days=stale_after_days),
        result_storage=result_storage,
        refresh_cache=refresh,
    )
