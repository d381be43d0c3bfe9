"""Categorizers: where a photo was taken and what it shows (see vocabulary.py)."""

from __future__ import annotations

from typing import Any

from phx_images.categorize.base import Categorizer, PhotoContext
from phx_images.categorize.captions import CaptionCategorizer
from phx_images.categorize.vocabulary import (
    LOC_OF,
    LOCS,
    SUBJECTS,
    SUBJECTS_BY_LOC,
    UNCATEGORIZED,
    Category,
)


def categorizer_from_settings(settings: Any) -> Categorizer:
    """The categorizer ``settings.categorizer`` names; vision needs vision_url and the key."""
    if settings.categorizer == "vision":
        if not settings.vision_url or settings.vision_api_key is None:
            raise ValueError("categorizer 'vision' needs PHX_VISION_URL and PHX_VISION_API_KEY")
        from phx_images.categorize.vision import VisionCategorizer

        return VisionCategorizer(settings.vision_url, settings.vision_api_key)
    return CaptionCategorizer()


__all__ = [
    "LOCS", "LOC_OF", "SUBJECTS", "SUBJECTS_BY_LOC", "UNCATEGORIZED", "CaptionCategorizer",
    "Categorizer", "Category", "PhotoContext", "categorizer_from_settings",
]
