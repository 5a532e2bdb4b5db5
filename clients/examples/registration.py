"""Example caller: the registration service, on pii-vault-client alone.

Asks "is this phone already registered?" and, if not, stores a new account's phone
and e-mail. It only ever sees masked views and a yes/no.

    python clients/examples/registration.py --data-dir var/vault --phone '+372 5123 4567' \\
        --email jane@example.com

Each put carries an idempotency key derived from the account and field, so the
client retries it on UNAVAILABLE (a restarting or draining vault) and a repeated
registration returns the first views instead of writing twice. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence

from pii_vault_client import DEFAULT_TARGET, Credentials, VaultClient, VaultError
from pii_vault_client.v1 import vault_pb2 as pb

CALLER = "registration"


def phone_taken(client: VaultClient, number: str) -> bool:
    """Whether some account already holds ``number``: all a dedupe needs, all it is told."""
    value = pb.FieldValue(phone=pb.PhoneNumber(number=number))
    return client.find_subjects(pb.FindSubjectsRequest(value=value)).found


def register(client: VaultClient, account_id: str, phone: str, email: str) -> dict[str, str]:
    """Store phone and e-mail; returns the masked views keyed by field."""
    masked: dict[str, str] = {}
    for field, value in (
        ("phone", pb.FieldValue(phone=pb.PhoneNumber(number=phone))),
        ("email", pb.FieldValue(email=email)),
    ):
        request = pb.PutFieldRequest(
            subject_id=account_id,
            field=field,
            value=value,
            idempotency_key=f"register-{account_id}-{field}",
        )
        masked[field] = client.put_field(request).view.masked
    return masked


def connect(args: argparse.Namespace, caller: str) -> VaultClient:
    """Certificates from ``--ca/--cert/--key``, else the dev PKI in ``--data-dir``."""
    if args.cert:
        credentials = Credentials.from_files(ca=args.ca, cert=args.cert, key=args.key)
    else:
        credentials = Credentials.from_data_dir(args.data_dir, caller)
    return VaultClient(args.target, credentials)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=DEFAULT_TARGET, help="host:port or dns:///host:port")
    parser.add_argument("--data-dir", default="var/vault", help="dev PKI: DIR/tls/...")
    parser.add_argument("--ca", help="CA certificate (PEM) instead of the dev PKI")
    parser.add_argument("--cert", help="this caller's certificate (PEM)")
    parser.add_argument("--key", help="this caller's private key (PEM)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_connection_arguments(parser)
    parser.add_argument("--account", help="account id (default: a new one)")
    parser.add_argument("--phone", default="+372 5123 4567")
    parser.add_argument("--email", default="Jane.Doe@Example.COM")
    args = parser.parse_args(argv)
    if args.cert and not (args.ca and args.key):
        parser.error("--cert needs --ca and --key")
    account = args.account or f"acct-{uuid.uuid4().hex[:12]}"
    try:
        with connect(args, CALLER) as client:
            if phone_taken(client, args.phone):
                print(json.dumps({"account": None, "already_registered": True}))
                return 0
            masked = register(client, account, args.phone, args.email)
    except VaultError as error:
        print(f"registration: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"account": account, "already_registered": False, "masked": masked}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
