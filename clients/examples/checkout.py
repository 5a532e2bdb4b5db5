"""Example caller: the checkout service, on pii-vault-client alone.

When a shopper adds payment methods it stores a card and a payment provider's token;
when the shopper pays it reads the payment token's vault token and exchanges it
(``Detokenize``, purpose ``checkout``) for the provider token to charge. It never
sees a card number: the card comes back masked.

    python clients/examples/checkout.py --data-dir var/vault --account acct-1

Puts carry idempotency keys and reads are idempotent, so the client retries all of
them on UNAVAILABLE. Prints one JSON line (never the provider token itself).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pii_vault_client import DEFAULT_TARGET, Credentials, VaultClient, VaultError
from pii_vault_client.v1 import vault_pb2 as pb

CALLER = "checkout"
PURPOSE = "checkout"


def add_card(
    client: VaultClient, account_id: str, pan: str, exp_month: int, exp_year: int, holder: str
) -> pb.FieldView:
    card = pb.PaymentCard(pan=pan, exp_month=exp_month, exp_year=exp_year, holder_name=holder)
    request = pb.PutFieldRequest(
        subject_id=account_id,
        field="card.primary",
        value=pb.FieldValue(card=card),
        idempotency_key=f"add-card-{account_id}-{pan[-4:]}",
    )
    return client.put_field(request).view


def add_payment_method(
    client: VaultClient, account_id: str, provider: str, token: str
) -> pb.FieldView:
    request = pb.PutFieldRequest(
        subject_id=account_id,
        field=f"payment_token.{provider}",
        value=pb.FieldValue(payment_token=pb.PaymentToken(provider=provider, token=token)),
        idempotency_key=f"add-token-{account_id}-{provider}-{token[-4:]}",
    )
    return client.put_field(request).view


def vault_token(client: VaultClient, account_id: str, provider: str) -> str:
    """The opaque vault token (``tok_...``) of the account's payment token for ``provider``."""
    request = pb.GetFieldRequest(
        subject_id=account_id, field=f"payment_token.{provider}", view=pb.VIEW_TOKEN
    )
    return client.get_field(request).view.token


def charge(client: VaultClient, token: str) -> str:
    """Exchange the vault token for the provider's token, for purpose checkout."""
    answer = client.detokenize(pb.DetokenizeRequest(token=token, purpose=PURPOSE))
    return answer.value.payment_token.token


def pay(client: VaultClient, account_id: str, provider: str) -> str:
    """What a payment does: the provider token to hand to the payment provider."""
    return charge(client, vault_token(client, account_id, provider))


def connect(args: argparse.Namespace, caller: str) -> VaultClient:
    """Certificates from ``--ca/--cert/--key``, else the dev PKI in ``--data-dir``."""
    if args.cert:
        credentials = Credentials.from_files(ca=args.ca, cert=args.cert, key=args.key)
    else:
        credentials = Credentials.from_data_dir(args.data_dir, caller)
    return VaultClient(args.target, credentials)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", default=DEFAULT_TARGET, help="host:port or dns:///host:port")
    parser.add_argument("--data-dir", default="var/vault", help="dev PKI: DIR/tls/...")
    parser.add_argument("--ca", help="CA certificate (PEM) instead of the dev PKI")
    parser.add_argument("--cert", help="this caller's certificate (PEM)")
    parser.add_argument("--key", help="this caller's private key (PEM)")
    parser.add_argument("--account", default="acct-demo")
    parser.add_argument("--provider", default="stripe")
    parser.add_argument("--provider-token", default="pm_1NdemoTokenf3a9")
    args = parser.parse_args(argv)
    if args.cert and not (args.ca and args.key):
        parser.error("--cert needs --ca and --key")
    try:
        with connect(args, CALLER) as client:
            card = add_card(client, args.account, "4242424242424242", 12, 2030, "Jane Doe")
            token = add_payment_method(client, args.account, args.provider, args.provider_token)
            provider_token = pay(client, args.account, args.provider)
    except VaultError as error:
        print(f"checkout: {error}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "card": card.masked,
                "payment_token": token.masked,
                "charged": provider_token == args.provider_token,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
