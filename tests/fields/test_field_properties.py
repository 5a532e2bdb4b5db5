"""Properties every field type must keep, whatever the input.

* a mask never shows more than the design's table allows;
* differently written equal values normalise alike;
* ``decode`` inverts ``canonical``, and normalising a normal form changes nothing.
"""

import datetime
import random
import re
import string

import phonenumbers
from hypothesis import assume, given
from hypothesis import strategies as st

from vault.errors import InvalidArgument
from vault.fields import (
    DateOfBirth,
    Email,
    FieldValue,
    Name,
    PaymentCard,
    PaymentToken,
    PhoneNumber,
    PostalAddress,
    decode,
    normalize,
)
from vault.fields.address import REGION_CODES
from vault.fields.card import luhn_valid

TODAY = datetime.date(2026, 11, 22)

# --- strategies -------------------------------------------------------------

_PHONE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
_EXAMPLES = tuple(
    example
    for region in sorted(phonenumbers.SUPPORTED_REGIONS)
    for kind in _PHONE_TYPES
    if (example := phonenumbers.example_number_for_type(region, kind)) is not None
)


@st.composite
def valid_phone_numbers(draw: st.DrawFn) -> phonenumbers.PhoneNumber:
    """A valid number: a region's example number with its last digits redrawn."""
    example = draw(st.sampled_from(_EXAMPLES))
    nsn = phonenumbers.national_significant_number(example)
    tail = draw(st.text(string.digits, min_size=3, max_size=3))
    parsed = phonenumbers.parse(f"+{example.country_code}{nsn[:-3]}{tail}")
    assume(phonenumbers.is_valid_number(parsed))
    return parsed


_BRANDS: dict[str, tuple[list[str], list[int]]] = {
    "VISA": (["4"], [13, 16, 19]),
    "MASTERCARD": ([str(p) for p in range(51, 56)] + [str(p) for p in range(2221, 2721)], [16]),
    "AMEX": (["34", "37"], [15]),
    "DISCOVER": (["6011", "65"] + [str(p) for p in range(644, 650)], [16, 17, 18, 19]),
    "JCB": ([str(p) for p in range(3528, 3590)], [16, 17, 18, 19]),
    "UNIONPAY": (["62"], [16, 17, 18, 19]),
    "DINERS": (
        [str(p) for p in range(300, 306)] + ["36", "38", "39"],
        [14, 15, 16, 17, 18, 19],
    ),
}


def _luhn_complete(partial: str) -> str:
    for check in string.digits:
        if luhn_valid(partial + check):
            return partial + check
    raise AssertionError("unreachable: one check digit always fits")


@st.composite
def valid_pans(draw: st.DrawFn, brand: str | None = None) -> tuple[str, str]:
    """(brand, PAN) with a correct IIN, length and Luhn check digit."""
    brand = brand or draw(st.sampled_from(sorted(_BRANDS)))
    prefixes, lengths = _BRANDS[brand]
    prefix = draw(st.sampled_from(prefixes))
    length = draw(st.sampled_from(lengths))
    body = draw(
        st.text(string.digits, min_size=length - 1 - len(prefix), max_size=length - 1 - len(prefix))
    )
    return brand, _luhn_complete(prefix + body)


@st.composite
def valid_cards(draw: st.DrawFn) -> PaymentCard:
    _, pan = draw(valid_pans())
    year = draw(st.integers(2027, 2100))
    month = draw(st.integers(1, 12))
    holder = draw(st.sampled_from(["", "Jane Doe", " Jöhn  Smith "]))
    return PaymentCard(pan, month, year, holder)


_ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
_local_parts = st.lists(st.text(_ATEXT, min_size=1, max_size=12), min_size=1, max_size=4).map(
    ".".join
)
_labels = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True)
_tlds = st.text(string.ascii_letters, min_size=2, max_size=6)
_domains = st.builds(
    lambda labels, tld: ".".join([*labels, tld]), st.lists(_labels, min_size=1, max_size=3), _tlds
)

# Free text a person might type: no control characters, no lone surrogates.
_free_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40
)
_region_codes = st.sampled_from(["EE", "DE", "US", "JP", "BR", "fi", " gb "])


