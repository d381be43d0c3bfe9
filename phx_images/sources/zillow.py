"""Zillow: search page -> zpid -> detail page -> ``__NEXT_DATA__`` -> photos and facts.

Zillow serves nothing to plain HTTP clients (a JavaScript challenge, PerimeterX behind it), so
both pages are loaded in the shared browser through ``client.page``. The press-and-hold page
(``#px-captcha``, "Access to this page has been denied") is passed with the policy layer's
``press_and_hold``; a second attempt holds longer (up to ``settings.browser.max_hold_s``), and a
challenge that still stands is reported as BLOCKED, never as "no photos".

Declarative split: the ``*_PATH`` templates say where to look; the ``parse_*`` functions (pure,
text -> data) say what to take; :class:`ZillowAdapter` is the mechanics in between.
Only ``property.responsivePhotos`` are taken: ``nearbyHomes`` / "Similar homes" carry photos of
*other* properties on the same page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from phx_images.address import Address
from phx_images.models import Listing, ListingStatus, PhotoRef, PhotoVariant
from phx_images.sources import browser_ops
from phx_images.sources.base import (
    Outcome,
    ParseError,
    RawPhoto,
    blocked,
    format_from_url,
    group_photos,
    guarded,
    hoa_per_month,
    jpath,
    loads,
    lot_to_sqft,
    not_found,
    parse_html,
    same_address,
    script_text,
)

if TYPE_CHECKING:
    from phx_images.net.client import PolicyClient

NAME = "zillow"
SEARCH_PATH = "/homes/{slug}_rb/"
DETAIL_PATH = "/homedetails/{slug}/{zpid}_zpid/"
NEXT_DATA_ID = "__NEXT_DATA__"
APOLLO_ID = "hdpApolloPreloadedData"
GDP_PATH = "props.pageProps.componentProps.gdpClientCache"
SEARCH_RESULTS_PATH = "props.pageProps.searchPageState.cat1.searchResults.listResults"
PHOTO_ID_RE = re.compile(r"/fp/([0-9a-f]{32})-")
KIND_RE = re.compile(r"/fp/[0-9a-f]{32}-([^/.?]+)\.")
DETAIL_LINK_RE = re.compile(r"/homedetails/[^\"'\s<>]+?/(\d+)_zpid/?")
NO_RESULTS_TEXT = "No matching results"
CAPTCHA_MARKERS = ('id="px-captcha"', "id='px-captcha'", "Access to this page has been denied")
CONTENT_MARKERS = (f'id="{NEXT_DATA_ID}"', f'id="{APOLLO_ID}"', NO_RESULTS_TEXT)


# --------------------------------------------------------------------------------------------
# Pure parsers
# --------------------------------------------------------------------------------------------


def page_kind(html: str) -> str:
    """``"captcha"`` (PerimeterX press & hold), ``"content"``, or ``"pending"`` (anything
    else, e.g. the JavaScript challenge that Chromium is still solving)."""
    if any(m in html for m in CAPTCHA_MARKERS):
        return "captcha"
    if any(m in html for m in CONTENT_MARKERS):
        return "content"
    return "pending"


@dataclass
class SearchHit:
    zpid: str
    detail_path: str | None  # the link the search page itself offers, when it has one


def parse_search(html: str) -> SearchHit | None:
    """The first result of a search page, ``None`` for "No matching results".

    Raises :class:`ParseError` for a page that is neither (a changed layout must not look like
    "not listed").
    """
    doc = parse_html(html)
    raw = script_text(doc, NEXT_DATA_ID)
    if raw is None:
        if NO_RESULTS_TEXT in html:
            return None
        raise ParseError(NAME, f"search page has no script#{NEXT_DATA_ID} and no "
                               f"{NO_RESULTS_TEXT!r} text")
    data = loads(raw, NAME, f"search page script#{NEXT_DATA_ID}")
    results = jpath(data, SEARCH_RESULTS_PATH, NAME, default=None)
    if results is None:
        if NO_RESULTS_TEXT in html:
            return None
        jpath(data, SEARCH_RESULTS_PATH, NAME)  # raises, naming the missing key
    if not isinstance(results, list):
        raise ParseError(NAME, f"{SEARCH_RESULTS_PATH} is not a list")
    if not results:
        return None
    zpid = str(jpath(results[0], "zpid", NAME))
    if not zpid.isdigit():
        raise ParseError(NAME, f"search result zpid is not numeric: {zpid!r}")
    link = None
    for node in doc.find_all("a", attr="href"):
        match = DETAIL_LINK_RE.search(node.attrs["href"])
        if match and match.group(1) == zpid:
            link = match.group(0)
            break
    if link is None:
        detail = results[0].get("detailUrl") if isinstance(results[0], dict) else None
        if isinstance(detail, str) and DETAIL_LINK_RE.search(detail):
            link = DETAIL_LINK_RE.search(detail).group(0)  # type: ignore[union-attr]
    return SearchHit(zpid=zpid, detail_path=link)


def _property_from_cache(cache_text: Any, where: str, zpid: str | None) -> dict[str, Any]:
    if not isinstance(cache_text, str):
        raise ParseError(NAME, f"{where} is not a JSON string")
    cache = loads(cache_text, NAME, where)
    if not isinstance(cache, dict):
        raise ParseError(NAME, f"{where} is not a JSON object")
    props = [v["property"] for v in cache.values()
             if isinstance(v, dict) and isinstance(v.get("property"), dict)]
    if not props:
        raise ParseError(NAME, f"missing {where}.*.property")
    if zpid is not None:
        for prop in props:
            if str(prop.get("zpid")) == str(zpid):
                return prop
    return props[0]


def parse_detail_property(html: str, zpid: str | None = None) -> dict[str, Any]:
    """The ``property`` object of a detail page, from either layout.

    New layout: ``script#__NEXT_DATA__`` -> ``props.pageProps.componentProps.gdpClientCache``
    (a JSON *string*) -> values -> ``property``. Older: ``script#hdpApolloPreloadedData`` ->
    ``apiCache`` (a JSON string) -> values -> ``property``.
    """
    doc = parse_html(html)
    raw = script_text(doc, NEXT_DATA_ID)
    if raw is not None:
        data = loads(raw, NAME, f"script#{NEXT_DATA_ID}")
        return _property_from_cache(jpath(data, GDP_PATH, NAME), GDP_PATH, zpid)
    raw = script_text(doc, APOLLO_ID)
    if raw is not None:
        data = loads(raw, NAME, f"script#{APOLLO_ID}")
        return _property_from_cache(jpath(data, "apiCache", NAME), "apiCache", zpid)
    raise ParseError(NAME, f"detail page has neither script#{NEXT_DATA_ID} nor "
                           f"script#{APOLLO_ID}")


def parse_photos(prop: dict[str, Any]) -> list[PhotoRef]:
    """``responsivePhotos[].mixedSources.{jpeg,webp}[]``, grouped by the 32-hex photo id.

    The id in the CDN URL is shared by every size and format of one photo. A photo without
    ``mixedSources`` or a URL without the id is a layout change: loud.
    """
    photos = jpath(prop, "responsivePhotos", NAME)
    if not isinstance(photos, list):
        raise ParseError(NAME, "responsivePhotos is not a list")
    raw: list[RawPhoto] = []
    for i, photo in enumerate(photos):
        sources = jpath(photo, "mixedSources", NAME)
        caption = photo.get("caption") or None
        found = False
        for fmt_key in ("jpeg", "webp"):
            for src in sources.get(fmt_key) or []:
                url = jpath(src, "url", NAME)
                match = PHOTO_ID_RE.search(url)
                if not match:
                    raise ParseError(NAME, f"responsivePhotos.{i} URL has no 32-hex photo id: "
                                           f"{url}")
                kind = KIND_RE.search(url)
                raw.append(RawPhoto(
                    photo_id=match.group(1),
                    variant=PhotoVariant(
                        url=url, width=src.get("width"), height=src.get("height"),
                        format=format_from_url(url) or fmt_key,
                        kind=kind.group(1) if kind else None,
                    ),
                    caption=caption,
                ))
                found = True
        if not found:
            raise ParseError(NAME, f"responsivePhotos.{i}.mixedSources has no jpeg/webp sources")
    return group_photos(NAME, raw)


def parse_facts(prop: dict[str, Any]) -> dict[str, object]:
    """Price, beds, baths, sqft, year built, lot (in sqft). Keys must exist; values may be
    null (an off-market home has no price)."""
    facts: dict[str, object] = {
        "price": jpath(prop, "price", NAME),
        "beds": jpath(prop, "bedrooms", NAME),
        "baths": jpath(prop, "bathrooms", NAME),
        "sqft": jpath(prop, "livingArea", NAME),
        "year_built": jpath(prop, "yearBuilt", NAME),
    }
    lot = jpath(prop, "lotAreaValue", NAME)
    facts["lot_sqft"] = (
        None if lot is None else lot_to_sqft(lot, jpath(prop, "lotAreaUnits", NAME), NAME)
    )
    if facts["baths"] is not None:
        facts["baths"] = float(facts["baths"])  # type: ignore[arg-type]
    reso = prop.get("resoFacts")
    if isinstance(reso, dict):  # optional block: taken when present, never required
        if reso.get("hasPrivatePool") is not None:
            facts["pool"] = bool(reso["hasPrivatePool"])
        if reso.get("garageParkingCapacity") is not None:
            facts["garage"] = reso["garageParkingCapacity"]
        if "hoaFee" in reso:
            fee = reso["hoaFee"]
            facts["hoa_monthly"] = 0.0 if not fee else hoa_per_month(fee, NAME)
        if reso.get("sewer"):
            sewer = reso["sewer"]
            facts["sewer"] = ", ".join(sewer) if isinstance(sewer, list) else str(sewer)
    if prop.get("description"):
        facts["description"] = prop["description"]
    return facts


def property_address(prop: dict[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(jpath(prop, "streetAddress", NAME)), str(jpath(prop, "city", NAME)),
        str(jpath(prop, "state", NAME)), str(jpath(prop, "zipcode", NAME)),
    )


# --------------------------------------------------------------------------------------------
# Mechanics
# --------------------------------------------------------------------------------------------


class ZillowAdapter:
    """Zillow through the shared browser (see the module docstring)."""

    name = NAME

    async def discover(self, client: PolicyClient, address: Address) -> Listing:
        return await guarded(NAME, address, lambda: self._discover(client, address))

    async def _discover(self, client: PolicyClient, address: Address) -> Listing:
        settings = client.settings
        base = settings.zillow.base_url.rstrip("/")
        slug = address.slug()
        search_url = base + SEARCH_PATH.format(slug=slug)
        html = await self._load(client, search_url)
        hit = parse_search(html)
        if hit is None:
            raise not_found(NAME, f"no search result for {address.full}", search_url)
        detail_url = base + (hit.detail_path or DETAIL_PATH.format(slug=slug, zpid=hit.zpid))
        html = await self._load(client, detail_url)
        prop = parse_detail_property(html, hit.zpid)
        street, city, state, zip_code = property_address(prop)
        if not same_address(address, street, city, zip_code, state):
            raise not_found(
                NAME, f"first search result is another home ({street}, {city}, {state} "
                      f"{zip_code}), not {address.full}", detail_url,
            )
        return Listing(
            source=NAME, status=ListingStatus.FOUND, url=detail_url,
            listing_id=str(prop.get("zpid") or hit.zpid),
            facts=parse_facts(prop), photos=parse_photos(prop),
        )

    async def _load(self, client: PolicyClient, url: str) -> str:
        """Open ``url`` in a tab, wait for content, pass press & hold if it appears.

        Hold times: a first attempt at a third of ``max_hold_s`` (at least 3 s), then one at
        the full ``max_hold_s``. A page that never shows content (the JavaScript challenge not
        passed) or a captcha still standing after the last hold is BLOCKED. A page answered
        429/5xx, or a navigation that failed, is visited again (``max_retries`` times, see
        ``browser_ops.with_retries``), then FAILED with the status.
        """
        retries = client.settings.zillow.max_retries
        try:
            return await browser_ops.with_retries(lambda: self._visit(client, url),
                                                  retries=retries)
        except browser_ops.PageHttpError as exc:
            raise Outcome(ListingStatus.FAILED, f"{NAME}: page answered HTTP {exc.status} "
                          f"({retries + 1} visits)", url) from None

    async def _visit(self, client: PolicyClient, url: str) -> str:
        browser = client.settings.browser
        timeout = browser.page_timeout_s
        holds = sorted({min(browser.max_hold_s, max(3.0, browser.max_hold_s / 3)),
                        browser.max_hold_s})
        async with client.page(NAME, url) as page:
            try:
                html = await browser_ops.wait_html(
                    page, lambda h: page_kind(h) != "pending", timeout,
                    what=f"{NAME}: content of {url}")
            except browser_ops.WaitTimeout:
                raise blocked(NAME, "page never showed content (JavaScript challenge not "
                                    "passed?)", url) from None
            tried: list[float] = []
            while page_kind(html) == "captcha":
                if not holds:
                    held = ", ".join(f"{s:g}s" for s in tried)
                    raise blocked(NAME, f"press-and-hold challenge not passed (held {held})",
                                  url)
                hold_s = holds.pop(0)
                tried.append(hold_s)
                await browser_ops.press_and_hold(page, "#px-captcha", hold_s)
                try:
                    html = await browser_ops.wait_html(
                        page, lambda h: page_kind(h) == "content", min(timeout, 6.0),
                        what=f"{NAME}: content after press-and-hold")
                except browser_ops.WaitTimeout as exc:
                    html = exc.html
                    if page_kind(html) != "captcha":
                        raise blocked(NAME, "no content after press-and-hold", url) from None
            return html
