"""Photo file names that say what a photo is, and parse back.

``{property_hash}_{loc}_{subject}_{conf:02d}_{src}_{YYYYMMDD}[_{seq}].{ext}``, e.g.
``a1b2c3d4_int_master_bath_87_z_20250301.jpg``. Subjects may contain underscores
(``master_bath``, ``hvac_label``, ``water_heater``, ``pool_equip``, ``ceiling_fan``,
``built_in``): the earlier system split on ``_`` and could not read them back. Parsing here is a
regex anchored at both ends whose subject part must be a known subject, so it is unambiguous.

Source letters (the earlier system's, kept): ``z`` zillow, ``r`` redfin, ``m`` phoenixmls (the
MLS), ``p`` assessor (public records), ``u`` unknown/other. ``seq`` (2+ digits, from 02) tells
apart photos that would otherwise get the same name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from phx_images.categorize.vocabulary import LOCS, SUBJECTS, Category

SOURCE_LETTERS: dict[str, str] = {
    "zillow": "z", "redfin": "r", "phoenixmls": "m", "assessor": "p",
}
LETTER_SOURCES: dict[str, str] = {v: k for k, v in SOURCE_LETTERS.items()} | {"u": "unknown"}

_NAME = re.compile(
    r"^(?P<hash>[0-9a-f]{8})_(?P<loc>" + "|".join(LOCS) + r")_(?P<subject>"
    + "|".join(sorted(SUBJECTS, key=len, reverse=True))
    + r")_(?P<conf>\d{2})_(?P<src>[zrmpu])_(?P<date>\d{8})(?:_(?P<seq>\d{2,}))?"
    r"\.(?P<ext>jpg|webp|png)$"
)
_HASH = re.compile(r"^[0-9a-f]{8}$")


class PhotoNameError(ValueError):
    """A file name that is not one of ours (the message quotes it)."""


@dataclass(frozen=True)
class PhotoName:
    property_hash: str
    loc: str
    subject: str
    confidence: int
    source: str  # full source name ("zillow", ..., "unknown")
    day: date
    seq: int | None
    ext: str

    def __str__(self) -> str:
        return format_name(self)


def source_letter(source: str) -> str:
    return SOURCE_LETTERS.get(source, "u")


def format_name(name: PhotoName) -> str:
    """The file name; validates every part so a bad name is never written."""
    if not _HASH.match(name.property_hash):
        raise PhotoNameError(f"property hash must be 8 lower-case hex, got {name.property_hash!r}")
    Category(name.loc, name.subject, name.confidence)  # validates vocabulary and range
    if name.ext not in ("jpg", "webp", "png"):
        raise PhotoNameError(f"unsupported extension {name.ext!r}")
    seq = ""
    if name.seq is not None:
        if name.seq < 2:
            raise PhotoNameError(f"seq starts at 2, got {name.seq}")
        seq = f"_{name.seq:02d}"
    return (
        f"{name.property_hash}_{name.loc}_{name.subject}_{name.confidence:02d}_"
        f"{source_letter(name.source)}_{name.day:%Y%m%d}{seq}.{name.ext}"
    )


def make_name(property_hash: str, category: Category, source: str, when: date | datetime,
              ext: str, seq: int | None = None) -> str:
    day = when.date() if isinstance(when, datetime) else when
    return format_name(PhotoName(property_hash, category.loc, category.subject,
                                 category.confidence, source, day, seq, ext))


def parse_name(filename: str) -> PhotoName:
    """Parse a photo file name back into its parts; :class:`PhotoNameError` if it is not ours."""
    match = _NAME.match(filename)
    if not match:
        raise PhotoNameError(f"not a photo name of ours: {filename!r}")
    try:
        day = datetime.strptime(match["date"], "%Y%m%d").date()
    except ValueError as exc:
        raise PhotoNameError(f"bad date in photo name {filename!r}") from exc
    seq = int(match["seq"]) if match["seq"] else None
    parsed = PhotoName(match["hash"], match["loc"], match["subject"], int(match["conf"]),
                       LETTER_SOURCES[match["src"]], day, seq, match["ext"])
    try:
        Category(parsed.loc, parsed.subject, parsed.confidence)
    except ValueError as exc:
        raise PhotoNameError(f"inconsistent photo name {filename!r}: {exc}") from exc
    return parsed
