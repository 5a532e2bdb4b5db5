"""Postal addresses: ISO 3166-1 country, cleaned free text, not searchable.

Every string is NFC-normalised and whitespace-collapsed so the stored form does
not depend on how a form or client happened to space it. The mask shows only
locality and country: street lines, postal code and recipients identify a
household and stay hidden. Addresses get no blind index (``index_input`` is
``None``): their free text matches too loosely to make equality search useful.
"""

from __future__ import annotations

import datetime

import pycountry

from vault.errors import FieldViolation, InvalidArgument
from vault.fields._canonical import CanonicalReader, encode_canonical
from vault.fields._text import clean_text, text_problem
from vault.fields.base import Facts, FieldType, Normalized, PostalAddress

MAX_LINES = 5
MAX_RECIPIENTS = 5
MAX_TEXT_LENGTH = 200

REGION_CODES: frozenset[str] = frozenset(country.alpha_2 for country in pycountry.countries)
"""Every ISO 3166-1 alpha-2 code pycountry knows; constant data, computed once."""

_PREFIX = "value.address."
_SINGLE_FIELDS = ("locality", "administrative_area", "postal_code", "sublocality", "organization")


def normalize_address(value: PostalAddress, *, today: datetime.date) -> Normalized:
    del today  # accepted for a uniform signature
    violations: list[FieldViolation] = []

    region = value.region_code.strip().upper()
    if region not in REGION_CODES:
        violations.append(
            FieldViolation(_PREFIX + "region_code", "not an ISO 3166-1 alpha-2 region code")
        )

    lines = _clean_list(value.address_lines, "address_lines", MAX_LINES, violations)
    if not lines and not any(v.field == _PREFIX + "address_lines" for v in violations):
        violations.append(
            FieldViolation(_PREFIX + "address_lines", "at least one address line is required")
        )
    recipients = _clean_list(value.recipients, "recipients", MAX_RECIPIENTS, violations)
    single = {name: _clean_one(getattr(value, name), name, violations) for name in _SINGLE_FIELDS}

    if violations:
        raise InvalidArgument.many(violations)

    normal = PostalAddress(
        region_code=region,
        address_lines=lines,
        recipients=recipients,
        locality=single["locality"],
        administrative_area=single["administrative_area"],
        postal_code=single["postal_code"],
        sublocality=single["sublocality"],
        organization=single["organization"],
    )
    return Normalized(
        type=FieldType.ADDRESS,
        value=normal,
        canonical=encode_canonical(normal),
        masked=mask_address(normal),
        facts=Facts(country=region, locality=normal.locality),
        index_input=None,
    )


def decode_address(canonical: bytes) -> PostalAddress:
    reader = CanonicalReader(FieldType.ADDRESS, canonical)
    return PostalAddress(
        region_code=reader.text("region_code"),
        address_lines=reader.texts("address_lines"),
        locality=reader.text("locality"),
        administrative_area=reader.text("administrative_area"),
        postal_code=reader.text("postal_code"),
        sublocality=reader.text("sublocality"),
        organization=reader.text("organization"),
        recipients=reader.texts("recipients"),
    )


def mask_address(address: PostalAddress) -> str:
    """``*** Tallinn, EE``, or ``*** EE`` when there is no locality."""
    if address.locality:
        return f"*** {address.locality}, {address.region_code}"
    return f"*** {address.region_code}"


def _clean_one(raw: str, name: str, violations: list[FieldViolation]) -> str:
    text = clean_text(raw)
    problem = text_problem(text)
    if problem is None and len(text) > MAX_TEXT_LENGTH:
        problem = f"longer than {MAX_TEXT_LENGTH} characters"
    if problem is not None:
        violations.append(FieldViolation(_PREFIX + name, problem))
    return text


def _clean_list(
    raw: tuple[str, ...], name: str, limit: int, violations: list[FieldViolation]
) -> tuple[str, ...]:
    """Clean each entry and drop the empty ones; at most ``limit`` entries are accepted."""
    if len(raw) > limit:
        violations.append(FieldViolation(_PREFIX + name, f"more than {limit} entries"))
        return ()
    before = len(violations)
    cleaned = tuple(text for text in (_clean_one(item, name, violations) for item in raw) if text)
    # One violation per list is enough; the path has no index to tell them apart.
    del violations[before + 1 :]
    return cleaned
