"""Properties every field type must keep, whatever the input.

* a mask never shows more than its type's stated bound (each module's
  docstring and constants), over arbitrary Unicode;
* no text input of any type accepts a bidirectional or invisible format
  character, so none can reach a mask;
* differently written equal values normalise alike;
* ``decode`` inverts ``canonical``, and normalising a normal form changes nothing.
"""

import dataclasses
import datetime
import random
import re
import string
import unicodedata
from collections.abc import Callable
from types import ModuleType

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
from vault.fields import address as address_module
from vault.fields import card as card_module
from vault.fields import date_of_birth as date_of_birth_module
from vault.fields import email as email_module
from vault.fields import name as name_module
from vault.fields import payment_token as payment_token_module
from vault.fields import phone as phone_module
from vault.fields.address import REGION_CODES
from vault.fields.card import luhn_valid

TODAY = datetime.date(2026, 11, 22)

# Written out here rather than imported, so the tests do not trust the code's own lists.
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
HANGUL_FILLERS = "\u115f\u1160\u3164\uffa0"
JOINERS = "\u200c\u200d"

# --- strategies -------------------------------------------------------------

# What a person can see: no control, surrogate or format character, no blank letter.
_visible_characters = st.characters(
    exclude_categories=("Cc", "Cs", "Cf"), exclude_characters=HANGUL_FILLERS
)
_hidden_characters = st.one_of(
    st.sampled_from(BIDI_CONTROLS),
    st.characters(categories=("Cf",), exclude_characters=JOINERS),
    st.sampled_from(HANGUL_FILLERS),
)

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

# Free text a person might type: nothing invisible.
_free_text = st.text(alphabet=_visible_characters, min_size=1, max_size=40)
_region_codes = st.sampled_from(["EE", "DE", "US", "JP", "BR", "fi", " gb "])


_MARK = "\u00a7"  # only hidden parts of an address carry it
_locality_text = st.text(
    alphabet=st.characters(
        exclude_categories=("Cc", "Cs", "Cf"), exclude_characters=HANGUL_FILLERS + _MARK
    ),
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


_word_chars = st.characters(
    exclude_categories=("Cc", "Cs", "Cf", "Zs", "Zl", "Zp"), exclude_characters=HANGUL_FILLERS
)
_letters = st.characters(
    categories=("Lu", "Ll", "Lt", "Lm", "Lo"), exclude_characters=HANGUL_FILLERS
)
# Persian, Arabic and Indic spelling puts a zero-width (non-)joiner between letters.
_joined_words = st.builds(
    lambda a, joiner, b: a + joiner + b,
    st.text(_letters, min_size=1, max_size=5),
    st.sampled_from(JOINERS),
    st.text(_letters, min_size=1, max_size=5),
)
_words = st.lists(
    st.one_of(st.text(_word_chars, min_size=1, max_size=12), _joined_words),
    min_size=1,
    max_size=6,
).filter(lambda words: not any(c.isspace() for c in "".join(words)))
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

# --- masks show no more than each type's stated bound ------------------------

_MASKED_MODULES: tuple[ModuleType, ...] = (
    phone_module,
    email_module,
    address_module,
    card_module,
    payment_token_module,
    name_module,
    date_of_birth_module,
)


def test_every_type_states_the_most_its_mask_may_reveal() -> None:
    for module in _MASKED_MODULES:
        assert "The most a mask reveals:" in (module.__doc__ or ""), module.__name__


def test_the_stated_bounds_are_the_ones_a_privacy_review_accepted() -> None:
    """Lowering a bound is a decision for a review, not a side effect of a refactor."""
    assert email_module.MAX_SHOWN_LOCAL_CHARACTERS <= 1
    assert email_module.MIN_LOCAL_LENGTH_TO_SHOW - email_module.MAX_SHOWN_LOCAL_CHARACTERS >= 3
    assert name_module.MIN_LETTERS_FOR_INITIAL >= 3
    assert phone_module.VISIBLE_TAIL <= 2
    assert phone_module.MIN_HIDDEN_DIGITS >= 5
    assert card_module.VISIBLE_PAN_DIGITS <= 4
    assert payment_token_module.VISIBLE_TAIL <= 4
    assert payment_token_module.MIN_HIDDEN_CHARACTERS >= 12


@given(valid_phone_numbers())
def test_phone_mask_shows_two_digits_only_while_five_stay_hidden(
    number: phonenumbers.PhoneNumber,
) -> None:
    n = normalize(_phone_values(number), today=TODAY)
    cc = str(number.country_code)
    nsn = phonenumbers.national_significant_number(number)
    assert n.masked.startswith(f"+{cc} ")
    body = n.masked[len(cc) + 2 :].replace(" ", "")
    shown = body.lstrip("*")
    hidden = len(body) - len(shown)
    assert body == "*" * hidden + shown
    assert hidden + len(shown) == len(nsn)
    if shown:
        assert shown == nsn[-len(shown) :]
        assert len(shown) <= phone_module.VISIBLE_TAIL
        assert hidden >= phone_module.MIN_HIDDEN_DIGITS
    else:
        assert len(nsn) - phone_module.VISIBLE_TAIL < phone_module.MIN_HIDDEN_DIGITS
    mask_digits = "".join(c for c in n.masked if c.isdigit())
    assert mask_digits == cc + shown


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


@given(valid_pans(), _free_text)
def test_card_mask_never_shows_the_holder(brand_pan: tuple[str, str], holder: str) -> None:
    _, pan = brand_pan
    n = normalize(PaymentCard(pan, 1, 2030, _MARK + holder[:99]), today=TODAY)
    assert _MARK not in n.masked


@given(_local_parts, _domains)
def test_email_mask_shows_at_most_one_character_of_a_long_enough_local_part(
    local: str, domain: str
) -> None:
    assume(len(local) <= 64)
    n = normalize(Email(f"{local}@{domain}"), today=TODAY)
    shown_local, at, shown_domain = n.masked.partition("***@")
    assert at == "***@"
    assert shown_domain == domain.lower()
    assert len(shown_local) <= email_module.MAX_SHOWN_LOCAL_CHARACTERS
    assert local.startswith(shown_local)
    assert shown_local != local
    if shown_local:
        assert len(local) - len(shown_local) >= 3
    if len(local) < email_module.MIN_LOCAL_LENGTH_TO_SHOW:
        assert shown_local == ""


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


@given(
    st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,31}", fullmatch=True),
    st.text(string.printable.strip(string.whitespace)[:94], min_size=8, max_size=80),
)
def test_payment_token_mask_shows_a_tail_only_while_twelve_characters_stay_hidden(
    provider: str, token: str
) -> None:
    n = normalize(PaymentToken(provider, token), today=TODAY)
    assert n.masked.startswith(f"{provider} ****")
    tail = n.masked[len(provider) + 5 :]
    assert len(tail) <= payment_token_module.VISIBLE_TAIL
    assert token.endswith(tail)
    if tail:
        assert len(token) - len(tail) >= payment_token_module.MIN_HIDDEN_CHARACTERS
    else:
        assert len(token) - 4 < payment_token_module.MIN_HIDDEN_CHARACTERS


