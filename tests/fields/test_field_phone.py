import datetime

import pytest

from vault.errors import InvalidArgument
from vault.fields import FieldType, PhoneNumber, decode, normalize, type_of
from vault.fields.phone import decode_phone, mask_phone, normalize_phone

TODAY = datetime.date(2026, 11, 22)


def leaks(secret: str, text: str, run: int = 3) -> bool:
    """Whether ``text`` contains any ``run`` consecutive digits of ``secret``."""
    digits = "".join(c for c in secret if c.isdigit())
    return any(digits[i : i + run] in text for i in range(len(digits) - run + 1))


@pytest.mark.parametrize(
    ("number", "region"),
    [
        ("+37251234567", ""),
        ("+372 5123 4567", ""),
        ("+372-5123-4567", ""),
        ("0037251234567", ""),
        ("00 372 5123 4567", ""),
        ("5123 4567", "EE"),
        ("5123 4567", "ee"),
        ("5123-4567", " EE "),
        ("+372 5123 4567", "US"),
    ],
)
def test_equal_numbers_normalise_to_e164(number: str, region: str) -> None:
    n = normalize_phone(PhoneNumber(number, region), today=TODAY)
    assert n.type is FieldType.PHONE
    assert n.value == PhoneNumber(number="+37251234567", default_region="")
    assert n.masked == "+372 **** **67"
    assert n.facts.phone_country_code == 372
    assert n.index_input == b"+37251234567"


def test_us_number_with_region() -> None:
    n = normalize(PhoneNumber("(650) 253-0000", "US"), today=TODAY)
    assert n.value == PhoneNumber("+16502530000")
    assert n.masked == "+1 **** **** 00"
    assert n.facts.phone_country_code == 1


def test_mask_groups_in_fours_from_the_left() -> None:
    assert mask_phone(372, "51234567") == "+372 **** **67"
    assert mask_phone(44, "7400123456") == "+44 **** **** 56"
    assert mask_phone(372, "5123456") == "+372 **** *56"


@pytest.mark.parametrize(
    ("number", "mask"),
    [
        ("+683 7012", "+683 ****"),  # Niue: four national digits
        ("+690 3101", "+690 ****"),  # Tokelau
        ("+500 51234", "+500 **** *"),  # Falkland Islands
        ("+290 22158", "+290 **** *"),  # Saint Helena
        ("+376 312345", "+376 **** **"),  # Andorra: showing two would hide four
    ],
)
def test_a_short_national_number_shows_none_of_its_digits(number: str, mask: str) -> None:
    country_code, _, national = number[1:].partition(" ")
    assert mask_phone(int(country_code), national) == mask
    assert normalize(PhoneNumber(number), today=TODAY).masked == mask


def test_decode_is_the_inverse() -> None:
    n = normalize(PhoneNumber("+372 5123 4567"), today=TODAY)
    assert decode(FieldType.PHONE, n.canonical) == n.value
    assert decode_phone(n.canonical) == n.value
    assert n.canonical == b'{"default_region":"","number":"+37251234567"}'
    assert type_of(PhoneNumber("x")) is FieldType.PHONE


@pytest.mark.parametrize(
    ("number", "region", "field"),
    [
        ("+372 1234", "", "value.phone.number"),  # too short for Estonia
        ("not a number", "", "value.phone.number"),
        ("", "", "value.phone.number"),
        ("51234567", "", "value.phone.number"),  # national without region
        ("+999 5123 4567", "", "value.phone.number"),  # unassigned country code
        ("+1 650 253 0000 ext. 123", "", "value.phone.number"),
        ("+372 " + "5" * 70, "", "value.phone.number"),  # over the length bound
        ("5123 4567", "ZZ", "value.phone.default_region"),
        ("5123 4567", "EST", "value.phone.default_region"),
        ("+372 5123\u202e4567", "", "value.phone.number"),
        ("\u200e+372 5123 4567", "", "value.phone.number"),
        ("5123 4567", "E\u2066E", "value.phone.default_region"),
    ],
)
def test_invalid_numbers_are_rejected_without_echo(number: str, region: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(PhoneNumber(number, region), today=TODAY)
    assert [v.field for v in info.value.violations] == [field]
    for violation in info.value.violations:
        assert not leaks(number, violation.description)
        assert not (region and region in violation.description)
    assert not leaks(number, str(info.value))


def test_both_bad_parts_are_reported() -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(PhoneNumber("5" * 65, "XX"), today=TODAY)
    assert {v.field for v in info.value.violations} == {
        "value.phone.number",
        "value.phone.default_region",
    }
