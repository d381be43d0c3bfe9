"""The buyer's property list: the earlier system's CSV, or addresses typed in.

A list is outside input: one bad row must not sink the other rows, and every problem is reported
with its row number and column so the buyer can fix the file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from phx_images.address import Address, AddressError
from phx_images.models import Property

REQUIRED_COLUMNS = ("street", "city", "state", "zip_code")
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, "full_address", "price", "beds", "baths", "sqft")
MAX_CSV_BYTES = 20 * 1024 * 1024
MAX_ROWS = 100_000


class PropertyListError(ValueError):
    """The list as a whole is unusable (missing file, not a CSV, missing columns)."""


@dataclass
class PropertyList:
    """Valid properties (in input order, without repeats) and the rows that were refused."""

    properties: list[Property] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _number(row: dict[str, str], column: str, kind: type, line: int) -> float | int | None:
    raw = (row.get(column) or "").strip().replace(",", "").lstrip("$")
    if not raw:
        return None
    try:
        value = kind(float(raw)) if kind is int else kind(raw)
    except ValueError:
        raise AddressError(f"row {line}: column {column!r} is not a number: {raw[:40]!r}") from None
    if value < 0 or value != value:  # negative or NaN
        raise AddressError(f"row {line}: column {column!r} is out of range: {raw[:40]!r}")
    return value


def parse_csv_text(text: str, *, origin: str = "CSV") -> PropertyList:
    """Parse CSV text in the earlier system's columns; bad rows become problems, not errors."""
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing and "full_address" not in columns:
        raise PropertyListError(
            f"{origin}: missing column(s) {', '.join(missing)}; expected "
            f"{','.join(KNOWN_COLUMNS)}"
        )
    reader.fieldnames = columns
    result = PropertyList()
    seen: set[str] = set()
    for index, row in enumerate(reader):
        line = index + 2  # header is line 1
        if index >= MAX_ROWS:
            result.problems.append(f"{origin}: more than {MAX_ROWS} rows; the rest were ignored")
            break
        if None in row:  # more cells than columns
            result.problems.append(f"row {line}: more cells than the header has columns")
            continue
        try:
            if all((row.get(c) or "").strip() for c in REQUIRED_COLUMNS):
                address = Address(
                    street=row["street"], city=row["city"], state=row["state"],
                    zip_code=row["zip_code"],
                )
            else:
                address = Address.parse(row.get("full_address") or "")
            prop = Property(
                address=address,
                price=_number(row, "price", int, line),
                beds=_number(row, "beds", float, line),
                baths=_number(row, "baths", float, line),
                sqft=_number(row, "sqft", int, line),
            )
        except (AddressError, ValidationError) as exc:
            result.problems.append(f"row {line}: {_first_error(exc)}")
            continue
        if prop.property_hash in seen:
            result.problems.append(f"row {line}: repeats {address.full!r}; skipped")
            continue
        seen.add(prop.property_hash)
        result.properties.append(prop)
    return result


def load_csv(path: str | Path) -> PropertyList:
    """Read the property CSV at ``path``; a clear error if it is missing or not a text CSV."""
    path = Path(path)
    if not path.is_file():
        raise PropertyListError(f"property list not found: {path}")
    if path.stat().st_size > MAX_CSV_BYTES:
        raise PropertyListError(f"{path}: larger than {MAX_CSV_BYTES // 1024 // 1024} MiB")
    data = path.read_bytes()
    if b"\x00" in data:
        raise PropertyListError(f"{path}: not a text CSV (binary content)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PropertyListError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    return parse_csv_text(text, origin=str(path))


def from_addresses(addresses: Iterable[str]) -> PropertyList:
    """Properties from typed-in addresses (``"street, city, ST 12345"``)."""
    result = PropertyList()
    seen: set[str] = set()
    for number, text in enumerate(addresses, start=1):
        try:
            prop = Property(address=Address.parse(text))
        except (AddressError, ValidationError) as exc:
            result.problems.append(f"address {number}: {_first_error(exc)}")
            continue
        if prop.property_hash not in seen:
            seen.add(prop.property_hash)
            result.properties.append(prop)
    return result


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        return f"{where}: {message}" if where else message
    return str(exc)
