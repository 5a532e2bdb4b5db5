"""Postal addresses: ISO 3166-1 country, cleaned free text, not searchable.

Every string is NFC-normalised and whitespace-collapsed so the stored form does
not depend on how a form or client happened to space it. Addresses get no
blind index (``index_input`` is ``None``): their free text matches too loosely
to make equality search useful.

The most a mask reveals: the locality and the ISO 3166-1 region code,
``*** Tallinn, EE`` (``*** EE`` without a locality), the two facts every view
already carries. Street lines, postal code, sub-locality, administrative area,
organisation and recipients identify a household and are never shown.
A problem with one entry of a list is reported at its index in the request
(``value.address.address_lines[1]``).
"""

from __future__ import annotations

import datetime

import pycountry

from vault.errors import FieldViolation, InvalidArgument
from vault.fields._canonical import CanonicalReader, encode_canonical
from vault.fields._text import clean_text, hidden_character_problem, text_problem
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

    region_problem = hidden_character_problem(value.region_code)
    region = value.region_code.strip().upper()
    if region_problem is not None:
        violations.append(FieldViolation(_PREFIX + "region_code", region_problem))
    elif region not in REGION_CODES:
        violations.append(
            FieldViolation(_PREFIX + "region_code", "not an ISO 3166-1 alpha-2 region code")
        )

    lines = _clean_list(value.address_lines, "address_lines", MAX_LINES, violations)
    if not lines and not any(v.field.startswith(_PREFIX + "address_lines") for v in violations):
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


def _clean_one(raw: str, path: str, violations: list[FieldViolation]) -> str:
    """The cleaned text; a problem is recorded under ``path`` (relative to the address)."""
    problem = hidden_character_problem(raw)
    text = clean_text(raw)
    if problem is None:
        problem = text_problem(text)
    if problem is None and len(text) > MAX_TEXT_LENGTH:
        problem = f"longer than {MAX_TEXT_LENGTH} characters"
    if problem is not None:
        violations.append(FieldViolation(_PREFIX + path, problem))
    return text


def _clean_list(
    raw: tuple[str, ...], name: str, limit: int, violations: list[FieldViolation]
) -> tuple[str, ...]:
    """Clean each entry and drop the empty ones; at most ``limit`` entries are accepted.

    A bad entry is reported at its index in the request, before empty ones are dropped.
    """
    if len(raw) > limit:
        violations.append(FieldViolation(_PREFIX + name, f"more than {limit} entries"))
        return ()
    cleaned = (_clean_one(item, f"{name}[{index}]", violations) for index, item in enumerate(raw))
    return tuple(text for text in cleaned if text)
