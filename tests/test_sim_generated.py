"""Generated properties (``extra_properties`` N, ``extra_photos`` K): in the truth and the CSV
like the sample ones, found by every site's search over real HTTP, photos served as valid and
distinct JPEGs, and no change at all for N = 0 (docs/simulator.md, Generated properties)."""

from __future__ import annotations

import io
import itertools
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imagehash
import pytest
from curl_cffi import requests
from PIL import Image

from phx_sim import Simulator
from phx_sim.catalog import load_catalog, load_csv_text
from phx_sim.testing import solve_zillow_challenge
from tests.test_sim_sites import (
    pmls_thumbs,
    redfin_json,
    redfin_photo_urls,
    site_urls,
    zillow_photos,
    zillow_property,
)

N, K = 3, 6
SAMPLE = 32
COMMITTED_CSV = Path(__file__).parent.parent / "data" / "phx_homes.csv"
PH, DH = 8, 10


@pytest.fixture(scope="module")
def big_sim(sim_cache_dir: Path) -> Iterator[Any]:
    with Simulator(seed=7, cache_dir=sim_cache_dir, extra_properties=N,
                   extra_photos=K) as handle:
        yield handle


@pytest.fixture(scope="module")
def truth(big_sim: Any) -> dict[str, Any]:
    return big_sim.truth()


@pytest.fixture(scope="module")
def extras(truth: dict[str, Any]) -> list[dict[str, Any]]:
    return truth["properties"][SAMPLE:]


@pytest.fixture(scope="module")
def http(big_sim: Any) -> Iterator[requests.Session]:
    """A Chrome-like session that has passed Zillow's JS challenge (solved in Python)."""
    session = requests.Session(impersonate="chrome")
    page = session.get(big_sim.urls["zillow"] + "/")
    name, value = solve_zillow_challenge(page.text)
    session.cookies.set(name, value)
    yield session
    session.close()


# -- truth and CSV --------------------------------------------------------------------------------
def test_extras_in_truth_like_sample(truth: dict[str, Any], extras: list[dict[str, Any]],
                                     sim: Any) -> None:
    props = truth["properties"]
    assert len(props) == SAMPLE + N
    assert [p["key"] for p in extras] == ["p33", "p34", "p35"]
    sample_truth = sim.truth()  # the session's plain simulator: the sample alone
    assert props[:SAMPLE] == sample_truth["properties"]
    assert truth["hard_negatives"] == sample_truth["hard_negatives"]
    assert truth["unknown_addresses"] == sample_truth["unknown_addresses"]
    assert set(truth) == set(sample_truth)
    photos = {ph["id"]: ph for ph in truth["photos"]}
    for p in extras:
        assert set(p) == set(props[0])  # the same keys as a sample property
        assert set(p["ids"]) == set(props[0]["ids"])
        assert set(p["facts"]) == set(props[0]["facts"])
        assert "assessor" in p["on_sites"]
        listed = [s for s in ("zillow", "redfin", "phoenixmls") if s in p["on_sites"]]
        assert len(listed) >= 2
        assert len(p["photo_ids"]) == K and set(p["photo_ids_per_site"]) == set(listed)
        for pid in p["photo_ids"]:
            ph = photos[pid]
            assert set(ph) == set(truth["photos"][0])
            assert ph["properties"] == [p["key"]] and len(ph["best_per_site"]) >= 2
            assert set(ph["sites"]) <= set(listed)
            assert ph["best"] in {v["url"] for v in ph["variants"]}
        first = photos[p["photo_ids"][0]]
        assert set(first["sites"]) == set(listed)  # the first photo is on every listing
        for site in ("zillow", "phoenixmls"):
            if site in listed:
                assert len(truth["carousels"][site][p["key"]]) == 3
    assert len(photos) == len(truth["photos"]) == len(sample_truth["photos"]) + N * K


