"""Email addresses: a strict dot-atom syntax check, lower-cased domain.

Only the domain is case-folded: RFC 5321 leaves the local part's case to the
receiving host, so ``Jane.Doe`` and ``jane.doe`` may be different mailboxes.
Quoted local parts, IP-literal domains and non-ASCII addresses are refused;
they are rare in practice and hard to compare safely.
"""

from __future__ import annotations

import datetime
import re

from vault.errors import InvalidArgument
from vault.fields._canonical import CanonicalReader, encode_canonical
from vault.fields.base import Email, FieldType, Normalized

MAX_LENGTH = 254
MAX_LOCAL_LENGTH = 64

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")

_FIELD = "value.email"


def normalize_email(value: Email, *, today: datetime.date) -> Normalized:
    del today  # accepted for a uniform signature
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
        masked=f"{local[0]}***@{domain}",
        index_input=normal.address.encode(),
    )


def decode_email(canonical: bytes) -> Email:
    return Email(address=CanonicalReader(FieldType.EMAIL, canonical).text("address"))
