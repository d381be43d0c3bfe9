"""Parsers on pages captured from the simulator (tests/fixtures/, seed 7), no network.

The fixtures were saved from a running simulator (Zillow pages from Chromium's DOM after the
JavaScript challenge, the others over HTTP); ``expected_p01_p04.json`` is the matching slice of
``/_sim/truth`` (per site: best URL -> every variant URL). Each parser is also fed the same page
with one key removed, and must fail naming the source and the key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phx_images.address import Address
from phx_images.sources import phoenixmls, redfin, zillow
from phx_images.sources.base import ParseError

FIX = Path(__file__).parent / "fixtures"
EXPECTED = json.loads((FIX / "expected_p01_p04.json").read_text())
P01 = Address.parse(EXPECTED["p01"]["full_address"])


def _as_truth(photos: list) -> dict[str, list[str]]:
    return {p.best_url: sorted(v.url for v in p.variants) for p in photos}


def _foreign_taken(photos: list, key: str, site: str) -> set[str]:
    """Carousel URLs (other homes' photos on this page) that were taken. A carousel URL that
    is also one of this property's own photos (its first photo, shown on *other* pages) is
    not foreign."""
    own = {u for urls in EXPECTED[key][site].values() for u in urls}
    carousel = set(EXPECTED["_carousel_urls"][site]) - own
    return carousel & {v.url for p in photos for v in p.variants}


@pytest.mark.parametrize(("fixture", "key"), [("zillow_detail_next.html", "p01"),
                                              ("zillow_detail_apollo.html", "p04")])
def test_zillow_detail_matches_truth(fixture: str, key: str) -> None:
    prop = zillow.parse_detail_property((FIX / fixture).read_text())
    photos = zillow.parse_photos(prop)
    assert _as_truth(photos) == EXPECTED[key]["zillow"]
    assert not _foreign_taken(photos, key, "zillow")
    facts = zillow.parse_facts(prop)
    want = EXPECTED[key]["facts"]
    assert {k: facts[k] for k in ("price", "beds", "baths", "sqft", "lot_sqft", "year_built")} \
        == want


def test_zillow_detail_missing_key_is_loud() -> None:
    html = (FIX / "zillow_detail_next.html").read_text().replace("gdpClientCache", "gdpCache")
    with pytest.raises(ParseError) as err:
        zillow.parse_detail_property(html)
    assert str(err.value).startswith(
        "zillow: missing props.pageProps.componentProps.gdpClientCache")
    html = (FIX / "zillow_detail_apollo.html").read_text().replace("apiCache", "apiKache")
    with pytest.raises(ParseError, match=r"^zillow: missing apiCache"):
        zillow.parse_detail_property(html)
    html = (FIX / "zillow_detail_next.html").read_text().replace("responsivePhotos", "photos")
    with pytest.raises(ParseError, match=r"^zillow: missing responsivePhotos"):
        zillow.parse_photos(zillow.parse_detail_property(html))


def test_zillow_search_captured() -> None:
    hit = zillow.parse_search((FIX / "zillow_search.html").read_text())
    assert hit is not None and hit.detail_path is not None
    assert hit.detail_path.endswith(f"/{hit.zpid}_zpid/")


def test_redfin_captured() -> None:
    match = redfin.parse_autocomplete((FIX / "redfin_autocomplete.txt").read_text(), P01)
    assert match is not None and match.path.endswith(f"/home/{match.property_id}")
    other = Address.parse("4732 W Davis Rd, Phoenix, AZ 85016")  # same street, other city
    assert redfin.parse_autocomplete((FIX / "redfin_autocomplete.txt").read_text(), other) \
        is None
    payload = redfin.above_the_fold_payload((FIX / "redfin_above_the_fold.txt").read_text())
    assert payload is not None
    assert _as_truth(redfin.parse_photos(payload)) == EXPECTED["p01"]["redfin"]
    facts = redfin.parse_facts(payload)
    assert facts["price"] == EXPECTED["p01"]["facts"]["price"]
    broken = (FIX / "redfin_above_the_fold.txt").read_text().replace("mediaBrowserInfo", "mbi")
    with pytest.raises(ParseError, match=r"^redfin: missing mediaBrowserInfo\.photos"):
        redfin.parse_photos(redfin.above_the_fold_payload(broken))


def test_phoenixmls_captured() -> None:
    html = (FIX / "phoenixmls_listing.html").read_text()
    facts, photos = phoenixmls.parse_listing(html)
    assert _as_truth(photos) == EXPECTED["p01"]["phoenixmls"]
    assert not _foreign_taken(photos, "p01", "phoenixmls")
    want = EXPECTED["p01"]["facts"]
    assert {k: facts[k] for k in want} == want
    assert all(p.caption for p in photos)
    broken = html.replace("<th>Sqft</th>", "<th>Size</th>")
    with pytest.raises(ParseError, match=r"^phoenixmls: listing-fields has no 'Sqft' row"):
        phoenixmls.parse_listing(broken)
