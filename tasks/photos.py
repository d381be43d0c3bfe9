"""Photo download as a task cached by the hash of its URL, across runs and machines.

The cache key is the sha256 of the photo's best URL, so a photo already fetched by any run on
any worker (results live in the shared result storage named by
``PHX_ORCHESTRATION__RESULT_STORAGE_BLOCK``) is not downloaded again until the key expires,
after the URL tracker's staleness period. A failed fetch raises, so failures are never cached.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from prefect import task
from prefect.context import TaskRunContext
from prefect.filesystems import WritableFileSystem

from flows.engine import current_engine
from phx_images.models import PhotoRef
from phx_images.net.client import asset_source_name
from phx_images.pipeline import PhotoFetch
from tasks.discover import source_tag


def url_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """``photo-<sha256(url)>``: the same URL is the same download, whoever asks for it."""
    photo: PhotoRef = parameters["photo"]
    url = photo.best_url if isinstance(photo, PhotoRef) else PhotoRef.model_validate(photo).best_url
    return "photo-" + hashlib.sha256(url.encode()).hexdigest()


@task(name="fetch-photo", task_run_name="fetch {photo.source}:{photo.source_photo_id}",
      cache_key_fn=url_cache_key, persist_result=True)
async def fetch_photo(photo: PhotoRef, property_hash: str) -> PhotoFetch:
    """Download, validate, standardize and store one photo's best variant (content-addressed)."""
    result = await current_engine().fetch_photo(property_hash, photo)
    result.raise_if_failed()
    return result


def fetch_task(source: str, *, stale_after_days: int, result_storage: WritableFileSystem,
               fresh: bool):
    """The fetch task for ``source``: its concurrency tag, shared result storage and expiry;
    ``fresh`` refreshes the cache instead of reading it."""
    return fetch_photo.with_options(
        tags=[source_tag(asset_source_name(source))],
        cache_expiration=timedelta(days=stale_after_days),
        result_storage=result_storage,
        refresh_cache=fresh,
    )
