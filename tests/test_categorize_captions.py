"""Caption rules: specific before general, hostile text harmless, cover photo fallback."""

from __future__ import annotations

import asyncio

import pytest

from phx_images.categorize import CaptionCategorizer, Categorizer, PhotoContext

CASES = {
    "Primary bathroom with dual sinks": "master_bath",
    "Spacious master bedroom with walk-in closet": "master",
    "Pool equipment and pump": "pool_equip",
    "Sparkling backyard pool": "pool",
    "HVAC unit label": "hvac_label",
    "New AC unit installed 2022": "hvac",
    "50 gallon water heater": "water_heater",
    "Ceiling fan in the den": "ceiling_fan",
    "Built-in bookshelves": "built_in",
    "Gourmet kitchen with island": "kitchen",
    "Covered patio": "patio",
    "Three car garage": "garage",
    "Front exterior at dusk": "front",
    "Aerial view of the community": "aerial",
    "Owned solar panels": "solar",
    "Electrical panel": "electrical",
    "Guest bedroom": "bedroom",
    "Hall bathroom": "bathroom",
    "Laundry room": "laundry",
    "Cozy fireplace": "fireplace",
}


@pytest.mark.parametrize("caption,subject", sorted(CASES.items()))
def test_caption_rules(caption: str, subject: str) -> None:
    category = CaptionCategorizer().categorize_sync(PhotoContext(caption=caption))
    assert category.subject == subject and category.confidence >= 80


def test_alt_text_and_cover_fallbacks() -> None:
    cat = CaptionCategorizer()
    assert cat.categorize_sync(PhotoContext(alt_text="kitchen")).confidence == 70
    assert cat.categorize_sync(PhotoContext(position=0)).subject == "front"
    unknown = cat.categorize_sync(PhotoContext(caption="Lovely!", position=5))
    assert (unknown.subject, unknown.confidence) == ("unknown", 0)


def test_hostile_caption_is_harmless() -> None:
    hostile = "<script>alert(1)</script>" + "a" * 1_000_000 + " kitchen"
    category = asyncio.run(CaptionCategorizer().categorize(PhotoContext(caption=hostile)))
    assert category.subject == "unknown"  # rule text is bounded; nothing executes


def test_is_a_categorizer() -> None:
    assert isinstance(CaptionCategorizer(), Categorizer)
