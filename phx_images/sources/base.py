"""What every site adapter shares: the protocol, loud parse errors, and declarative helpers.

Why this module exists: the four adapters differ only in *where to look* (URL templates built
from the configured base URLs) and *what to take* (pure parse functions, text -> models). The
mechanics that are the same everywhere live here once:

- :class:`ParseError` and :func:`jpath`: a page that lacks an expected key fails loudly with the
  source and the dotted path (``"zillow: missing props.pageProps.componentProps..."``), because
  the real sites change their markup often and a parser that silently returns nothing would look
  exactly like "this listing has no photos".
- :func:`group_photos` / :func:`best_variant`: every site offers each photo in several sizes and
  formats; they are grouped by the *site's own* photo id (before any perceptual hashing) and one
  variant is chosen for download.
- :func:`same_address`: the guard that stops an adapter from taking a listing of another house.
- :func:`guarded`: maps the policy layer's exceptions to :class:`ListingStatus` so ``discover``
  never raises for an expected outcome.

Best-variant rule (decided here, used by every photo site): the **largest** variant by pixel
count (width x height, or width alone when the site gives no height; a site may pass its own
size ranking when it does not publish sizes, as PhoenixMLS does for ``-t/-m/-l/-o``); on a tie
the **uncropped** one (a fixed-box crop such as Redfin's ``mbphotov3`` loses picture); on a tie
**JPEG over PNG over WebP**, because JPEG decodes everywhere and re-encodes cheaply downstream.
"""

from __future__ import annotations

import html as html_lib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from phx_images.address import Address, AddressError
from phx_images.models import Listing, ListingStatus, PhotoRef, PhotoVariant

if TYPE_CHECKING:  # the policy layer is only needed for type checking here
    from phx_images.net.client import PolicyClient

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Errors and outcomes
# --------------------------------------------------------------------------------------------


class ParseError(ValueError):
    """A page or API answer lacks what the parser needs. The message starts with the source."""

    def __init__(self, source: str, what: str) -> None:
        self.source = source
        self.what = what
        super().__init__(f"{source}: {what}")


class Outcome(Exception):
    """Raised inside an adapter to end ``discover`` with a definite, expected status.

    Adapters are written as straight-line code (search -> id -> detail -> parse); raising
    ``Outcome(NOT_FOUND, "...")`` from the middle keeps that code flat, and :func:`guarded`
    turns it into the :class:`Listing` the caller expects.
    """

    def __init__(self, status: ListingStatus, reason: str, url: str | None = None) -> None:
        self.status = status
        self.reason = reason
        self.url = url
        super().__init__(reason)


def not_found(source: str, what: str, url: str | None = None) -> Outcome:
    return Outcome(ListingStatus.NOT_FOUND, f"{source}: {what}", url)


def blocked(source: str, what: str, url: str | None = None) -> Outcome:
    return Outcome(ListingStatus.BLOCKED, f"{source}: {what}", url)


@runtime_checkable
class SourceAdapter(Protocol):
    """One listing site. ``discover`` returns a :class:`Listing` for every expected outcome."""

    name: str

    async def discover(self, client: PolicyClient, address: Address) -> Listing: ...


def _net_errors() -> dict[str, type[BaseException]]:
    """The policy layer's exception classes, imported late so parsers work without net/."""
    from phx_images.net import errors

    return {
        name: getattr(errors, name)
        for name in ("FetchError", "CircuitOpen", "Blocked", "HttpStatusError", "NotAllowed")
        if hasattr(errors, name)
    }


