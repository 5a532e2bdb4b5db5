"""Email addresses: a strict dot-atom syntax check, lower-cased domain.

Only the domain is case-folded: RFC 5321 leaves the local part's case to the
receiving host, so ``Jane.Doe`` and ``jane.doe`` may be different mailboxes.
Quoted local parts, IP-literal domains and non-ASCII addresses are refused;
they are rare in practice and hard to compare safely.

The most a mask reveals: the lower-cased domain, and at most
``MAX_SHOWN_LOCAL_CHARACTERS`` (one) character of the local part, the first,
and that only when the local part has at least ``MIN_LOCAL_LENGTH_TO_SHOW``
(four) characters, so that three or more stay hidden (at least 36**3, about
47,000, candidates even for letters and digits alone). Shorter local parts
are hidden whole: ``jane.doe@Example.com`` masks to ``j***@example.com``,
``jo@example.com`` to ``***@example.com``. The stars are a fixed three, so
the mask does not tell the length either.
"""

from __future__ import annotations

import datetime
import re

from vault.errors import InvalidArgument
from vault.fields._canonical import CanonicalReader, encode_canonical
from vault.fields._text import hidden_character_problem
from vault.fields.base import Email, FieldType, Normalized

MAX_LENGTH = 254
MAX_LOCAL_LENGTH = 64
MAX_SHOWN_LOCAL_CHARACTERS = 1
MIN_LOCAL_LENGTH_TO_SHOW = 4

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")

_FIELD = "value.email"


def normalize_email(value: Email, *, today: datetime.date) -> Normalized:
    del today  # accepted for a uniform signature
    problem = hidden_character_problem(value.address)
    if problem is not None:
        raise InvalidArgument(_FIELD, problem)
    address = value.address.strip()
    if len(address) > MAX_LENGTH:
        raise InvalidArgument(_FIELD, f"longer than {MAX_LENGTH} characters")
    if address.count("@") != 1:
        raise InvalidArgument(_FIELD, "must contain exactly one '@'")
    local, domain = address.split("@")
    if not local:
        raise InvalidArgument(_FIELD, "local part is empty")
    if len(local) > MAX_LOCAL_LENGTH:
        raise InvalidArgument(_FIELD, f"local part longer than {MAX_LOCAL_LENGTH} characters")
    if not _LOCAL.fullmatch(local):
        raise InvalidArgument(_FIELD, "local part is not a valid dot-atom")
    if not _DOMAIN.fullmatch(domain):
        raise InvalidArgument(_FIELD, "domain is not a valid host name")

    domain = domain.lower()
    normal = Email(address=f"{local}@{domain}")
    return Normalized(
        type=FieldType.EMAIL,
        value=normal,
        canonical=encode_canonical(normal),
        masked=mask_email(local, domain),
        index_input=normal.address.encode(),
    )


def mask_email(local: str, domain: str) -> str:
    """``j***@example.com``; ``***@example.com`` for a local part under four characters."""
    shown = local[:MAX_SHOWN_LOCAL_CHARACTERS] if len(local) >= MIN_LOCAL_LENGTH_TO_SHOW else ""
    return f"{shown}***@{domain}"


def decode_email(canonical: bytes) -> Email:
    return Email(address=CanonicalReader(FieldType.EMAIL, canonical).text("address"))
