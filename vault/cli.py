"""``pii-vault``: run the vault, and call it as one of the callers.

Values are read from standard input, never from arguments, so that personal
data does not end up in shell history or the process list.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2

from vault import config
from vault.client import DEFAULT_TARGET, VaultClient
from vault.domain.shredding import receipt_document, verify_receipt_document
from vault.v1 import vault_pb2 as pb

log = logging.getLogger("vault")

VALUE_TYPES = ("phone", "email", "address", "card", "payment_token", "name", "date_of_birth")


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"data directory (VAULT_DATA_DIR, default {config.DEFAULT_DATA_DIR})",
    )


def _add_client(parser: argparse.ArgumentParser) -> None:
    _add_data_dir(parser)
    parser.add_argument("--as", dest="caller", required=True, help="client certificate to use")
    parser.add_argument(
        "--target", default=os.environ.get("VAULT_TARGET", DEFAULT_TARGET), help="host:port"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pii-vault", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create keyring, dev TLS, policy and database")
    _add_data_dir(init)

    serve = commands.add_parser("serve", help="serve the vault over mutual TLS")
    _add_data_dir(serve)
    serve.add_argument("--listen", help=f"HOST:PORT (default {config.DEFAULT_LISTEN})")
    serve.add_argument("--database-url", help="SQLAlchemy URL of the data store")
    serve.add_argument("--key-database-url", help="separate database for wrapped keys")
    serve.add_argument("--key-provider", help="master key URI, e.g. local:///path/keyring.json")
    serve.add_argument("--policy", dest="policy_path", help="policy file (default DIR/policy.toml)")
    serve.add_argument("--workers", type=int, help="processes sharing the port")
    serve.add_argument("--threads", type=int, help="RPC threads per process")
    serve.add_argument(
        "--init", action="store_true", help="initialise the data directory first if it is empty"
    )
    serve.add_argument(
        "--plaintext",
        action="store_true",
        default=None,
        help="serve without TLS (loopback only; caller from x-vault-caller metadata)",
    )

    put = commands.add_parser("put", help="store a value read from stdin")
    _add_client(put)
    put.add_argument("subject_id")
    put.add_argument("field")
    put.add_argument("--type", required=True, choices=VALUE_TYPES)
    put.add_argument("--idempotency-key", default="")

    get = commands.add_parser("get", help="read a field")
    _add_client(get)
    get.add_argument("subject_id")
    get.add_argument("field")
    get.add_argument("--view", default="masked", choices=("masked", "token", "plaintext"))
    get.add_argument("--purpose", default="")

    find = commands.add_parser("find", help="find subjects holding a value read from stdin")
    _add_client(find)
    find.add_argument("--type", required=True, choices=VALUE_TYPES)

    delete = commands.add_parser("delete-field", help="crypto-shred one field")
    _add_client(delete)
    delete.add_argument("subject_id")
    delete.add_argument("field")

    shred = commands.add_parser("shred", help="crypto-shred a subject and save its receipt")
    _add_client(shred)
    shred.add_argument("subject_id")
    shred.add_argument("--reason", required=True)
    shred.add_argument("--request-id", required=True, help="repeat it to get the same receipt")
    shred.add_argument("--receipt-out", help="write the signed receipt to this file")

    hold = commands.add_parser("hold", help="set or release a legal hold")
    _add_client(hold)
    hold.add_argument("subject_id")
    hold.add_argument("--release", action="store_true")
    hold.add_argument("--reason", default="")

    receipts = commands.add_parser("receipts", help="check shred receipts")
    receipt_commands = receipts.add_subparsers(dest="receipts_command", required=True)
    verify = receipt_commands.add_parser("verify", help="verify a receipt file's signature")
    _add_data_dir(verify)
    verify.add_argument("file")
    verify.add_argument("--public-key", help="receipt public key (default DIR/receipt-signing.pub)")

    health = commands.add_parser("health", help="exit 0 when the vault answers SERVING")
    _add_client(health)
    return parser


def value_from_text(kind: str, text: str) -> pb.FieldValue:
    """Parse stdin: plain text for simple types, JSON for address and card."""
    text = text.strip()
    if kind == "phone":
        return pb.FieldValue(phone=pb.PhoneNumber(number=text))
    if kind == "email":
        return pb.FieldValue(email=text)
    if kind == "name":
        return pb.FieldValue(name=text)
    if kind == "payment_token":
        provider, _, token = text.partition(":")
        return pb.FieldValue(payment_token=pb.PaymentToken(provider=provider, token=token))
    if kind == "date_of_birth":
        year, month, day = (int(part) for part in text.split("-"))
        return json_format.ParseDict(
            {"dateOfBirth": {"year": year, "month": month, "day": day}}, pb.FieldValue()
        )
    return json_format.ParseDict({kind: json.loads(text)}, pb.FieldValue())


def _print(message: object) -> None:
    print(json_format.MessageToJson(message, indent=2))  # type: ignore[arg-type]


def run_client(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir or os.environ.get("VAULT_DATA_DIR", config.DEFAULT_DATA_DIR))
    with VaultClient.for_caller(data_dir, args.caller, args.target) as client:
        try:
            if args.command == "put":
                value = value_from_text(args.type, sys.stdin.read())
                _print(
                    client.vault.PutField(
                        pb.PutFieldRequest(
                            subject_id=args.subject_id,
                            field=args.field,
                            value=value,
                            idempotency_key=args.idempotency_key,
                        )
                    )
                )
            elif args.command == "get":
                view = {
                    "masked": pb.VIEW_MASKED,
                    "token": pb.VIEW_TOKEN,
                    "plaintext": pb.VIEW_PLAINTEXT,
                }
                _print(
                    client.vault.GetField(
                        pb.GetFieldRequest(
                            subject_id=args.subject_id,
                            field=args.field,
                            view=view[args.view],
                            purpose=args.purpose,
                        )
                    )
                )
            elif args.command == "find":
                value = value_from_text(args.type, sys.stdin.read())
                _print(client.vault.FindSubjects(pb.FindSubjectsRequest(value=value)))
            elif args.command == "delete-field":
                _print(
                    client.vault.DeleteField(
                        pb.DeleteFieldRequest(subject_id=args.subject_id, field=args.field)
                    )
                )
            elif args.command == "shred":
                receipt = client.vault.ShredSubject(
                    pb.ShredSubjectRequest(
                        subject_id=args.subject_id, reason=args.reason, request_id=args.request_id
                    )
                ).receipt
                document = receipt_document(receipt.payload, receipt.signature)
                text = json.dumps(document, indent=2, sort_keys=True)
                if args.receipt_out:
                    Path(args.receipt_out).write_text(text + "\n")
                print(text)
            elif args.command == "hold":
                answer = client.vault.SetLegalHold(
                    pb.SetLegalHoldRequest(
                        subject_id=args.subject_id, hold=not args.release, reason=args.reason
                    )
                )
                print("held" if answer.hold else "released")
            elif args.command == "health":
                answer = client.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                serving = answer.status == health_pb2.HealthCheckResponse.SERVING
                print("SERVING" if serving else "NOT_SERVING")
                return 0 if serving else 1
        except grpc.RpcError as error:
            print(f"{error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    return 0


def run_receipts(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir or os.environ.get("VAULT_DATA_DIR", config.DEFAULT_DATA_DIR))
    public_key = Path(args.public_key or data_dir / "receipt-signing.pub")
    try:
        document = json.loads(Path(args.file).read_text())
    except (OSError, ValueError) as error:
        print(f"cannot read receipt {args.file}: {type(error).__name__}", file=sys.stderr)
        return 2
    if verify_receipt_document(document, public_key.read_bytes()):
        receipt = document["receipt"]
        print(
            f"valid: subject {receipt['subject_id']} shredded at {receipt['shredded_at']}, "
            f"{receipt['fields_destroyed']} fields; backups unreadable after "
            f"{receipt['backup_horizon']}"
        )
        return 0
    print("INVALID: the receipt was edited or not signed by this key", file=sys.stderr)
    return 1


def run_init(args: argparse.Namespace) -> int:
    from vault.bootstrap.app import init_data_dir

    data_dir = Path(args.data_dir or os.environ.get("VAULT_DATA_DIR", config.DEFAULT_DATA_DIR))
    try:
        made = init_data_dir(data_dir)
    except FileExistsError as error:
        print(str(error), file=sys.stderr)
        return 1
    for path in made:
        print(f"created {path}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from vault.bootstrap.app import build_app, init_data_dir, is_initialised
    from vault.bootstrap.pki import TlsPaths
    from vault.transport.server import ServerOptions, TlsFiles, build_server, serve_until_signalled

    overrides = {
        name: getattr(args, name, None)
        for name in (
            "data_dir",
            "listen",
            "database_url",
            "key_database_url",
            "key_provider",
            "policy_path",
            "workers",
            "threads",
            "plaintext",
        )
    }
    settings = config.from_env(overrides)
    if args.init and not is_initialised(settings.data_dir):
        for path in init_data_dir(settings.data_dir):
            log.info("created %s", path)
    if settings.workers > 1:
        return _run_workers(settings.workers)
    tls_paths = TlsPaths.under(settings.data_dir)
    tls = (
        None
        if settings.plaintext
        else TlsFiles(tls_paths.ca_cert, tls_paths.server_cert, tls_paths.server_key)
    )
    app = build_app(settings)
    server, port, health = build_server(
        app.vault,
        app.shredder,
        ServerOptions(
            listen=settings.listen,
            tls=tls,
            threads=settings.threads,
            max_message_bytes=settings.max_message_bytes,
            reuse_port=os.environ.get("VAULT_REUSE_PORT") == "1",
        ),
    )
    signal.signal(signal.SIGHUP, lambda *_: _reload_policy(app.policy))
    host = settings.listen.rsplit(":", 1)[0]
    log.info("pii-vault serving on %s:%d (%s)", host, port, "plaintext" if tls is None else "mTLS")
    print(f"listening on {host}:{port}", flush=True)
    serve_until_signalled(server, health, settings.grace_seconds)
    app.vault.close()
    app.store.dispose()
    return 0


def _reload_policy(policy: object) -> None:
    try:
        policy.reload()  # type: ignore[attr-defined]
        log.info("policy reloaded")
    except Exception as error:  # the old policy stays in force
        log.error("policy not reloaded, keeping the old one: %s", error)


def _run_workers(count: int) -> int:
    """Run ``count`` single-worker processes sharing the port (SO_REUSEPORT)."""
    argv: list[str] = []
    skip = False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers=") and arg != "--init":
            argv.append(arg)
    env = dict(os.environ, VAULT_REUSE_PORT="1", VAULT_WORKERS="1")
    children = [
        subprocess.Popen([sys.executable, "-m", "vault", *argv, "--workers", "1"], env=env)  # noqa: S603
        for _ in range(count)
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return max(child.wait() for child in children)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("VAULT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    if args.command in ("init", "serve"):
        # Keyring, keys and database files are for this user's eyes only.
        os.umask(0o077)
    if args.command == "init":
        return run_init(args)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "receipts":
        return run_receipts(args)
    return run_client(args)
