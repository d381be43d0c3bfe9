"""The simulator's four sites over real HTTP: structure per docs/simulator.md, and the truth.

The parsers here are deliberately "honest": they read the pages the way an adapter written for
the real sites would, and the test asserts that what they find is exactly what ``/_sim/truth``
says (no missing photo, no carousel photo taken for the property's own).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from curl_cffi import requests

from phx_sim.testing import solve_zillow_challenge


@pytest.fixture(scope="module")
def truth(sim: Any) -> dict[str, Any]:
    return sim.truth()


@pytest.fixture(scope="module")
def http() -> requests.Session:
    session = requests.Session(impersonate="chrome")
    yield session
    session.close()


@pytest.fixture(scope="module")
def zillow(sim: Any, http: requests.Session) -> requests.Session:
    """A session that has passed Zillow's JS challenge (solved in Python)."""
    page = http.get(sim.urls["zillow"] + "/")
    assert page.status_code == 403
    name, value = solve_zillow_challenge(page.text)
    http.cookies.set(name, value)
    assert http.get(sim.urls["zillow"] + "/").status_code == 200
    return http


def props_on(truth: dict[str, Any], site: str) -> list[dict[str, Any]]:
    return [p for p in truth["properties"] if site in p["on_sites"]]


def site_urls(truth: dict[str, Any], key: str, site: str) -> tuple[set[str], set[str]]:
    """(all variant URLs, best URLs) of ``site`` for property ``key`` according to the truth."""
    variants, best = set(), set()
    for photo in truth["photos"]:
        if key in photo["properties"] and site in photo["best_per_site"]:
            variants |= {v["url"] for v in photo["variants"] if v["site"] == site}
            best.add(photo["best_per_site"][site])
    return variants, best


# -- honest parsers ----------------------------------------------------------------------------
def zillow_property(html: str) -> dict[str, Any]:
    m = re.search(r'<script id="__NEXT_DATA__" type="application/json">(.*?)</script>', html, re.S)
    if m:
        cache = json.loads(m.group(1))["props"]["pageProps"]["componentProps"]["gdpClientCache"]
    else:
        m = re.search(r'<script id="hdpApolloPreloadedData" type="application/json">(.*?)'
                      r"</script>", html, re.S)
        assert m, "neither __NEXT_DATA__ nor hdpApolloPreloadedData"
        cache = json.loads(m.group(1))["apiCache"]
    values = list(json.loads(cache).values())
    assert len(values) == 1
    return values[0]["property"]


def zillow_photos(prop: dict[str, Any]) -> tuple[set[str], set[str]]:
    urls, best = {prop["hiResImageLink"]}, set()
    for photo in prop["responsivePhotos"]:
        for fmt in ("jpeg", "webp"):
            urls |= {s["url"] for s in photo["mixedSources"][fmt]}
        best.add(max(photo["mixedSources"]["jpeg"], key=lambda s: s["width"])["url"])
    return urls, best


