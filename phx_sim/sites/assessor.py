"""Maricopa County Assessor: token-authenticated JSON API of parcel facts (no photos).

Why neighbour parcels exist here: a search by street returns the houses next door too, so an
adapter must match the exact address instead of taking the first result.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any

from phx_sim.context import SimContext
from phx_sim.http import Request, Response, json_response
from phx_sim.sites.common import WordIndex

PAGE_SIZE = 25
_PARCEL = re.compile(r"^/parcel/(?P<apn>[0-9A-Za-z-]{1,20})(?:/(?P<sub>[a-z-]{1,40}))?/?$")
SUBS = ("propertyinfo", "residential-details", "valuations", "improvements", "sketches")


@dataclass
class Parcel:
    apn: str
    street: str
    city: str
    zip_code: str
    facts: dict[str, Any]
    owner: str


def _apn_key(apn: str) -> str:
    return re.sub(r"[^0-9A-Za-z]", "", apn).upper()


class Assessor:
    """The ``mcassessor.maricopa.gov`` API imitation."""

    name = "assessor"

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        parcels = [Parcel(p.ids["apn"], p.street, p.city, p.zip_code, p.facts,
                          f"OWNER {p.key.upper()} LIVING TRUST")
                   for p in ctx.catalog.properties]
        parcels += [Parcel(n["apn"], n["street"], n["city"], n["zip_code"], n["facts"],
                           f"NEIGHBOUR {i + 1} FAMILY TRUST")
                    for i, n in enumerate(ctx.catalog.neighbours)]
        self.parcels = parcels
        self.by_apn = {_apn_key(p.apn): p for p in parcels}
        self._index = WordIndex((p, (f"{p.street} {p.city} AZ {p.zip_code}",
                                     f"{p.street} {p.zip_code}", p.apn)) for p in parcels)

    async def handle(self, req: Request) -> Response:
        token = req.header("authorization")
        if not token or not hmac.compare_digest(token.encode(), self.ctx.assessor_token.encode()):
            return json_response({"error": "Unauthorized"}, 401)
        if req.method not in ("GET", "HEAD"):
            return json_response({"error": "method not allowed"}, 405)
        if req.path in ("/search/property", "/search/property/"):
            return self._search(req)
        m = _PARCEL.match(req.path)
        if m:
            parcel = self.by_apn.get(_apn_key(m["apn"]))
            if parcel is None:
                return json_response({"error": "Parcel not found"}, 404)
            sub = m["sub"]
            if sub is None:
                return json_response(self._summary(parcel))
            if sub not in SUBS:
                return json_response({"error": "Not found"}, 404)
            return json_response(self._sub(parcel, sub))
        return json_response({"error": "Not found"}, 404)

    def _search(self, req: Request) -> Response:
        q = (req.arg("q", "") or "")[:200]
        page_arg = req.arg("page", "1") or "1"
        if not page_arg.isdigit() or not 1 <= int(page_arg) <= 10_000:
            return json_response({"error": f"page must be a positive integer, got {page_arg!r}"},
                                 400)
        page = int(page_arg)
        found = self._index.find(q) if q.strip() else []
        chunk = found[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        return json_response({
            "TotalPropertyResults": len(found),
            "Results": [{"APN": p.apn, "SitusAddress": p.street.upper(),
                         "SitusCity": p.city.upper(), "SitusZip": p.zip_code,
                         "Ownership": p.owner, "PropertyType": "Residential"} for p in chunk],
        })

    @staticmethod
    def _summary(p: Parcel) -> dict[str, Any]:
        return {"APN": p.apn, "Owner": {"Ownership": p.owner},
                "PropertyAddress": f"{p.street.upper()} {p.city.upper()} {p.zip_code}",
                "SitusAddress": p.street.upper(), "SitusCity": p.city.upper(),
                "SitusZip": p.zip_code, "PropertyUseDescription": "Single Family Residence",
                "LotSize": p.facts["lot_sqft"], "YearBuilt": p.facts["year_built"]}

    @staticmethod
    def _sub(p: Parcel, sub: str) -> Any:
        f = p.facts
        if sub == "propertyinfo":
            return {"APN": p.apn, "LotSize": f["lot_sqft"], "YearBuilt": f["year_built"],
                    "PropertyUseCode": "0131", "PropertyUseDescription": "Single Family Residence",
                    "Jurisdiction": p.city.upper()}
        if sub == "residential-details":
            return {"APN": p.apn, "LivableSpace": f["sqft"], "Pool": f["pool"],
                    "GarageStalls": f["garage_spaces"], "Bedrooms": f["beds"],
                    "Bathrooms": f["baths"], "ConstructionYear": f["year_built"],
                    "SewerType": f["sewer"]}
        if sub == "valuations":
            return [{"TaxYear": str(year), "FullCashValue": round(f["price"] * k),
                     "LimitedPropertyValue": round(f["price"] * k * 0.7)}
                    for year, k in ((2026, 0.92), (2025, 0.88), (2024, 0.85))]
        if sub == "improvements":
            return [{"ImprovementType": "Single Family Residence", "Sqft": f["sqft"],
                     "Year": f["year_built"]}]
        return []
