"""Payment cards: Luhn, length by brand, expiry not in the past.

The PAN is the one value here whose full form must never leave the vault in
the clear: masks, facts and error messages show at most the brand, the last
four digits and the expiry. ``today`` is injected so expiry checks are
deterministic in tests.

The most a mask reveals: the brand, the last ``VISIBLE_PAN_DIGITS`` (four)
digits of the PAN and the expiry month and year, ``VISA **** 4242 (12/28)``.
Every PAN is 13 digits or more, so at least nine stay hidden, and the IIN
that the brand narrows is never shown. The holder name is never in a mask.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from vault.errors import FieldViolation, InvalidArgument
from vault.fields._canonical import CanonicalReader, encode_canonical
from vault.fields._text import clean_text, hidden_character_problem, text_problem
from vault.fields.base import Facts, FieldType, Normalized, PaymentCard

MAX_PAN_INPUT_LENGTH = 64
MAX_HOLDER_NAME_LENGTH = 100
MIN_EXP_YEAR = 2000
MAX_EXP_YEAR = 2100
VISIBLE_PAN_DIGITS = 4

_PAN = "value.card.pan"
_MONTH = "value.card.exp_month"
_YEAR = "value.card.exp_year"
_HOLDER = "value.card.holder_name"
_SEPARATORS = str.maketrans("", "", " -")


@dataclass(frozen=True)
class CardBrand:
    """A card network: its display name, IIN ranges and allowed PAN lengths.

    Each range is a pair of equal-length digit strings, inclusive; comparing the
    PAN's prefix of that length as a string is the same as comparing numbers.
    """

    name: str
    iin_ranges: tuple[tuple[str, str], ...]
    lengths: frozenset[int]

    def issued(self, pan: str) -> bool:
        return any(low <= pan[: len(low)] <= high for low, high in self.iin_ranges)


BRANDS: tuple[CardBrand, ...] = (
    CardBrand("VISA", (("4", "4"),), frozenset({13, 16, 19})),
    CardBrand("MASTERCARD", (("51", "55"), ("2221", "2720")), frozenset({16})),
    CardBrand("AMEX", (("34", "34"), ("37", "37")), frozenset({15})),
    CardBrand(
        "DISCOVER", (("6011", "6011"), ("644", "649"), ("65", "65")), frozenset(range(16, 20))
    ),
    CardBrand("JCB", (("3528", "3589"),), frozenset(range(16, 20))),
    CardBrand("UNIONPAY", (("62", "62"),), frozenset(range(16, 20))),
    CardBrand(
        "DINERS",
        (("300", "305"), ("36", "36"), ("38", "39")),
        frozenset(range(14, 20)),
    ),
)


def normalize_card(value: PaymentCard, *, today: datetime.date) -> Normalized:
    violations: list[FieldViolation] = []

    pan = ""
    brand: CardBrand | None = None
    pan_problem = _pan_problem(value.pan)
    if pan_problem is None:
        pan = value.pan.translate(_SEPARATORS)
        brand = brand_of(pan)
        if brand is None:
            pan_problem = "unsupported card brand"
        elif len(pan) not in brand.lengths:
            pan_problem = "wrong length for card brand"
    if pan_problem is not None:
        violations.append(FieldViolation(_PAN, pan_problem))

    month_ok = 1 <= value.exp_month <= 12
    year_ok = MIN_EXP_YEAR <= value.exp_year <= MAX_EXP_YEAR
    if not month_ok:
        violations.append(FieldViolation(_MONTH, "must be a month from 1 to 12"))
    if not year_ok:
        violations.append(
            FieldViolation(
                _YEAR, f"must be a four-digit year from {MIN_EXP_YEAR} to {MAX_EXP_YEAR}"
            )
        )
    if month_ok and year_ok and (value.exp_year, value.exp_month) < (today.year, today.month):
        violations.append(FieldViolation(_YEAR, "card expired"))

    holder = clean_text(value.holder_name)
    holder_problem = hidden_character_problem(value.holder_name) or text_problem(holder)
    if holder_problem is None and len(holder) > MAX_HOLDER_NAME_LENGTH:
        holder_problem = f"longer than {MAX_HOLDER_NAME_LENGTH} characters"
    if holder_problem is not None:
        violations.append(FieldViolation(_HOLDER, holder_problem))

    if violations or brand is None:
        raise InvalidArgument.many(violations)

    normal = PaymentCard(
        pan=pan, exp_month=value.exp_month, exp_year=value.exp_year, holder_name=holder
    )
    last4 = pan[-VISIBLE_PAN_DIGITS:]
    return Normalized(
        type=FieldType.CARD,
        value=normal,
        canonical=encode_canonical(normal),
        masked=f"{brand.name} **** {last4} ({normal.exp_month:02d}/{normal.exp_year % 100:02d})",
        facts=Facts(
            card_brand=brand.name,
            card_last4=last4,
            card_exp_month=normal.exp_month,
            card_exp_year=normal.exp_year,
        ),
        index_input=pan.encode(),
    )


def decode_card(canonical: bytes) -> PaymentCard:
    reader = CanonicalReader(FieldType.CARD, canonical)
    return PaymentCard(
        pan=reader.text("pan"),
        exp_month=reader.integer("exp_month"),
        exp_year=reader.integer("exp_year"),
        holder_name=reader.text("holder_name"),
    )


def brand_of(pan: str) -> CardBrand | None:
    """The brand whose IIN ranges contain ``pan`` (digits only), if any."""
    for brand in BRANDS:
        if brand.issued(pan):
            return brand
    return None


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _pan_problem(raw: str) -> str | None:
    if len(raw) > MAX_PAN_INPUT_LENGTH:
        return f"longer than {MAX_PAN_INPUT_LENGTH} characters"
    hidden = hidden_character_problem(raw)
    if hidden is not None:
        return hidden
    digits = raw.translate(_SEPARATORS)
    if not digits:
        return "is required"
    if not (digits.isascii() and digits.isdigit()):
        return "must contain only digits, spaces and dashes"
    if not luhn_valid(digits):
        return "fails the Luhn check"
    return None