@given(st.dates(datetime.date(1900, 1, 1), TODAY))
def test_date_of_birth_mask_is_the_year_alone(born: datetime.date) -> None:
    n = normalize(DateOfBirth(born.year, born.month, born.day), today=TODAY)
    assert n.masked == f"{born.year:04d}"


_INITIALS = re.compile(r"\*\*\*|\S\.(?: \S\.)*")


def _letter_count(part: str) -> int:
    """Letters as a reader counts them: marks are not letters, so they add nothing."""
    return sum(1 for char in part if char.isalpha())


def _is_wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F", "H")


@given(_words)
def test_name_mask_is_one_narrow_letter_per_part_of_three_letters_or_more(
    words: list[str],
) -> None:
    name = " ".join(words)
    assume(len(name) <= 200)
    n = normalize(Name(name), today=TODAY)
    assert isinstance(n.value, Name)
    assert _INITIALS.fullmatch(n.masked), n.masked
    initials = [] if n.masked == "***" else n.masked.split(" ")
    long_parts = [part for part in n.value.full_name.split(" ") if _letter_count(part) >= 3]
    assert len(initials) <= len(long_parts)
    for initial in initials:
        assert initial[0].isalpha()
        assert not _is_wide(initial[0])


_short_parts = st.lists(
    st.tuples(_letters, st.text(st.characters(categories=("Mn",)), max_size=3)).map("".join),
    min_size=1,
    max_size=2,
).map("".join)


@given(_words, _short_parts, st.integers(0, 6))
def test_no_part_of_one_or_two_letters_shows_in_the_name_mask(
    words: list[str], short: str, position: int
) -> None:
    parts = [*words[:position], short, *words[position:]]
    name = " ".join(parts)
    assume(len(name) <= 200)
    others = unicodedata.normalize("NFC", " ".join(words))
    shown_forms = {form for c in others for form in (c, c.upper(), c.lower())}
    secret = {c for c in unicodedata.normalize("NFC", short) if c.isalpha()}
    secret |= {form for c in secret for form in (c.upper(), c.lower())}
    assume(not secret & shown_forms)
    masked = normalize(Name(name), today=TODAY).masked
    assert not any(char in masked for char in secret), (name, masked)


