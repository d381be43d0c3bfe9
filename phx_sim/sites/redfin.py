"""Redfin: a Chrome user agent is required; the stingray JSON API behind ``{}&&``.

Why the UA gate: the real site answers plain clients with 403 and lets a Chrome user agent
through; adapters must impersonate Chrome over HTTP (a headless browser's UA fails too).
"""

from __future__ import annotations

import re
from typing import Any

from phx_sim.catalog import Property
from phx_sim.context import SimContext
from phx_sim.http import Request, Response, json_response
from phx_sim.imaging import VARIANTS
from phx_sim.sites.common import WordIndex, esc, money, not_found, page

PREFIX = "{}&&"
BIG = VARIANTS[("redfin", "bigphoto")]
_HOME = re.compile(r"^/AZ/(?P<city>[^/]{1,80})/(?P<slug>[^/]{1,200})/home/(?P<pid>\d{1,12})/?$")
_PATH_PID = re.compile(r"/home/(\d{1,12})/?$")


def chrome_ua(user_agent: str) -> bool:
    return "Chrome/" in user_agent and "Headless" not in user_agent


def home_path(prop: Property) -> str:
    slug = "-".join(re.findall(r"[A-Za-z0-9]+", f"{prop.street} {prop.zip_code}"))
    return f"/AZ/{prop.city}/{slug}/home/{prop.ids['redfin_property_id']}"


class Redfin:
    """The ``www.redfin.com`` imitation."""

    name = "redfin"

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        self._index = WordIndex((p, (p.full_address, f"{p.street} {p.city} {p.state}"))
                                for p in ctx.catalog.by_redfin.values())

    async def handle(self, req: Request) -> Response:
        if not chrome_ua(req.header("user-agent")):
            return page("Access denied", "<h1>Access denied</h1><p>Are you a robot?</p>", 403)
        if req.method not in ("GET", "HEAD"):
            return json_response({"error": "method not allowed"}, 405)
        path = req.path
        if path == "/":
            return page("Redfin: Real Estate, Homes for Sale", "<h1>Redfin</h1>")
        if path == "/stingray/do/location-autocomplete":
            return self._autocomplete(req.arg("location", "") or "")
        if path == "/stingray/api/home/details/initialInfo":
            m = _PATH_PID.search(req.arg("path", "") or "")
            prop = self._prop(m.group(1) if m else None)
            if prop is None:
                return self._api({"resultCode": 1, "errorMessage": "Property not found"})
            return self._api({"resultCode": 0, "payload": {
                "propertyId": prop.ids["redfin_property_id"],
                "listingId": prop.ids["redfin_listing_id"]}})
        if path in ("/stingray/api/home/details/aboveTheFold",
                    "/stingray/api/home/details/belowTheFold"):
            prop = self._prop(req.arg("propertyId"))
            if prop is None:
                return self._api({"resultCode": 1, "errorMessage": "Property not found"})
            if path.endswith("aboveTheFold"):
                return self._api({"resultCode": 0, "payload": self._above(prop)})
            return self._api({"resultCode": 0, "payload": self._below(prop)})
        m = _HOME.match(path)
        if m:
            prop = self._prop(m["pid"])
            if prop is None:
                return not_found("Redfin")
            return self._home(prop)
        return not_found("Redfin")

    def _prop(self, pid: str | None) -> Property | None:
        if not pid or not pid.isdigit() or len(pid) > 12:
            return None
        return self.ctx.catalog.by_redfin.get(int(pid))

    @staticmethod
    def _api(obj: Any) -> Response:
        return json_response(obj, prefix=PREFIX)

    def _row(self, prop: Property) -> dict[str, Any]:
        return {"id": f"1_{prop.ids['redfin_property_id']}", "type": "1",
                "name": prop.street, "subName": f"{prop.city}, {prop.state}, USA",
                "url": home_path(prop), "active": True}

    def _autocomplete(self, text: str) -> Response:
        text = text[:200]
        rows = self._index.find(text, partial_last=True) if len(text.strip()) >= 3 else []
        payload: dict[str, Any] = {"sections": [{"rows": [self._row(p) for p in rows[:10]],
                                                 "name": "Addresses"}]}
        if len(rows) == 1 and len(text.split()) >= 3:
            payload["exactMatch"] = self._row(rows[0])
        return self._api({"resultCode": 0, "payload": payload, "version": 2})

    def _above(self, prop: Property) -> dict[str, Any]:
        f = prop.facts
        photos = []
        asset = self.ctx.urls["redfin_photos"]
        for photo in prop.site_photos(self.ctx.catalog, "redfin"):
            paths = photo.paths["redfin"]
            photos.append({
                "photoId": self.ctx.catalog.redfin_photo_id(photo.id), "displayLevel": 1,
                "width": BIG.width, "height": BIG.height,
                "photoUrls": {"fullScreenPhotoUrl": asset + paths["bigphoto"],
                              "nonFullScreenPhotoUrl": asset + paths["mbphotov3"],
                              "nonFullScreenPhotoUrlCompressed": asset + paths["mbphotov3"],
                              "lightboxListUrl": asset + paths["islphoto"]},
                "thumbnailData": {"thumbnailUrl": asset + paths["thumbnail"]},
            })
        return {
            "addressSectionInfo": {
                "beds": f["beds"], "baths": f["baths"], "sqFt": {"value": f["sqft"]},
                "priceInfo": {"amount": f["price"]},
                "streetAddress": {"assembledAddress": prop.street},
                "city": prop.city, "state": prop.state, "zip": prop.zip_code,
                "yearBuilt": f["year_built"], "status": {"displayValue": "Active"},
            },
            "mediaBrowserInfo": {"photos": photos, "isHomeStatusActive": True},
        }

    def _below(self, prop: Property) -> dict[str, Any]:
        f = prop.facts
        return {"publicRecordsInfo": {"basicInfo": {
            "beds": f["beds"], "baths": f["baths"], "totalSqFt": f["sqft"],
            "lotSqFt": f["lot_sqft"], "yearBuilt": f["year_built"],
            "propertyTypeName": "Single Family Residential", "apn": prop.ids["apn"],
        }}, "amenitiesInfo": {"superGroups": [{"amenityGroups": [
            {"groupTitle": "Parking", "amenityEntries": [
                {"amenityName": "Garage Spaces", "amenityValues": [str(f["garage_spaces"])]}]},
            {"groupTitle": "Pool", "amenityEntries": [
                {"amenityName": "Pool", "amenityValues": ["Private" if f["pool"] else "None"]}]},
        ]}]}}

    def _home(self, prop: Property) -> Response:
        f = prop.facts
        body = (f"<h1 class=\"full-address\">{esc(prop.full_address)}</h1>"
                f"<div class=\"statsValue\">{money(f['price'])}</div>"
                f"<div class=\"home-main-stats\">{f['beds']} Beds · {f['baths']:g} Baths · "
                f"{f['sqft']:,} Sq Ft</div>"
                f"<div id=\"marketingRemarks\">{esc(f['description'])}</div>")
        return page(f"{prop.full_address} | MLS# {prop.ids['mls_number'] or ''} | Redfin", body)