_MARK = "\u00a7"  # only hidden parts of an address carry it
_locality_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=_MARK),
    min_size=1,
    max_size=40,
)
_hidden_text = _free_text.map(lambda text: _MARK + text)


@st.composite
def valid_addresses(draw: st.DrawFn) -> PostalAddress:
    """Street lines, postal code and recipients all contain ``_MARK``; locality never."""
    return PostalAddress(
        region_code=draw(_region_codes),
        address_lines=tuple(draw(st.lists(_hidden_text, min_size=1, max_size=5))),
        locality=draw(st.one_of(st.just(""), _locality_text)),
        postal_code=draw(
            st.one_of(st.just(""), st.text(string.digits + " -", max_size=10).map(_MARK.__add__))
        ),
        administrative_area=draw(st.one_of(st.just(""), _locality_text)),
        recipients=tuple(draw(st.lists(_hidden_text, max_size=2))),
    )


_word_chars = st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"))
_words = st.lists(st.text(_word_chars, min_size=1, max_size=12), min_size=1, max_size=6).filter(
    lambda words: not any(c.isspace() for c in "".join(words))
)
_whitespace = st.text(" \t\n\r\u00a0\u2003\u3000", min_size=1, max_size=3)


def _phone_values(n: phonenumbers.PhoneNumber) -> PhoneNumber:
    return PhoneNumber(phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164))


def _email_values(parts: tuple[str, str]) -> Email:
    return Email(f"{parts[0]}@{parts[1]}")


field_values: st.SearchStrategy[FieldValue] = st.one_of(
    valid_phone_numbers().map(_phone_values),
    st.tuples(_local_parts, _domains).map(_email_values),
    valid_addresses(),
    valid_cards(),
    st.builds(
        PaymentToken,
        st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,31}", fullmatch=True),
        st.text(string.printable.strip(string.whitespace)[:94], min_size=8, max_size=80),
    ),
    _words.map(" ".join).filter(lambda name: len(name) <= 200).map(Name),
    st.dates(datetime.date(1900, 1, 1), TODAY).map(lambda d: DateOfBirth(d.year, d.month, d.day)),
)

# --- masks show no more than the table allows --------------------------------


@given(valid_phone_numbers())
def test_phone_mask_shows_country_code_and_two_digits(number: phonenumbers.PhoneNumber) -> None:
    n = normalize(_phone_values(number), today=TODAY)
    cc = str(number.country_code)
    nsn = phonenumbers.national_significant_number(number)
    mask_digits = "".join(c for c in n.masked if c.isdigit())
    assert n.masked.startswith(f"+{cc} ")
    assert len(mask_digits) <= len(cc) + 2
    assert mask_digits == cc + nsn[-2:]
    body = n.masked[len(cc) + 2 :]
    assert body.replace(" ", "") == "*" * (len(nsn) - 2) + nsn[-2:]


@given(st.sampled_from(sorted(_BRANDS)).flatmap(valid_pans), st.integers(1, 12))
def test_card_mask_never_shows_the_pan(brand_pan: tuple[str, str], month: int) -> None:
    brand, pan = brand_pan
    n = normalize(PaymentCard(pan, month, 2030), today=TODAY)
    assert n.masked == f"{brand} **** {pan[-4:]} ({month:02d}/30)"
    assert pan not in n.masked
    assert all(len(run) <= 4 for run in re.findall(r"\d+", n.masked))
    shown = " ".join(str(v) for v in vars(n.facts).values())
    assert pan not in shown
    assert pan[:6] not in n.masked.replace(pan[-4:], "")


@given(_local_parts, _domains)
def test_email_mask_shows_only_first_character_of_local_part(local: str, domain: str) -> None:
    assume(len(local) <= 64)
    n = normalize(Email(f"{local}@{domain}"), today=TODAY)
    shown_local, at, shown_domain = n.masked.partition("***@")
    assert at == "***@"
    assert shown_local == local[0]
    assert shown_domain == domain.lower()