async def guarded(
    source: str, address: Address, body: Callable[[], Awaitable[Listing]]
) -> Listing:
    """Run an adapter body and map every expected failure to a :class:`Listing` status.

    Mapping: :class:`Outcome` -> its status; net ``CircuitOpen`` -> SKIPPED; net ``Blocked``
    -> BLOCKED; :class:`ParseError` and any other net ``FetchError`` -> FAILED with a reason that
    starts with the source name. Unexpected exceptions are FAILED too (logged with traceback)
    because one broken source must not take the other sources of the property down with it.
    """
    errs = _net_errors()
    circuit_open = errs.get("CircuitOpen", ())
    blocked_err = errs.get("Blocked", ())
    fetch_error = errs.get("FetchError", ())
    try:
        return await body()
    except Outcome as out:
        return Listing(source=source, status=out.status, reason=out.reason, url=out.url)
    except ParseError as exc:
        return Listing(source=source, status=ListingStatus.FAILED, reason=str(exc))
    except BaseException as exc:
        if circuit_open and isinstance(exc, circuit_open):
            return Listing(
                source=source, status=ListingStatus.SKIPPED,
                reason=f"{source}: circuit breaker open ({_reason(exc)})",
            )
        if blocked_err and isinstance(exc, blocked_err):
            return Listing(
                source=source, status=ListingStatus.BLOCKED,
                reason=f"{source}: blocked ({_reason(exc)})", url=getattr(exc, "url", None),
            )
        if fetch_error and isinstance(exc, fetch_error):
            return Listing(
                source=source, status=ListingStatus.FAILED,
                reason=f"{source}: {type(exc).__name__}: {_reason(exc)}",
                url=getattr(exc, "url", None),
            )
        if isinstance(exc, Exception):
            log.exception("%s: unexpected error for %s", source, address.full)
            return Listing(
                source=source, status=ListingStatus.FAILED,
                reason=f"{source}: unexpected {type(exc).__name__}: {exc}",
            )
        raise  # CancelledError, KeyboardInterrupt: never swallowed


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or exc or type(exc).__name__)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a net ``HttpStatusError`` (``None`` for anything else)."""
    status_err = _net_errors().get("HttpStatusError")
    if status_err and isinstance(exc, status_err):
        return getattr(exc, "status", None)
    return None


# --------------------------------------------------------------------------------------------
# JSON helpers
# --------------------------------------------------------------------------------------------

_MISSING = object()


def jpath(data: Any, path: str, source: str, *, default: Any = _MISSING) -> Any:
    """Follow a dotted path (``a.b.0.c``; integers index lists) or raise :class:`ParseError`.

    The error names the full path that was wanted and the prefix that was found, e.g.
    ``zillow: missing props.pageProps.componentProps.gdpClientCache (have props.pageProps)``.
    """
    cur = data
    done: list[str] = []
    for part in path.split("."):
        nxt: Any = _MISSING
        if isinstance(cur, Mapping):
            nxt = cur.get(part, _MISSING)
        elif isinstance(cur, list) and re.fullmatch(r"-?\d+", part):
            idx = int(part)
            nxt = cur[idx] if -len(cur) <= idx < len(cur) else _MISSING
        if nxt is _MISSING:
            if default is not _MISSING:
                return default
            have = ".".join(done) or "<root>"
            raise ParseError(source, f"missing {path} (have {have})")
        cur = nxt
        done.append(part)
    return cur


def loads(text: str, source: str, what: str) -> Any:
    """``json.loads`` whose error names the source and what was being read."""
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        snippet = (text or "")[:60].replace("\n", " ")
        raise ParseError(source, f"{what} is not JSON ({exc}; starts {snippet!r})") from None


def strip_xssi(text: str, source: str, what: str) -> Any:
    """Parse a JSON answer with an anti-XSSI prefix such as Redfin's ``{}&&``."""
    body = text.lstrip()
    if body.startswith("{}&&"):
        body = body[4:]
    return loads(body, source, what)


# --------------------------------------------------------------------------------------------
# A tiny DOM (stdlib only) for the few HTML structures adapters read
# --------------------------------------------------------------------------------------------

_VOID = frozenset(
    ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr"]
)


@dataclass
class Node:
    """An element: tag, attributes, children (elements or text)."""

    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node | str] = field(default_factory=list)
    parent: Node | None = field(default=None, repr=False)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def text(self) -> str:
        """All descendant text, whitespace-folded."""
        parts: list[str] = []

        def walk(node: Node) -> None:
            for child in node.children:
                if isinstance(child, str):
                    parts.append(child)
                else:
                    walk(child)

        walk(self)
        return re.sub(r"\s+", " ", "".join(parts)).strip()

    def iter(self) -> Iterable[Node]:
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.iter()

    def find_all(
        self, tag: str | None = None, *, id: str | None = None, cls: str | None = None,
        attr: str | None = None,
    ) -> list[Node]:
        """Descendants matching every given condition (tag, id, one class, has attribute)."""
        out = []
        for node in self.iter():
            if tag and node.tag != tag:
                continue
            if id is not None and node.attrs.get("id") != id:
                continue
            if cls is not None and cls not in node.classes:
                continue
            if attr is not None and attr not in node.attrs:
                continue
            out.append(node)
        return out

    def find(self, tag: str | None = None, **kw: str) -> Node | None:
        found = self.find_all(tag, **kw)
        return found[0] if found else None

    def inside(self, *, tag: str | None = None, cls: str | None = None,
               id: str | None = None) -> bool:
        """Whether an ancestor matches (used to exclude carousels of *other* homes)."""
        node = self.parent
        while node is not None:
            if ((tag is None or node.tag == tag) and (cls is None or cls in node.classes)
                    and (id is None or node.attrs.get("id") == id)):
                return True
            node = node.parent
        return False


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root")
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: (v or "") for k, v in attrs}, parent=self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: (v or "") for k, v in attrs}, parent=self.stack[-1])
        self.stack[-1].children.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(text: str) -> Node:
    """Parse HTML leniently into a :class:`Node` tree (stdlib ``html.parser``)."""
    builder = _TreeBuilder()
    builder.feed(text or "")
    builder.close()
    return builder.root


