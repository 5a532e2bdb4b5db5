import datetime

import pytest

from vault.errors import InvalidArgument
from vault.fields import FieldType, PostalAddress, decode, normalize

TODAY = datetime.date(2026, 11, 22)


def test_tallinn_address() -> None:
    n = normalize(
        PostalAddress(
            region_code=" ee ",
            address_lines=("  Narva  mnt 5 ", "", "   ", "Korter\t12"),
            locality="Tallinn",
            postal_code=" 10117 ",
            recipients=("Jane  Doe", ""),
        ),
        today=TODAY,
    )
    assert n.type is FieldType.ADDRESS
    assert n.value == PostalAddress(
        region_code="EE",
        address_lines=("Narva mnt 5", "Korter 12"),
        locality="Tallinn",
        postal_code="10117",
        recipients=("Jane Doe",),
    )
    assert n.masked == "*** Tallinn, EE"
    assert n.facts.country == "EE"
    assert n.facts.locality == "Tallinn"
    assert n.index_input is None
    assert decode(n.type, n.canonical) == n.value


def test_mask_without_locality() -> None:
    n = normalize(PostalAddress("de", ("Unter den Linden 1",)), today=TODAY)
    assert n.masked == "*** DE"
    assert n.facts.locality == ""


def test_nfc_normalisation() -> None:
    decomposed = "Pa\u0308rnu mnt 1"
    n = normalize(PostalAddress("EE", (decomposed,), locality="Pa\u0308rnu"), today=TODAY)
    assert isinstance(n.value, PostalAddress)
    assert n.value.address_lines == ("P\u00e4rnu mnt 1",)
    assert n.masked == "*** P\u00e4rnu, EE"


def test_five_lines_and_200_characters_are_accepted() -> None:
    n = normalize(PostalAddress("EE", ("x" * 200,) * 5, locality="y" * 200), today=TODAY)
    assert isinstance(n.value, PostalAddress)
    assert len(n.value.address_lines) == 5


@pytest.mark.parametrize(
    ("address", "field"),
    [
        (PostalAddress("ZZ", ("Secret street 1",)), "value.address.region_code"),
        (PostalAddress("EST", ("Secret street 1",)), "value.address.region_code"),
        (PostalAddress("", ("Secret street 1",)), "value.address.region_code"),
        (PostalAddress("EE", ()), "value.address.address_lines"),
        (PostalAddress("EE", ("", "  \t")), "value.address.address_lines"),
        (PostalAddress("EE", ("Secret street 1",) * 6), "value.address.address_lines"),
        (PostalAddress("EE", ("Secret street " + "1" * 200,)), "value.address.address_lines[0]"),
        (PostalAddress("EE", ("Secret\x00street",)), "value.address.address_lines[0]"),
        (PostalAddress("EE", ("", "Secret\u202estreet")), "value.address.address_lines[1]"),
        (PostalAddress("E\u200bE", ("Secret street",)), "value.address.region_code"),
        (PostalAddress("EE", ("Line",), locality="Secret\u2066ville"), "value.address.locality"),
        (
            PostalAddress("EE", ("Line",), recipients=("Secret", "Secret\u200fPerson")),
            "value.address.recipients[1]",
        ),
        (PostalAddress("EE", ("Line",), locality="Secretville" * 20), "value.address.locality"),
        (PostalAddress("EE", ("Line",), postal_code="Secret\x1bcode"), "value.address.postal_code"),
        (
            PostalAddress("EE", ("Line",), recipients=("Secret Person",) * 6),
            "value.address.recipients",
        ),
    ],
)
def test_invalid_addresses(address: PostalAddress, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(address, today=TODAY)
    assert [v.field for v in info.value.violations] == [field]
    assert "Secret" not in str(info.value)
    assert "street" not in str(info.value)


def test_all_violations_are_collected() -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(PostalAddress("XX", ("a" * 201, "b" * 201), locality="\x07"), today=TODAY)
    assert [v.field for v in info.value.violations] == [
        "value.address.region_code",
        "value.address.address_lines[0]",
        "value.address.address_lines[1]",
        "value.address.locality",
    ]