def test_addresses_and_ids_unique(truth: dict[str, Any], extras: list[dict[str, Any]]) -> None:
    props = truth["properties"]
    addresses = [p["full_address"].lower() for p in props]
    addresses += [a.lower() for a in truth["unknown_addresses"]]
    assert len(set(addresses)) == len(addresses)
    streets = [p["street"].lower() for p in props]
    assert len(set(streets)) == len(streets)
    for field, pattern in (("zpid", r"\d{8}"), ("redfin_property_id", r"\d{8}"),
                           ("redfin_listing_id", r"\d{9}"), ("mls_number", r"\d{7}"),
                           ("apn", r"\d{3}-\d{2}-\d{3}")):
        values = [p["ids"][field] for p in props if p["ids"][field] is not None]
        assert len(set(values)) == len(values), field
        assert all(re.fullmatch(pattern, str(p["ids"][field])) for p in extras
                   if p["ids"][field] is not None), field
    for p in extras:
        assert p["state"] == "AZ" and re.fullmatch(r"\d{5}", p["zip_code"])
        assert re.fullmatch(r"\d{4,5} [NSEW] [A-Z][A-Za-z ]+ (Rd|Ave|St|Dr|Blvd|Ln|Way)",
                            p["street"]), p["street"]
    urls = [v["url"] for ph in truth["photos"] for v in ph["variants"]]
    assert len(set(urls)) == len(urls)