_ideographs = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
_hangul_syllables = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
_kana = st.characters(categories=("Lo",), min_codepoint=0x3041, max_codepoint=0x30FA)
_east_asian_names = st.one_of(
    st.text(_ideographs, min_size=1, max_size=6),
    st.text(_hangul_syllables, min_size=1, max_size=6),
    st.text(_kana, min_size=1, max_size=8),
    st.lists(st.text(_ideographs, min_size=1, max_size=3), min_size=2, max_size=3).map(" ".join),
)


@given(_east_asian_names)
def test_an_ideographic_or_syllabic_name_never_shows_its_surname(name: str) -> None:
    masked = normalize(Name(name), today=TODAY).masked
    assert masked == "***"
    assert name[0] not in masked


# --- nothing invisible gets in, so nothing invisible comes out ---------------

Rebuild = Callable[[str], FieldValue]


def _text_inputs(value: FieldValue) -> dict[str, tuple[str, Rebuild]]:
    """Every text input of ``value``: its request path, its text, and the value with it replaced."""
    r = dataclasses.replace
    match value:
        case PhoneNumber():
            return {
                "value.phone.number": (value.number, lambda t: r(value, number=t)),
                "value.phone.default_region": (
                    value.default_region,
                    lambda t: r(value, default_region=t),
                ),
            }
        case Email():
            return {"value.email": (value.address, lambda t: r(value, address=t))}
        case PostalAddress():
            inputs: dict[str, tuple[str, Rebuild]] = {
                f"value.address.{name}": (
                    getattr(value, name),
                    lambda t, n=name: r(value, **{n: t}),
                )
                for name in (
                    "region_code",
                    "locality",
                    "administrative_area",
                    "postal_code",
                    "sublocality",
                    "organization",
                )
            }
            for name in ("address_lines", "recipients"):
                entries: tuple[str, ...] = getattr(value, name)
                for i, entry in enumerate(entries):
                    inputs[f"value.address.{name}[{i}]"] = (
                        entry,
                        lambda t, n=name, i=i, e=entries: r(value, **{n: (*e[:i], t, *e[i + 1 :])}),
                    )
            return inputs
        case PaymentCard():
            return {
                "value.card.pan": (value.pan, lambda t: r(value, pan=t)),
                "value.card.holder_name": (value.holder_name, lambda t: r(value, holder_name=t)),
            }
        case PaymentToken():
            return {
                "value.payment_token.provider": (value.provider, lambda t: r(value, provider=t)),
                "value.payment_token.token": (value.token, lambda t: r(value, token=t)),
            }
        case Name():
            return {"value.name": (value.full_name, lambda t: r(value, full_name=t))}
        case DateOfBirth():
            return {}


_HIDDEN_REASONS = {
    "contains bidirectional control characters",
    "contains invisible format characters",
}


@given(field_values, _hidden_characters, st.data())
def test_every_text_input_refuses_bidi_and_invisible_characters(
    value: FieldValue, hidden: str, data: st.DataObject
) -> None:
    inputs = _text_inputs(value)
    assume(inputs)
    path = data.draw(st.sampled_from(sorted(inputs)))
    text, rebuild = inputs[path]
    at = data.draw(st.integers(0, len(text)))
    try:
        normalize(rebuild(text[:at] + hidden + text[at:]), today=TODAY)
    except InvalidArgument as error:
        assert [v.field for v in error.violations] == [path]
        (violation,) = error.violations
        assert violation.description in _HIDDEN_REASONS
        assert str(error) == f"{path}: {violation.description}"  # never the value
    else:
        raise AssertionError(f"{unicodedata.name(hidden, hex(ord(hidden)))} accepted in {path}")


def _invisible_in(text: str) -> list[str]:
    found = []
    for i, char in enumerate(text):
        if char in JOINERS:
            neighbours = text[i - 1 : i] + text[i + 1 : i + 2]
            if len(neighbours) == 2 and all(unicodedata.category(c)[0] in "LM" for c in neighbours):
                continue
        if char in BIDI_CONTROLS or char in HANGUL_FILLERS or unicodedata.category(char) == "Cf":
            found.append(char)
    return found


@given(field_values)
def test_no_mask_carries_a_bidi_or_invisible_format_character(value: FieldValue) -> None:
    assert _invisible_in(normalize(value, today=TODAY).masked) == []


@given(field_values)
def test_the_mask_is_a_function_of_the_normal_form_alone(value: FieldValue) -> None:
    n = normalize(value, today=TODAY)
    again = normalize(decode(n.type, n.canonical), today=TODAY)
    assert (again.masked, again.facts) == (n.masked, n.facts)


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