@given(valid_addresses())
def test_address_mask_shows_only_locality_and_country(address: PostalAddress) -> None:
    n = normalize(address, today=TODAY)
    normal = n.value
    assert isinstance(normal, PostalAddress)
    visible = f"{normal.locality}, {normal.region_code}" if normal.locality else normal.region_code
    assert n.masked == f"*** {visible}"
    assert _MARK not in n.masked
    for hidden in (*normal.address_lines, normal.postal_code, *normal.recipients):
        assert not hidden or hidden not in n.masked


# --- equal values written differently normalise alike ------------------------


@given(valid_phone_numbers(), st.sampled_from([" ", "-", "", "  "]))
def test_phone_spellings_normalise_alike(number: phonenumbers.PhoneNumber, sep: str) -> None:
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    region = phonenumbers.region_code_for_number(number)
    spellings = [
        PhoneNumber(e164),
        PhoneNumber(international.replace(" ", sep)),
        PhoneNumber("00" + e164[1:]),
    ]
    # phonenumbers knows a few regions ISO 3166-1 does not (AC, TA, XK); those
    # numbers are valid, but only in international form.
    if region in REGION_CODES:
        spellings += [
            PhoneNumber(international, region.lower()),
            PhoneNumber(national.replace(" ", sep), region),
        ]
    expected = normalize(PhoneNumber(e164), today=TODAY)
    assert expected.value == PhoneNumber(e164)
    for spelling in spellings:
        assert normalize(spelling, today=TODAY) == expected


@given(_local_parts, _domains, st.randoms(use_true_random=False))
def test_email_domain_case_does_not_matter(local: str, domain: str, rng: random.Random) -> None:
    assume(len(local) <= 64)
    shuffled = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in domain)
    a = normalize(Email(f"{local}@{domain}"), today=TODAY)
    b = normalize(Email(f" {local}@{shuffled}\t"), today=TODAY)
    assert a == b


@given(valid_pans(), st.lists(st.sampled_from(["", "", " ", "-", " - "]), min_size=19, max_size=19))
def test_pan_separators_do_not_matter(brand_pan: tuple[str, str], seps: list[str]) -> None:
    _, pan = brand_pan
    spaced = "".join(d + s for d, s in zip(pan, seps, strict=False))
    assume(len(spaced) <= 64)
    assert normalize(PaymentCard(spaced, 1, 2030), today=TODAY) == normalize(
        PaymentCard(pan, 1, 2030), today=TODAY
    )


@given(_words, st.lists(_whitespace, min_size=7, max_size=7))
def test_name_whitespace_does_not_matter(words: list[str], gaps: list[str]) -> None:
    plain = " ".join(words)
    assume(len(plain) <= 200)
    spaced = gaps[0] + "".join(w + g for w, g in zip(words, gaps[1:], strict=False))
    assert normalize(Name(spaced), today=TODAY) == normalize(Name(plain), today=TODAY)


# --- decode inverts canonical; normal forms are fixed points -----------------


@given(field_values)
def test_decode_inverts_canonical(value: FieldValue) -> None:
    n = normalize(value, today=TODAY)
    assert decode(n.type, n.canonical) == n.value
    assert type(n.value) is type(value)


@given(field_values)
def test_normalising_a_normal_form_changes_nothing(value: FieldValue) -> None:
    n = normalize(value, today=TODAY)
    assert normalize(n.value, today=TODAY) == n


# --- errors never carry the value --------------------------------------------


@given(st.text(string.digits + " -", min_size=12, max_size=40))
def test_card_errors_carry_no_digits(pan: str) -> None:
    try:
        normalize(PaymentCard(pan, 1, 2030), today=TODAY)
    except InvalidArgument as error:
        assert not any(c.isdigit() for v in error.violations for c in v.description)


@given(st.text(max_size=40), st.sampled_from(["", "EE", "US"]))
def test_phone_errors_carry_no_digits_of_the_input(number: str, region: str) -> None:
    try:
        normalize(PhoneNumber(number, region), today=TODAY)
    except InvalidArgument as error:
        assert not any(c.isdigit() for v in error.violations for c in v.description)
