"""Archival of old photos, on local disk AND on an S3-compatible server (moto, started here).

The store is filled through the public store API with controlled times (``now=``), the
archival runs at a fixed ``NOW``, and every test checks concrete files, manifests and counts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from phx_images.categorize import Category
from phx_images.gallery import build_gallery
from phx_images.images import inspect, perceptual_hashes, standardize
from phx_images.settings import ImageSettings, Settings
from phx_images.store import ImageStore, StoreError, UrlStatus, parse_name
from phx_images.store.archive import archive_old_photos, last_shown
from phx_images.store.fs import StoreFS
from phx_images.store.property import PropertyStore
from tests.image_helpers import as_downloaded, encode, jpeg, photo

S = ImageSettings()
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=120)  # cutoff at 90 days: T0 + 30 days
PROP = "a1b2c3d4"
OTHER = "b2c3d4e5"
SIZE = (640, 427)


def _add(ps: PropertyStore, data: bytes, url: str, source: str = "zillow",
         subject: str = "kitchen", now: datetime = T0):
    return ps.add_photo(source=source, url=url, downloaded=as_downloaded(data, url),
                        standardized=standardize(data, S), hashes=perceptual_hashes(data),
                        category=Category.of(subject, 80), source_photo_id=url[-8:], now=now)


@dataclass
class Filled:
    ids: dict[str, str]  # A..E -> photo id
    names: dict[str, str]  # A..E -> file name (as stored before archiving)
    data: dict[str, bytes]  # A..E -> the downloaded bytes
    files: dict[str, bytes]  # A..E -> bytes of the named photo file
    shared: bytes  # A's download, also stored (and shown) by property OTHER


def _fill(store: ImageStore) -> Filled:
    """Property PROP:

    - A  zillow z/a, removed since T0+1 (last seen T0)                 -> archived
    - B  zillow z/b, active                                            -> kept
    - C  zillow z/c removed (T0) + redfin r/c stale, last seen T0+60   -> kept (seen recently)
    - D  zillow z/d active + redfin r/d stale since T0                 -> kept (one URL active)
    - E  redfin r/e, stale, last seen T0                               -> archived

    Property OTHER stores A's exact bytes from its own URL, still shown (so A's blob is
    shared with a stored photo there). Properties are refreshed as the pipeline does it:
    mark_seen for what a source still shows, then finish_source."""
    data = {k: jpeg(seed, SIZE) for k, seed in zip("ABCDE", (11, 12, 13, 14, 15), strict=True)}
    ps = store.open_property(PROP, "1 Old Photo Rd, Phoenix, AZ 85001")
    results = {
        "A": _add(ps, data["A"], "http://z/a.jpg", "zillow", "kitchen"),
        "B": _add(ps, data["B"], "http://z/b.jpg", "zillow", "pool"),
        "C": _add(ps, data["C"], "http://z/c.jpg", "zillow", "bedroom"),
        "D": _add(ps, data["D"], "http://z/d.jpg", "zillow", "garage"),
        "E": _add(ps, data["E"], "http://r/e.jpg", "redfin", "living_room"),
    }
    assert _add(ps, data["C"], "http://r/c.jpg", "redfin", "bedroom").action == "duplicate"
    assert _add(ps, data["D"], "http://r/d.jpg", "redfin", "garage").action == "duplicate"
    ps.commit()
    # day 1: zillow read completely, shows b and d only
    ps = store.open_property(PROP)
    day1 = T0 + timedelta(days=1)
    for url in ("http://z/b.jpg", "http://z/d.jpg"):
        assert ps.mark_seen("zillow", url, now=day1)
    ps.finish_source("zillow", {"http://z/b.jpg", "http://z/d.jpg"}, complete=True, now=day1)
    # day 60: redfin shows c only; day 100: redfin blocked (incomplete), the rest goes stale
    assert ps.mark_seen("redfin", "http://r/c.jpg", now=T0 + timedelta(days=60))
    ps.finish_source("redfin", {"http://r/c.jpg"}, complete=False, now=T0 + timedelta(days=60))
    ps.finish_source("redfin", set(), complete=False, now=T0 + timedelta(days=100))
    # day 110: zillow shows b and d again
    for url in ("http://z/b.jpg", "http://z/d.jpg"):
        assert ps.mark_seen("zillow", url, now=T0 + timedelta(days=110))
    ps.commit()
    other = store.open_property(OTHER, "2 Shared Photo St, Mesa, AZ 85201")
    _add(other, data["A"], "http://z/other-a.jpg", "zillow", "kitchen", now=NOW)
    other.commit()

    manifest = store.read_manifest(PROP)
    assert manifest is not None
    urls = manifest.urls
    assert urls["http://z/a.jpg"].status == UrlStatus.REMOVED
    assert urls["http://r/e.jpg"].status == UrlStatus.STALE
    assert urls["http://r/c.jpg"].status == UrlStatus.STALE
    assert urls["http://z/d.jpg"].status == UrlStatus.ACTIVE
    ids = {k: r.photo.id for k, r in results.items()}
    names = {p.id: p.name for p in manifest.photos}
    return Filled(ids=ids, names={k: names[i] for k, i in ids.items()}, data=data,
                  files={k: store.fs.read_bytes(f"processed/{PROP}/{names[i]}")
                         for k, i in ids.items()},
                  shared=data["A"])


def _check_consistent(store: ImageStore, property_hash: str = PROP, *,
                      settled: bool = False) -> None:
    """Every file the manifest lists exists; no photo is both stored and archived. ``settled``
    (after a second archival run): no archived photo still has a processed copy either."""
    manifest = store.read_manifest(property_hash)
    assert manifest is not None
    for p in manifest.photos:
        assert store.fs.exists(f"processed/{property_hash}/{p.name}"), p.name
        assert store.fs.exists(f"processed/{property_hash}/{p.name[:-4]}.json"), p.name
        assert store.has_blob(p.blob_sha, p.ext)
    for a in manifest.archived:
        assert store.fs.exists(a.path), a.path
        assert store.fs.exists(a.path[:-4] + ".json"), a.path
        assert store.has_blob(a.photo.blob_sha, a.photo.ext)
    ids = [p.id for p in manifest.photos] + [a.photo.id for a in manifest.archived]
    assert len(ids) == len(set(ids)), "a photo is both stored and archived"
    if settled:
        for a in manifest.archived:
            assert not store.fs.exists(f"processed/{property_hash}/{a.photo.name}"), a.path
            assert not store.fs.exists(f"processed/{property_hash}/{a.photo.name[:-4]}.json")


def _processed_photos(store: ImageStore, property_hash: str = PROP) -> set[str]:
    return {k.rsplit("/", 1)[-1] for k in store.fs.list(f"processed/{property_hash}")
            if k.endswith(".jpg")}


def _archive_files(store: ImageStore, property_hash: str = PROP) -> set[str]:
    return {k.rsplit("/", 1)[-1] for k in store.fs.list(f"archive/{property_hash}")}


def _storage_class(store: ImageStore, key: str) -> str:
    return store.fs.fs.info(store.fs.path(key))["StorageClass"]


def _snapshot(store: ImageStore) -> dict[str, bytes]:
    root = store.fs.root
    return {path[len(root) + 1:]: bytes(store.fs.fs.cat_file(path))
            for path in store.fs.fs.find(root)}


# ---- selection --------------------------------------------------------------------------

def test_which_photos_are_archivable(store: ImageStore) -> None:
    f = _fill(store)
    manifest = store.read_manifest(PROP)
    seen = {k: last_shown(manifest, next(p for p in manifest.photos if p.id == i))
            for k, i in f.ids.items()}
    assert seen == {"A": T0, "B": None, "C": T0 + timedelta(days=60), "D": None, "E": T0}


# ---- archiving --------------------------------------------------------------------------

def test_archive_moves_old_photos_and_keeps_everything(store: ImageStore) -> None:
    f = _fill(store)
    build_gallery(store)
    updated_before = store.read_manifest(PROP).updated
    sizes = {k: len(v) for k, v in f.files.items()}

    report = archive_old_photos(store, older_than_days=90, now=NOW)

    assert report.errors == {}
    assert (report.properties_scanned, report.photos_archived) == (2, 2)
    assert report.bytes_archived == sizes["A"] + sizes["E"]
    assert report.cutoff == T0 + timedelta(days=30)
    assert [(p.property_hash, sorted(p.archived)) for p in report.properties] == [
        (PROP, sorted([f.names["A"], f.names["E"]]))]
    assert report.finished == 0
    assert "archived 2 photos" in report.summary_line()
    assert "(processed copies removed next run)" in report.summary_line()
    # files copied, same names, same bytes; sidecars copied too and carry the record; the
    # processed copies stay until the next run (an extraction run may commit a manifest read
    # before this one)
    assert _processed_photos(store) == set(f.names.values())
    assert _archive_files(store) == {f.names[k] for k in "AE"} | {
        f.names[k][:-4] + ".json" for k in "AE"}
    for k in "AE":
        assert store.fs.read_bytes(f"archive/{PROP}/{f.names[k]}") == f.files[k]
        assert store.fs.read_bytes(f"processed/{PROP}/{f.names[k]}") == f.files[k]
        assert store.fs.exists(f"processed/{PROP}/{f.names[k][:-4]}.json")
        sidecar = store.fs.read_json(f"archive/{PROP}/{f.names[k][:-4]}.json")
        assert (sidecar["id"], sidecar["archive"]["photo"]["id"]) == (f.ids[k], f.ids[k])
    # the manifest moved the records, kept the URLs, left "updated" alone
    manifest = store.read_manifest(PROP)
    assert {p.id for p in manifest.photos} == {f.ids[k] for k in "BCD"}
    archived = {a.photo.id: a for a in manifest.archived}
    assert set(archived) == {f.ids["A"], f.ids["E"]}
    a = archived[f.ids["A"]]
    assert (a.path, a.archived_at, a.last_seen) == (f"archive/{PROP}/{f.names['A']}", NOW, T0)
    assert a.photo.name == f.names["A"] and a.photo.sources[0].url == "http://z/a.jpg"
    assert manifest.urls["http://z/a.jpg"].image_id == f.ids["A"]
    assert manifest.updated == updated_before
    _check_consistent(store)
    _check_consistent(store, OTHER)
    # blobs: none deleted; on S3 the archive copies are cold, and so is E's blob (only
    # archived photos use it), but not A's (OTHER still shows the same bytes)
    blob = {k: store.blob_key(archived[f.ids[k]].photo.blob_sha, "jpg") for k in "AE"}
    assert all(store.fs.exists(key) for key in blob.values())
    if store.fs.s3:
        assert a.storage_class == "GLACIER_IR" and report.storage_class == "GLACIER_IR"
        assert _storage_class(store, a.path) == "GLACIER_IR"
        assert _storage_class(store, f"archive/{PROP}/{f.names['A'][:-4]}.json") == "STANDARD"
        assert _storage_class(store, blob["E"]) == "GLACIER_IR"
        assert _storage_class(store, blob["A"]) == "STANDARD"
        assert report.blobs_cold == 1
    else:
        assert a.storage_class is None and report.blobs_cold == 0
    # the gallery no longer shows them (page rewritten by the archival, and when rebuilt)
    for rebuilt in (False, True):
        if rebuilt:
            build_gallery(store)
        page = store.fs.read_bytes(f"processed/{PROP}/index.html").decode()
        assert "3 photos" in page
        assert f.ids["A"] not in page and f.names["A"] not in page
        assert f.ids["E"] not in page and f.ids["B"] in page
    assert "3 photos" in store.fs.read_bytes("index.html").decode()
    # the next run deletes the processed copies (the photos are still archived), nothing else
    again = archive_old_photos(store, older_than_days=90, now=NOW)
    assert (again.photos_archived, again.finished, again.orphans_removed, again.errors) == (
        0, 2, 0, {})
    assert "2 processed copies of earlier archivals removed" in again.summary_line()
    assert "next run" not in again.summary_line()
    assert [(p.property_hash, p.archived, p.finished) for p in again.properties] == [
        (PROP, [], 2)]
    assert _processed_photos(store) == {f.names[k] for k in "BCD"}
    for k in "AE":
        assert not store.fs.exists(f"processed/{PROP}/{f.names[k][:-4]}.json")
        assert store.fs.read_bytes(f"archive/{PROP}/{f.names[k]}") == f.files[k]
    assert store.read_manifest(PROP) == manifest
    page = store.fs.read_bytes(f"processed/{PROP}/index.html").decode()
    assert "3 photos" in page and f.ids["A"] not in page
    _check_consistent(store, settled=True)
    # then there is nothing left to do
    third = archive_old_photos(store, older_than_days=90, now=NOW)
    assert (third.photos_archived, third.finished, third.orphans_removed, third.errors) == (
        0, 0, 0, {})
    assert store.read_manifest(PROP) == manifest


def test_new_names_never_take_an_archived_name(store: ImageStore) -> None:
    f = _fill(store)
    archive_old_photos(store, older_than_days=90, now=NOW)
    ps = store.open_property(PROP)
    # same category, source and day as A: would have been A's name
    result = _add(ps, jpeg(40, SIZE), "http://z/new.jpg", "zillow", "kitchen")
    assert result.action == "new"
    assert result.photo.name != f.names["A"]
    assert parse_name(result.photo.name).seq == 2


def test_dry_run_changes_nothing(store: ImageStore) -> None:
    f = _fill(store)
    before = _snapshot(store)
    report = archive_old_photos(store, older_than_days=90, now=NOW, dry_run=True)
    assert _snapshot(store) == before
    assert report.dry_run and report.errors == {}
    assert report.photos_archived == 2
    assert report.bytes_archived == len(f.files["A"]) + len(f.files["E"])
    assert sorted(report.properties[0].archived) == sorted([f.names["A"], f.names["E"]])
    assert report.blobs_cold == (1 if store.fs.s3 else 0)
    assert "would archive 2 photos" in report.summary_line()
    assert "next run" not in report.summary_line()
    # after an archival: the processed copies the next run would delete
    archive_old_photos(store, older_than_days=90, now=NOW)
    before = _snapshot(store)
    dry = archive_old_photos(store, older_than_days=90, now=NOW, dry_run=True)
    assert _snapshot(store) == before
    assert (dry.photos_archived, dry.finished) == (0, 2)
    assert "2 processed copies of earlier archivals to remove" in dry.summary_line()
    assert "to remove" in dry.markdown()
    # a longer threshold archives nothing
    assert archive_old_photos(store, older_than_days=200, now=NOW,
                              dry_run=True).photos_archived == 0


def test_bad_manifest_is_reported_and_the_others_archived(store: ImageStore) -> None:
    f = _fill(store)
    garbage = b'{"photos": "garbage"'
    store.fs.write_bytes("processed/deadbeef/manifest.json", garbage)
    report = archive_old_photos(store, older_than_days=90, now=NOW)
    # the gallery index reads every manifest too, and fails on the bad one
    assert set(report.errors) == {"deadbeef", "(gallery)"}
    assert "not valid JSON" in report.errors["deadbeef"][0]
    assert "deadbeef" in report.markdown() and not report.ok
    assert report.properties_scanned == 3 and report.photos_archived == 2
    assert {a.photo.id for a in store.read_manifest(PROP).archived} == {f.ids["A"], f.ids["E"]}
    assert store.fs.read_bytes("processed/deadbeef/manifest.json") == garbage
    # unsure which blobs stored photos use: none is moved to a colder class
    assert report.blobs_cold == 0
    if store.fs.s3:
        assert any("not every manifest" in n for n in report.notes)


def test_skipped_properties_are_left_alone(store: ImageStore) -> None:
    f = _fill(store)
    report = archive_old_photos(store, older_than_days=90, now=NOW, skip={PROP})
    assert report.skipped == [PROP] and report.photos_archived == 0
    assert _processed_photos(store) == set(f.names.values())


def test_arguments_are_checked(store: ImageStore) -> None:
    with pytest.raises(ValueError, match="restore request"):
        archive_old_photos(store, older_than_days=90, storage_class="GLACIER")
    with pytest.raises(ValueError, match="> 0"):
        archive_old_photos(store, older_than_days=0)


# ---- crash safety -----------------------------------------------------------------------

def test_failed_delete_of_processed_copies_is_finished_by_the_next_run(
        store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _fill(store)
    real_delete = StoreFS.delete
    first = archive_old_photos(store, older_than_days=90, now=NOW)  # deletes nothing there
    assert first.errors == {} and (first.photos_archived, first.finished) == (2, 0)

    def failing_delete(self: StoreFS, key: str) -> None:
        if key.startswith(f"processed/{PROP}/"):
            raise StoreError(f"cannot delete {key!r}: simulated outage")
        real_delete(self, key)

    monkeypatch.setattr(StoreFS, "delete", failing_delete)
    report = archive_old_photos(store, older_than_days=90, now=NOW)
    assert list(report.errors) == [PROP]
    assert len(report.errors[PROP]) == 2  # A and E
    assert all("not deleted yet" in e and "simulated outage" in e for e in report.errors[PROP])
    assert (report.photos_archived, report.finished) == (0, 0)
    _check_consistent(store)
    assert f.names["A"] in _processed_photos(store)  # the processed copies are left

    monkeypatch.setattr(StoreFS, "delete", real_delete)
    rerun = archive_old_photos(store, older_than_days=90, now=NOW)
    assert rerun.errors == {} and (rerun.photos_archived, rerun.finished) == (0, 2)
    assert _processed_photos(store) == {f.names[k] for k in "BCD"}
    assert not store.fs.exists(f"processed/{PROP}/{f.names['A'][:-4]}.json")
    _check_consistent(store, settled=True)


def test_crash_before_commit_then_rerun(store: ImageStore,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    f = _fill(store)

    class Killed(BaseException):
        pass

    def killed(self: PropertyStore, *, touch: bool = True) -> bool:
        raise Killed

    monkeypatch.setattr(PropertyStore, "commit", killed)
    with pytest.raises(Killed):
        archive_old_photos(store, older_than_days=90, now=NOW)
    monkeypatch.undo()
    # copies made, manifest untouched: both photos still stored and present
    manifest = store.read_manifest(PROP)
    assert manifest.archived == [] and len(manifest.photos) == 5
    assert f.names["A"] in _archive_files(store)
    _check_consistent(store)
    # meanwhile a site shows A again: the rerun archives E only and drops A's stray copy
    ps = store.open_property(PROP)
    assert ps.mark_seen("zillow", "http://z/a.jpg", now=NOW)
    ps.commit()
    report = archive_old_photos(store, older_than_days=90, now=NOW)
    assert report.errors == {}
    assert (report.photos_archived, report.orphans_removed) == (1, 1)
    assert _archive_files(store) == {f.names["E"], f.names["E"][:-4] + ".json"}
    assert {a.photo.id for a in store.read_manifest(PROP).archived} == {f.ids["E"]}
    _check_consistent(store)


def _kill_at_write(fs: StoreFS, k: int, exc: type[BaseException]) -> None:
    """Make the ``k``-th write (write, copy or delete) of ``fs`` raise ``exc`` instead."""
    writes = [0]

    def counted(method):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            writes[0] += 1
            if writes[0] == k:
                raise exc
            return method(*args, **kwargs)
        return wrapper

    for name in ("write_bytes", "copy", "delete"):
        setattr(fs, name, counted(getattr(fs, name)))


def test_killed_at_every_write_then_reruns_complete(tmp_path: Path) -> None:
    """Kill a sequence of two archival runs (the first archives, the second deletes the
    processed copies) before each of their writes in turn (local store, copied per case):
    every manifest stays valid with every listed file present, and two plain reruns end in
    the same state as the uninterrupted sequence."""
    import shutil

    base = ImageStore(str(tmp_path / "base"))
    _fill(base)
    reference = ImageStore(str(tmp_path / "reference"))
    shutil.copytree(base.fs.root, reference.fs.root, dirs_exist_ok=True)
    archive_old_photos(reference, older_than_days=90, now=NOW)
    after_first = _snapshot(reference)
    archive_old_photos(reference, older_than_days=90, now=NOW)
    expected = _snapshot(reference)
    assert after_first != expected  # the second run has writes of its own to kill
    _check_consistent(reference, settled=True)

    class Killed(BaseException):
        pass

    crashes = 0
    for k in range(1, 100):
        store = ImageStore(str(tmp_path / f"run{k}"))
        shutil.copytree(base.fs.root, store.fs.root, dirs_exist_ok=True)
        _kill_at_write(store.fs, k, Killed)
        try:
            for _ in range(2):
                archive_old_photos(store, older_than_days=90, now=NOW)
        except Killed:
            crashes += 1
        else:
            break  # k is past the last write: every crash point was tried
        fresh = ImageStore(store.fs.root)
        _check_consistent(fresh)
        _check_consistent(fresh, OTHER)
        for _ in range(2):
            rerun = archive_old_photos(fresh, older_than_days=90, now=NOW)
            assert rerun.errors == {}, (k, rerun.errors)
            _check_consistent(fresh)
        assert _snapshot(fresh) == expected, k
    # first run: 2 photos x (copy, sidecar), the manifest, the page and 3 thumbnails, the
    # index; second run: the page, 2 photos x (photo, sidecar) deleted, the index. The kill
    # landed before each one of them
    assert crashes == 16


# ---- concurrency: an extraction run committing around the archival ---------------------

def test_extraction_commit_read_before_the_archival_loses_no_photo(store: ImageStore) -> None:
    """The race the two-run deletion exists for: an extraction run reads the manifest, the
    archival archives A and E, then the extraction commits the manifest it read plus its own
    change (A shown again). A and E are stored again, and their processed copies are still
    there; the next archival sweeps A's archive copy (A is live and no longer qualifies) and
    archives E again; the run after deletes E's processed copies only."""
    f = _fill(store)
    child = store.open_property(PROP)  # the extraction run reads the manifest first
    first = archive_old_photos(store, older_than_days=90, now=NOW)
    assert first.errors == {} and first.photos_archived == 2
    assert {a.photo.id for a in store.read_manifest(PROP).archived} == {f.ids["A"], f.ids["E"]}

    later = NOW + timedelta(hours=1)
    assert child.mark_seen("zillow", "http://z/a.jpg", now=later)  # A is stored in its copy
    assert child.commit()  # the manifest as read before the archival, plus A seen now
    manifest = store.read_manifest(PROP)
    assert manifest.archived == [] and {p.id for p in manifest.photos} == set(f.ids.values())
    assert manifest.urls["http://z/a.jpg"].status == UrlStatus.ACTIVE
    for k in "ABCDE":  # every listed photo is there and readable
        assert store.fs.read_bytes(f"processed/{PROP}/{f.names[k]}") == f.files[k]
        assert store.fs.read_json(f"processed/{PROP}/{f.names[k][:-4]}.json")["id"] == f.ids[k]
    _check_consistent(store)

    second = archive_old_photos(store, older_than_days=90, now=later)
    assert second.errors == {}
    assert (second.photos_archived, second.orphans_removed, second.finished) == (1, 1, 0)
    manifest = store.read_manifest(PROP)
    assert f.ids["A"] in {p.id for p in manifest.photos}
    assert {a.photo.id for a in manifest.archived} == {f.ids["E"]}
    assert store.fs.read_bytes(f"processed/{PROP}/{f.names['A']}") == f.files["A"]
    assert _archive_files(store) == {f.names["E"], f.names["E"][:-4] + ".json"}
    assert f.names["E"] in _processed_photos(store)  # archived again: deleted next run
    _check_consistent(store)

    third = archive_old_photos(store, older_than_days=90, now=later)
    assert third.errors == {} and (third.photos_archived, third.finished) == (0, 1)
    assert _processed_photos(store) == {f.names[k] for k in "ABCD"}
    assert store.fs.read_bytes(f"processed/{PROP}/{f.names['A']}") == f.files["A"]
    assert store.fs.read_bytes(f"archive/{PROP}/{f.names['E']}") == f.files["E"]
    page = store.fs.read_bytes(f"processed/{PROP}/index.html").decode()
    assert "4 photos" in page and f.ids["A"] in page and f.ids["E"] not in page
    _check_consistent(store, settled=True)


