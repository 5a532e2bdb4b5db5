"""Field types: the domain values callers store, and what normalising one yields.

A value is validated and brought to its normal form *before* it is encrypted
or blind-indexed, so equal values written differently (``+372 5123 4567`` and
``0037251234567``) encrypt, index and mask alike. Masks and facts are pure
functions of the normal form. Each type's module states the most its mask may
reveal, as a docstring and as constants the property tests hold it to; no text
that reaches a mask carries bidirectional or invisible format characters
(``vault.fields._text``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class FieldType(enum.StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    ADDRESS = "address"
    CARD = "card"
    PAYMENT_TOKEN = "payment_token"  # noqa: S105 - a type name, not a secret
    NAME = "name"
    DATE_OF_BIRTH = "date_of_birth"


@dataclass(frozen=True)
class PhoneNumber:
    number: str
    default_region: str = ""


@dataclass(frozen=True)
class Email:
    address: str


@dataclass(frozen=True)
class PostalAddress:
    """Mirrors ``google.type.PostalAddress`` (the fields the vault keeps)."""

    region_code: str
    address_lines: tuple[str, ...] = ()
    locality: str = ""
    administrative_area: str = ""
    postal_code: str = ""
    sublocality: str = ""
    organization: str = ""
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True)
class PaymentCard:
    pan: str
    exp_month: int
    exp_year: int
    holder_name: str = ""


@dataclass(frozen=True)
class PaymentToken:
    provider: str
    token: str


@dataclass(frozen=True)
class Name:
    full_name: str


@dataclass(frozen=True)
class DateOfBirth:
    year: int
    month: int
    day: int


FieldValue = PhoneNumber | Email | PostalAddress | PaymentCard | PaymentToken | Name | DateOfBirth


@dataclass(frozen=True)
class Facts:
    """Type-specific facts that are safe to show with any masked view."""

    card_brand: str = ""
    card_last4: str = ""
    card_exp_month: int = 0
    card_exp_year: int = 0
    country: str = ""
    locality: str = ""
    phone_country_code: int = 0


@dataclass(frozen=True)
class Normalized:
    """A validated value in normal form, with everything derived from it.

    ``canonical`` is the byte string that gets encrypted; ``decode`` turns it
    back into ``value``. ``index_input`` is what the blind index HMACs, or
    ``None`` for types that are not searchable.
    """

    type: FieldType
    value: FieldValue
    canonical: bytes
    masked: str
    facts: Facts = field(default_factory=Facts)
    index_input: bytes | None = None
