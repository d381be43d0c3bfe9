"""The category vocabulary: where a photo was taken (loc) and what it shows (subject).

Why fixed: photo names encode both (see phx_images/store/naming.py) and must parse back, and
every categorizer (captions, a hosted vision model) must answer in the same words. Taken from
the earlier system so names stay comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Loc = Literal["ext", "int", "sys", "feat"]
LOCS: tuple[str, ...] = ("ext", "int", "sys", "feat")

SUBJECTS_BY_LOC: dict[str, tuple[str, ...]] = {
    "ext": ("front", "rear", "pool", "garage", "yard", "aerial", "driveway", "patio", "courtyard"),
    "int": ("kitchen", "master", "master_bath", "bedroom", "bathroom", "living", "dining",
            "laundry", "office", "entry", "hallway", "closet", "stairs", "bonus"),
    "sys": ("hvac", "hvac_label", "electrical", "water_heater", "roof", "plumbing", "attic"),
    "feat": ("fireplace", "solar", "pool_equip", "ceiling_fan", "built_in", "flooring"),
}
UNKNOWN = "unknown"
#: subject -> its loc; "unknown" may go with any loc.
LOC_OF: dict[str, str] = {s: loc for loc, subjects in SUBJECTS_BY_LOC.items() for s in subjects}
SUBJECTS: tuple[str, ...] = (*LOC_OF, UNKNOWN)


@dataclass(frozen=True)
class Category:
    """A categorizer's answer. ``confidence`` is 0-99 (two digits in the photo name)."""

    loc: str
    subject: str
    confidence: int

    def __post_init__(self) -> None:
        if self.loc not in LOCS:
            raise ValueError(f"unknown loc {self.loc!r}; known: {', '.join(LOCS)}")
        if self.subject not in SUBJECTS:
            raise ValueError(f"unknown subject {self.subject!r}")
        if self.subject != UNKNOWN and LOC_OF[self.subject] != self.loc:
            raise ValueError(f"subject {self.subject!r} belongs to loc {LOC_OF[self.subject]!r}")
        if not 0 <= self.confidence <= 99:
            raise ValueError(f"confidence must be 0-99, got {self.confidence}")

    @classmethod
    def of(cls, subject: str, confidence: int, loc: str | None = None) -> Category:
        """The category for ``subject`` (its loc implied), confidence clamped to 0-99."""
        if subject not in SUBJECTS:
            subject = UNKNOWN
        loc = LOC_OF.get(subject, loc if loc in LOCS else "int")
        return cls(loc, subject, max(0, min(99, int(confidence))))


UNCATEGORIZED = Category("int", UNKNOWN, 0)
