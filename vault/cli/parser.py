"""The ``pii-vault`` command line: every command, its flags and their help.

Imports nothing heavy, so that the caller commands start fast: flags that
are settings default to None here and are resolved against the environment
by the command that uses them (``vault.config`` for the operator commands
and ``serve``, ``vault.environment`` for the caller commands).
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from vault.cli.values import put_help
from vault.client import DEFAULT_TARGET
from vault.environment import DEFAULT_DATA_DIR, DEFAULT_LISTEN

DESCRIPTION = """``pii-vault``: run the vault, and call it as one of the callers.

Values are read from standard input, never from arguments, so that personal
data does not end up in shell history or the process list.
"""

ENVIRONMENT = """environment (a flag wins over its variable):
  PII_VAULT_DATA_DIR     data directory (--data-dir; default var/vault)
  PII_VAULT_TARGET       HOST:PORT the caller commands call (--target)
  PII_VAULT_CLIENT_CERT  the caller's certificate file, instead of --as (--cert)
  PII_VAULT_CLIENT_KEY   its private key file (--key)
  PII_VAULT_CA_CERT      CA certificate file that signed the server's (--cacert;
                         default DIR/tls/ca.crt)
  PII_VAULT_LOG_LEVEL    log level (default INFO); PII_VAULT_LOG_FORMAT: text or json
serve, init, migrate, retention and keys migrate read every setting from a
PII_VAULT_* variable as well: `pii-vault serve --help` lists them. Each may
also be given under its old name VAULT_* (deprecated, warned about), except
VAULT_ADDR, VAULT_TOKEN and VAULT_CACERT, which keep their HashiCorp Vault
meaning (VAULT_TOKEN and VAULT_CACERT are read only by the transit key provider;
PII_VAULT_PKCS11_PIN is the pkcs11 key provider's default PIN source).

exit codes of the caller commands: 0 done; 1 the vault refused or failed the
call (one line: STATUS: message [REASON]; reasons in docs/errors.md); 2 a
mistake on this side (settings, credentials, standard input, a file)."""


class _Parser(argparse.ArgumentParser):
    """One line for a mistake on the command line, not a usage block; epilogs kept as written."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")

    def format_help(self) -> str:
        if self.epilog is None and getattr(self, "settings_epilog", False):
            self.epilog = _settings_epilog()
        return super().format_help()


def _settings_epilog() -> str:
    """Every setting's variable, for ``serve --help`` (loads the settings module only then)."""
    from vault.config import declared_settings

    lines = ["environment (a flag wins over its variable; VAULT_* old names are deprecated):"]
    for declared in declared_settings():
        if declared.variable:
            flags = f" ({', '.join(declared.flags)})" if declared.flags else ""
            lines.append(f"  {declared.variable}{flags}: {declared.meaning}")
    return "\n".join(lines)


VALUE_TYPES = ("phone", "email", "address", "card", "payment_token", "name", "date_of_birth")
# ``receipts verify --type``: a receipt, an export, or either.
DOCUMENT_KINDS = ("any", "export", "receipt")
POLICY_ACTIONS = (
    "put", "get", "detokenize", "find", "delete", "shred", "export", "hold", "consent", "admin"
)  # fmt: skip


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"data directory (PII_VAULT_DATA_DIR, default {DEFAULT_DATA_DIR})",
    )


def _add_client(parser: argparse.ArgumentParser) -> None:
    _add_data_dir(parser)
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--as", dest="caller", help="caller whose dev certificate to use (DIR/tls/clients/NAME.crt)"
    )
    who.add_argument("--cert", help="the caller's own certificate file (PII_VAULT_CLIENT_CERT)")
    parser.add_argument("--key", help="private key file of --cert (PII_VAULT_CLIENT_KEY)")
    parser.add_argument(
        "--cacert", help="CA certificate file of the server (PII_VAULT_CA_CERT; default DIR/tls)"
    )
    parser.add_argument(
        "--target", default=None, help=f"host:port (PII_VAULT_TARGET, default {DEFAULT_TARGET})"
    )
    if parser.epilog is None:
        parser.epilog = ENVIRONMENT


