"""``phx-images discover``: ask every source about one property and print what each found.

Why it exists: the quickest way for an operator to see whether a source works for an address
(status, reason, listing URL, facts, photos with their variants) without running the pipeline
or Prefect. The sources run concurrently through one :class:`PolicyClient`, which is always
closed on the way out so no Chromium is left behind.

Exit codes: 0 when at least one source gave a definite answer (found or not found); 1 when
every source failed, was blocked or skipped; 2 for bad input (address, source names,
settings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from phx_images.address import Address, AddressError
from phx_images.models import Listing, ListingStatus


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", required=True,
                        help='the property, e.g. "4732 W Davis Rd, Glendale, AZ 85306"')
    parser.add_argument("--sources", default="all",
                        help="comma-separated: zillow,redfin,phoenixmls,assessor or all "
                             "(every enabled source; the default)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a summary")


async def discover_all(settings: Any, address: Address, adapters: list[Any]) -> list[Listing]:
    """Run ``adapters`` concurrently for ``address`` with one policy client, then close it."""
    from phx_images.net.client import PolicyClient

    client = PolicyClient(settings)
    try:
        return list(await asyncio.gather(*(a.discover(client, address) for a in adapters)))
    finally:
        await client.aclose()


def to_json(address: Address, listings: list[Listing]) -> dict[str, Any]:
    return {
        "address": address.full,
        "property_hash": address.property_hash,
        "sources": {item.source: item.model_dump(mode="json") for item in listings},
    }


def summary(address: Address, listings: list[Listing]) -> str:
    lines = [f"{address.full}  (hash {address.property_hash})"]
    for item in listings:
        head = f"  {item.source:<11} {item.status.value:<10}"
        if item.status == ListingStatus.FOUND:
            lines.append(f"{head} {len(item.photos)} photos  {item.url}")
            facts = ", ".join(f"{k}={v}" for k, v in item.facts.items()
                              if k not in {"description", "schools"})
            if facts:
                lines.append(f"              {facts}")
        else:
            lines.append(f"{head} {item.reason or ''}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from phx_images.settings import load_settings
    from phx_images.sources import UnknownSource, get_adapters

    try:
        address = Address.parse(args.address)
    except (AddressError, ValidationError) as exc:
        print(f"phx-images discover: bad --address: {_first_line(exc)}", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except ValidationError as exc:
        print(f"phx-images discover: bad settings (PHX_ environment): {exc}", file=sys.stderr)
        return 2
    try:
        adapters = get_adapters(args.sources, settings)
    except UnknownSource as exc:
        print(f"phx-images discover: {exc}", file=sys.stderr)
        return 2
    if not adapters:
        print("phx-images discover: every source is disabled in settings", file=sys.stderr)
        return 2

    listings = asyncio.run(discover_all(settings, address, adapters))
    if args.json:
        print(json.dumps(to_json(address, listings), indent=2))
    else:
        print(summary(address, listings))
    definite = {ListingStatus.FOUND, ListingStatus.NOT_FOUND}
    return 0 if any(item.status in definite for item in listings) else 1


def _first_line(exc: Exception) -> str:
    if hasattr(exc, "errors"):
        errors = exc.errors()  # pydantic: the validator's own message
        if errors:
            return str(errors[0].get("msg", exc)).removeprefix("Value error, ")
    return str(exc).splitlines()[0]
