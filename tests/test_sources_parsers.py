"""Parser unit tests on small hand-written pages shaped like the spec (docs/simulator.md).

These run without the simulator, network or browser: the parsers are pure functions. Pages
captured from the running simulator are tested in ``test_sources_sim.py``.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from phx_images.address import Address
from phx_images.models import Listing, PhotoVariant
from phx_images.net.errors import Blocked, CircuitOpen, HttpStatusError, TransientError
from phx_images.sources import (
    UnknownSource,
    assessor,
    get_adapters,
    parse_source_names,
    phoenixmls,
    redfin,
    zillow,
)
from phx_images.sources.base import (
    ParseError,
    best_variant,
    guarded,
    jpath,
    norm_street,
    same_address,
    same_full_address,
)

ADDR = Address.parse("4732 W Davis Rd, Glendale, AZ 85306")
HEX1, HEX2, HEX_OTHER = "a" * 32, "b" * 32, "c" * 32
ZP = "http://127.0.0.1:9002"
WIDTHS = (192, 384, 576, 768, 960, 1152, 1344, 1536)


# --------------------------------------------------------------------------------------------
# base helpers
# --------------------------------------------------------------------------------------------


def test_jpath_names_source_and_missing_key() -> None:
    data = {"props": {"pageProps": {"componentProps": {}}}}
    with pytest.raises(ParseError) as err:
        jpath(data, "props.pageProps.componentProps.gdpClientCache", "zillow")
    assert str(err.value).startswith(
        "zillow: missing props.pageProps.componentProps.gdpClientCache"
    )
    assert "have props.pageProps.componentProps" in str(err.value)
    assert jpath({"a": [{"b": 1}]}, "a.0.b", "x") == 1


@pytest.mark.parametrize(
    ("street", "city", "zip_code", "same"),
    [
        ("4732 W DAVIS RD", "GLENDALE", "85306", True),
        ("4732 West Davis Road", "Glendale", None, True),
        ("4732 W. Davis Rd.", None, "85306-1234", True),
        ("4734 W Davis Rd", "Glendale", "85306", False),
        ("4732 E Davis Rd", "Glendale", "85306", False),
        ("4732 W Davis St", "Glendale", "85306", False),
        ("4732 W Davis Rd", "Phoenix", "85306", False),
        ("4732 W Davis Rd", None, None, False),
    ],
)
def test_same_address(street: str, city: str | None, zip_code: str | None, same: bool) -> None:
    assert same_address(ADDR, street, city, zip_code) is same


def test_norm_street_and_full_address() -> None:
    assert norm_street("123 North 7th Street, Apt #4") == "123 n 7th st unit unit 4"
    assert same_full_address(ADDR, "4732 West Davis Road, GLENDALE, az 85306")
    assert not same_full_address(ADDR, "4732 W Davis Rd, Glendale, AZ 85308")
    assert not same_full_address(ADDR, "garbage")


def test_best_variant_rule() -> None:
    big_webp = PhotoVariant(url="x.webp", width=1536, format="webp")
    big_jpeg = PhotoVariant(url="x.jpg", width=1536, format="jpeg")
    small = PhotoVariant(url="s.jpg", width=384, format="jpeg")
    assert best_variant([small, big_webp, big_jpeg]).url == "x.jpg"  # largest, then jpeg
    crop = PhotoVariant(url="c.jpg", width=1280, height=853, kind="mbphotov3")
    full = PhotoVariant(url="f.jpg", width=1280, height=853, kind="bigphoto")
    assert best_variant([crop, full]).url == "f.jpg"  # uncropped wins a size tie


def test_registry() -> None:
    assert [a.name for a in get_adapters("all")] == [
        "zillow", "redfin", "phoenixmls", "assessor"]
    assert [a.name for a in get_adapters("redfin, zillow")] == ["redfin", "zillow"]
    with pytest.raises(UnknownSource, match=r"unknown source.*trulia"):
        get_adapters("zillow,trulia")
    with pytest.raises(UnknownSource):
        get_adapters("")
    assert parse_source_names(" Zillow ,zillow,") == ["zillow"]


# --------------------------------------------------------------------------------------------
# Zillow
# --------------------------------------------------------------------------------------------


def _zphoto(hex_id: str, caption: str) -> dict:
    return {
        "caption": caption,
        "mixedSources": {
            fmt: [{"url": f"{ZP}/fp/{hex_id}-cc_ft_{w}.{ext}", "width": w} for w in WIDTHS]
            for fmt, ext in (("jpeg", "jpg"), ("webp", "webp"))
        },
    }


def _zprop(**over: object) -> dict:
    prop = {
        "zpid": "12345678", "streetAddress": "4732 W Davis Rd", "city": "Glendale",
        "state": "AZ", "zipcode": "85306", "price": 450000, "bedrooms": 4, "bathrooms": 2,
        "livingArea": 1850, "yearBuilt": 1987, "lotAreaValue": 0.21, "lotAreaUnits": "acres",
        "description": "Nice.", "hiResImageLink": f"{ZP}/fp/{HEX1}-cc_ft_1536.jpg",
        "responsivePhotos": [_zphoto(HEX1, "Kitchen"), _zphoto(HEX2, "Pool")],
        "nearbyHomes": [{"zpid": "999", "address": {},
                         "miniCardPhotos": [{"url": f"{ZP}/fp/{HEX_OTHER}-cc_ft_384.jpg"}]}],
    }
    prop.update(over)
    return prop


def zillow_detail_html(prop: dict, *, layout: str = "next") -> str:
    cache = json.dumps({'ForSaleShopperPlatformFullRenderQuery{"zpid":1}': {"property": prop}})
    if layout == "next":
        data = {"props": {"pageProps": {"componentProps": {"gdpClientCache": cache}}}}
        script = f'<script id="__NEXT_DATA__" type="application/json">{json.dumps(data)}</script>'
    else:
        data = {"apiCache": cache}
        script = (f'<script id="hdpApolloPreloadedData" type="application/json">'
                  f'{json.dumps(data)}</script>')
    carousel = (f'<section id="similar-homes"><img src="{ZP}/fp/{HEX_OTHER}-cc_ft_384.jpg">'
                "</section>")
    return f"<html><head><title>x</title></head><body>{carousel}{script}</body></html>"


@pytest.mark.parametrize("layout", ["next", "apollo"])
def test_zillow_detail(layout: str) -> None:
    html = zillow_detail_html(_zprop(), layout=layout)
    assert zillow.page_kind(html) == "content"
    prop = zillow.parse_detail_property(html, "12345678")
    photos = zillow.parse_photos(prop)
    assert [p.source_photo_id for p in photos] == [HEX1, HEX2]
    assert photos[0].best_url == f"{ZP}/fp/{HEX1}-cc_ft_1536.jpg"
    assert len(photos[0].variants) == 16 and photos[0].caption == "Kitchen"
    assert all(HEX_OTHER not in v.url for p in photos for v in p.variants)
    facts = zillow.parse_facts(prop)
    assert facts["lot_sqft"] == round(0.21 * 43560) and facts["baths"] == 2.0
    assert facts["price"] == 450000


def test_zillow_detail_fails_loudly() -> None:
    data = {"props": {"pageProps": {"componentProps": {}}}}
    html = f'<script id="__NEXT_DATA__">{json.dumps(data)}</script>'
    with pytest.raises(ParseError, match=r"^zillow: missing props\.pageProps\.componentProps"
                                         r"\.gdpClientCache"):
        zillow.parse_detail_property(html)
    with pytest.raises(ParseError, match="zillow: detail page has neither"):
        zillow.parse_detail_property("<html><body>hello</body></html>")
    prop = _zprop()
    del prop["responsivePhotos"]
    with pytest.raises(ParseError, match="zillow: missing responsivePhotos"):
        zillow.parse_photos(prop)
    prop = _zprop(responsivePhotos=[{"caption": "x", "mixedSources": {
        "jpeg": [{"url": f"{ZP}/fp/nothex-cc_ft_192.jpg", "width": 192}]}}])
    with pytest.raises(ParseError, match="no 32-hex photo id"):
        zillow.parse_photos(prop)


def test_zillow_search() -> None:
    slug = ADDR.slug()
    data = {"props": {"pageProps": {"searchPageState": {"cat1": {"searchResults": {
        "listResults": [{"zpid": "12345678"}]}}}}}}
    html = (f'<a href="/homedetails/{slug}/12345678_zpid/">home</a>'
            f'<script id="__NEXT_DATA__">{json.dumps(data)}</script>')
    hit = zillow.parse_search(html)
    assert hit is not None and hit.zpid == "12345678"
    assert hit.detail_path == f"/homedetails/{slug}/12345678_zpid/"
    assert zillow.parse_search("<p>No matching results</p>") is None
    with pytest.raises(ParseError, match="zillow: search page has no"):
        zillow.parse_search("<html>changed layout</html>")
    broken = {"props": {"pageProps": {}}}
    with pytest.raises(ParseError, match=r"zillow: missing props\.pageProps\.searchPageState"):
        zillow.parse_search(f'<script id="__NEXT_DATA__">{json.dumps(broken)}</script>')


def test_zillow_page_kind() -> None:
    captcha = ('<title>Access to this page has been denied</title>'
               '<div id="px-captcha"></div>')
    assert zillow.page_kind(captcha) == "captcha"
    assert zillow.page_kind("<script>document.cookie='zsim_js=1'</script>") == "pending"


# --------------------------------------------------------------------------------------------
# Redfin
# --------------------------------------------------------------------------------------------

RF = "http://127.0.0.1:9004"


def _rphoto(pid: int, pos: str) -> dict:
    return {
        "photoId": pid, "displayLevel": 1, "width": 1280, "height": 853,
        "photoUrls": {
            "fullScreenPhotoUrl": f"{RF}/photo/1/bigphoto/234/123456789{pos}.jpg",
            "nonFullScreenPhotoUrl": f"{RF}/photo/1/mbphotov3/234/genMid.123456789{pos}.jpg",
            "nonFullScreenPhotoUrlCompressed":
                f"{RF}/photo/1/mbphotov3/234/genMid.123456789{pos}.jpg",
            "lightboxListUrl": f"{RF}/photo/1/islphoto/234/genIslnoResize.123456789{pos}.jpg",
        },
        "thumbnailData": {"thumbnailUrl": f"{RF}/photo/1/thumbnail/234/123456789{pos}.jpg"},
    }


def _row(pid: str, name: str, city: str, zip_code: str) -> dict:
    slug = name.replace(" ", "-")
    return {"id": f"1_{pid}", "name": name, "subName": f"{city}, AZ, USA",
            "url": f"/AZ/{city}/{slug}-{zip_code}/home/{pid}"}


def test_redfin_autocomplete_matches_address_not_first_row() -> None:
    body = {"resultCode": 0, "payload": {"sections": [{"rows": [
        _row("11111111", "4734 W Davis Rd", "Glendale", "85306"),
        _row("22222222", "4732 W Davis Rd", "Glendale", "85306"),
    ]}]}}
    match = redfin.parse_autocomplete("{}&&" + json.dumps(body), ADDR)
    assert match is not None and match.property_id == "22222222"
    body = {"resultCode": 0, "payload": {"exactMatch": _row("33333333", "4732 W Davis Rd",
                                                             "Glendale", "85306"),
                                         "sections": []}}
    assert redfin.parse_autocomplete("{}&&" + json.dumps(body), ADDR).property_id == "33333333"
    none = {"resultCode": 0, "payload": {"sections": [{"rows": []}]}}
    assert redfin.parse_autocomplete("{}&&" + json.dumps(none), ADDR) is None
    with pytest.raises(ParseError, match="redfin: missing payload"):
        redfin.parse_autocomplete("{}&&{}", ADDR)
    with pytest.raises(ParseError, match="redfin: location-autocomplete is not JSON"):
        redfin.parse_autocomplete("<html>are you a robot</html>", ADDR)


def test_redfin_above_the_fold() -> None:
    payload = {"addressSectionInfo": {
        "beds": 4, "baths": 2.5, "sqFt": {"value": 1850}, "priceInfo": {"amount": 450000},
        "streetAddress": {"assembledAddress": "4732 W Davis Rd"}, "city": "Glendale",
        "state": "AZ", "zip": "85306", "yearBuilt": 1987},
        "mediaBrowserInfo": {"photos": [_rphoto(1, ""), _rphoto(2, "_2_0")]}}
    text = "{}&&" + json.dumps({"resultCode": 0, "payload": payload})
    got = redfin.above_the_fold_payload(text)
    photos = redfin.parse_photos(got)
    assert [p.source_photo_id for p in photos] == ["1", "2"]
    assert photos[1].best_url == f"{RF}/photo/1/bigphoto/234/123456789_2_0.jpg"
    assert [v.kind for v in photos[0].variants] == [
        "bigphoto", "mbphotov3", "islphoto", "thumbnail"]
    assert redfin.parse_facts(got)["sqft"] == 1850
    assert redfin.parse_address(got) == ("4732 W Davis Rd", "Glendale", "AZ", "85306")
    missing = "{}&&" + json.dumps({"resultCode": 1, "errorMessage": "Property not found"})
    assert redfin.above_the_fold_payload(missing) is None
    del payload["mediaBrowserInfo"]
    with pytest.raises(ParseError, match=r"redfin: missing mediaBrowserInfo\.photos"):
        redfin.parse_photos(payload)


# --------------------------------------------------------------------------------------------
# PhoenixMLS
# --------------------------------------------------------------------------------------------

PM = "http://127.0.0.1:9006"


def phoenixmls_listing_html(*, keys: tuple[str, ...] = ("1" * 26, "2" * 26),
                            fields: dict[str, str] | None = None) -> str:
    fields = fields or {
        "Price": "$450,000", "Beds": "4", "Baths": "2.5", "Sqft": "1,850",
        "Lot": "0.21 acres", "Garage": "2", "HOA": "$150/month", "Pool": "Yes",
        "Sewer": "Public Sewer", "Year Built": "1987", "Elementary School": "Desert Elem",
        "Middle School": "Mid", "High School": "Ironwood High",
    }
    thumbs = "".join(
        f'<img class="gallery-thumb" src="{PM}/12/{k}-t.jpg" alt="Photo {i}" '
        f'data-photo-key="{k}">' for i, k in enumerate(keys)
    )
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in fields.items())
    similar = (f'<section class="similar-listings"><img class="gallery-thumb" '
               f'src="{PM}/13/{"9" * 26}-t.jpg"></section>')
    return (f'<html><body><div class="gallery">{thumbs}</div>'
            f'<div id="gallery-modal"><img src=""></div>'
            f'<table class="listing-fields">{rows}</table>{similar}</body></html>')


def test_phoenixmls_listing() -> None:
    facts, photos = phoenixmls.parse_listing(phoenixmls_listing_html())
    assert [p.source_photo_id for p in photos] == ["1" * 26, "2" * 26]
    assert photos[0].best_url == f"{PM}/12/{'1' * 26}-o.jpg"
    assert {v.kind for v in photos[0].variants} == {"-t", "-m", "-l", "-o"}
    assert photos[1].caption == "Photo 1"
    assert all("9" * 26 not in v.url for p in photos for v in p.variants)
    assert facts == {
        "price": 450000, "beds": 4, "baths": 2.5, "sqft": 1850, "lot_sqft": 9148,
        "garage": 2, "hoa_monthly": 150.0, "pool": True, "sewer": "Public Sewer",
        "year_built": 1987,
        "schools": {"elementary": "Desert Elem", "middle": "Mid", "high": "Ironwood High"},
    }
    facts, _ = phoenixmls.parse_listing(phoenixmls_listing_html(fields={
        "Price": "$1,200,000", "Beds": "3", "Baths": "2", "Sqft": "2,000",
        "Lot": "7,405 sqft", "HOA": "No Fees", "Pool": "No"}))
    assert facts["lot_sqft"] == 7405 and facts["hoa_monthly"] == 0 and facts["pool"] is False


def test_phoenixmls_fails_loudly() -> None:
    with pytest.raises(ParseError, match=r"phoenixmls: listing page has no table\.listing-fields"):
        phoenixmls.parse_listing('<div class="gallery"></div>')
    with pytest.raises(ParseError, match="phoenixmls: listing-fields has no 'Sqft' row"):
        phoenixmls.parse_listing(phoenixmls_listing_html(fields={
            "Price": "$1", "Beds": "1", "Baths": "1"}))
    no_gallery = phoenixmls_listing_html().replace('class="gallery"', 'class="nope"')
    with pytest.raises(ParseError, match=r"phoenixmls: listing page has no div\.gallery"):
        phoenixmls.parse_listing(no_gallery)


def test_phoenixmls_suggestions_pick_matching_entry() -> None:
    html = ('<ul role="tree" id="search-results">'
            '<li role="treeitem" data-url="/mls/4734-w-davis-rd-glendale-az-85306-mls_1111111">'
            "4734 W Davis Rd, Glendale, AZ 85306 / 1111111 (MLS #)</li>"
            '<li role="treeitem" data-url="/mls/4732-w-davis-rd-glendale-az-85306-mls_6937912">'
            "4732 W Davis Rd, Glendale, AZ 85306 / 6937912 (MLS #)</li></ul>")
    sugs = phoenixmls.parse_suggestions(html)
    pick = phoenixmls.pick_suggestion(sugs, ADDR)
    assert pick is not None and pick.mls_number == "6937912"
    assert pick.url == "/mls/4732-w-davis-rd-glendale-az-85306-mls_6937912"
    with pytest.raises(ParseError, match="phoenixmls: autocomplete entry is not"):
        phoenixmls.parse_suggestions('<li role="treeitem">4732 W Davis Rd</li>')


# --------------------------------------------------------------------------------------------
# Assessor
# --------------------------------------------------------------------------------------------


def test_assessor_search_picks_situs_match() -> None:
    body = {"TotalPropertyResults": 2, "Results": [
        {"APN": "207-22-111", "SitusAddress": "4734 W DAVIS RD", "SitusCity": "GLENDALE",
         "SitusZip": "85306"},
        {"APN": "207-22-123", "SitusAddress": "4732 W DAVIS RD", "SitusCity": "GLENDALE",
         "SitusZip": "85306"},
    ]}
    page = assessor.parse_search(json.dumps(body))
    assert page.total == 2
    assert assessor.pick_apn(page.results, ADDR) == "207-22-123"
    assert assessor.pick_apn(page.results[:1], ADDR) is None
    with pytest.raises(ParseError, match="assessor: missing Results"):
        assessor.parse_search(json.dumps({"TotalPropertyResults": 0}))


# --------------------------------------------------------------------------------------------
# Outcome mapping: discover never raises for expected outcomes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "reason"),
    [
        (CircuitOpen("zillow", "http://x/", "breaker open", retry_at=0.0), "skipped",
         "zillow: circuit breaker open"),
        (Blocked("zillow", "http://x/", "challenge", status=403), "blocked", "zillow: blocked"),
        (HttpStatusError("zillow", "http://x/", "HTTP 500", status=500), "failed",
         "zillow: HttpStatusError"),
        (TransientError("zillow", "http://x/", "retries exhausted"), "failed",
         "zillow: TransientError"),
        (ParseError("zillow", "missing x.y"), "failed", "zillow: missing x.y"),
        (KeyError("surprise"), "failed", "zillow: unexpected KeyError"),
    ],
)
def test_guarded_maps_outcomes(exc: Exception, status: str, reason: str) -> None:
    async def body() -> Listing:
        raise exc

    listing = asyncio.run(guarded("zillow", ADDR, body))
    assert listing.status == status and listing.reason.startswith(reason)