def redfin_photo_urls(above: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Every photo URL of an aboveTheFold answer, and the best (full-screen) ones."""
    photos = above["payload"]["mediaBrowserInfo"]["photos"]
    urls = {u for ph in photos for u in ph["photoUrls"].values()}
    urls |= {ph["thumbnailData"]["thumbnailUrl"] for ph in photos}
    return urls, {ph["photoUrls"]["fullScreenPhotoUrl"] for ph in photos}


def redfin_json(text: str) -> Any:
    assert text.startswith("{}&&")
    return json.loads(text[4:])


def pmls_thumbs(html: str) -> list[str]:
    gallery = html.split('<div class="gallery">', 1)[1].split("</div>", 1)[0]
    return re.findall(r'<img class="gallery-thumb" src="([^"]+)"', gallery)


# -- catalog shape -------------------------------------------------------------------------------
def test_truth_catalog_shape(truth: dict[str, Any]) -> None:
    props, photos = truth["properties"], truth["photos"]
    assert len(props) == 32 and len(photos) >= 600
    assert "4732 W Davis Rd, Glendale, AZ 85306" in [p["full_address"] for p in props]
    assert all("assessor" in p["on_sites"] for p in props)
    for site in ("zillow", "redfin", "phoenixmls"):
        assert len(props_on(truth, site)) == 30
    assert all(sum(s in p["on_sites"] for s in ("zillow", "redfin", "phoenixmls")) >= 2
               for p in props)
    assert all(18 <= len(p["photo_ids"]) <= 25 for p in props)
    assert all(len(ph["best_per_site"]) >= 2 for ph in photos)
    shared = [ph for ph in photos if len(ph["properties"]) == 2]
    assert len(shared) == 2
    assert len(truth["hard_negatives"]) == 64
    assert len(truth["unknown_addresses"]) == 3
    ids = [p["ids"] for p in props]
    assert all(re.fullmatch(r"\d{8}", i["zpid"]) for i in ids if i["zpid"])
    assert all(re.fullmatch(r"\d{3}-\d{2}-\d{3}", i["apn"]) for i in ids)
    assert all(re.fullmatch(r"\d{7}", i["mls_number"]) for i in ids if i["mls_number"])
    assert all(len(str(i["redfin_listing_id"])) == 9 for i in ids if i["redfin_listing_id"])
    for ph in photos:
        assert ph["best"] in {v["url"] for v in ph["variants"]}
        if "phoenixmls" in ph["best_per_site"]:
            assert ph["best"] == ph["best_per_site"]["phoenixmls"]


def test_sample_csv_matches_cli(truth: dict[str, Any]) -> None:
    import subprocess
    import sys
    from pathlib import Path

    out = subprocess.run([sys.executable, "-m", "phx_sim.cli", "csv"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    committed = (Path(__file__).parent.parent / "data" / "phx_homes.csv").read_text()
    assert out == committed
    lines = out.splitlines()
    assert lines[0] == "street,city,state,zip_code,full_address,price,beds,baths,sqft"
    assert len(lines) == 1 + 32 + 3
    for address in truth["unknown_addresses"]:
        assert f'"{address}"' in out


# -- Zillow -------------------------------------------------------------------------------------
def test_zillow_plain_client_gets_challenge(sim: Any, truth: dict[str, Any]) -> None:
    p = truth["properties"][0]
    with requests.Session(impersonate="chrome") as fresh:
        r = fresh.get(f"{sim.urls['zillow']}/homedetails/{p['slug']}/{p['ids']['zpid']}_zpid/")
    assert r.status_code == 403
    assert "__NEXT_DATA__" not in r.text and "<script>" in r.text
    assert "zsim_js" in r.text


def test_zillow_bad_cookie_is_refused(sim: Any) -> None:
    with requests.Session(impersonate="chrome") as fresh:
        r = fresh.get(sim.urls["zillow"] + "/")
        name, value = solve_zillow_challenge(r.text)
        fresh.cookies.set(name, value[:-1] + ("0" if value[-1] != "0" else "1"))
        assert fresh.get(sim.urls["zillow"] + "/").status_code == 403
        fresh.cookies.set(name, "1-2-3.4")
        assert fresh.get(sim.urls["zillow"] + "/").status_code == 403


def test_zillow_search(sim: Any, zillow: requests.Session, truth: dict[str, Any]) -> None:
    p = truth["properties"][0]
    r = zillow.get(f"{sim.urls['zillow']}/homes/{p['slug']}_rb/")
    assert r.status_code == 200
    data = json.loads(re.search(r'id="__NEXT_DATA__" type="application/json">(.*?)</script>',
                                r.text).group(1))
    first = data["props"]["pageProps"]["searchPageState"]["cat1"]["searchResults"][
        "listResults"][0]
    assert first["zpid"] == p["ids"]["zpid"]
    assert f'href="/homedetails/{p["slug"]}/{p["ids"]["zpid"]}_zpid/"' in r.text
    unknown = truth["unknown_addresses"][0]
    slug = "-".join(re.findall(r"[A-Za-z0-9]+", unknown))
    r = zillow.get(f"{sim.urls['zillow']}/homes/{slug}_rb/")
    assert r.status_code == 200 and "No matching results" in r.text and "zpid" not in r.text
    missing = next(p for p in truth["properties"] if "zillow" not in p["on_sites"])
    r = zillow.get(f"{sim.urls['zillow']}/homes/{missing['slug']}_rb/")
    assert "No matching results" in r.text and "zpid" not in r.text
    r = zillow.get(f"{sim.urls['zillow']}/homedetails/x/12345678_zpid/")
    assert r.status_code == 404


def test_zillow_pages_match_truth(sim: Any, zillow: requests.Session,
                                  truth: dict[str, Any]) -> None:
    layouts = set()
    for p in props_on(truth, "zillow"):
        r = zillow.get(f"{sim.urls['zillow']}/homedetails/{p['slug']}/{p['ids']['zpid']}_zpid/")
        assert r.status_code == 200, p["key"]
        old = "hdpApolloPreloadedData" in r.text
        layouts.add(old)
        assert old == (truth["properties"].index(p) % 4 == 3), p["key"]
        prop = zillow_property(r.text)
        assert str(prop["zpid"]) == p["ids"]["zpid"]
        assert prop["streetAddress"] == p["street"] and prop["price"] == p["facts"]["price"]
        assert prop["bedrooms"] == p["facts"]["beds"]
        urls, best = zillow_photos(prop)
        want, want_best = site_urls(truth, p["key"], "zillow")
        assert urls == want, p["key"]
        assert best == want_best, p["key"]
        for photo in prop["responsivePhotos"]:
            assert [s["width"] for s in photo["mixedSources"]["jpeg"]] == [
                192, 384, 576, 768, 960, 1152, 1344, 1536]
            assert re.fullmatch(r".*/fp/[0-9a-f]{32}-cc_ft_1536\.jpg",
                                photo["mixedSources"]["jpeg"][-1]["url"])
        carousel = {u["url"] for h in prop["nearbyHomes"] for u in h["miniCardPhotos"]}
        section = r.text.split('<section id="similar-homes">', 1)[1].split("</section>")[0]
        carousel_imgs = set(re.findall(r'<img src="([^"]+)"', section))
        assert carousel and carousel == carousel_imgs
        assert not carousel & urls, p["key"]
        assert carousel <= set(truth["carousel_urls"]["zillow"])
    assert layouts == {True, False}


# -- Redfin -------------------------------------------------------------------------------------
def test_redfin_needs_chrome_user_agent(sim: Any) -> None:
    url = sim.urls["redfin"] + "/stingray/do/location-autocomplete?location=4732&v=2"
    assert requests.get(url).status_code == 403  # curl's own user agent
    headless = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "HeadlessChrome/131.0.0.0 Safari/537.36")
    assert requests.get(url, headers={"User-Agent": headless}).status_code == 403
    assert requests.get(url, impersonate="chrome").status_code == 200


def test_redfin_autocomplete_and_api(sim: Any, http: requests.Session,
                                     truth: dict[str, Any]) -> None:
    base = sim.urls["redfin"]
    p = truth["properties"][0]
    pid = p["ids"]["redfin_property_id"]
    data = redfin_json(http.get(f"{base}/stingray/do/location-autocomplete",
                                params={"location": p["full_address"], "v": "2"}).text)
    exact = data["payload"]["exactMatch"]
    assert exact["id"] == f"1_{pid}" and exact["name"] == "4732 W Davis Rd"
    assert exact["subName"] == "Glendale, AZ, USA"
    assert exact["url"] == f"/AZ/Glendale/4732-W-Davis-Rd-85306/home/{pid}"
    assert data["payload"]["sections"][0]["rows"][0]["url"] == exact["url"]
    page = http.get(base + exact["url"])
    assert page.status_code == 200 and p["full_address"] in page.text
    info = redfin_json(http.get(f"{base}/stingray/api/home/details/initialInfo",
                                params={"path": exact["url"]}).text)
    assert info["payload"] == {"propertyId": pid, "listingId": p["ids"]["redfin_listing_id"]}
    above = redfin_json(http.get(f"{base}/stingray/api/home/details/aboveTheFold",
                                 params={"propertyId": pid, "accessLevel": 3}).text)
    addr = above["payload"]["addressSectionInfo"]
    assert addr["streetAddress"]["assembledAddress"] == p["street"]
    assert addr["priceInfo"]["amount"] == p["facts"]["price"]
    assert addr["sqFt"]["value"] == p["facts"]["sqft"]
    below = redfin_json(http.get(f"{base}/stingray/api/home/details/belowTheFold",
                                 params={"propertyId": pid, "accessLevel": 3}).text)
    assert below["payload"]["publicRecordsInfo"]["basicInfo"]["lotSqFt"] == p["facts"][
        "lot_sqft"]
    for unknown in (truth["unknown_addresses"][0],
                    next(q for q in truth["properties"] if "redfin" not in q["on_sites"])[
                        "full_address"]):
        data = redfin_json(http.get(f"{base}/stingray/do/location-autocomplete",
                                    params={"location": unknown, "v": "2"}).text)
        assert "exactMatch" not in data["payload"]
        assert data["payload"]["sections"][0]["rows"] == []
    missing = redfin_json(http.get(f"{base}/stingray/api/home/details/aboveTheFold",
                                   params={"propertyId": "99999999", "accessLevel": 3}).text)
    assert missing == {"resultCode": 1, "errorMessage": "Property not found"}
    hostile = http.get(f"{base}/stingray/api/home/details/aboveTheFold",
                       params={"propertyId": "1 OR 1=1", "accessLevel": 3})
    assert hostile.status_code == 200 and redfin_json(hostile.text)["resultCode"] == 1


def test_redfin_api_matches_truth(sim: Any, http: requests.Session,
                                  truth: dict[str, Any]) -> None:
    base = sim.urls["redfin"]
    for p in props_on(truth, "redfin"):
        above = redfin_json(http.get(f"{base}/stingray/api/home/details/aboveTheFold", params={
            "propertyId": p["ids"]["redfin_property_id"], "accessLevel": 3}).text)
        assert redfin_photo_urls(above) == site_urls(truth, p["key"], "redfin"), p["key"]
        photos = above["payload"]["mediaBrowserInfo"]["photos"]
        listing = p["ids"]["redfin_listing_id"]
        first = photos[0]["photoUrls"]
        assert re.search(rf"/photo/\d+/bigphoto/\d{{3}}/{listing}_\d\.jpg$",
                         first["fullScreenPhotoUrl"])
        assert "/mbphotov3/" in first["nonFullScreenPhotoUrlCompressed"]
        assert (photos[0]["width"], photos[0]["height"]) == (1280, 854)


# -- PhoenixMLS -----------------------------------------------------------------------------------
def test_phoenixmls_search_and_listing(sim: Any, http: requests.Session,
                                       truth: dict[str, Any]) -> None:
    base = sim.urls["phoenixmls"]
    page = http.get(base + "/simple-search/")
    assert '<input id="search-input" type="search"' in page.text
    assert 'id="search-button"' in page.text and 'role="tree"' in page.text
    items = http.get(base + "/simple-search/autocomplete", params={"q": "4732 W Dav"}).json()
    assert items == [{"label": "4732 W Davis Rd, Glendale, AZ 85306 / 6937912 (MLS #)",
                      "url": "/mls/4732-w-davis-rd-glendale-az-85306-mls_6937912"}]
    assert http.get(base + "/simple-search/autocomplete", params={"q": "47"}).json() == []
    assert http.get(base + "/simple-search/autocomplete",
                    params={"q": truth["unknown_addresses"][1]}).json() == []
    everything = http.get(base + "/mls/search").text
    assert everything.count('class="listing-link"') == 30
    listing = http.get(base + items[0]["url"])
    assert listing.status_code == 200
    fields = dict(re.findall(r"<tr><th>([^<]+)</th><td>([^<]*)</td></tr>", listing.text))
    p = truth["properties"][0]
    assert fields["Price"] == f"${p['facts']['price']:,}"
    assert fields["Lot"] == p["facts"]["lot_display"] and fields["HOA"] == p["facts"]["hoa"]
    assert set(fields) >= {"Beds", "Baths", "Sqft", "Garage", "Pool", "Sewer", "Year Built",
                           "Elementary School", "Middle School", "High School"}
    assert '<div id="gallery-modal"' in listing.text
    assert http.get(base + "/mls/nowhere-mls_1234567").status_code == 404


def test_phoenixmls_pages_match_truth(sim: Any, http: requests.Session,
                                      truth: dict[str, Any]) -> None:
    base = sim.urls["phoenixmls"]
    for p in props_on(truth, "phoenixmls"):
        r = http.get(f"{base}/mls/{p['slug'].lower()}-mls_{p['ids']['mls_number']}")
        assert r.status_code == 200, p["key"]
        thumbs = pmls_thumbs(r.text)
        assert all(re.fullmatch(r"http://[^/]+/\d{2}/\d{26}-t\.jpg", t) for t in thumbs)
        urls = {t[: -len("-t.jpg")] + f"-{k}.jpg" for t in thumbs for k in "tmlo"}
        best = {t[: -len("-t.jpg")] + "-o.jpg" for t in thumbs}
        want, want_best = site_urls(truth, p["key"], "phoenixmls")
        assert urls == want and best == want_best, p["key"]
        similar = r.text.split('<section class="similar-listings">', 1)[1]
        carousel = set(re.findall(r'src="([^"]+)"', similar))
        assert carousel and not carousel & urls
        assert carousel <= set(truth["carousel_urls"]["phoenixmls"])


# -- Assessor -------------------------------------------------------------------------------------
def test_assessor(sim: Any, http: requests.Session, truth: dict[str, Any]) -> None:
    base, token = sim.urls["assessor"], sim.env()["PHX_ASSESSOR__TOKEN"]
    r = http.get(base + "/search/property/", params={"q": "4732 W Davis Rd"})
    assert r.status_code == 401 and r.json() == {"error": "Unauthorized"}
    assert http.get(base + "/parcel/207-22-123",
                    headers={"AUTHORIZATION": "wrong"}).status_code == 401
    auth = {"AUTHORIZATION": token}
    found = http.get(base + "/search/property/", params={"q": "4732 W Davis Rd"},
                     headers=auth).json()
    assert found["TotalPropertyResults"] == 1
    assert found["Results"][0] == {
        "APN": "207-22-123", "SitusAddress": "4732 W DAVIS RD", "SitusCity": "GLENDALE",
        "SitusZip": "85306", "Ownership": found["Results"][0]["Ownership"],
        "PropertyType": "Residential"}
    street = http.get(base + "/search/property/", params={"q": "W Davis Rd"}, headers=auth)
    assert street.json()["TotalPropertyResults"] == 3  # the neighbours too
    everyone = http.get(base + "/search/property/", params={"q": "AZ", "page": 2},
                        headers=auth).json()
    assert everyone["TotalPropertyResults"] > 50 and len(everyone["Results"]) == 25
    assert http.get(base + "/search/property/", params={"q": "AZ", "page": "x"},
                    headers=auth).status_code == 400
    for p in truth["properties"]:
        apn = p["ids"]["apn"]
        info = http.get(f"{base}/parcel/{apn}/propertyinfo", headers=auth).json()
        assert info["LotSize"] == p["facts"]["lot_sqft"]
    details = http.get(f"{base}/parcel/207-22-123/residential-details", headers=auth).json()
    assert details["LivableSpace"] == truth["properties"][0]["facts"]["sqft"]
    for sub in ("", "/valuations", "/improvements"):
        assert http.get(f"{base}/parcel/207-22-123{sub}", headers=auth).status_code == 200
    assert http.get(f"{base}/parcel/207-22-123/sketches", headers=auth).json() == []
    assert http.get(f"{base}/parcel/999-99-999", headers=auth).status_code == 404
    assert http.get(f"{base}/parcel/..%2F..%2Fetc", headers=auth).status_code == 404
    for unknown in truth["unknown_addresses"]:
        street_only = unknown.split(",")[0]
        r = http.get(base + "/search/property/", params={"q": street_only}, headers=auth)
        assert r.json()["TotalPropertyResults"] == 0


def test_control_on_every_port(sim: Any, http: requests.Session) -> None:
    for name, url in sim.urls.items():
        if name == "proxy_bad":
            continue
        if name == "proxy_good":
            continue
        r = http.get(url + "/_sim/truth")
        assert r.status_code == 200 and r.json()["seed"] == 7, name
    assert http.get(sim.urls["control"] + "/anything").status_code == 404