def test_csv_lists_extras_after_the_sample(sim_cache_dir: Path,
                                           extras: list[dict[str, Any]]) -> None:
    out = subprocess.run([sys.executable, "-m", "phx_sim.cli", "csv", "--extra-properties",
                          str(N), "--extra-photos", str(K), "--cache-dir", str(sim_cache_dir)],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    committed = COMMITTED_CSV.read_text()
    assert out.startswith(committed)
    rows = out[len(committed):].splitlines()
    assert len(rows) == N
    for row, p in zip(rows, extras, strict=True):
        assert row.startswith(f'{p["street"]},{p["city"]},AZ,{p["zip_code"]},'
                              f'"{p["full_address"]}",{p["facts"]["price"]},')


def test_zero_extras_change_nothing(sim_cache_dir: Path, sim: Any) -> None:
    committed = COMMITTED_CSV.read_text()
    assert load_csv_text(7, sim_cache_dir) == committed
    assert load_csv_text(7, sim_cache_dir, 0, 0) == committed
    assert load_csv_text(7, sim_cache_dir, 0, 3) == committed
    assert load_catalog(7, sim_cache_dir, 0, 3) is load_catalog(7, sim_cache_dir)
    assert len(sim.truth()["properties"]) == SAMPLE


def test_extras_are_deterministic_and_prefix_stable(sim_cache_dir: Path,
                                                    truth: dict[str, Any]) -> None:
    five = load_catalog(7, sim_cache_dir, 5, K)
    assert [p["key"] for p in five.data["properties"][SAMPLE:]] == [
        "p33", "p34", "p35", "p36", "p37"]
    assert five.data["properties"][:SAMPLE + N] == [
        {k: v for k, v in p.items() if k not in ("full_address", "slug", "photo_ids_per_site")}
        for p in truth["properties"]]
    assert load_csv_text(7, sim_cache_dir, 5, K) == five.csv_text()


def test_bad_counts_are_refused(sim_cache_dir: Path) -> None:
    for kwargs in ({"extra_properties": -1}, {"extra_properties": 1.5},
                   {"extra_properties": True}, {"extra_photos": -2}, {"extra_photos": 99},
                   {"extra_properties": 100_000, "extra_photos": 24}):
        with pytest.raises(ValueError):
            Simulator(cache_dir=sim_cache_dir, **kwargs)  # type: ignore[arg-type]
    proc = subprocess.run([sys.executable, "-m", "phx_sim.cli", "--extra-properties", "-4",
                           "--cache-dir", str(sim_cache_dir)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "extra-properties" in proc.stderr


def test_word_index_answers_like_a_linear_scan(sim_cache_dir: Path) -> None:
    """The sites' search index returns exactly what matching every item in order returns."""
    from phx_sim.sites.common import WordIndex, matches

    catalog = load_catalog(7, sim_cache_dir, N, K)
    items = [(p.key, (p.full_address, f"{p.street} {p.zip_code}", p.ids["apn"]))
             for p in catalog.properties]
    items += [(f"n{i}", (f"{n['street']} {n['city']} AZ {n['zip_code']}", n["apn"]))
              for i, n in enumerate(catalog.neighbours)]
    index = WordIndex(items)
    queries = ["AZ", "az 85306", "", "  ", "!!", "W Davis", "4732 W Dav", "Glendale", "rd",
               "Rd, Glendale", "p01", "85", "207-22-123", "207 22", "nowhere at all"]
    for p in catalog.properties:
        queries += [p.full_address, p.street, p.street[:-1], f"{p.street} {p.city}",
                    p.full_address[:7], p.ids["apn"], p.zip_code, p.street.split(" ", 1)[1]]
    for q in queries:
        for partial in (False, True):
            want = [key for key, texts in items if matches(q, *texts, partial_last=partial)]
            assert index.find(q, partial_last=partial) == want, (q, partial)


# -- the sites over HTTP --------------------------------------------------------------------------
def test_zillow_finds_extras(big_sim: Any, http: requests.Session, truth: dict[str, Any],
                             extras: list[dict[str, Any]]) -> None:
    base = big_sim.urls["zillow"]
    for p in extras:
        r = http.get(f"{base}/homes/{p['slug']}_rb/")
        assert r.status_code == 200
        if "zillow" not in p["on_sites"]:
            assert "No matching results" in r.text and "zpid" not in r.text
            continue
        data = json.loads(re.search(r'id="__NEXT_DATA__" type="application/json">(.*?)'
                                    r"</script>", r.text).group(1))
        found = data["props"]["pageProps"]["searchPageState"]["cat1"]["searchResults"][
            "listResults"]
        assert [f["zpid"] for f in found] == [p["ids"]["zpid"]]
        page = http.get(base + found[0]["detailUrl"])
        assert page.status_code == 200
        prop = zillow_property(page.text)
        assert prop["streetAddress"] == p["street"] and prop["price"] == p["facts"]["price"]
        urls, best = zillow_photos(prop)
        want, want_best = site_urls(truth, p["key"], "zillow")
        assert urls == want and best == want_best, p["key"]
        carousel = {u["url"] for h in prop["nearbyHomes"] for u in h["miniCardPhotos"]}
        assert carousel and not carousel & urls
        assert carousel <= set(truth["carousel_urls"]["zillow"])


def test_redfin_finds_extras(big_sim: Any, http: requests.Session, truth: dict[str, Any],
                             extras: list[dict[str, Any]]) -> None:
    base = big_sim.urls["redfin"]
    for p in extras:
        data = redfin_json(http.get(f"{base}/stingray/do/location-autocomplete",
                                    params={"location": p["full_address"], "v": "2"}).text)
        if "redfin" not in p["on_sites"]:
            assert "exactMatch" not in data["payload"]
            assert data["payload"]["sections"][0]["rows"] == []
            continue
        pid = p["ids"]["redfin_property_id"]
        exact = data["payload"]["exactMatch"]
        assert exact["id"] == f"1_{pid}" and exact["name"] == p["street"]
        info = redfin_json(http.get(f"{base}/stingray/api/home/details/initialInfo",
                                    params={"path": exact["url"]}).text)
        assert info["payload"] == {"propertyId": pid,
                                   "listingId": p["ids"]["redfin_listing_id"]}
        above = redfin_json(http.get(f"{base}/stingray/api/home/details/aboveTheFold",
                                     params={"propertyId": pid, "accessLevel": 3}).text)
        assert redfin_photo_urls(above) == site_urls(truth, p["key"], "redfin"), p["key"]


def test_phoenixmls_finds_extras(big_sim: Any, http: requests.Session, truth: dict[str, Any],
                                 extras: list[dict[str, Any]]) -> None:
    base = big_sim.urls["phoenixmls"]
    for p in extras:
        items = http.get(base + "/simple-search/autocomplete",
                         params={"q": p["full_address"]}).json()
        if "phoenixmls" not in p["on_sites"]:
            assert items == []
            continue
        mls = p["ids"]["mls_number"]
        assert items == [{"label": f"{p['full_address']} / {mls} (MLS #)",
                          "url": f"/mls/{p['slug'].lower()}-mls_{mls}"}]
        partial = http.get(base + "/simple-search/autocomplete",
                           params={"q": p["street"][:-2]}).json()
        assert items[0] in partial
        r = http.get(base + items[0]["url"])
        assert r.status_code == 200
        thumbs = pmls_thumbs(r.text)
        urls = {t[: -len("-t.jpg")] + f"-{k}.jpg" for t in thumbs for k in "tmlo"}
        want, _ = site_urls(truth, p["key"], "phoenixmls")
        assert urls == want, p["key"]
        fields = dict(re.findall(r"<tr><th>([^<]+)</th><td>([^<]*)</td></tr>", r.text))
        assert fields["Price"] == f"${p['facts']['price']:,}"
    everything = http.get(base + "/mls/search").text
    listed = sum("phoenixmls" in p["on_sites"] for p in truth["properties"])
    assert everything.count('class="listing-link"') == listed


def test_assessor_finds_extras(big_sim: Any, http: requests.Session,
                               extras: list[dict[str, Any]]) -> None:
    base = big_sim.urls["assessor"]
    auth = {"AUTHORIZATION": big_sim.env()["PHX_ASSESSOR__TOKEN"]}
    for p in extras:
        found = http.get(base + "/search/property/", params={"q": f"{p['street']} {p['city']}"},
                         headers=auth).json()
        assert found["TotalPropertyResults"] == 1
        assert found["Results"][0]["APN"] == p["ids"]["apn"]
        assert found["Results"][0]["SitusAddress"] == p["street"].upper()
        street = p["street"].split(" ", 1)[1]
        neighbours = http.get(base + "/search/property/", params={"q": street},
                              headers=auth).json()
        assert neighbours["TotalPropertyResults"] >= 3  # the neighbour parcels too
        info = http.get(f"{base}/parcel/{p['ids']['apn']}/residential-details",
                        headers=auth).json()
        assert info["LivableSpace"] == p["facts"]["sqft"]
    # The sample's searches are untouched by the extras.
    davis = http.get(base + "/search/property/", params={"q": "W Davis Rd"}, headers=auth)
    assert davis.json()["TotalPropertyResults"] == 3


def _hashes(data: bytes) -> tuple[imagehash.ImageHash, imagehash.ImageHash]:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG"
        img.load()
        rgb = img.convert("RGB")
    return imagehash.phash(rgb), imagehash.dhash(rgb)


def test_extra_photos_are_valid_distinct_jpegs(http: requests.Session, truth: dict[str, Any],
                                               extras: list[dict[str, Any]]) -> None:
    photos = {ph["id"]: ph for ph in truth["photos"]}
    mine = [photos[pid] for p in extras for pid in p["photo_ids"]]
    hashes: dict[str, list[tuple[Any, Any]]] = {}
    for ph in mine:
        urls = list(ph["best_per_site"].values())
        urls += [v["url"] for v in ph["variants"] if v["kind"] in ("mbphotov3", "t")]
        hashes[ph["id"]] = []
        for url in urls:
            r = http.get(url)
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", url
            hashes[ph["id"]].append(_hashes(r.content))
        want = {v["url"]: v for v in ph["variants"]}[ph["best_per_site"][ph["sites"][0]]]
        with Image.open(io.BytesIO(http.get(want["url"]).content)) as img:
            assert img.size == (want["width"], want["height"])
    for hs in hashes.values():  # one photo's variants across sites: near-duplicates
        for a, b in itertools.combinations(hs, 2):
            assert a[0] - b[0] <= PH and a[1] - b[1] <= DH
    for x, y in itertools.combinations(hashes, 2):  # distinct photos: never
        for a, b in itertools.product(hashes[x], hashes[y]):
            assert not (a[0] - b[0] <= PH and a[1] - b[1] <= DH), (x, y)


def test_zero_photos_per_property(sim_cache_dir: Path) -> None:
    with Simulator(seed=7, cache_dir=sim_cache_dir, extra_properties=2,
                   extra_photos=0) as zero:
        truth = zero.truth()
        extras = truth["properties"][SAMPLE:]
        assert len(extras) == 2 and all(p["photo_ids"] == [] for p in extras)
        with requests.Session(impersonate="chrome") as http:
            name, value = solve_zillow_challenge(http.get(zero.urls["zillow"] + "/").text)
            http.cookies.set(name, value)
            for p in extras:
                if "zillow" in p["on_sites"]:
                    r = http.get(f"{zero.urls['zillow']}/homes/{p['slug']}_rb/")
                    assert p["ids"]["zpid"] in r.text
                    page = http.get(f"{zero.urls['zillow']}/homedetails/{p['slug']}/"
                                    f"{p['ids']['zpid']}_zpid/")
                    assert page.status_code == 200
                    assert zillow_property(page.text)["responsivePhotos"] == []
                if "redfin" in p["on_sites"]:
                    above = redfin_json(http.get(
                        f"{zero.urls['redfin']}/stingray/api/home/details/aboveTheFold",
                        params={"propertyId": p["ids"]["redfin_property_id"]}).text)
                    assert above["payload"]["mediaBrowserInfo"]["photos"] == []
                if "phoenixmls" in p["on_sites"]:
                    r = http.get(f"{zero.urls['phoenixmls']}/mls/{p['slug'].lower()}-mls_"
                                 f"{p['ids']['mls_number']}")
                    assert r.status_code == 200 and pmls_thumbs(r.text) == []


# -- scale ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_thousand_extras_build(sim_cache_dir: Path) -> None:
    """N = 1000, K = 3 (the scale benchmark's size) builds, unique and consistent; no timing."""
    catalog = load_catalog(7, sim_cache_dir, 1000, 3)
    props = catalog.properties
    assert len(props) == SAMPLE + 1000
    addresses = [p.full_address.lower() for p in props]
    assert len(set(addresses)) == len(addresses)
    neighbours = {f"{n['street']}, {n['city']}, AZ {n['zip_code']}".lower()
                  for n in catalog.neighbours}
    assert not neighbours & set(addresses)
    for field in ("zpid", "redfin_property_id", "redfin_listing_id", "mls_number", "apn"):
        values = [p.ids[field] for p in props if p.ids[field] is not None]
        assert len(set(values)) == len(values), field
    extra = props[SAMPLE:]
    assert all(len(p.photo_ids) == 3 for p in extra)
    assert all(sum(s in p.on_sites for s in ("zillow", "redfin", "phoenixmls")) >= 2
               for p in extra)
    recipes = [catalog.photos[pid].recipe for p in extra for pid in p.photo_ids]
    assert len(set(recipes)) == 3000
    assert len(catalog.csv_text().splitlines()) == 1 + SAMPLE + 3 + 1000
    with Simulator(seed=7, cache_dir=sim_cache_dir, extra_properties=1000,
                   extra_photos=3) as sim:
        truth = sim.truth()
        assert len(truth["properties"]) == SAMPLE + 1000
        last = truth["properties"][-1]
        auth = {"AUTHORIZATION": sim.env()["PHX_ASSESSOR__TOKEN"]}
        found = requests.get(sim.urls["assessor"] + "/search/property/",
                             params={"q": f"{last['street']} {last['city']}"},
                             headers=auth).json()
        assert [r["APN"] for r in found["Results"]] == [last["ids"]["apn"]]
        photo = truth["photos"][-1]
        r = requests.get(photo["best"])
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
