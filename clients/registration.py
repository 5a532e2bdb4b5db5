"""Example caller: the registration service.

Stores a new account's phone and e-mail and asks "is this phone already
registered?" before creating an account. It only ever sees masked views.

    python -m clients.registration --data-dir var/vault --target localhost:50051
"""

from __future__ import annotations

import argparse
import uuid

from pii_vault_client.v1 import vault_pb2 as pb

from vault.client import DEFAULT_TARGET, VaultClient


def phone_taken(client: VaultClient, number: str) -> bool:
    """Whether some account already holds ``number``: all a dedupe needs, all it is told."""
    value = pb.FieldValue(phone=pb.PhoneNumber(number=number))
    return client.vault.FindSubjects(pb.FindSubjectsRequest(value=value)).found


def register(client: VaultClient, account_id: str, phone: str, email: str) -> dict[str, str]:
    """Store phone and e-mail; returns the masked views keyed by field."""
    masked: dict[str, str] = {}
    for field, value in (
        ("phone", pb.FieldValue(phone=pb.PhoneNumber(number=phone))),
        ("email", pb.FieldValue(email=email)),
    ):
        view = client.vault.PutField(
            pb.PutFieldRequest(
                subject_id=account_id,
                field=field,
                value=value,
                idempotency_key=f"register-{account_id}-{field}",
            )
        ).view
        masked[field] = view.masked
    return masked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default="var/vault")
    parser.add_argument("--target", default=DEFAULT_TARGET)
    args = parser.parse_args()
    with VaultClient.for_caller(args.data_dir, "registration", args.target) as client:
        phone = "+372 5123 4567"
        if phone_taken(client, phone):
            print("this phone number is already registered")
            return
        account = f"acct-{uuid.uuid4().hex[:12]}"
        print(account, register(client, account, phone, "Jane.Doe@Example.COM"))


if __name__ == "__main__":
    main()
