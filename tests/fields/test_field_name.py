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
        ("李小龍", "***"),
        ("Jane 3rd", "J."),
        ("- 42 -", "***"),
        ("Li Na", "***"),
        ("Jane Li", "J."),
        ("王小明", "***"),
        ("王 小明", "***"),
        ("山田 太郎", "***"),
        ("김민준", "***"),
        ("やまだ たろう", "***"),
        ("\uff2a\uff41\uff4e\uff45", "***"),  # full-width forms count as wide
        ("J. R. R. Tolkien", "T."),
        ("Ana Zoë", "A. Z."),
        ("E\u0301\u0301\u0301d Doe", "D."),  # two letters, however many marks
        ("\u00e9mile Zola", "\u00c9. Z."),
        ("stra\u00dfe", "S."),
        ("\u00dfam Doe", "\u00df. D."),  # no one-character upper case: kept as is
        ("\u0645\u062d\u0645\u062f\u200c\u0631\u0636\u0627", "\u0645."),
    ],
)
def test_initials(name: str, mask: str) -> None:
    assert mask_name(name) == mask


@pytest.mark.parametrize("name", ["Li", "王", "李", "Wu", "O", "Ng Yu", "王小明", "欧阳娜娜"])
def test_short_and_ideographic_names_show_nothing_of_themselves(name: str) -> None:
    masked = normalize(Name(name), today=TODAY).masked
    assert masked == "***"
    assert not any(char in masked for char in name)


def test_200_characters_accepted() -> None:
    assert normalize(Name("x" * 200), today=TODAY).value == Name("x" * 200)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   \t\n",
        "Secretname" * 21,
        "Secret\x00name",
        "Secret\x1bname",
        "Secret\x7fname",
        "Secret\u202ename",  # right-to-left override
        "Secret\u2067name",  # right-to-left isolate
        "Secret\u200fname",  # right-to-left mark
        "Secret\u061cname",  # Arabic letter mark
        "Secret\u200bname",  # zero-width space
        "Secret\u00adname",  # soft hyphen
        "Secret\ufeffname",  # zero-width no-break space
        "Secret\U000e0041name",  # tag character
        "Secret\u3164name",  # Hangul filler
        "\u200dSecretname",  # a joiner at a word edge
        "Secret\u200c name",
        "Secret\u200c\u200dname",
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(Name(name), today=TODAY)
    (violation,) = info.value.violations
    assert violation.field == "value.name"
    assert "Secret" not in str(info.value)


def test_bidi_controls_are_named_as_such() -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(Name("Jane \u202eeoD"), today=TODAY)
    assert info.value.violations[0].description == "contains bidirectional control characters"


def test_a_joiner_between_letters_is_spelling() -> None:
    persian = "\u0645\u062d\u0645\u062f\u200c\u0631\u0636\u0627"
    assert normalize(Name(persian), today=TODAY).value == Name(persian)
