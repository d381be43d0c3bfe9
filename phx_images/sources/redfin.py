"""Redfin: its JSON API over plain HTTP (``client.fetch(..., kind="api")``), no browser.

Path: location-autocomplete -> propertyId (the ``exactMatch``, or a row, whose address is ours)
-> initialInfo (listingId) -> aboveTheFold (photos, facts) -> belowTheFold (lot size).
Every answer starts with the anti-XSSI prefix ``{}&&``, stripped before parsing.

Photos: ``mediaBrowserInfo.photos[]`` grouped by ``photoId``; ``bigphoto`` (full screen, about
1280 px, uncropped) is the best variant; ``mbphotov3`` (a fixed 1080x771 centre crop),
``islphoto`` (640 wide) and the 320-wide thumbnail are kept as the other variants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from phx_images.address import Address
from phx_images.models import Listing, ListingStatus, PhotoRef, PhotoVariant
from phx_images.sources.base import (
    ParseError,
    RawPhoto,
    format_from_url,
    group_photos,
    guarded,
    jpath,
    not_found,
    same_address,
    strip_xssi,
)

if TYPE_CHECKING:
    from phx_images.net.client import PolicyClient

NAME = "redfin"
AUTOCOMPLETE_PATH = "/stingray/do/location-autocomplete"
INITIAL_INFO_PATH = "/stingray/api/home/details/initialInfo"
ABOVE_FOLD_PATH = "/stingray/api/home/details/aboveTheFold"
BELOW_FOLD_PATH = "/stingray/api/home/details/belowTheFold"

# Where each variant is in a photo entry, with the size Redfin renders it at when the entry
# does not say (bigphoto's own width/height are in the entry).
VARIANT_KEYS: tuple[tuple[str, str], ...] = (
    ("photoUrls.fullScreenPhotoUrl", "bigphoto"),
    ("photoUrls.nonFullScreenPhotoUrl", "mbphotov3"),
    ("photoUrls.nonFullScreenPhotoUrlCompressed", "mbphotov3"),
    ("photoUrls.lightboxListUrl", "islphoto"),
    ("thumbnailData.thumbnailUrl", "thumbnail"),
)
KNOWN_SIZES: dict[str, tuple[int | None, int | None]] = {
    "bigphoto": (1280, None), "mbphotov3": (1080, 771), "islphoto": (640, None),
    "thumbnail": (320, None),
}
KIND_IN_URL = re.compile(r"/(bigphoto|mbphotov3|islphoto|thumbnail)/")
HOME_URL_RE = re.compile(r"/home/(\d+)")
ZIP_IN_URL = re.compile(r"-(\d{5})/home/")


# --------------------------------------------------------------------------------------------
# Pure parsers
# --------------------------------------------------------------------------------------------


@dataclass
class Match:
    property_id: str
    path: str  # "/AZ/Glendale/4732-W-Davis-Rd-85306/home/12345678"


def _candidate(row: dict[str, Any]) -> tuple[str, str, str | None, str | None, str] | None:
    """(street, city, state, zip, url) of an autocomplete row, ``None`` if it is no home."""
    url = row.get("url") or ""
    if not HOME_URL_RE.search(url):
        return None  # a city, a school, a neighbourhood...
    sub = [p.strip() for p in str(row.get("subName") or "").split(",")]
    city = sub[0] if sub and sub[0] else None
    state = sub[1] if len(sub) > 1 and re.fullmatch(r"[A-Za-z]{2}", sub[1]) else None
    zip_match = ZIP_IN_URL.search(url)
    return (str(row.get("name") or ""), city or "", state, zip_match.group(1)
            if zip_match else None, url)


def parse_autocomplete(text: str, address: Address) -> Match | None:
    """The home whose address is ``address``: the ``exactMatch`` first, then section rows.

    Never the first row blindly: an autocomplete answers with *nearby* addresses too.
    ``None`` when nothing matches.
    """
    data = strip_xssi(text, NAME, "location-autocomplete")
    payload = jpath(data, "payload", NAME)
    rows: list[dict[str, Any]] = []
    if isinstance(payload.get("exactMatch"), dict):
        rows.append(payload["exactMatch"])
    for section in payload.get("sections") or []:
        rows.extend(r for r in section.get("rows") or [] if isinstance(r, dict))
    for row in rows:
        cand = _candidate(row)
        if cand is None:
            continue
        street, city, state, zip_code, url = cand
        if not same_address(address, street, city or None, zip_code, state):
            continue
        rid = str(row.get("id") or "")
        pid = rid.split("_", 1)[1] if "_" in rid else ""
        if not pid.isdigit():
            pid = HOME_URL_RE.search(url).group(1)  # type: ignore[union-attr]
        return Match(property_id=pid, path=url)
    return None


def parse_initial_info(text: str) -> str | None:
    """The listing id (``None`` for a home that is not listed now)."""
    data = strip_xssi(text, NAME, "initialInfo")
    value = jpath(data, "payload.listingId", NAME)
    return None if value is None else str(value)


def above_the_fold_payload(text: str) -> dict[str, Any] | None:
    """The aboveTheFold payload; ``None`` for Redfin's "Property not found" answer."""
    data = strip_xssi(text, NAME, "aboveTheFold")
    code = jpath(data, "resultCode", NAME)
    if code != 0:
        if "not found" in str(data.get("errorMessage", "")).lower():
            return None
        raise ParseError(NAME, f"aboveTheFold resultCode {code}: {data.get('errorMessage')}")
    return jpath(data, "payload", NAME)