def script_text(doc: Node, script_id: str) -> str | None:
    """The raw text of ``<script id=...>`` or ``None`` when the page has no such script."""
    node = doc.find("script", id=script_id)
    if node is None:
        return None
    return "".join(c for c in node.children if isinstance(c, str))


def unescape(text: str) -> str:
    return html_lib.unescape(text)


# --------------------------------------------------------------------------------------------
# Photos: grouping and best-variant choice
# --------------------------------------------------------------------------------------------

FORMAT_PREFERENCE: dict[str, int] = {"jpeg": 3, "png": 2, "webp": 1}
CROPPED_KINDS: frozenset[str] = frozenset({"mbphotov3"})  # fixed-box crops known to lose picture


def format_from_url(url: str) -> str | None:
    ext = url.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower()
    return {"jpg": "jpeg", "jpeg": "jpeg", "webp": "webp", "png": "png", "gif": "gif"}.get(ext)


def default_size(variant: PhotoVariant) -> float:
    """Pixel count, or width alone when the site does not publish the height."""
    if variant.width and variant.height:
        return float(variant.width * variant.height)
    if variant.width:
        return float(variant.width * variant.width)  # same order as area for one aspect ratio
    return 0.0


def best_variant(
    variants: Sequence[PhotoVariant],
    *,
    size: Callable[[PhotoVariant], float] = default_size,
    cropped: Callable[[PhotoVariant], bool] = lambda v: (v.kind or "") in CROPPED_KINDS,
) -> PhotoVariant:
    """Largest, then uncropped, then JPEG > PNG > WebP; first offered wins a complete tie."""
    if not variants:
        raise ValueError("best_variant needs at least one variant")
    ranked = sorted(
        enumerate(variants),
        key=lambda iv: (
            -size(iv[1]),
            cropped(iv[1]),
            -FORMAT_PREFERENCE.get(iv[1].format or "", 0),
            iv[0],
        ),
    )
    return ranked[0][1]


@dataclass
class RawPhoto:
    """One photo as a parser sees it before grouping: the site id, a variant, a caption."""

    photo_id: str
    variant: PhotoVariant
    caption: str | None = None


def group_photos(
    source: str,
    raw: Iterable[RawPhoto],
    *,
    size: Callable[[PhotoVariant], float] = default_size,
) -> list[PhotoRef]:
    """Group variants by the site's photo id (order of first appearance) and pick the best.

    The same URL offered twice (Redfin repeats ``mbphotov3`` under two keys) is kept once.
    """
    groups: dict[str, tuple[list[PhotoVariant], list[str | None]]] = {}
    for item in raw:
        variants, captions = groups.setdefault(item.photo_id, ([], []))
        if all(v.url != item.variant.url for v in variants):
            variants.append(item.variant)
        captions.append(item.caption)
    photos = []
    for pos, (pid, (variants, captions)) in enumerate(groups.items()):
        caption = next((c for c in captions if c), None)
        best = best_variant(variants, size=size)
        photos.append(PhotoRef(
            source=source, source_photo_id=pid, best_url=best.url, variants=variants,
            caption=caption, position=pos,
        ))
    return photos


# --------------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------------

_STREET_WORDS: dict[str, str] = {
    "street": "st", "str": "st", "road": "rd", "avenue": "ave", "av": "ave", "drive": "dr",
    "lane": "ln", "boulevard": "blvd", "court": "ct", "place": "pl", "parkway": "pkwy",
    "circle": "cir", "terrace": "ter", "trail": "trl", "highway": "hwy", "way": "way",
    "square": "sq", "loop": "lp", "pass": "pass", "run": "run", "path": "path",
    "north": "n", "south": "s", "east": "e", "west": "w", "northeast": "ne",
    "northwest": "nw", "southeast": "se", "southwest": "sw",
    "apartment": "unit", "apt": "unit", "suite": "unit", "ste": "unit", "#": "unit",
}


