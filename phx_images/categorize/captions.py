"""Offline categorizer: keyword rules over the caption, the alt text and the listing context.

Why rules: captions on listing sites are short and formulaic ("Primary bathroom with dual
sinks", "Backyard pool"), so ordered keyword rules get most of them right for free. Rules are
ordered most specific first ("master bath" before "master", "pool equipment" before "pool",
"hvac label" before "hvac"). Confidence reflects where the words came from: the caption is best,
alt text next; the cover position alone only suggests the front of the house.
"""

from __future__ import annotations

import re

from phx_images.categorize.base import PhotoContext
from phx_images.categorize.vocabulary import UNCATEGORIZED, Category

# (subject, pattern) -- first match wins, so order is specific -> general.
RULES: list[tuple[str, str]] = [
    ("hvac_label", r"(hvac|a/?c|air condition\w*|furnace|heat pump|condenser)\s*(unit\s*)?"
                   r"(label|data ?plate|name ?plate|tag|sticker)|data ?plate|model (number|no)"),
    ("pool_equip", r"pool (equipment|pump|filter|heater|equip)|pool equip"),
    ("water_heater", r"water ?heater|tankless"),
    ("ceiling_fan", r"ceiling fans?"),
    ("built_in", r"built[- ]?ins?\b|built[- ]in (shelv|cabinet|book|desk)"),
    ("master_bath", r"(master|primary|owner'?s?|main) (bath|bathroom|en[- ]?suite|ensuite)"
                    r"|en[- ]?suite|ensuite"),
    ("master", r"(master|primary|owner'?s?|main) (bed|bedroom|suite|retreat)"),
    ("solar", r"solar"),
    ("fireplace", r"fire ?place|hearth"),
    ("flooring", r"floor(ing|s)\b|hardwood|tile floor|carpet|laminate|vinyl plank"),
    ("electrical", r"electric(al)? (panel|box|meter)|breaker|panel box|sub ?panel"),
    ("plumbing", r"plumbing|water softener|shut[- ]?off|manifold|pipes"),
    ("attic", r"\battic\b"),
    ("roof", r"\broof(top|ing|line)?\b|shingles?|tiles? roof"),
    ("hvac", r"\bhvac\b|\ba/?c unit|air condition\w*|furnace|heat pump|condenser|thermostat"),
    ("aerial", r"aerial|drone|bird'?s[- ]eye|overhead view"),
    ("pool", r"\bpool\b|\bspa\b|swimming"),
    ("courtyard", r"courtyard"),
    ("patio", r"patio|porch|ramada|pergola|deck\b|outdoor (living|kitchen|dining)|veranda"),
    ("driveway", r"driveway|rv gate|rv parking"),
    ("garage", r"garage|carport"),
    ("rear", r"\brear\b|back ?yard|back of (the )?(home|house)|backyard"),
    ("yard", r"\byard\b|landscap\w*|lawn|garden|grass"),
    ("front", r"\bfront\b|exterior|curb ?appeal|street view|facade|elevation"),
    ("kitchen", r"kitchen|pantry|island|breakfast nook"),
    ("dining", r"dining"),
    ("laundry", r"laundry|washer|dryer|utility room|mud ?room"),
    ("office", r"office|den\b|study\b|workspace"),
    ("bonus", r"bonus|game room|media room|loft|flex (room|space)|theater|family room"),
    ("living", r"living|great room|sitting room|lounge"),
    ("bathroom", r"bath(room)?|powder room|shower|vanity|toilet|tub\b"),
    ("entry", r"entry|entrance|foyer|front door"),
    ("hallway", r"hallway|hall\b|corridor"),
    ("closet", r"closet|walk[- ]in"),
    ("stairs", r"stair|staircase|steps"),
    ("bedroom", r"bed ?room|guest room|nursery|\bbed\b"),
]
_COMPILED = [(subject, re.compile(pattern, re.IGNORECASE)) for subject, pattern in RULES]
MAX_TEXT = 2000  # hostile captions can be huge; rules only need the start


def match_subject(text: str | None) -> str | None:
    """The subject the first matching rule names, or None."""
    if not text:
        return None
    text = text[:MAX_TEXT]
    for subject, pattern in _COMPILED:
        if pattern.search(text):
            return subject
    return None


class CaptionCategorizer:
    """Default categorizer: offline, deterministic, free."""

    name = "captions"

    def categorize_sync(self, photo: PhotoContext) -> Category:
        subject = match_subject(photo.caption)
        if subject:
            return Category.of(subject, 85)
        subject = match_subject(photo.alt_text)
        if subject:
            return Category.of(subject, 70)
        if photo.position == 0:
            return Category.of("front", 40)
        return UNCATEGORIZED

    async def categorize(self, photo: PhotoContext) -> Category:
        return self.categorize_sync(photo)