class _Version(argparse.Action):
    """``--version``, looked up only when asked (package metadata is slow to load)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help=str(kwargs.get("help", "")))

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kw: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("pii-vault")
        except PackageNotFoundError:  # a source tree that was never installed
            found = "unknown"
        print(f"pii-vault {found}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pii-vault", description=DESCRIPTION, epilog=ENVIRONMENT)
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create keyring, dev TLS, policy and database")
    _add_data_dir(init)
    init.add_argument(
        "--key-provider",
        help="keep the master key in an HSM (pkcs11:...) or Transit (transit+https://...)"
        " instead of DIR/keyring.json",
    )

    serve = commands.add_parser("serve", help="serve the vault over mutual TLS")
    serve.settings_epilog = True  # type: ignore[attr-defined]
    _add_data_dir(serve)
    serve.add_argument("--listen", help=f"HOST:PORT (default {DEFAULT_LISTEN})")
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
    serve.add_argument(
        "--retention", dest="retention_path", help="retention rules (default DIR/retention.toml)"
    )
    serve.add_argument(
        "--retention-interval",
        type=float,
        help="seconds between retention and maintenance runs (default 3600; 0 turns them off)",
    )

    put = commands.add_parser(
        "put", help="store a value read from stdin", epilog=put_help() + "\n\n" + ENVIRONMENT
    )
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

    find = commands.add_parser(
        "find",
        help="find subjects holding a value read from stdin",
        epilog=put_help("find --as CALLER") + "\n\n" + ENVIRONMENT,
    )
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

    receipts = commands.add_parser("receipts", help="check signed shred receipts and exports")
    receipt_commands = receipts.add_subparsers(dest="receipts_command", required=True)
    verify = receipt_commands.add_parser("verify", help="verify a receipt file's signature")
    _add_data_dir(verify)
    verify.add_argument("file")
    verify.add_argument("--public-key", help="receipt public key (default DIR/receipt-signing.pub)")
    verify.add_argument(
        "--type",
        choices=DOCUMENT_KINDS,
        default="any",
        help="the kind of document expected (default: a receipt or an export)",
    )

    schema = commands.add_parser(
        "migrate", help="bring the database schema up to date (what every start does)"
    )
    _add_data_dir(schema)
    schema.add_argument("--database-url", help="SQLAlchemy URL of the data store")
    schema.add_argument("--key-database-url", help="separate database for wrapped keys")
    schema.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when the schema is behind"
    )

    retention = commands.add_parser("retention", help="apply the retention rules")
    retention_commands = retention.add_subparsers(dest="retention_command", required=True)
    sweep = retention_commands.add_parser(
        "run", help="delete expired cards and shred idle subjects now, showing progress"
    )
    _add_data_dir(sweep)
    sweep.add_argument("--database-url", help="SQLAlchemy URL of the data store")
    sweep.add_argument("--key-database-url", help="separate database for wrapped keys")
    sweep.add_argument("--key-provider", help="master key URI, e.g. local:///path/keyring.json")
    sweep.add_argument("--policy", dest="policy_path", help="policy file (default DIR/policy.toml)")
    sweep.add_argument(
        "--retention", dest="retention_path", help="retention rules (default DIR/retention.toml)"
    )
    sweep.add_argument(
        "--dry-run", action="store_true", help="count what the rules would destroy; change nothing"
    )

    audit = commands.add_parser("audit", help="read or verify the hash-chained audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_verify = audit_commands.add_parser(
        "verify", help="recompute the keyed chain, check it against anchors (exit 1 if broken)"
    )
    _add_client(audit_verify)
    audit_verify.add_argument(
        "--anchor",
        dest="anchors",
        action="append",
        default=[],
        metavar="FILE",
        help="a receipt, an export or an audit sink (JSON lines) whose positions and hashes "
        "the chain must still hold; repeatable",
    )
    audit_verify.add_argument(
        "--public-key", help="receipt public key (default DIR/receipt-signing.pub)"
    )
    audit_list = audit_commands.add_parser("list", help="page through events as JSON lines")
    _add_client(audit_list)
    audit_list.add_argument("--subject", default="")
    audit_list.add_argument("--caller", dest="event_caller", default="")
    audit_list.add_argument("--action", default="")
    audit_list.add_argument("--limit", type=int, default=100)

    export = commands.add_parser("export", help="export a subject for a data-subject request")
    _add_client(export)
    export.add_argument("subject_id")
    export.add_argument("--purpose", default="dsar")
    export.add_argument("--out", help="write the signed export to this file")

    consent = commands.add_parser("consent", help="record or withdraw a subject's consent")
    _add_client(consent)
    consent.add_argument("subject_id")
    consent.add_argument("purpose")
    consent.add_argument("--withdraw", action="store_true")

    canary = commands.add_parser("canary", help="plant a canary field (value on stdin)")
    canary_commands = canary.add_subparsers(dest="canary_command", required=True)
    plant = canary_commands.add_parser(
        "plant",
        help="store a decoy value whose reads sound an alarm",
        epilog=put_help("canary plant SUBJECT FIELD"),
    )
    _add_data_dir(plant)
    plant.add_argument("subject_id")
    plant.add_argument("field")
    plant.add_argument("--type", required=True, choices=VALUE_TYPES)

    health = commands.add_parser("health", help="exit 0 when the vault answers SERVING")
    _add_client(health)
    health.add_argument(
        "--service",
        default="",
        help="health name: '' (ready: key provider and database reachable; the default),"
        " 'liveness' (the process serves), or a service's full name",
    )

    keys = commands.add_parser("keys", help="master keys: rotate, rewrap, status")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    _add_client(key_commands.add_parser("rotate", help="make a new master key version current"))
    rewrap = key_commands.add_parser(
        "rewrap", help="rewrap every key under the current version; retire unused old ones"
    )
    _add_client(rewrap)
    rewrap.add_argument("--batch-size", type=int, default=0, help="keys per transaction")
    _add_client(key_commands.add_parser("status", help="master key versions and their use"))
    migrate = key_commands.add_parser(
        "migrate",
        help="move every wrapped key to another key provider while servers serve, then destroy"
        " the old master key (resumable; no server needed)",
    )
    _add_data_dir(migrate)
    migrate.add_argument("--to", required=True, help="the new provider's URI")
    migrate.add_argument("--batch", type=int, default=200, help="keys per transaction")
    migrate.add_argument("--database-url", help="SQLAlchemy URL of the data store")
    migrate.add_argument("--key-database-url", help="separate database for wrapped keys")

    policy = commands.add_parser("policy", help="inspect the access policy (no server needed)")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    explain = policy_commands.add_parser(
        "explain", help="ALLOW (exit 0) or DENY (exit 1) for one call, with the grant or reason"
    )
    explain.add_argument("--as", dest="caller", required=True, help="the caller (certificate CN)")
    explain.add_argument("action", choices=POLICY_ACTIONS)
    explain.add_argument("field", nargs="?", help="field name, e.g. card.primary")
    explain.add_argument("--type", choices=VALUE_TYPES, help="default: the field name's first part")
    explain.add_argument("--view", choices=("masked", "token", "plaintext"), help="get only")
    explain.add_argument("--purpose", default="")
    source = explain.add_mutually_exclusive_group()
    source.add_argument("--policy", dest="policy_path", help="default DIR/policy.toml")
    source.add_argument("--data-dir", help="data directory whose policy.toml to read")
    return parser
