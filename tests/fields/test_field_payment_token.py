import datetime

import pytest

from vault.errors import InvalidArgument
from vault.fields import FieldType, PaymentToken, decode, normalize

TODAY = datetime.date(2026, 11, 22)


def test_stripe_token() -> None:
    n = normalize(PaymentToken(" Stripe ", "pm_1NqWv2Lkdf3a9"), today=TODAY)
    assert n.type is FieldType.PAYMENT_TOKEN
    assert n.value == PaymentToken("stripe", "pm_1NqWv2Lkdf3a9")
    assert n.masked == "stripe ****f3a9"
    assert n.index_input == b"stripe:pm_1NqWv2Lkdf3a9"
    assert decode(n.type, n.canonical) == n.value


@pytest.mark.parametrize("provider", ["a", "adyen", "braintree_v2", "pay.pal-eu", "9" * 32])
def test_valid_providers(provider: str) -> None:
    assert normalize(PaymentToken(provider, "tok_abcdefgh"), today=TODAY).value == PaymentToken(
        provider, "tok_abcdefgh"
    )


@pytest.mark.parametrize("token", ["x" * 16, "x" * 512, "!\"#$%&'()*+,-./~"])
def test_valid_tokens(token: str) -> None:
    n = normalize(PaymentToken("stripe", token), today=TODAY)
    assert n.value == PaymentToken("stripe", token)
    assert n.masked == f"stripe ****{token[-4:]}"


@pytest.mark.parametrize("token", ["12345678", "tok_abcdefgh", "pm_1NqWv2Lkdf3a"])
def test_a_token_under_sixteen_characters_shows_none_of_itself(token: str) -> None:
    n = normalize(PaymentToken("stripe", token), today=TODAY)
    assert n.value == PaymentToken("stripe", token)
    assert n.masked == "stripe ****"


@pytest.mark.parametrize(
    ("token_value", "field"),
    [
        (PaymentToken("", "tok_secret1"), "value.payment_token.provider"),
        (PaymentToken("_stripe", "tok_secret1"), "value.payment_token.provider"),
        (PaymentToken("str ipe", "tok_secret1"), "value.payment_token.provider"),
        (PaymentToken("stripe!", "tok_secret1"), "value.payment_token.provider"),
        (PaymentToken("a" * 33, "tok_secret1"), "value.payment_token.provider"),
        (PaymentToken("\u212aard", "tok_secret1"), "value.payment_token.provider"),  # Kelvin sign
        (PaymentToken("stripe", "secret1"), "value.payment_token.token"),
        (PaymentToken("stripe", "secret12" * 65), "value.payment_token.token"),
        (PaymentToken("stripe", "tok secret1"), "value.payment_token.token"),
        (PaymentToken("stripe", " tok_secret1"), "value.payment_token.token"),
        (PaymentToken("stripe", "tok_secret1\n"), "value.payment_token.token"),
        (PaymentToken("stripe", "tok_sécret1"), "value.payment_token.token"),
        (PaymentToken("stripe", "tok_secret\x7f"), "value.payment_token.token"),
        (PaymentToken("stripe", "tok_secret1\u202e"), "value.payment_token.token"),
        (PaymentToken("stripe", "tok_\u200bsecret1"), "value.payment_token.token"),
        (PaymentToken("str\u2066ipe", "tok_secret1"), "value.payment_token.provider"),
    ],
)
def test_invalid_payment_tokens(token_value: PaymentToken, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize(token_value, today=TODAY)
    assert [v.field for v in info.value.violations] == [field]
    assert "secret" not in str(info.value)
    assert "ipe" not in str(info.value)