def norm_street(text: str) -> str:
    """``"4732 West Davis Road."`` -> ``"4732 w davis rd"``: case, punctuation, suffixes."""
    text = text.lower().replace("#", " # ")
    words = re.findall(r"[a-z0-9#]+", text)
    return " ".join(_STREET_WORDS.get(w, w) for w in words)


def norm_city(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def same_address(
    want: Address,
    street: str | None,
    city: str | None = None,
    zip_code: str | None = None,
    state: str | None = None,
) -> bool:
    """Whether a site's address is ``want``: street must match; city/state/zip when given.

    Sites spell addresses differently (``"4732 W DAVIS RD"``, ``"4732 West Davis Road"``);
    both sides are normalised. A field the site did not give is not held against it, but the
    street is always required, and at least one of city or zip must be present.
    """
    if not street or norm_street(street) != norm_street(want.street):
        return False
    if city is None and zip_code is None:
        return False
    if city is not None and norm_city(city) != norm_city(want.city):
        return False
    if zip_code is not None and str(zip_code).strip()[:5] != want.zip_code[:5]:
        return False
    return state is None or state.strip().upper() == want.state.upper()


def same_full_address(want: Address, text: str) -> bool:
    """Compare against a one-line ``"street, city, ST zip"`` address as a site prints it."""
    try:
        other = Address.parse(text)
    except AddressError:
        return False
    return same_address(want, other.street, other.city, other.zip_code, other.state)


# --------------------------------------------------------------------------------------------
# Typed values from display text
# --------------------------------------------------------------------------------------------

SQFT_PER_ACRE = 43_560


def to_int(text: object, source: str, what: str) -> int:
    """``"$450,000"`` -> 450000; a ParseError naming the field for anything unparsable."""
    if isinstance(text, bool):
        raise ParseError(source, f"{what} is not a number: {text!r}")
    if isinstance(text, int):
        return text
    if isinstance(text, float):
        return round(text)
    match = re.search(r"-?\d[\d,]*(?:\.\d+)?", str(text or ""))
    if not match:
        raise ParseError(source, f"{what} is not a number: {text!r}")
    return round(float(match.group().replace(",", "")))


def to_float(text: object, source: str, what: str) -> float:
    if isinstance(text, bool):
        raise ParseError(source, f"{what} is not a number: {text!r}")
    if isinstance(text, int | float):
        return float(text)
    match = re.search(r"-?\d[\d,]*(?:\.\d+)?", str(text or ""))
    if not match:
        raise ParseError(source, f"{what} is not a number: {text!r}")
    return float(match.group().replace(",", ""))


def lot_to_sqft(value: object, unit: str | None, source: str) -> int:
    """Lot size in square feet from a value and a unit (``sqft``/``acres``, any spelling)."""
    number = to_float(value, source, "lot size")
    unit_l = (unit or "sqft").lower()
    if "acre" in unit_l:
        return round(number * SQFT_PER_ACRE)
    if "sq" in unit_l or "ft" in unit_l:
        return round(number)
    raise ParseError(source, f"lot size has an unknown unit: {unit!r}")


def yes_no(text: object, source: str, what: str) -> bool:
    """``"Yes"``/``"Private"`` -> True, ``"No"``/``"None"`` -> False; loud for anything else."""
    if isinstance(text, bool):
        return text
    value = str(text or "").strip().lower()
    if value in {"no", "none", "n", "false", "0"}:
        return False
    if value in {"yes", "y", "true", "1"} or value.startswith(("yes", "private", "community")):
        return True
    raise ParseError(source, f"{what} is not yes/no: {text!r}")


def hoa_per_month(text: object, source: str) -> float:
    """``"No Fees"`` -> 0, ``"$150/month"`` / ``"$150 monthly"`` -> 150, yearly and quarterly
    fees converted to a month; a fee without a period is loud (guessing would be wrong)."""
    low = str(text or "").strip().lower()
    if low in {"no fees", "none", "no", "$0", "0"}:
        return 0.0
    amount = to_float(text, source, "HOA fee")
    if "year" in low or "annual" in low or "/yr" in low:
        return round(amount / 12, 2)
    if "quarter" in low:
        return round(amount / 3, 2)
    if "month" in low or "/mo" in low:
        return amount
    raise ParseError(source, f"HOA fee has no period: {text!r}")
