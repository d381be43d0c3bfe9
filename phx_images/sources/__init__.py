"""Site adapters and their registry.

``ADAPTERS`` maps a source name to its adapter (stateless, so one instance serves every
property). ``get_adapters`` turns a user's ``--sources`` list into adapters with an error that
names the unknown source, so a typo never silently drops a site.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from phx_images.settings import SOURCE_NAMES
from phx_images.sources.assessor import AssessorAdapter
from phx_images.sources.base import ParseError, SourceAdapter
from phx_images.sources.phoenixmls import PhoenixMlsAdapter
from phx_images.sources.redfin import RedfinAdapter
from phx_images.sources.zillow import ZillowAdapter

if TYPE_CHECKING:
    from phx_images.settings import Settings

ADAPTERS: dict[str, SourceAdapter] = {
    "zillow": ZillowAdapter(),
    "redfin": RedfinAdapter(),
    "phoenixmls": PhoenixMlsAdapter(),
    "assessor": AssessorAdapter(),
}
assert set(ADAPTERS) == set(SOURCE_NAMES), "every configured source needs an adapter"


class UnknownSource(ValueError):
    """A source name that no adapter has."""


def parse_source_names(names: str | Iterable[str]) -> list[str]:
    """``"zillow, redfin"`` or ``["zillow", "redfin"]`` -> names; ``"all"`` kept as is."""
    if isinstance(names, str):
        names = names.split(",")
    out: list[str] = []
    for name in names:
        name = name.strip().lower()
        if name and name not in out:
            out.append(name)
    return out


def get_adapters(
    names: str | Iterable[str], settings: Settings | None = None
) -> list[SourceAdapter]:
    """Adapters for ``names`` in the order given. ``"all"`` means every *enabled* source
    (every source when ``settings`` is not given). An unknown name raises
    :class:`UnknownSource` naming it and the known ones; an empty list raises too."""
    wanted = parse_source_names(names)
    if not wanted:
        raise UnknownSource(f"no source given; known: all, {', '.join(ADAPTERS)}")
    unknown = [n for n in wanted if n != "all" and n not in ADAPTERS]
    if unknown:
        raise UnknownSource(
            f"unknown source(s): {', '.join(unknown)}; known: all, {', '.join(ADAPTERS)}"
        )
    if "all" in wanted:
        wanted = [n for n in ADAPTERS
                  if settings is None or settings.source(n).enabled]
    return [ADAPTERS[n] for n in wanted]


__all__ = [
    "ADAPTERS",
    "ParseError",
    "SourceAdapter",
    "UnknownSource",
    "get_adapters",
    "parse_source_names",
]
