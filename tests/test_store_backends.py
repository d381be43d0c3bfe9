"""Store behaviour on local disk AND on an S3-compatible server (moto, started here)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from phx_images.categorize import Category
from phx_images.images import perceptual_hashes, standardize
from phx_images.settings import ImageSettings
from phx_images.store import ImageStore, RunRecord, StoreError, UrlStatus, parse_name
from tests.image_helpers import as_downloaded, jpeg

S = ImageSettings()
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _add(ps, data: bytes, url: str, source: str = "zillow", subject: str = "kitchen",
         conf: int = 85, now: datetime = T0):
    return ps.add_photo(source=source, url=url, downloaded=as_downloaded(data, url),
                        standardized=standardize(data, S), hashes=perceptual_hashes(data),
                        category=Category.of(subject, conf), source_photo_id=url[-6:],
                        caption=f"<b>{subject}</b>", now=now)


def test_atomic_json_and_keys(store: ImageStore) -> None:
    fs = store.fs
    fs.write_json("a/b.json", {"x": 1})
    fs.write_json("a/b.json", {"x": 2})
    assert fs.read_json("a/b.json") == {"x": 2}
    assert fs.list("a") == ["a/b.json"]
    assert fs.put_once("a/c.bin", b"1") and not fs.put_once("a/c.bin", b"2")
    assert fs.read_bytes("a/c.bin") == b"1"
    for bad in ("../x", "/etc/passwd", "a/../../x", "a//b", ""):
        with pytest.raises(StoreError):
            fs.path(bad)
    fs.write_bytes("bad.json", b"{not json")
    with pytest.raises(StoreError, match=r"bad\.json"):
        fs.read_json("bad.json")


def test_photos_dedup_best_copy_tracker_and_rerun(store: ImageStore) -> None:
    ps = store.open_property("a1b2c3d4", "4732 W Davis Rd, Glendale, AZ 85306")
    from tests.image_helpers import encode, photo

    base = photo(1, (1600, 1067))
    small = encode(base.resize((1080, 720)), "JPEG", quality=80)
    big = encode(base, "JPEG", quality=90)
    other = jpeg(2)
    r1 = _add(ps, small, "http://r/1.jpg", "redfin", "master_bath")
    r2 = _add(ps, other, "http://z/2.jpg", "zillow", "pool")
    r3 = _add(ps, big, "http://m/1-o.jpg", "phoenixmls", "master_bath", 60)
    r4 = _add(ps, small, "http://z/1.jpg", "zillow", "master_bath")  # same bytes, other URL
    assert [r.action for r in (r1, r2, r3, r4)] == ["new", "new", "replaced", "duplicate"]
    ps.commit()

    manifest = store.read_manifest("a1b2c3d4")
    assert manifest is not None and len(manifest.photos) == 2
    kept = next(p for p in manifest.photos if p.id == r1.photo.id)
    assert kept.kept_url == "http://m/1-o.jpg"  # the best copy (highest resolution) won
    assert {s.url for s in kept.sources} == {"http://r/1.jpg", "http://m/1-o.jpg",
                                             "http://z/1.jpg"}
    assert len(kept.copies) == 2  # two distinct contents folded
    name = parse_name(kept.name)
    assert (name.subject, name.source, name.property_hash) == ("master_bath", "phoenixmls",
                                                               "a1b2c3d4")
    # every listed file is present; the renamed-away file is gone
    files = {k.rsplit("/", 1)[-1] for k in store.fs.list("processed/a1b2c3d4")}
    for p in manifest.photos:
        assert p.name in files and p.name[:-4] + ".json" in files
        assert store.has_blob(p.blob_sha, p.ext)
        sidecar = store.fs.read_json(f"processed/a1b2c3d4/{p.name[:-4]}.json")
        assert sidecar["subject"] == p.subject
    assert not any(parse_name(f).source == "redfin" for f in files if f.endswith(".jpg"))
    assert set(manifest.urls) == {"http://r/1.jpg", "http://z/2.jpg", "http://m/1-o.jpg",
                                  "http://z/1.jpg"}
    assert store.address_folder_lookup() == {"4732 W Davis Rd, Glendale, AZ 85306": "a1b2c3d4"}

    # rerun: nothing needs downloading; a URL gone from a complete read becomes removed
    again = store.open_property("a1b2c3d4")
    later = T0 + timedelta(days=1)
    for source, url in (("redfin", "http://r/1.jpg"), ("phoenixmls", "http://m/1-o.jpg"),
                        ("zillow", "http://z/1.jpg")):
        assert not again.needs_download(url)
        assert again.mark_seen(source, url, now=later)
    again.finish_source("zillow", {"http://z/1.jpg"}, complete=True, now=later)
    again.finish_source("redfin", set(), complete=False, now=later)  # blocked: not stale yet
    again.commit()
    urls = store.read_manifest("a1b2c3d4").urls
    assert urls["http://z/2.jpg"].status == UrlStatus.REMOVED
    assert urls["http://r/1.jpg"].status == UrlStatus.ACTIVE
    third = store.open_property("a1b2c3d4")
    third.finish_source("redfin", set(), complete=False, now=later + timedelta(days=8))
    third.commit()
    assert store.read_manifest("a1b2c3d4").urls["http://r/1.jpg"].status == UrlStatus.STALE
    assert len(store.read_manifest("a1b2c3d4").photos) == 2  # nothing lost


def test_rejected_url_retried_and_stored_photo_never_lost(store: ImageStore) -> None:
    ps = store.open_property("0000aaaa")
    ps.reject_url("zillow", "http://z/bad.jpg", "HTML page, not an image")
    assert ps.needs_download("http://z/bad.jpg")
    _add(ps, jpeg(5), "http://z/good.jpg")
    ps.reject_url("zillow", "http://z/good.jpg", "truncated")  # later failure of a stored URL
    ps.commit()
    again = store.open_property("0000aaaa")
    assert not again.needs_download("http://z/good.jpg")
    assert again.url_entry("http://z/bad.jpg").status == UrlStatus.REJECTED


def test_invalid_manifest_is_never_overwritten(store: ImageStore) -> None:
    store.fs.write_bytes("processed/deadbeef/manifest.json", b'{"photos": "garbage"')
    with pytest.raises(StoreError, match="refusing to overwrite"):
        store.open_property("deadbeef")
    with pytest.raises(StoreError):
        store.open_property("../etc")


def test_shared_photo_lands_in_both_properties(store: ImageStore) -> None:
    data = jpeg(7)
    for h in ("11111111", "22222222"):
        ps = store.open_property(h)
        assert _add(ps, data, f"http://z/{h}.jpg").action == "new"
        ps.commit()
    a, b = store.read_manifest("11111111"), store.read_manifest("22222222")
    assert a.photos[0].blob_sha == b.photos[0].blob_sha
    assert len(store.fs.list(f"blobs/{a.photos[0].blob_sha[:2]}")) == 1


def test_concurrent_writers_on_different_properties(store: ImageStore) -> None:
    """Several writers at once (threads here; processes/machines in production): no shared
    object is read-modify-written, so every property and the lookup come out complete."""
    shared = jpeg(20, (600, 400))
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            ps = store.open_property(f"{k:08x}", f"{k} Main St, Phoenix, AZ 85001")
            _add(ps, shared, f"http://z/shared-{k}.jpg")
            _add(ps, jpeg(100 + k, (600, 400)), f"http://z/own-{k}.jpg")
            ps.commit()
            store.write_run_record(RunRecord(run_id="run1", started=T0, counts={"photos": 2}),
                                   part=f"{k:08x}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.address_folder_lookup()) == 6
    for k in range(6):
        assert len(store.read_manifest(f"{k:08x}").photos) == 2
    assert len(store.run_records()) == 6
    store.write_run_record(RunRecord(run_id="run2", started=T0), part="00000000")
    assert len(store.run_records("run1")) == 6 and len(store.run_records("run2")) == 1
    snapshot = store.write_lookup_snapshot()
    assert json.loads(store.fs.read_bytes("metadata/address_folder_lookup.json")) == snapshot


def test_gc_removes_only_unlisted_files_of_ours(store: ImageStore) -> None:
    ps = store.open_property("33333333")
    _add(ps, jpeg(30, (500, 300)), "http://z/a.jpg")
    ps.commit()
    orphan = "33333333_int_kitchen_85_z_20250301_05.jpg"
    store.fs.write_bytes(f"processed/33333333/{orphan}", b"x")
    store.fs.write_bytes("processed/33333333/notes.txt", b"keep me")
    deleted = store.open_property("33333333").gc()
    assert deleted == [f"processed/33333333/{orphan}"]
    assert store.fs.exists("processed/33333333/notes.txt")
