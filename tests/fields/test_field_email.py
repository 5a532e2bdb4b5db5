import datetime

import pytest

from vault.errors import InvalidArgument
from vault.fields import Email, FieldType, decode, normalize

TODAY = datetime.date(2026, 11, 22)


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("jane@example.com", "jane@example.com"),
        ("  jane@Example.COM\n", "jane@example.com"),
        ("Jane.Doe@EXAMPLE.com", "Jane.Doe@example.com"),
        ("j+tag@mail.example.co.uk", "j+tag@mail.example.co.uk"),
        ("o'brien!#$%&*/=?^_`{|}~-@x-y.example.org", "o'brien!#$%&*/=?^_`{|}~-@x-y.example.org"),
        ("a@b.cd", "a@b.cd"),
        ("x" * 64 + "@example.com", "x" * 64 + "@example.com"),
    ],
)
def test_valid_addresses(raw: str, normal: str) -> None:
    n = normalize(Email(raw), today=TODAY)
    assert n.type is FieldType.EMAIL
    assert n.value == Email(normal)
    assert n.index_input == normal.encode()
    assert n.facts == type(n.facts)()
    assert decode(n.type, n.canonical) == n.value


def test_mask_shows_first_character_and_domain() -> None:
    assert normalize(Email("jane.doe@Example.com"), today=TODAY).masked == "j***@example.com"


@pytest.mark.parametrize(
    ("raw", "mask"),
    [
        ("j@Example.com", "***@example.com"),
        ("jo@example.com", "***@example.com"),
        ("bob@example.com", "***@example.com"),
        ("jane@example.com", "j***@example.com"),
        ("Jane.Doe@Example.COM", "J***@example.com"),
    ],
)
def test_a_local_part_under_four_characters_is_hidden_whole(raw: str, mask: str) -> None:
    assert normalize(Email(raw), today=TODAY).masked == mask


def test_local_part_case_is_kept() -> None:
    assert normalize(Email("JANE@example.com"), today=TODAY).value == Email("JANE@example.com")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "plainaddress",
        "two@@example.com",
        "a@b@example.com",
        "@example.com",
        ".jane@example.com",
        "jane.@example.com",
        "ja..ne@example.com",
        "ja ne@example.com",
        '"quoted"@example.com',
        "jane@",
        "jane@localhost",
        "jane@example",
        "jane@example.c",
        "jane@example.c0m",
        "jane@-example.com",
        "jane@example-.com",
        "jane@exa_mple.com",
        "jane@example..com",
        "jane@example.com.",
        "jane@[192.0.2.1]",
        "jäne@example.com",
        "jane@exämple.com",
        "x" * 65 + "@example.com",
        "jane@" + "a" * 64 + ".com",
        "jane@" + ".".join(["abcdefghi"] * 30) + ".com",
        "jane\u202e@example.com",
        "\u2066jane@example.com\u2069",
        "jane@exam\u200bple.com",
        "jane@example.com\ufeff",
    ],
)
def test_invalid_addresses_are_rejected_without_echo(raw: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(Email(raw), today=TODAY)
    (violation,) = info.value.violations
    assert violation.field == "value.email"
    local, _, domain = raw.partition("@")
    for part in (raw, local, domain):
        if len(part) >= 3:
            assert part not in violation.description
            assert part not in str(info.value)
