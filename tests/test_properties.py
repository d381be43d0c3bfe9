"""The buyer's list: CSV rows and typed addresses are outside input and may be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from phx_images.address import Address, AddressError
from phx_images.properties import PropertyListError, from_addresses, load_csv, parse_csv_text

HEADER = "street,city,state,zip_code,full_address,price,beds,baths,sqft\n"


def test_property_hash_is_the_earlier_systems() -> None:
    import hashlib

    address = Address.parse("4732 W Davis Rd, Glendale, AZ 85306")
    expected = hashlib.sha256(b"4732 w davis rd, glendale, az 85306").hexdigest()[:8]
    assert address.property_hash == expected
    assert Address.parse("  4732 w davis rd ,  GLENDALE, az 85306 ").property_hash == expected
    assert address.slug() == "4732-W-Davis-Rd-Glendale-AZ-85306"


@pytest.mark.parametrize("text, needle", [
    ("4732 W Davis Rd Glendale AZ 85306", "cannot parse address"),
    ("4732 W Davis Rd, Glendale, AZ 8530", "cannot parse address"),
    ("<script>, Glendale, AZ 85306", "not a usable address"),
    ("x" * 200 + ", Glendale, AZ 85306", "longer than"),
])
def test_bad_addresses_are_named(text: str, needle: str) -> None:
    with pytest.raises(AddressError, match=needle):
        Address.parse(text)


def test_csv_bad_rows_are_reported_good_rows_kept() -> None:
    text = HEADER + "\n".join([
        "4732 W Davis Rd,Glendale,AZ,85306,,450000,3,2,1500",
        "1 Main St,Phoenix,Arizona,85001,,,,,",          # state not two letters
        "2 Main St,Phoenix,AZ,85001,,lots,,,",           # price not a number
        "4732 W Davis Rd,Glendale,AZ,85306,,,,,",        # repeat
        ",,,,\"77 E Elm St, Tempe, AZ 85281\",,,,",      # full_address only
        "3 Main St,Phoenix,AZ,85001,,-5,,,",             # negative
    ])
    result = parse_csv_text(text)
    assert [p.address.street for p in result.properties] == ["4732 W Davis Rd", "77 E Elm St"]
    assert result.properties[0].price == 450000 and result.properties[0].baths == 2.0
    joined = "\n".join(result.problems)
    for line, needle in [(3, "state"), (4, "price"), (5, "repeats"), (7, "out of range")]:
        assert f"row {line}:" in joined and needle in joined, joined


def test_csv_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PropertyListError, match="not found"):
        load_csv(tmp_path / "missing.csv")
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\x00\x01\x02")
    with pytest.raises(PropertyListError, match="binary"):
        load_csv(binary)
    wrong = tmp_path / "w.csv"
    wrong.write_text("name,age\nbob,3\n")
    with pytest.raises(PropertyListError, match="missing column"):
        load_csv(wrong)


def test_sample_csv_loads_cleanly() -> None:
    result = load_csv(Path(__file__).parent.parent / "data" / "phx_homes.csv")
    assert len(result.properties) >= 33 and not result.problems


def test_typed_addresses() -> None:
    result = from_addresses(["4732 W Davis Rd, Glendale, AZ 85306", "nonsense"])
    assert len(result.properties) == 1
    assert result.problems == [
        "address 2: cannot parse address 'nonsense': expected 'street, city, ST 12345'"]
