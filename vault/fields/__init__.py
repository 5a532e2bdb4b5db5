"""Field types: validate, normalise, mask and index the values the vault keeps.

``normalize`` is the one entry point the domain layer calls before encrypting
or blind-indexing a value; ``decode`` turns decrypted canonical bytes back
into the same normal form (``decode(n.type, n.canonical) == n.value``). Both
dispatch through tables, so adding a type is one module and two table rows.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from vault.fields.address import decode_address, normalize_address
from vault.fields.base import (
    DateOfBirth,
    Email,
    Facts,
    FieldType,
    FieldValue,
    Name,
    Normalized,
    PaymentCard,
    PaymentToken,
    PhoneNumber,
    PostalAddress,
)
from vault.fields.card import decode_card, normalize_card
from vault.fields.date_of_birth import decode_date_of_birth, normalize_date_of_birth
from vault.fields.email import decode_email, normalize_email
from vault.fields.name import decode_name, normalize_name
from vault.fields.payment_token import decode_payment_token, normalize_payment_token
from vault.fields.phone import decode_phone, normalize_phone

__all__ = [
    "DateOfBirth",
    "Email",
    "Facts",
    "FieldType",
    "FieldValue",
    "Name",
    "Normalized",
    "PaymentCard",
    "PaymentToken",
    "PhoneNumber",
    "PostalAddress",
    "decode",
    "normalize",
    "type_of",
]

# Each normaliser takes its own value class; the table is keyed by exactly that
# class, so the loose Callable type is safe at every lookup.
_NORMALIZERS: Mapping[type[Any], tuple[FieldType, Callable[..., Normalized]]] = {
    PhoneNumber: (FieldType.PHONE, normalize_phone),
    Email: (FieldType.EMAIL, normalize_email),
    PostalAddress: (FieldType.ADDRESS, normalize_address),
    PaymentCard: (FieldType.CARD, normalize_card),
    PaymentToken: (FieldType.PAYMENT_TOKEN, normalize_payment_token),
    Name: (FieldType.NAME, normalize_name),
    DateOfBirth: (FieldType.DATE_OF_BIRTH, normalize_date_of_birth),
}

_DECODERS: Mapping[FieldType, Callable[[bytes], FieldValue]] = {
    FieldType.PHONE: decode_phone,
    FieldType.EMAIL: decode_email,
    FieldType.ADDRESS: decode_address,
    FieldType.CARD: decode_card,
    FieldType.PAYMENT_TOKEN: decode_payment_token,
    FieldType.NAME: decode_name,
    FieldType.DATE_OF_BIRTH: decode_date_of_birth,
}


def normalize(value: FieldValue, *, today: datetime.date) -> Normalized:
    """Validate ``value`` and bring it to normal form; raises ``InvalidArgument``.

    ``today`` decides card expiry and whether a date of birth is in the future.
    """
    return _entry(value)[1](value, today=today)


def decode(field_type: FieldType, canonical: bytes) -> FieldValue:
    """The normal-form value whose canonical bytes are ``canonical``.

    Raises ``DataLoss`` if the bytes do not have the shape ``field_type`` stores.
    """
    return _DECODERS[field_type](canonical)


def type_of(value: FieldValue) -> FieldType:
    return _entry(value)[0]


def _entry(value: FieldValue) -> tuple[FieldType, Callable[..., Normalized]]:
    try:
        return _NORMALIZERS[type(value)]
    except KeyError:
        raise TypeError(f"not a field value: {type(value).__name__}") from None
