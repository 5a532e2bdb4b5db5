"""Payment tokens: a provider name and the provider's opaque token.

The token is stored exactly as given (it is opaque: any change could break it
at the provider), so it is only checked, never rewritten. The provider is
case-folded so ``Stripe`` and ``stripe`` index alike.

The most a mask reveals: the provider, and the last ``VISIBLE_TAIL`` (four)
characters of the token only when at least ``MIN_HIDDEN_CHARACTERS`` (twelve)
stay hidden, i.e. the token has 16 or more characters and three quarters or
more of it is never shown: ``stripe ****f3a9``. A shorter token shows none
of itself: ``stripe ****``. (Tokens often start with a fixed prefix such as
``pm_``, which is why the bound is in hidden characters, not in a ratio.)
"""

from __future__ import annotations

import datetime
import re

from vault.errors import FieldViolation, InvalidArgument
from vault.fields._canonical import CanonicalReader, encode_canonical
from vault.fields._text import hidden_character_problem
from vault.fields.base import FieldType, Normalized, PaymentToken

MIN_TOKEN_LENGTH = 8
MAX_TOKEN_LENGTH = 512
VISIBLE_TAIL = 4
MIN_HIDDEN_CHARACTERS = 12

_PROVIDER = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space
_PROVIDER_PATH = "value.payment_token.provider"
_TOKEN_PATH = "value.payment_token.token"  # noqa: S105 - a field path, not a secret


def normalize_payment_token(value: PaymentToken, *, today: datetime.date) -> Normalized:
    del today  # accepted for a uniform signature
    violations = [
        FieldViolation(path, problem)
        for path, raw in ((_PROVIDER_PATH, value.provider), (_TOKEN_PATH, value.token))
        if (problem := hidden_character_problem(raw)) is not None
    ]
    if violations:
        raise InvalidArgument.many(violations)

    provider = value.provider.strip()
    # Checked before lower-casing: str.lower() maps some non-ASCII letters
    # (the Kelvin sign) onto ASCII ones.
    if not provider.isascii() or not _PROVIDER.fullmatch(provider := provider.lower()):
        violations.append(
            FieldViolation(
                _PROVIDER_PATH,
                "must be 1 to 32 of a-z, 0-9, '_', '.', '-', starting with a letter or digit",
            )
        )

    token = value.token
    if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        violations.append(
            FieldViolation(
                _TOKEN_PATH,
                f"must be {MIN_TOKEN_LENGTH} to {MAX_TOKEN_LENGTH} characters",
            )
        )
    elif not _TOKEN.fullmatch(token):
        violations.append(FieldViolation(_TOKEN_PATH, "must be printable ASCII without whitespace"))

    if violations:
        raise InvalidArgument.many(violations)

    normal = PaymentToken(provider=provider, token=token)
    return Normalized(
        type=FieldType.PAYMENT_TOKEN,
        value=normal,
        canonical=encode_canonical(normal),
        masked=mask_payment_token(provider, token),
        index_input=f"{provider}:{token}".encode(),
    )


def mask_payment_token(provider: str, token: str) -> str:
    """``stripe ****f3a9``, or ``stripe ****`` when the last four would show too much."""
    if len(token) - VISIBLE_TAIL < MIN_HIDDEN_CHARACTERS:
        return f"{provider} ****"
    return f"{provider} ****{token[-VISIBLE_TAIL:]}"


def decode_payment_token(canonical: bytes) -> PaymentToken:
    reader = CanonicalReader(FieldType.PAYMENT_TOKEN, canonical)
    return PaymentToken(provider=reader.text("provider"), token=reader.text("token"))
