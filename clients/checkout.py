"""Example caller: the checkout service.

Stores a card and a payment token when a shopper adds them, reads the token
view for an order, and detokenizes the payment token for purpose
``checkout`` when it charges. It never sees a card number.

    python -m clients.checkout --data-dir var/vault --target localhost:50051
"""

from __future__ import annotations

import argparse

from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import DEFAULT_TARGET, VaultClient


def add_payment_method(
    client: VaultClient, account_id: str, provider: str, token: str
) -> pb.FieldView:
    value = pb.FieldValue(payment_token=pb.PaymentToken(provider=provider, token=token))
    return client.vault.PutField(
        pb.PutFieldRequest(subject_id=account_id, field=f"payment_token.{provider}", value=value)
    ).view


def charge(client: VaultClient, vault_token: str) -> str:
    """Exchange the vault token for the provider's token, for purpose checkout."""
    answer = client.vault.Detokenize(pb.DetokenizeRequest(token=vault_token, purpose="checkout"))
    return answer.value.payment_token.token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default="var/vault")
    parser.add_argument("--target", default=DEFAULT_TARGET)
    parser.add_argument("--account", default="acct-demo")
    args = parser.parse_args()
    with VaultClient.for_caller(args.data_dir, "checkout", args.target) as client:
        view = add_payment_method(client, args.account, "stripe", "pm_1NdemoTokenf3a9")
        print("stored", view.masked, view.token)
        provider_token = charge(client, view.token)
        print("charging with a provider token of", len(provider_token), "characters")


if __name__ == "__main__":
    main()
