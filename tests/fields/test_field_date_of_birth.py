import datetime

import pytest

from vault.errors import InvalidArgument
from vault.fields import DateOfBirth, FieldType, decode, normalize

TODAY = datetime.date(2026, 11, 22)


@pytest.mark.parametrize(
    "dob",
    [
        DateOfBirth(1990, 5, 17),
        DateOfBirth(1900, 1, 1),
        DateOfBirth(2000, 2, 29),
        DateOfBirth(2026, 11, 22),
    ],
)
def test_valid_dates(dob: DateOfBirth) -> None:
    n = normalize(dob, today=TODAY)
    assert n.type is FieldType.DATE_OF_BIRTH
    assert n.value == dob
    assert n.masked == f"{dob.year}"
    assert n.index_input is None
    assert decode(n.type, n.canonical) == dob


def test_mask_is_the_year() -> None:
    assert normalize(DateOfBirth(1990, 5, 17), today=TODAY).masked == "1990"


@pytest.mark.parametrize(
    ("dob", "description"),
    [
        (DateOfBirth(1990, 2, 30), "not a calendar date"),
        (DateOfBirth(2001, 2, 29), "not a calendar date"),
        (DateOfBirth(1990, 13, 1), "not a calendar date"),
        (DateOfBirth(1990, 0, 1), "not a calendar date"),
        (DateOfBirth(1990, 1, 0), "not a calendar date"),
        (DateOfBirth(0, 1, 1), "not a calendar date"),
        (DateOfBirth(10**20, 1, 1), "not a calendar date"),
        (DateOfBirth(1899, 12, 31), None),
        (DateOfBirth(2026, 11, 23), None),
        (DateOfBirth(2027, 1, 1), None),
    ],
)
def test_invalid_dates(dob: DateOfBirth, description: str | None) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(dob, today=TODAY)
    (violation,) = info.value.violations
    assert violation.field == "value.date_of_birth"
    if description is not None:
        assert violation.description == description
    assert str(dob.year) not in violation.description or dob.year == 1900
