"""Phone numbers: parsed by ``phonenumbers``, stored as E.164.

E.164 is the one spelling every input collapses to (``+372 5123 4567``,
``0037251234567``, ``5123 4567`` with region ``EE``), so equal numbers encrypt
and blind-index alike.

The most a mask reveals: the country code (also a fact of every view) and the
last ``VISIBLE_TAIL`` (two) digits of the national significant number, and
those two only when at least ``MIN_HIDDEN_DIGITS`` (five) national digits
stay hidden, i.e. at least 10**5 = 100,000 candidates remain for whoever
reads the mask. Shorter national numbers (Niue, Tokelau, the Falklands, Saint
Helena, Andorra, Tuvalu ...) show no national digit at all: ``+683 ****``
rather than ``+683 **12``, which left a hundred candidates. The hidden digits
are starred in groups of four, as in ``+372 **** **67``.
"""

from __future__ import annotations

import datetime

import phonenumbers

from vault.errors import FieldViolation, InvalidArgument
from vault.fields._canonical import CanonicalReader, encode_canonical
from vault.fields._text import hidden_character_problem
from vault.fields.address import REGION_CODES
from vault.fields.base import Facts, FieldType, Normalized, PhoneNumber

MAX_INPUT_LENGTH = 64
VISIBLE_TAIL = 2
MIN_HIDDEN_DIGITS = 5
_GROUP = 4

_NUMBER = "value.phone.number"
_REGION = "value.phone.default_region"


def normalize_phone(value: PhoneNumber, *, today: datetime.date) -> Normalized:
    del today  # phone numbers do not expire; accepted for a uniform signature
    violations: list[FieldViolation] = []
    for path, raw in ((_NUMBER, value.number), (_REGION, value.default_region)):
        problem = hidden_character_problem(raw)
        if problem is not None:
            violations.append(FieldViolation(path, problem))
    if violations:
        raise InvalidArgument.many(violations)
    region = value.default_region.strip().upper()
    if region and region not in REGION_CODES:
        violations.append(FieldViolation(_REGION, "not an ISO 3166-1 alpha-2 region code"))
    if len(value.number) > MAX_INPUT_LENGTH:
        violations.append(FieldViolation(_NUMBER, f"longer than {MAX_INPUT_LENGTH} characters"))
    if violations:
        raise InvalidArgument.many(violations)

    parsed = _parse(value.number, region)
    if parsed.extension:
        raise InvalidArgument(_NUMBER, "extensions are not supported")
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidArgument(_NUMBER, "not a valid phone number")

    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    country_code = parsed.country_code
    if country_code is None:  # cannot happen for a valid number; keeps the types honest
        raise InvalidArgument(_NUMBER, "not a valid phone number")
    normal = PhoneNumber(number=e164, default_region="")
    return Normalized(
        type=FieldType.PHONE,
        value=normal,
        canonical=encode_canonical(normal),
        masked=mask_phone(country_code, phonenumbers.national_significant_number(parsed)),
        facts=Facts(phone_country_code=country_code),
        index_input=e164.encode(),
    )


def decode_phone(canonical: bytes) -> PhoneNumber:
    reader = CanonicalReader(FieldType.PHONE, canonical)
    return PhoneNumber(number=reader.text("number"), default_region=reader.text("default_region"))


def mask_phone(country_code: int, national_number: str) -> str:
    """``+372 **** **67``: all but the last two digits starred, in groups of four.

    When showing the two would leave fewer than ``MIN_HIDDEN_DIGITS`` hidden,
    every national digit is starred: ``+683 ****``.
    """
    hidden = len(national_number) - VISIBLE_TAIL
    if hidden < MIN_HIDDEN_DIGITS:
        hidden = len(national_number)
    starred = "*" * hidden + national_number[hidden:]
    groups = [starred[i : i + _GROUP] for i in range(0, len(starred), _GROUP)]
    return f"+{country_code} " + " ".join(groups)


def _parse(number: str, region: str) -> phonenumbers.PhoneNumber:
    text = number.strip()
    if not region and text.startswith("00"):
        # Without a region there is no national dialling plan to apply, and "00"
        # is the ITU-recommended international prefix: read it as "+".
        text = "+" + text[2:]
    try:
        return phonenumbers.parse(text, region or None)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise InvalidArgument(
                _NUMBER, "needs an international prefix or a default_region"
            ) from None
        raise InvalidArgument(_NUMBER, "not a valid phone number") from None
