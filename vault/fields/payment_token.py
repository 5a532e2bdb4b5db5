"""Payment tokens: a provider name and the provider's opaque token.

The token is stored exactly as given (it is opaque: any change could break it
at the provider), so it is only checked, never rewritten. The provider is
case-folded so ``Stripe`` and ``stripe`` index alike.
"""

from __future__ import annotations

import datetime
import re

from vault.errors import FieldViolation, InvalidArgument
from vault.fields._canonical import CanonicalReader, encode_canonical
from vault.fields.base import FieldType, Normalized, PaymentToken

MIN_TOKEN_LENGTH = 8
MAX_TOKEN_LENGTH = 512

_PROVIDER = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space


def normalize_payment_token(value: PaymentToken, *, today: datetime.date) -> Normalized:
    del today  # accepted for a uniform signature
    violations: list[FieldViolation] = []

    provider = value.provider.strip()
    # Checked before lower-casing: str.lower() maps some non-ASCII letters
    # (the Kelvin sign) onto ASCII ones.
    if not provider.isascii() or not _PROVIDER.fullmatch(provider := provider.lower()):
        violations.append(
            FieldViolation(
                "value.payment_token.provider",
                "must be 1 to 32 of a-z, 0-9, '_', '.', '-', starting with a letter or digit",
            )
        )

    token = value.token
    if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        violations.append(
            FieldViolation(
                "value.payment_token.token",
                f"must be {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} characters",
            )
        )
    elif not _TOKEN.fullmatch(token):
        violations.append(
            FieldViolation(
                "value.payment_token.token", "must be printable ASCII without whitespace"
            )
        )

    if violations:
        raise InvalidArgument.many(violations)

    normal = PaymentToken(provider=provider, token=token)
    return Normalized(
        type=FieldType.PAYMENT_TOKEN,
        value=normal,
        canonical=encode_canonical(normal),
        masked=f"{provider} ****{token[-4:]}",
        index_input=f"{provider}:{token}".encode(),
    )


def decode_payment_token(canonical: bytes) -> PaymentToken:
    reader = CanonicalReader(FieldType.PAYMENT_TOKEN, canonical)
    return PaymentToken(provider=reader.text("provider"), token=reader.text("token"))
