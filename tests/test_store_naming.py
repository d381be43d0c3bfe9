"""Photo names round-trip for every subject, including those with underscores."""

from __future__ import annotations

from datetime import date

import pytest

from phx_images.categorize import LOC_OF, LOCS, SUBJECTS, Category
from phx_images.store import PhotoNameError, make_name, parse_name
from phx_images.store.naming import SOURCE_LETTERS

SOURCES = [*SOURCE_LETTERS, "unknown"]


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("seq", [None, 2, 13])
def test_round_trip_every_subject(subject: str, seq: int | None) -> None:
    for i, source in enumerate(SOURCES):
        loc = LOC_OF.get(subject, LOCS[i % len(LOCS)])
        category = Category(loc, subject, (i * 37) % 100)
        name = make_name("a1b2c3d4", category, source, date(2025, 3, 1), "jpg", seq)
        parsed = parse_name(name)
        assert (parsed.loc, parsed.subject, parsed.confidence) == (loc, subject,
                                                                   category.confidence)
        assert parsed.source == source and parsed.seq == seq
        assert parsed.day == date(2025, 3, 1) and parsed.property_hash == "a1b2c3d4"
        assert str(parsed) == name


def test_examples() -> None:
    name = make_name("0a0b0c0d", Category.of("master_bath", 7), "phoenixmls", date(2024, 12, 31),
                     "webp")
    assert name == "0a0b0c0d_int_master_bath_07_m_20241231.webp"
    assert parse_name("0a0b0c0d_sys_hvac_label_99_p_20240101_02.png").subject == "hvac_label"


@pytest.mark.parametrize("bad", [
    "0a0b0c0d_int_master_bath_7_m_20241231.jpg",  # conf not 2 digits
    "0a0b0c0d_int_pool_70_z_20241231.jpg",  # pool is ext, not int
    "0a0b0c0d_int_sauna_70_z_20241231.jpg",  # unknown subject
    "0a0b0c0d_int_kitchen_70_x_20241231.jpg",  # unknown source letter
    "0a0b0c0d_int_kitchen_70_z_20241331.jpg",  # bad date
    "../0a0b0c0d_int_kitchen_70_z_20241231.jpg",
    "0a0b0c0d_int_kitchen_70_z_20241231.exe",
    "0a0b0c0d_int_kitchen_70_z_20241231_1.jpg",  # seq starts at 02
])
def test_not_our_names_refused(bad: str) -> None:
    with pytest.raises(PhotoNameError):
        parse_name(bad)


def test_invalid_parts_never_written() -> None:
    with pytest.raises(PhotoNameError):
        make_name("XYZ", Category.of("kitchen", 5), "zillow", date(2025, 1, 1), "jpg")
    with pytest.raises(ValueError):
        Category("ext", "kitchen", 5)
    with pytest.raises(ValueError):
        Category("int", "kitchen", 100)