def parse_photos(payload: dict[str, Any]) -> list[PhotoRef]:
    """``mediaBrowserInfo.photos[]`` grouped by ``photoId``; bigphoto as the best variant."""
    photos = jpath(payload, "mediaBrowserInfo.photos", NAME)
    if not isinstance(photos, list):
        raise ParseError(NAME, "mediaBrowserInfo.photos is not a list")
    raw: list[RawPhoto] = []
    for i, photo in enumerate(photos):
        pid = str(jpath(photo, "photoId", NAME))
        jpath(photo, "photoUrls.fullScreenPhotoUrl", NAME)  # the best one must be there
        for key, kind in VARIANT_KEYS:
            url = jpath(photo, key, NAME, default=None)
            if not url:
                continue
            url_kind = KIND_IN_URL.search(url)
            if url_kind and url_kind.group(1) != kind:
                raise ParseError(NAME, f"mediaBrowserInfo.photos.{i}.{key} is not a {kind} URL: "
                                       f"{url}")
            width, height = KNOWN_SIZES[kind]
            if kind == "bigphoto":
                width = photo.get("width") or width
                height = photo.get("height") or height
            raw.append(RawPhoto(
                photo_id=pid,
                variant=PhotoVariant(url=url, width=width, height=height,
                                     format=format_from_url(url), kind=kind),
                caption=photo.get("caption") or photo.get("photoCaption") or None,
            ))
    return group_photos(NAME, raw)


def parse_address(payload: dict[str, Any]) -> tuple[str, str, str, str]:
    info = jpath(payload, "addressSectionInfo", NAME)
    return (
        str(jpath(info, "streetAddress.assembledAddress", NAME)),
        str(jpath(info, "city", NAME)), str(jpath(info, "state", NAME)),
        str(jpath(info, "zip", NAME)),
    )


def parse_facts(payload: dict[str, Any]) -> dict[str, object]:
    info = jpath(payload, "addressSectionInfo", NAME)
    baths = jpath(info, "baths", NAME)
    return {
        "price": jpath(info, "priceInfo.amount", NAME),
        "beds": jpath(info, "beds", NAME),
        "baths": None if baths is None else float(baths),
        "sqft": jpath(info, "sqFt.value", NAME),
        "year_built": jpath(info, "yearBuilt", NAME),
    }


def parse_below_the_fold(text: str) -> dict[str, object]:
    """Lot size (and year built as public records have it)."""
    data = strip_xssi(text, NAME, "belowTheFold")
    basic = jpath(data, "payload.publicRecordsInfo.basicInfo", NAME)
    return {"lot_sqft": jpath(basic, "lotSqFt", NAME)}


# --------------------------------------------------------------------------------------------
# Mechanics
# --------------------------------------------------------------------------------------------


class RedfinAdapter:
    """Redfin over its JSON API (see the module docstring)."""

    name = NAME

    async def discover(self, client: PolicyClient, address: Address) -> Listing:
        return await guarded(NAME, address, lambda: self._discover(client, address))

    async def _discover(self, client: PolicyClient, address: Address) -> Listing:
        base = client.settings.redfin.base_url.rstrip("/")

        async def get(path: str, params: dict[str, Any]) -> str:
            resp = await client.fetch(NAME, base + path, params=params, kind="api")
            return resp.text()

        text = await get(AUTOCOMPLETE_PATH, {"location": address.full, "v": 2})
        match = parse_autocomplete(text, address)
        if match is None:
            raise not_found(NAME, f"no autocomplete match for {address.full}")
        page_url = base + match.path
        listing_id = parse_initial_info(await get(INITIAL_INFO_PATH, {"path": match.path}))
        fold = {"propertyId": match.property_id, "accessLevel": 3}
        payload = above_the_fold_payload(await get(ABOVE_FOLD_PATH, fold))
        if payload is None:
            raise not_found(NAME, f"property {match.property_id} not found", page_url)
        street, city, state, zip_code = parse_address(payload)
        if not same_address(address, street, city, zip_code, state):
            raise not_found(NAME, f"property {match.property_id} is {street}, {city} "
                                  f"{zip_code}, not {address.full}", page_url)
        facts = parse_facts(payload)
        facts.update(parse_below_the_fold(await get(BELOW_FOLD_PATH, fold)))
        return Listing(
            source=NAME, status=ListingStatus.FOUND, url=page_url,
            listing_id=listing_id or match.property_id,
            facts={"property_id": match.property_id, **facts},
            photos=parse_photos(payload),
        )

