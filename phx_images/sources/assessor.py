"""Maricopa County Assessor: parcel facts from its JSON API (no photos).

Path: ``/search/property/?q=...&page=k`` (25 results a page) -> the result whose situs address is
ours (never result 0 blindly: a street search returns the neighbours) -> APN -> ``/parcel/{apn}``,
``/parcel/{apn}/propertyinfo``, ``/parcel/{apn}/residential-details`` -> facts.

The ``AUTHORIZATION`` token is added by the policy client from settings; this module never sees
or logs it. A 401 becomes FAILED with "assessor: token rejected", without echoing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from phx_images.address import Address
from phx_images.models import Listing, ListingStatus
from phx_images.sources.base import (
    Outcome,
    ParseError,
    guarded,
    http_status,
    jpath,
    loads,
    not_found,
    same_address,
)

if TYPE_CHECKING:
    from phx_images.net.client import PolicyClient

NAME = "assessor"
SEARCH_PATH = "/search/property/"
PARCEL_PATH = "/parcel/{apn}"
DETAIL_PATHS: dict[str, str] = {
    "parcel": "/parcel/{apn}",
    "propertyinfo": "/parcel/{apn}/propertyinfo",
    "residential": "/parcel/{apn}/residential-details",
}
PAGE_SIZE = 25
MAX_PAGES = 8  # 200 results: a street-number-and-name query never needs more

# fact -> (document, dotted path). Declarative: a renamed field is a one-line change, and
# jpath() names the missing key if the county changes its answer.
FACT_FIELDS: dict[str, tuple[str, str]] = {
    "lot_sqft": ("propertyinfo", "LotSize"),
    "year_built": ("propertyinfo", "YearBuilt"),
    "land_use": ("propertyinfo", "PropertyUseDescription"),
    "sqft": ("residential", "LivableSpace"),
    "beds": ("residential", "Bedrooms"),
    "baths": ("residential", "Bathrooms"),
    "pool": ("residential", "Pool"),
    "garage": ("residential", "GarageStalls"),
    "sewer": ("residential", "SewerType"),
}


@dataclass
class SearchPage:
    total: int
    results: list[dict[str, Any]]


def parse_search(text: str) -> SearchPage:
    data = loads(text, NAME, "search answer")
    results = jpath(data, "Results", NAME)
    if not isinstance(results, list):
        raise ParseError(NAME, "Results is not a list")
    total = jpath(data, "TotalPropertyResults", NAME)
    return SearchPage(total=int(total or 0), results=results)


def pick_apn(results: list[dict[str, Any]], address: Address) -> str | None:
    """The APN of the result whose situs street, city and zip are ours."""
    for i, row in enumerate(results):
        if not isinstance(row, dict):
            continue
        situs = row.get("SitusAddress")
        if situs is None:
            raise ParseError(NAME, f"missing Results.{i}.SitusAddress")
        if same_address(address, situs, row.get("SitusCity"), row.get("SitusZip")):
            return str(jpath(row, "APN", NAME))
    return None


def parse_facts(docs: dict[str, Any]) -> dict[str, object]:
    """Facts from the parcel documents per :data:`FACT_FIELDS` (loud on a missing key)."""
    return {fact: jpath(docs[doc], path, NAME) for fact, (doc, path) in FACT_FIELDS.items()}


def search_query(address: Address) -> str:
    """What to type into the county search: street and city (the county stores no state)."""
    return f"{address.street} {address.city}"


class AssessorAdapter:
    """Maricopa County Assessor (see the module docstring)."""

    name = NAME

    async def discover(self, client: PolicyClient, address: Address) -> Listing:
        return await guarded(NAME, address, lambda: self._discover(client, address))

    async def _get(self, client: PolicyClient, url: str,
                   params: dict[str, Any] | None = None) -> Any:
        try:
            resp = await client.fetch(NAME, url, params=params, kind="api")
        except Exception as exc:
            if http_status(exc) in (401, 403):
                raise Outcome(ListingStatus.FAILED, f"{NAME}: token rejected") from None
            raise
        return resp

    async def _discover(self, client: PolicyClient, address: Address) -> Listing:
        base = client.settings.assessor.base_url.rstrip("/")
        apn = None
        page = 1
        while apn is None and page <= MAX_PAGES:
            resp = await self._get(client, base + SEARCH_PATH,
                                   {"q": search_query(address), "page": page})
            found = parse_search(resp.text())
            apn = pick_apn(found.results, address)
            if page * PAGE_SIZE >= found.total or not found.results:
                break
            page += 1
        if apn is None:
            raise not_found(NAME, f"no parcel with situs address {address.full}")
        docs: dict[str, Any] = {}
        for doc, path in DETAIL_PATHS.items():
            resp = await self._get(client, base + path.format(apn=apn))
            docs[doc] = loads(resp.text(), NAME, f"{doc} answer")
        return Listing(
            source=NAME, status=ListingStatus.FOUND, url=base + PARCEL_PATH.format(apn=apn),
            listing_id=apn, facts={"apn": apn, **parse_facts(docs)},
        )
