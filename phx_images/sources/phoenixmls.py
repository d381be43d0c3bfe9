"""PhoenixMLS Search: browser autocomplete -> MLS number -> listing page over plain HTTP.

The simple-search page only reveals listings through its autocomplete widget (the search button
alone lists *every* listing), so the address is typed into ``#search-input`` in the shared
browser and the ``[role=treeitem]`` entries ("ADDR / NNNNNNN (MLS #)") are read. The entry whose
address is ours is taken, never the first one blindly: the widget also suggests neighbours.

The listing page ``/mls/{slug}-mls_{n}`` is static HTML, fetched with ``client.fetch``. Photos are
the gallery thumbnails (``-t``) mapped to the original (``-o``, the best variant) with ``-m`` and
``-l`` as the other sizes; thumbnails in ``.similar-listings`` belong to other homes and are never
taken. The ``table.listing-fields`` rows become typed facts.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from phx_images.address import Address
from phx_images.models import Listing, ListingStatus, PhotoRef, PhotoVariant
from phx_images.sources import browser_ops
from phx_images.sources.base import (
    Node,
    Outcome,
    ParseError,
    RawPhoto,
    format_from_url,
    group_photos,
    guarded,
    hoa_per_month,
    lot_to_sqft,
    not_found,
    parse_html,
    same_full_address,
    to_float,
    to_int,
    yes_no,
)

if TYPE_CHECKING:
    from phx_images.net.client import PolicyClient

NAME = "phoenixmls"
SEARCH_PATH = "/simple-search/"
AUTOCOMPLETE_PATH = "/simple-search/autocomplete"  # the widget's XHR (read only to see it failed)
LISTING_PATH = "/mls/{slug}-mls_{mls}"
SEARCH_INPUT = "#search-input"
RESULT_ITEM = "[role=treeitem]"
LABEL_RE = re.compile(r"^\s*(?P<addr>.+?)\s*/\s*(?P<mls>\d{5,10})\s*\(MLS\s*#\)\s*$")
THUMB_RE = re.compile(r"^(?P<stem>.+/(?P<key>[^/]+))-t(?P<ext>\.[A-Za-z]+)$")
# Size order of the CDN's suffixes (the page publishes no pixel sizes): t < m < l < o.
SIZES: dict[str, tuple[int, int | None]] = {"t": (1, 200), "m": (2, 640), "l": (3, 1024),
                                            "o": (4, None)}
REQUIRED_FIELDS = ("Price", "Beds", "Baths", "Sqft")


# --------------------------------------------------------------------------------------------
# Pure parsers
# --------------------------------------------------------------------------------------------


@dataclass
class Suggestion:
    address: str
    mls_number: str
    url: str | None


def parse_label(label: str) -> tuple[str, str]:
    """``"4732 W Davis Rd, Glendale, AZ 85306 / 6937912 (MLS #)"`` -> (address, mls)."""
    match = LABEL_RE.match(label)
    if not match:
        raise ParseError(NAME, f"autocomplete entry is not 'ADDR / NNNNNNN (MLS #)': {label!r}")
    return match["addr"], match["mls"]


def parse_suggestions(html: str) -> list[Suggestion]:
    """Every ``[role=treeitem]`` entry of the rendered search page."""
    doc = parse_html(html)
    out = []
    for node in doc.iter():
        if node.attrs.get("role") != "treeitem":
            continue
        addr, mls = parse_label(node.text())
        out.append(Suggestion(address=addr, mls_number=mls, url=node.attrs.get("data-url")))
    return out


def pick_suggestion(suggestions: list[Suggestion], address: Address) -> Suggestion | None:
    for sug in suggestions:
        if same_full_address(address, sug.address):
            return sug
    return None


def _size(variant: PhotoVariant) -> float:
    return float(SIZES.get((variant.kind or "-").lstrip("-"), (0, 0))[0])


def parse_photos(doc: Node) -> list[PhotoRef]:
    """Gallery thumbnails -> photos with -t/-m/-l/-o variants, best ``-o``, alt as caption."""
    gallery = doc.find("div", cls="gallery")
    if gallery is None:
        raise ParseError(NAME, "listing page has no div.gallery")
    raw: list[RawPhoto] = []
    for img in gallery.find_all("img", cls="gallery-thumb"):
        if img.inside(cls="similar-listings"):
            continue
        src = img.attrs.get("src", "")
        match = THUMB_RE.match(src)
        if not match:
            raise ParseError(NAME, f"gallery thumbnail is not a '-t' photo URL: {src!r}")
        key = img.attrs.get("data-photo-key") or match["key"]
        for suffix, (_rank, width) in SIZES.items():
            url = f"{match['stem']}-{suffix}{match['ext']}"
            raw.append(RawPhoto(
                photo_id=key,
                variant=PhotoVariant(url=url, width=width, format=format_from_url(url),
                                     kind=f"-{suffix}"),
                caption=img.attrs.get("alt") or None,
            ))
    return group_photos(NAME, raw, size=_size)


def parse_fields(doc: Node) -> dict[str, str]:
    """``table.listing-fields`` rows as ``{th text: td text}``."""
    table = doc.find("table", cls="listing-fields")
    if table is None:
        raise ParseError(NAME, "listing page has no table.listing-fields")
    fields: dict[str, str] = {}
    for row in table.find_all("tr"):
        th, td = row.find("th"), row.find("td")
        if th is not None and td is not None:
            fields[th.text()] = td.text()
    for name in REQUIRED_FIELDS:
        if name not in fields:
            raise ParseError(NAME, f"listing-fields has no {name!r} row")
    return fields


def typed_facts(fields: dict[str, str]) -> dict[str, object]:
    """The listing fields as typed facts (money and sizes as numbers, pool as bool)."""
    f = fields
    facts: dict[str, object] = {
        "price": to_int(f["Price"], NAME, "Price"),
        "beds": to_int(f["Beds"], NAME, "Beds"),
        "baths": to_float(f["Baths"], NAME, "Baths"),
        "sqft": to_int(f["Sqft"], NAME, "Sqft"),
    }
    if "Lot" in f:
        unit = "acres" if "acre" in f["Lot"].lower() else "sqft"
        facts["lot_sqft"] = lot_to_sqft(f["Lot"], unit, NAME)
    if "Garage" in f:
        garage = f["Garage"]
        facts["garage"] = (0 if garage.strip().lower() in {"none", "no"}
                           else to_int(garage, NAME, "Garage"))
    if "HOA" in f:
        facts["hoa_monthly"] = hoa_per_month(f["HOA"], NAME)
    if "Pool" in f:
        facts["pool"] = yes_no(f["Pool"], NAME, "Pool")
    if "Sewer" in f:
        facts["sewer"] = f["Sewer"]
    if "Year Built" in f:
        facts["year_built"] = to_int(f["Year Built"], NAME, "Year Built")
    schools = {level: f[f"{label} School"]
               for level, label in (("elementary", "Elementary"), ("middle", "Middle"),
                                    ("high", "High"))
               if f"{label} School" in f}
    if schools:
        facts["schools"] = schools
    return facts


def parse_listing(html: str) -> tuple[dict[str, object], list[PhotoRef]]:
    doc = parse_html(html)
    return typed_facts(parse_fields(doc)), parse_photos(doc)


# --------------------------------------------------------------------------------------------
# Mechanics
# --------------------------------------------------------------------------------------------


class PhoenixMlsAdapter:
    """PhoenixMLS Search (see the module docstring)."""

    name = NAME
    #: How long the autocomplete may take to show entries before "no entries" is concluded.
    suggest_timeout_s: float = 6.0
    #: How long an unchanged entry list must stand before it is taken as the final answer.
    settle_s: float = 1.5

    async def discover(self, client: PolicyClient, address: Address) -> Listing:
        return await guarded(NAME, address, lambda: self._discover(client, address))

    async def _discover(self, client: PolicyClient, address: Address) -> Listing:
        base = client.settings.phoenixmls.base_url.rstrip("/")
        suggestions = await self._suggest(client, base + SEARCH_PATH, address)
        pick = pick_suggestion(suggestions, address)
        if pick is None:
            seen = "; ".join(s.address for s in suggestions[:3]) or "none"
            raise not_found(NAME, f"no autocomplete entry for {address.full} (entries: {seen})")
        path = pick.url or LISTING_PATH.format(slug=address.slug().lower(), mls=pick.mls_number)
        url = path if path.startswith("http") else base + path
        resp = await client.fetch(NAME, url, kind="page")
        facts, photos = parse_listing(resp.text())
        return Listing(source=NAME, status=ListingStatus.FOUND, url=url,
                       listing_id=pick.mls_number, facts=facts, photos=photos)

    async def _suggest(self, client: PolicyClient, url: str,
                       address: Address) -> list[Suggestion]:
        """Type the address into the search box and read the entries it shows.

        The widget re-renders as each keystroke's query returns, so the first entries seen may
        answer a *prefix* of the address. Polling stops as soon as our address is among the
        entries, or when the list has stayed the same for ``settle_s`` (then it is final and
        our address is not in it), or after ``suggest_timeout_s`` with no entries at all.
        Entries without our address count only if the widget's last query was answered: a
        search page or autocomplete answered 429/5xx (or not at all) is tried again in a new
        tab (``max_retries`` times), then FAILED; it must never read as "not listed".
        """
        retries = client.settings.phoenixmls.max_retries
        try:
            return await browser_ops.with_retries(
                lambda: self._suggest_once(client, url, address), retries=retries)
        except browser_ops.PageHttpError as exc:
            answer = f"HTTP {exc.status}" if exc.status else "no answer"
            raise Outcome(ListingStatus.FAILED,
                          f"{NAME}: {exc.what}: {answer} in {retries + 1} visits") from None

    async def _suggest_once(self, client: PolicyClient, url: str,
                            address: Address) -> list[Suggestion]:
        loop = asyncio.get_running_loop()
        timeout = client.settings.browser.page_timeout_s
        async with client.page(NAME, url) as page:
            await browser_ops.wait_html(page, lambda h: 'id="search-input"' in h, timeout,
                                        what="search page")
            await browser_ops.type_text(page, SEARCH_INPUT, address.full, source=NAME,
                                        timeout_s=timeout)
            start = loop.time()
            last: list[Suggestion] | None = None
            stable_since = start
            while True:
                current = parse_suggestions(await browser_ops.html(page))
                if pick_suggestion(current, address) is not None:
                    return current
                now = loop.time()
                if current != last:
                    last, stable_since = current, now
                elif current and now - stable_since >= self.settle_s:
                    break
                if now - start >= self.suggest_timeout_s:
                    break
                await asyncio.sleep(0.2)
            status = await browser_ops.last_request_status(page, AUTOCOMPLETE_PATH)
            if status is not None and status != 200:
                raise browser_ops.PageHttpError(status, "autocomplete")
            return current
