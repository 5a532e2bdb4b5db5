import datetime

import pytest

from vault.errors import InvalidArgument
from vault.fields import FieldType, PaymentCard, decode, normalize
from vault.fields.card import luhn_valid

TODAY = datetime.date(2026, 11, 22)


@pytest.mark.parametrize(
    ("pan", "brand"),
    [
        ("4242424242424242", "VISA"),
        ("4222222222222", "VISA"),
        ("4111111111111111110", "VISA"),
        ("5555555555554444", "MASTERCARD"),
        ("2223003122003222", "MASTERCARD"),
        ("378282246310005", "AMEX"),
        ("371449635398431", "AMEX"),
        ("6011111111111117", "DISCOVER"),
        ("6445644564456445", "DISCOVER"),
        ("6500000000000002", "DISCOVER"),
        ("3530111333300000", "JCB"),
        ("6200000000000005", "UNIONPAY"),
        ("30569309025904", "DINERS"),
        ("36227206271667", "DINERS"),
        ("38520000023237", "DINERS"),
    ],
)
def test_brands(pan: str, brand: str) -> None:
    n = normalize(PaymentCard(pan, 3, 2030), today=TODAY)
    assert n.facts.card_brand == brand
    assert n.facts.card_last4 == pan[-4:]
    assert n.masked == f"{brand} **** {pan[-4:]} (03/30)"
    assert n.index_input == pan.encode()


def test_visa_mask_and_facts() -> None:
    n = normalize(PaymentCard("4242-4242 4242-4242", 12, 2028, "  Jane   Doe "), today=TODAY)
    assert n.type is FieldType.CARD
    assert n.value == PaymentCard("4242424242424242", 12, 2028, "Jane Doe")
    assert n.masked == "VISA **** 4242 (12/28)"
    assert (n.facts.card_brand, n.facts.card_last4) == ("VISA", "4242")
    assert (n.facts.card_exp_month, n.facts.card_exp_year) == (12, 2028)
    assert decode(n.type, n.canonical) == n.value
    assert "4242424242424242" not in n.masked


def test_current_month_is_not_expired() -> None:
    n = normalize(PaymentCard("4242424242424242", 11, 2026), today=TODAY)
    assert n.masked == "VISA **** 4242 (11/26)"


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


PAN = "4242424242424242"


@pytest.mark.parametrize(
    ("card", "field", "description"),
    [
        (PaymentCard("4242424242424241", 12, 2028), "value.card.pan", "fails the Luhn check"),
        (PaymentCard("4242x42424242424", 12, 2028), "value.card.pan", None),
        (PaymentCard("\uff14\uff12" * 8, 12, 2028), "value.card.pan", None),
        (PaymentCard("", 12, 2028), "value.card.pan", None),
        (PaymentCard(" - ", 12, 2028), "value.card.pan", None),
        (PaymentCard("4" + "2" * 70, 12, 2028), "value.card.pan", None),
        (PaymentCard("9999999999999995", 12, 2028), "value.card.pan", "unsupported card brand"),
        (
            PaymentCard("424242424242424", 12, 2028),
            "value.card.pan",
            "wrong length for card brand",
        ),
        (
            PaymentCard("55555555555544440", 12, 2028),
            "value.card.pan",
            "wrong length for card brand",
        ),
        (PaymentCard(PAN, 0, 2028), "value.card.exp_month", None),
        (PaymentCard(PAN, 13, 2028), "value.card.exp_month", None),
        (PaymentCard(PAN, 12, 28), "value.card.exp_year", None),
        (PaymentCard(PAN, 12, 2101), "value.card.exp_year", None),
        (PaymentCard(PAN, 10, 2026), "value.card.exp_year", "card expired"),
        (PaymentCard(PAN, 12, 2025), "value.card.exp_year", "card expired"),
        (PaymentCard(PAN, 12, 2028, "J" * 101), "value.card.holder_name", None),
        (PaymentCard(PAN, 12, 2028, "Jane\x00Doe"), "value.card.holder_name", None),
        (
            PaymentCard(PAN, 12, 2028, "Jane\u202eeoD"),
            "value.card.holder_name",
            "contains bidirectional control characters",
        ),
        (
            PaymentCard(PAN, 12, 2028, "Jane\u200bDoe"),
            "value.card.holder_name",
            "contains invisible format characters",
        ),
        (
            PaymentCard("4242\u2066424242424242", 12, 2028),
            "value.card.pan",
            "contains bidirectional control characters",
        ),
    ],
)
def test_invalid_cards(card: PaymentCard, field: str, description: str | None) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(card, today=TODAY)
    assert [v.field for v in info.value.violations] == [field]
    if description is not None:
        assert info.value.violations[0].description == description
    message = str(info.value)
    digits = "".join(c for c in card.pan if c.isdigit())
    assert not any(digits[i : i + 5] in message for i in range(max(0, len(digits) - 4)))
    assert "Jane" not in message


def test_all_card_violations_are_collected() -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(PaymentCard("4242424242424241", 13, 1999, "x" * 101), today=TODAY)
    assert [v.field for v in info.value.violations] == [
        "value.card.pan",
        "value.card.exp_month",
        "value.card.exp_year",
        "value.card.holder_name",
    ]
    assert "4242" not in str(info.value)
