"""Crash safety: SIGKILL a real writer mid-run, then check the store and rerun it.

After the kill every manifest must parse and every file it lists must exist; the rerun must
finish the set without downloading again anything the first run had committed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phx_images.store import ImageStore
from tests.image_helpers import moto_server, new_bucket, s3_options

ROOT = Path(__file__).resolve().parents[1]
N_PHOTOS = 14
PROPERTY = "c0ffee00"

WORKER = r"""
import hashlib, json, os, sys, time
from phx_images.categorize import Category
from phx_images.images import Downloaded, inspect, perceptual_hashes, standardize
from phx_images.settings import ImageSettings
from phx_images.store import ImageStore
from tests.image_helpers import jpeg

url, options, log_path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
n, pause = int(sys.argv[4]), float(sys.argv[5])
settings = ImageSettings()
store = ImageStore(url, options)
ps = store.open_property("c0ffee00", "1 Crash Ave, Mesa, AZ 85201")
ps.gc()
with open(log_path, "a") as log:
    for i in range(n):
        photo_url = f"http://zillow.test/fp/{i:032x}-cc_ft_1536.jpg"
        if not ps.needs_download(photo_url):
            ps.mark_seen("zillow", photo_url)
            continue
        data = jpeg(1000 + i, (900, 600))  # "the download"
        log.write(photo_url + "\n"); log.flush(); os.fsync(log.fileno())
        dl = Downloaded(photo_url, photo_url, data, hashlib.sha256(data).hexdigest(),
                        inspect(data, max_pixels=settings.max_pixels))
        ps.add_photo(source="zillow", url=photo_url, downloaded=dl,
                     standardized=standardize(data, settings), hashes=perceptual_hashes(data),
                     category=Category.of("kitchen", 80))
        time.sleep(pause)
        ps.commit()
ps.commit()
print("done")
"""


@pytest.fixture(params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict]]:
    if request.param == "local":
        yield str(tmp_path / "store"), {}
    else:
        with moto_server() as endpoint:
            yield new_bucket(endpoint), s3_options(endpoint)


def _run(url: str, options: dict, log: Path, pause: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, url, json.dumps(options), str(log), str(N_PHOTOS),
         str(pause)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _check_consistent(store: ImageStore) -> set[str]:
    manifest = store.read_manifest(PROPERTY)  # parses, or raises
    if manifest is None:
        return set()
    for photo in manifest.photos:
        assert store.fs.exists(f"processed/{PROPERTY}/{photo.name}"), photo.name
        assert store.fs.exists(f"processed/{PROPERTY}/{photo.name[:-4]}.json")
        assert store.has_blob(photo.blob_sha, photo.ext)
    return set(manifest.urls)


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun(target: tuple[str, dict], tmp_path: Path) -> None:
    url, options = target
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    proc = _run(url, options, log1, pause=0.15)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log1.exists() and len(log1.read_text().splitlines()) >= 5:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.07)  # land somewhere inside a photo's writes or its commit
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    store = ImageStore(url, options)
    committed = _check_consistent(store)
    downloaded1 = set(log1.read_text().splitlines())
    assert 3 <= len(committed) < N_PHOTOS
    assert committed <= downloaded1

    proc2 = _run(url, options, log2, pause=0.0)
    _out, err = proc2.communicate(timeout=120)
    assert proc2.returncode == 0, err
    downloaded2 = set(log2.read_text().splitlines())
    assert not downloaded2 & committed  # nothing already stored was fetched again
    final = _check_consistent(store)
    assert len(final) == N_PHOTOS and len(store.read_manifest(PROPERTY).photos) == N_PHOTOS
    # the rerun's gc removed anything the killed run left unlisted
    listed = {p.name for p in store.read_manifest(PROPERTY).photos}
    photos_on_disk = {k.rsplit("/", 1)[-1] for k in store.fs.list(f"processed/{PROPERTY}")
                      if k.endswith(".jpg")}
    assert photos_on_disk == listed
