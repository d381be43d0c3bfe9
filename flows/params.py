"""Typed flow parameters, so the Prefect UI shows a proper form (drop-downs, not free text)."""

from __future__ import annotations

from enum import StrEnum


class SourceName(StrEnum):
    ZILLOW = "zillow"
    REDFIN = "redfin"
    PHOENIXMLS = "phoenixmls"
    ASSESSOR = "assessor"


ALL_SOURCES: list[SourceName] = list(SourceName)


class ExtractMode(StrEnum):
    """``incremental`` reuses what is cached and stored; ``fresh`` downloads everything again."""

    INCREMENTAL = "incremental"
    FRESH = "fresh"
