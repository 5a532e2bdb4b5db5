"""Values on standard input, as ``put``, ``find`` and ``canary plant`` read them.

One table (``FORMATS``) says, per field type, what standard input holds and
gives an example; ``put --help`` prints it, and every refusal quotes the
type's line of it. A refusal names the type and the key or part that is
wrong, never the value given (a card number, a birth date): the message goes
to a terminal and into logs.

Addresses are ``google.type.PostalAddress`` as JSON, with either the proto's
snake_case names (``region_code``, ``address_lines``) or their camelCase JSON
names (``regionCode``, ``addressLines``). Cards take ``pan``, ``exp_month``,
``exp_year`` and ``holder_name`` in either spelling too.

Client-side only: no server layer is imported (the field types' own checks run
in the server, which answers ``INVALID_ARGUMENT`` naming the field).
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass

from pii_vault_client.v1 import vault_pb2 as pb


@dataclass(frozen=True)
class Format:
    """What standard input holds for one field type, and an example of it."""

    expects: str
    example: str


FORMATS: dict[str, Format] = {
    "phone": Format(
        "the number as text, with a country code or a leading 0 of one",
        "+372 5123 4567",
    ),
    "email": Format("the address as text", "jane.doe@example.com"),
    "name": Format("the name as text", "Jane Doe"),
    "date_of_birth": Format("the date as YYYY-MM-DD", "1985-04-12"),
    "payment_token": Format(
        "PROVIDER:TOKEN as text (the provider's name, a colon, its opaque token)",
        "stripe:pm_1NdemoTokenf3a9",
    ),
    "card": Format(
        "a JSON object: pan (text), exp_month and exp_year (numbers), holder_name (optional)",
        '{"pan": "5555 5555 5555 4444", "exp_month": 12, "exp_year": 2030}',
    ),
    "address": Format(
        "a JSON object: region_code (ISO 3166-1 alpha-2) and address_lines (a list of text)"
        " required; locality, postal_code, administrative_area, sublocality, organization,"
        " recipients (a list) optional; camelCase names (regionCode) work too",
        '{"region_code": "EE", "address_lines": ["Narva mnt 5"], "locality": "Tallinn",'
        ' "postal_code": "10117"}',
    ),
}

_CARD_KEYS = {"pan": str, "exp_month": int, "exp_year": int, "holder_name": str}
_ADDRESS_TEXT = (
    "region_code", "language_code", "postal_code", "sorting_code", "administrative_area",
    "locality", "sublocality", "organization",
)  # fmt: skip
_ADDRESS_LISTS = ("address_lines", "recipients")
_ADDRESS_INTS = ("revision",)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")


class UnreadableValueError(ValueError):
    """Standard input is not a value of the asked type; the message never quotes it."""

    def __init__(self, kind: str, problem: str) -> None:
        form, article = FORMATS[kind], "an" if kind[0] in "aeiou" else "a"
        super().__init__(
            f"standard input is not {article} {kind} value: {problem}; {article} {kind} is"
            f" {form.expects}, e.g. {form.example}"
        )


def put_help(command: str = "put --as CALLER SUBJECT FIELD") -> str:
    """The ``put --help`` epilog (and ``find``'s, ``canary plant``'s): every type's stdin
    format, with an example of ``pii-vault COMMAND --type TYPE``."""
    lines = ["the value is read from standard input; by --type:", ""]
    for kind, form in FORMATS.items():
        lines += textwrap.wrap(f"{kind}: {form.expects}", 78, initial_indent="  ",
                               subsequent_indent="    ")  # fmt: skip
        lines.append(f"      echo '{form.example}' | pii-vault {command} --type {kind}")
    return "\n".join(lines)


def value_from_text(kind: str, text: str) -> pb.FieldValue:
    """The ``FieldValue`` standard input holds, or ``UnreadableValueError`` saying what is wrong."""
    if kind not in FORMATS:
        raise ValueError(f"unknown field type {kind!r}")
    text = text.strip()
    if not text:
        raise UnreadableValueError(kind, "it is empty")
    if kind == "phone":
        return pb.FieldValue(phone=pb.PhoneNumber(number=text))
    if kind == "email":
        return pb.FieldValue(email=text)
    if kind == "name":
        return pb.FieldValue(name=text)
    if kind == "payment_token":
        provider, colon, token = text.partition(":")
        if not colon or not provider.strip() or not token.strip():
            raise UnreadableValueError(kind, "it is not PROVIDER:TOKEN")
        return pb.FieldValue(
            payment_token=pb.PaymentToken(provider=provider.strip(), token=token.strip())
        )
    if kind == "date_of_birth":
        found = _DATE.fullmatch(text)
        if found is None:
            raise UnreadableValueError(kind, "it is not YYYY-MM-DD")
        year, month, day = (int(part) for part in found.groups())
        value = pb.FieldValue()
        value.date_of_birth.year = year
        value.date_of_birth.month = month
        value.date_of_birth.day = day
        return value
    document = _json_object(kind, text)
    if kind == "card":
        return pb.FieldValue(card=_card(document))
    return _address(document)


def _json_object(kind: str, text: str) -> dict[str, object]:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # the decoder's message quotes the input
        raise UnreadableValueError(kind, "it is not JSON") from None
    if not isinstance(document, dict):
        raise UnreadableValueError(kind, "it is not a JSON object")
    return document


def _snake(key: str) -> str:
    """``regionCode`` -> ``region_code``; snake_case keys are returned as they are."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _card(document: dict[str, object]) -> pb.PaymentCard:
    card = pb.PaymentCard()
    fields: set[str] = set()
    for key, value in document.items():
        name = _snake(key)
        expected = _CARD_KEYS.get(name)
        if expected is None:
            raise UnreadableValueError("card", f"it has an unknown key {_key(key)}")
        if name in fields:
            raise UnreadableValueError("card", f"it gives {name} twice")
        if expected is int and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31
        ):
            raise UnreadableValueError("card", f"{name} is not a whole number")
        if expected is str and not isinstance(value, str):
            raise UnreadableValueError("card", f"{name} is not text")
        setattr(card, name, value)
        fields.add(name)
    missing = [name for name in ("pan", "exp_month", "exp_year") if name not in fields]
    if missing:
        raise UnreadableValueError("card", f"{', '.join(missing)} missing")
    return card


def _address(document: dict[str, object]) -> pb.FieldValue:
    value = pb.FieldValue()
    address = value.address
    seen: set[str] = set()
    for key, item in document.items():
        name = _snake(key)
        if name in seen:
            raise UnreadableValueError("address", f"it gives {name} twice")
        seen.add(name)
        if name in _ADDRESS_TEXT:
            if not isinstance(item, str):
                raise UnreadableValueError("address", f"{name} is not text")
            setattr(address, name, item)
        elif name in _ADDRESS_LISTS:
            if not isinstance(item, list) or not all(isinstance(line, str) for line in item):
                raise UnreadableValueError("address", f"{name} is not a list of text")
            getattr(address, name).extend(item)
        elif name in _ADDRESS_INTS:
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item < 2**31:
                raise UnreadableValueError("address", f"{name} is not a whole number")
            address.revision = item
        else:
            raise UnreadableValueError("address", f"it has an unknown key {_key(key)}")
    return value


def _key(key: str) -> str:
    """A key of the caller's JSON, quoted only when it looks like a key (it could be a value)."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,39}", key):
        return repr(key)
    return "(not a field name)"