def test_photo_restored_while_the_next_run_deletes_keeps_its_processed_copy(
        store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run that deletes the processed copies of earlier archivals reads the manifest again
    right before deleting: an extraction run that restored A meanwhile (A shown again: copied
    back, committed, archive copy deleted) keeps A's processed copy; E's copies go."""
    import phx_images.gallery as gallery

    f = _fill(store)
    archive_old_photos(store, older_than_days=90, now=NOW)
    later = NOW + timedelta(hours=1)
    real_page = gallery.write_property_page
    fired = []

    def page_then_extraction_commits(store_: ImageStore, manifest):  # type: ignore[no-untyped-def]
        key = real_page(store_, manifest)
        if manifest.property_hash == PROP and not fired:
            fired.append(True)
            child = store_.open_property(PROP)
            assert child.mark_seen("zillow", "http://z/a.jpg", now=later)  # restores A
            assert child.commit()
        return key

    monkeypatch.setattr(gallery, "write_property_page", page_then_extraction_commits)
    report = archive_old_photos(store, older_than_days=90, now=later)
    assert fired and report.errors == {}
    assert (report.photos_archived, report.finished) == (0, 1)  # E's copies only
    manifest = store.read_manifest(PROP)
    assert f.ids["A"] in {p.id for p in manifest.photos}
    assert {a.photo.id for a in manifest.archived} == {f.ids["E"]}
    assert store.fs.read_bytes(f"processed/{PROP}/{f.names['A']}") == f.files["A"]
    assert _processed_photos(store) == {f.names[k] for k in "ABCD"}
    assert _archive_files(store) == {f.names["E"], f.names["E"][:-4] + ".json"}
    _check_consistent(store, settled=True)


# ---- seen again -------------------------------------------------------------------------

def test_url_seen_again_restores_without_download(store: ImageStore) -> None:
    """The path of a URL known to be stored (needs_download False, then mark_seen)."""
    f = _fill(store)
    archive_old_photos(store, older_than_days=90, now=NOW)
    later = NOW + timedelta(days=3)
    ps = store.open_property(PROP)
    assert not ps.needs_download("http://z/a.jpg")
    assert ps.mark_seen("zillow", "http://z/a.jpg", now=later)
    ps.commit()
    manifest = store.read_manifest(PROP)
    restored = next(p for p in manifest.photos if p.id == f.ids["A"])
    assert restored.name == f.names["A"]
    assert {a.photo.id for a in manifest.archived} == {f.ids["E"]}
    assert store.fs.read_bytes(f"processed/{PROP}/{f.names['A']}") == f.files["A"]
    assert store.fs.read_json(f"processed/{PROP}/{f.names['A'][:-4]}.json")["id"] == f.ids["A"]
    assert _archive_files(store) == {f.names["E"], f.names["E"][:-4] + ".json"}
    entry = manifest.urls["http://z/a.jpg"]
    assert (entry.status, entry.last_seen) == (UrlStatus.ACTIVE, later)
    if store.fs.s3:  # back in the hot class
        assert _storage_class(store, f"processed/{PROP}/{f.names['A']}") == "STANDARD"
    _check_consistent(store)
    # shown recently now: the next archival keeps it
    assert archive_old_photos(store, older_than_days=90,
                              now=later + timedelta(days=1)).photos_archived == 0


def test_redownloaded_photo_is_restored_not_added(store: ImageStore) -> None:
    """The pipeline's path today: the fetch step only skips URLs of stored photos, so an
    archived photo's URL is downloaded again; integrating it restores the archived photo."""
    f = _fill(store)
    archive_old_photos(store, older_than_days=90, now=NOW)
    ps = store.open_property(PROP)
    later = NOW + timedelta(days=3)
    same = _add(ps, f.data["A"], "http://z/a.jpg", "zillow", "kitchen", now=later)
    base = photo(15, SIZE)  # E's picture, resized and recompressed, from a new URL
    near = _add(ps, encode(base.resize((600, 400)), "JPEG", quality=70), "http://m/e-o.jpg",
                "phoenixmls", "living_room", now=later)
    ps.commit()
    assert (same.action, same.restored, same.photo.id) == ("duplicate", True, f.ids["A"])
    assert (near.restored, near.photo.id) == (True, f.ids["E"])
    manifest = store.read_manifest(PROP)
    assert len(manifest.photos) == 5 and manifest.archived == []
    assert {p.id for p in manifest.photos} == set(f.ids.values())
    assert _archive_files(store) == set()
    assert store.fs.read_bytes(f"processed/{PROP}/{f.names['A']}") == f.files["A"]
    _check_consistent(store)


def test_restore_falls_back_to_the_blob(store: ImageStore) -> None:
    f = _fill(store)
    archive_old_photos(store, older_than_days=90, now=NOW)
    store.fs.delete(f"archive/{PROP}/{f.names['A']}")  # e.g. a lifecycle rule took it
    ps = store.open_property(PROP)
    assert ps.mark_seen("zillow", "http://z/a.jpg", now=NOW)
    ps.commit()
    assert store.fs.read_bytes(f"processed/{PROP}/{f.names['A']}") == f.files["A"]
    _check_consistent(store)


def test_missing_archive_copy_is_rebuilt(store: ImageStore) -> None:
    f = _fill(store)
    archive_old_photos(store, older_than_days=90, now=NOW)
    store.fs.delete(f"archive/{PROP}/{f.names['E']}")
    report = archive_old_photos(store, older_than_days=90, now=NOW)
    assert report.errors == {}
    assert store.fs.read_bytes(f"archive/{PROP}/{f.names['E']}") == f.files["E"]
    if store.fs.s3:
        assert _storage_class(store, f"archive/{PROP}/{f.names['E']}") == "GLACIER_IR"


def test_unlisted_archive_file_of_unknown_photo_is_kept_and_reported(store: ImageStore) -> None:
    f = _fill(store)
    archive_old_photos(store, older_than_days=90, now=NOW)
    # an older writer rewrote the manifest without the "archived" list
    manifest = store.read_manifest(PROP)
    raw = manifest.model_dump(mode="json")
    raw.pop("archived")
    store.fs.write_json(f"processed/{PROP}/manifest.json", raw)
    report = archive_old_photos(store, older_than_days=90, now=NOW)
    assert list(report.errors) == [PROP] and len(report.errors[PROP]) == 2
    assert f.ids["A"] in " ".join(report.errors[PROP])
    assert _archive_files(store) == {f.names[k] for k in "AE"} | {
        f.names[k][:-4] + ".json" for k in "AE"}


# ---- settings and flow ------------------------------------------------------------------

def test_setting_default() -> None:
    assert Settings().orchestration.archive_after_days == 90


def test_flow_is_a_prefect_flow() -> None:
    from prefect import Flow

    from flows.archive import archive_photos, properties_of

    assert isinstance(archive_photos, Flow) and archive_photos.name == "archive-photos"
    assert set(archive_photos.parameters.properties) == {"older_than_days", "dry_run"}
    address = "4732 W Davis Rd, Glendale, AZ 85306"
    from phx_images.properties import from_addresses

    prop = from_addresses([address]).properties[0]
    params = [{"properties": [prop.model_dump(mode="json"), {"bad": 1}]}, {"properties": None},
              {}]
    assert properties_of(params) == {prop.property_hash}


def test_pipeline_integration_restores_a_reseen_photo(tmp_path: Path) -> None:
    """Through ``Engine.integrate`` (what the flows' store task runs), at real times: a photo
    whose listing dropped it is archived later; when the listing shows it again, the run's
    download is folded back into the archived photo (restored), not stored as a new one."""
    import asyncio

    from phx_images.categorize.captions import CaptionCategorizer
    from phx_images.images.hashing import to_hex
    from phx_images.models import Listing, ListingStatus, PhotoRef
    from phx_images.pipeline import LOST_FILES, Engine, PhotoFetch, known_fetch
    from phx_images.properties import from_addresses
    from phx_images.store.models import utcnow

    settings = Settings(data_dir=tmp_path, store_url=str(tmp_path / "store"))
    store = ImageStore.from_settings(settings)
    engine = Engine(settings, None, store, CaptionCategorizer())  # type: ignore[arg-type]
    prop = from_addresses(["4732 W Davis Rd, Glendale, AZ 85306"]).properties[0]
    data = {1: jpeg(61, SIZE), 2: jpeg(62, SIZE)}
    urls = {n: f"https://photos.zillowstatic.com/fp/{n}-cc_ft_1536.jpg" for n in data}

    def fetch(n: int) -> PhotoFetch:
        std = standardize(data[n], settings.images)
        phash, dhash = perceptual_hashes(std.data)
        info = inspect(data[n], max_pixels=S.max_pixels)
        return PhotoFetch(
            source="zillow", source_photo_id=str(n), url=urls[n], caption="Kitchen",
            content_sha=hashlib.sha256(data[n]).hexdigest(), raw_format=info.format,
            raw_width=info.width, raw_height=info.height, raw_bytes=info.size_bytes,
            blob_sha=store.put_blob(std.data, std.ext), std_format=std.format, ext=std.ext,
            width=std.width, height=std.height, reencoded=std.reencoded,
            phash=to_hex(phash), dhash=to_hex(dhash))

    def run(shown: list[int], fetches: list[PhotoFetch]):  # type: ignore[no-untyped-def]
        listing = Listing(source="zillow", status=ListingStatus.FOUND, photos=[
            PhotoRef(source="zillow", source_photo_id=str(n), best_url=urls[n],
                     caption="Kitchen") for n in shown])
        return asyncio.run(engine.integrate(prop, [listing], fetches, run_id="t",
                                            requester="test"))

    first = run([1, 2], [fetch(1), fetch(2)])
    assert (first.new, first.photos_total) == (2, 2)
    run([2], [])  # the listing no longer shows photo 1: its URL is removed
    manifest = store.read_manifest(prop.property_hash)
    assert manifest.urls[urls[1]].status == UrlStatus.REMOVED
    photo1 = next(p for p in manifest.photos if p.kept_url == urls[1])

    report = archive_old_photos(store, older_than_days=90, now=utcnow() + timedelta(days=91))
    assert report.photos_archived == 1 and report.errors == {}
    assert store.fs.exists(f"archive/{prop.property_hash}/{photo1.name}")

    again = run([1, 2], [fetch(1)])  # the site shows it again; the fetch step downloaded it
    assert (again.new, again.duplicate, again.photos_total) == (0, 1, 2)
    manifest = store.read_manifest(prop.property_hash)
    assert manifest.archived == []
    restored = next(p for p in manifest.photos if p.id == photo1.id)
    assert restored.name == photo1.name
    assert manifest.urls[urls[1]].status == UrlStatus.ACTIVE
    assert not store.fs.exists(f"archive/{prop.property_hash}/{photo1.name}")
    page = store.fs.read_bytes(f"processed/{prop.property_hash}/index.html").decode()
    assert photo1.id in page and "2 photos" in page
    _check_consistent(store, prop.property_hash)

    # Archived again, then both its archive copy and its blob are deleted behind our back.
    # The next run sees the URL as stored (no fetch task) but cannot restore it: it says so
    # instead of counting it as reused, and the run after downloads it again.
    run([2], [])
    archive_old_photos(store, older_than_days=90, now=utcnow() + timedelta(days=91))
    store.fs.delete(f"archive/{prop.property_hash}/{photo1.name}")
    store.fs.delete(store.blob_key(photo1.blob_sha, photo1.ext))
    assert urls[1] in asyncio.run(engine.stored_urls(prop.property_hash))
    lost = run([1, 2], [known_fetch(PhotoRef(source="zillow", source_photo_id="1",
                                             best_url=urls[1]))])
    assert (lost.reused, lost.failed_photos) == (0, 1)
    assert lost.sources["zillow"].failures == [f"1: {LOST_FILES}"]
    assert urls[1] not in asyncio.run(engine.stored_urls(prop.property_hash))
    again = run([1, 2], [fetch(1)])
    assert (again.new, again.photos_total) == (1, 2)
    _check_consistent(store, prop.property_hash)


@pytest.mark.slow
def test_flow_end_to_end_on_a_temporary_prefect_server(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The flow itself, on Prefect's test harness (a temporary server on a free port): the
    setting decides the threshold, a property an unfinished extraction run names is skipped,
    a bad manifest fails the run with the report, and the summary artifact is written. And
    the in-flight read misses no run when runs finish while it pages."""
    import asyncio
    import inspect

    from prefect.client.orchestration import PrefectClient, get_client
    from prefect.states import Completed, Scheduled
    from prefect.testing.utilities import prefect_test_harness

    import flows.archive
    from flows.archive import archive_photos, properties_in_flight
    from flows.property import extract_property
    from phx_images.properties import from_addresses

    store = ImageStore(str(tmp_path / "store"))
    f = _fill(store)
    busy = from_addresses(["9 Busy Ln, Tempe, AZ 85281"]).properties[0]
    ps = store.open_property(busy.property_hash)
    _add(ps, jpeg(70, SIZE), "http://z/busy.jpg")
    ps.finish_source("zillow", set(), complete=True, now=T0)
    ps.commit()
    monkeypatch.setenv("PHX_STORE_URL", str(tmp_path / "store"))
    # the flow runs at the real time: a threshold that takes A and E (last shown T0) but not
    # C (shown T0 + 60 days)
    days = (datetime.now(UTC) - (T0 + timedelta(days=45))).days
    monkeypatch.setenv("PHX_ORCHESTRATION__ARCHIVE_AFTER_DAYS", str(days))

    others = from_addresses(["1 Page Ln, Tempe, AZ 85281", "2 Page Ln, Tempe, AZ 85281",
                             "3 Page Ln, Tempe, AZ 85281"]).properties
    real_read = PrefectClient.read_flow_runs

    async def paging_while_a_run_finishes(client):  # type: ignore[no-untyped-def]
        """Pages of one run; the first run read finishes right after its page, which shifts
        the later offset pages past a run still in flight: the completion by id finds it."""
        for prop in others:
            await client.create_flow_run(
                extract_property, state=Scheduled(),
                parameters={"properties": [prop.model_dump(mode="json")],
                            "sources": ["zillow"]})
        calls = []

        async def read_and_finish_the_first(self, **kwargs):  # type: ignore[no-untyped-def]
            runs = await real_read(self, **kwargs)
            calls.append(kwargs)
            if len(calls) == 1:
                await self.set_flow_run_state(runs[0].id, Completed(), force=True)
            return runs

        with monkeypatch.context() as m:
            m.setattr(flows.archive, "PAGE_SIZE", 1)
            m.setattr(PrefectClient, "read_flow_runs", read_and_finish_the_first)
            found = await properties_in_flight()
        offset_pages = [c for c in calls if c["flow_run_filter"].id is None]
        return found, len(offset_pages), len(calls)

    async def scenario():  # type: ignore[no-untyped-def]
        async with get_client() as client:
            paging = await paging_while_a_run_finishes(client)
            await client.create_flow_run(
                extract_property, state=Scheduled(),
                parameters={"properties": [busy.model_dump(mode="json")],
                            "sources": ["zillow"]})
            state = await archive_photos(return_state=True)
            report = state.result()
            if inspect.isawaitable(report):
                report = await report
            artifacts = await client.read_artifacts()
            store.fs.write_bytes("processed/deadbeef/manifest.json", b"{")
            failed = await archive_photos(dry_run=True, return_state=True)
        return state, report, artifacts, failed, paging

    with prefect_test_harness(server_startup_timeout=120):
        state, report, artifacts, failed, paging = asyncio.run(scenario())

    found, offset_pages, calls = paging
    # offset pages: run 1, then (run 1 finished) run 3 at offset 1, then nothing at offset 2;
    # run 2 is found by the completion, which then finds nothing more
    assert found == {p.property_hash for p in others}
    assert (offset_pages, calls) == (3, 5)

    assert state.is_completed(), state.message
    assert report.older_than_days == days and report.skipped == [busy.property_hash]
    assert report.photos_archived == 2
    assert {a.photo.id for a in store.read_manifest(PROP).archived} == {f.ids["A"], f.ids["E"]}
    assert len(store.read_manifest(busy.property_hash).photos) == 1  # left alone
    summary = next(a for a in artifacts if a.key == "archive-summary")
    assert "archived 2 photos" in str(summary.data)
    assert failed.is_failed() and "with errors" in (failed.message or "")
