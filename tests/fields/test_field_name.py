import datetime

import pytest

from vault.errors import InvalidArgument
from vault.fields import FieldType, Name, decode, normalize
from vault.fields.name import mask_name

TODAY = datetime.date(2026, 11, 22)


def test_jane_van_doe() -> None:
    n = normalize(Name("  Jane \t van\n Doe "), today=TODAY)
    assert n.type is FieldType.NAME
    assert n.value == Name("Jane van Doe")
    assert n.masked == "J. V. D."
    assert n.index_input == b"jane van doe"
    assert decode(n.type, n.canonical) == n.value


def test_index_is_case_insensitive_but_value_keeps_case() -> None:
    upper = normalize(Name("JANE DOE"), today=TODAY)
    lower = normalize(Name("jane doe"), today=TODAY)
    assert upper.value != lower.value
    assert upper.index_input == lower.index_input


def test_nfc() -> None:
    composed = normalize(Name("Ren\u00e9e \u00c5berg"), today=TODAY)
    decomposed = normalize(Name("Rene\u0301e A\u030aberg"), today=TODAY)
    assert composed == decomposed
    assert composed.masked == "R. \u00c5."


@pytest.mark.parametrize(
    ("name", "mask"),
    [
        ("Jane", "J."),
        ("o'brien", "O."),
        ("Jean-Luc Picard", "J. P."),
        ("(Jim) Beam", "J. B."),
        ("李小龍", "李."),
        ("Jane 3rd", "J. R."),
        ("- 42 -", "***"),
    ],
)
def test_initials(name: str, mask: str) -> None:
    assert mask_name(name) == mask


def test_200_characters_accepted() -> None:
    assert normalize(Name("x" * 200), today=TODAY).value == Name("x" * 200)


@pytest.mark.parametrize(
    "name",
    ["", "   \t\n", "Secretname" * 21, "Secret\x00name", "Secret\x1bname", "Secret\x7fname"],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(Name(name), today=TODAY)
    (violation,) = info.value.violations
    assert violation.field == "value.name"
    assert "Secret" not in str(info.value)
