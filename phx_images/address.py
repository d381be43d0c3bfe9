"""Addresses: parsing, normalisation, the property hash and the URL slugs sites use.

The property hash (first 8 hex of sha256 of the normalised full address) names a property's
folder in the store, so normalisation must be stable: ``"4732 W Davis Rd, Glendale, AZ 85306"``
and ``" 4732 w davis rd,  glendale, az 85306 "`` are the same property.
"""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel, ValidationError, field_validator

_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
_STATE = re.compile(r"^[A-Za-z]{2}$")
_FULL = re.compile(
    r"^\s*(?P<street>[^,]+?)\s*,\s*(?P<city>[^,]+?)\s*,\s*(?P<state>[A-Za-z]{2})\s+"
    r"(?P<zip>\d{5}(?:-\d{4})?)\s*$"
)
_SPACES = re.compile(r"\s+")
# Characters no real street address carries; refusing them keeps slugs and logs clean.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f<>{}\[\]\\|^`\"]")
MAX_FIELD = 120


class AddressError(ValueError):
    """An address that cannot be used; the message names the field and the value."""


def _clean(field: str, value: str) -> str:
    value = _SPACES.sub(" ", str(value)).strip()
    if not value:
        raise AddressError(f"address {field} is empty")
    if len(value) > MAX_FIELD:
        raise AddressError(f"address {field} is longer than {MAX_FIELD} characters")
    if _FORBIDDEN.search(value):
        raise AddressError(f"address {field} has forbidden characters: {value!r}")
    return value


class Address(BaseModel):
    """A US street address split into the parts the sites search by."""

    street: str
    city: str
    state: str
    zip_code: str

    @field_validator("street", "city")
    @classmethod
    def _text(cls, value: str, info: object) -> str:
        return _clean(getattr(info, "field_name", "field"), value)

    @field_validator("state")
    @classmethod
    def _state(cls, value: str) -> str:
        value = _clean("state", value).upper()
        if not _STATE.match(value):
            raise AddressError(f"address state must be two letters, got {value!r}")
        return value

    @field_validator("zip_code")
    @classmethod
    def _zip(cls, value: str) -> str:
        value = _clean("zip_code", value)
        if not _ZIP.match(value):
            raise AddressError(f"address zip_code must be 5 digits (or ZIP+4), got {value!r}")
        return value

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``"street, city, ST zip"``; raise :class:`AddressError` naming the input."""
        if not isinstance(text, str) or _FORBIDDEN.search(text or ""):
            raise AddressError(f"not a usable address: {text!r}")
        match = _FULL.match(text)
        if not match:
            raise AddressError(
                f"cannot parse address {text!r}: expected 'street, city, ST 12345'"
            )
        try:
            return cls(
                street=match["street"], city=match["city"], state=match["state"],
                zip_code=match["zip"],
            )
        except ValidationError as exc:
            message = str(exc.errors()[0].get("msg", "invalid")).removeprefix("Value error, ")
            raise AddressError(f"{message} (in {text[:80]!r})") from None

    @property
    def full(self) -> str:
        return f"{self.street}, {self.city}, {self.state} {self.zip_code}"

    @property
    def normalized(self) -> str:
        """Lower-cased, whitespace-folded full address: the identity of a property."""
        return self.full.lower()

    @property
    def property_hash(self) -> str:
        """First 8 hex of sha256 of the normalised full address (the earlier system's id)."""
        return hashlib.sha256(self.normalized.encode()).hexdigest()[:8]

    def slug(self, sep: str = "-") -> str:
        """``4732-W-Davis-Rd-Glendale-AZ-85306``: the form Zillow and others use in URLs."""
        words = re.findall(r"[A-Za-z0-9#]+", self.full.replace("#", ""))
        return sep.join(words)
