"""The operator's local commands: they open the data directory themselves, no server needed.

``init``, ``canary plant``, ``policy explain``, ``receipts verify`` and
``retention run``. Everything heavy (the settings library, the domain, the
storage) is imported inside the command that needs it, so that importing
this module costs the caller commands nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_init(args: argparse.Namespace) -> int:
    """Create keyring, dev TLS, policy, retention rules and database, once."""
    from vault import config
    from vault.bootstrap.app import init_data_dir
    from vault.errors import VaultError

    settings = config.from_env({"data_dir": args.data_dir, "key_provider": args.key_provider})
    try:
        made = init_data_dir(settings.data_dir, settings.key_provider)
    except (FileExistsError, ValueError) as error:
        print(str(error), file=sys.stderr)
        return 1
    except VaultError as error:  # the HSM or Transit cannot be reached or refused
        print(f"{type(error).__name__}: {error.message}", file=sys.stderr)
        return 1
    for path in made:
        print(f"created {path}")
    return 0


def run_canary(args: argparse.Namespace) -> int:
    """Plant a canary locally, as the operator (caller ``admin``)."""
    from vault import config
    from vault.bootstrap.app import build_app
    from vault.cli.values import UnreadableValueError, value_from_text
    from vault.errors import VaultError
    from vault.transport.convert import value_from_proto

    settings = config.from_env({"data_dir": args.data_dir})
    try:
        value = value_from_proto(value_from_text(args.type, sys.stdin.read()), 16 * 1024)
    except UnreadableValueError as error:
        print(f"invalid value: {error}", file=sys.stderr)
        return 1
    except (VaultError, ValueError) as error:
        print(f"invalid value: {type(error).__name__}", file=sys.stderr)
        return 1
    with build_app(settings) as app:
        try:
            app.vault.plant_canary("admin", args.subject_id, args.field, value)
        except VaultError as error:
            print(f"{type(error).__name__}: {error.message}", file=sys.stderr)
            return 1
    print(f"canary planted: {args.subject_id}/{args.field}; any read of it raises an alarm")
    return 0


def run_policy(args: argparse.Namespace) -> int:
    """``policy explain``: decide one call from the policy file; exit 0 allow, 1 deny, 2 error."""
    from vault import config
    from vault.policy import Policy, PolicyError
    from vault.policy.explain import ExplainError, explain

    settings = config.from_env({"data_dir": args.data_dir, "policy_path": args.policy_path})
    path = settings.effective_policy_path
    try:
        policy = Policy.load(path)
    except (OSError, PolicyError) as error:
        print(f"cannot use the policy: {error}", file=sys.stderr)
        return 2
    try:
        answer = explain(
            policy, args.caller, args.action, args.field, args.type, args.view, args.purpose
        )
    except ExplainError as error:
        print(f"policy explain: {error}", file=sys.stderr)
        return 2
    print(answer)
    print(f"policy:  {path}")
    return 0 if answer.decision.allowed else 1


def run_receipts(args: argparse.Namespace) -> int:
    """Verify a receipt or export file: 0 valid, 1 invalid (and why), 2 unreadable."""
    from vault.cli.connection import data_dir_of
    from vault.crypto.documents import (
        ANY_TYPE,
        DSAR_EXPORT,
        SHRED_RECEIPT,
        DocumentError,
        anchor_position,
        verify_file,
    )

    expected = {"any": ANY_TYPE, "receipt": SHRED_RECEIPT, "export": DSAR_EXPORT}[args.type]
    public_key = Path(args.public_key or data_dir_of(args) / "receipt-signing.pub")
    try:
        text = Path(args.file).read_bytes()
        public_pem = public_key.read_bytes()
    except OSError as error:
        print(f"cannot read {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    try:
        document = verify_file(text, public_pem, expected)
    except DocumentError as error:
        print(f"INVALID: {error}", file=sys.stderr)
        return 1
    body = document.body
    anchor = anchor_position(body.get("audit_anchor"))
    anchored = f"; audit chain anchor at position {anchor[0]}" if anchor else ""
    if document.type == DSAR_EXPORT:
        print(
            f"valid: export of subject {body['subject_id']} for purpose "
            f"{body['purpose']}, {len(body['fields'])} fields{anchored}"
        )
        return 0
    horizon = body.get("backup_horizon")
    backups = (
        f"backups unreadable after {horizon}"
        if horizon is not None
        else "no backup horizon promised (no key rotation schedule ran)"
    )
    print(
        f"valid: subject {body['subject_id']} shredded at {body['shredded_at']}, "
        f"{body['fields_destroyed']} fields; {backups}{anchored}"
    )
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    """``migrate``: upgrade the schema (replica-safe), or with ``--check`` report it; exit 1
    when it is behind."""
    from vault import config
    from vault.storage import migrate
    from vault.storage.database import Store

    settings = config.from_env(
        {
            "data_dir": args.data_dir,
            "database_url": args.database_url,
            "key_database_url": args.key_database_url,
        }
    )
    from sqlalchemy.exc import SQLAlchemyError

    store = Store(settings.effective_database_url, settings.effective_key_database_url)
    try:
        engines = {"data store": store.data_engine}
        if store.split:
            engines["key store"] = store.key_engine
        head = migrate.head()
        if not args.check:
            migrate.upgrade(store)
        behind = False
        for name, engine in engines.items():
            at = migrate.current(engine)
            behind = behind or at != head
            print(f"{name}: schema {at or 'empty'} (newest {head})")
    except SQLAlchemyError as error:  # its message would carry the URL, password and all
        print(
            f"migrate: the database cannot be opened ({type(error).__name__}); check"
            " --data-dir, --database-url and --key-database-url",
            file=sys.stderr,
        )
        return 2
    finally:
        store.dispose()
    return 1 if behind else 0


def run_retention(args: argparse.Namespace) -> int:
    """``retention run``: apply the rules now, with a progress bar; exit 1 if any item failed."""
    from vault import config
    from vault.bootstrap.app import build_app
    from vault.bootstrap.maintenance import build_sweeper
    from vault.domain.retention import RetentionError, RetentionRules
    from vault.progress import ProgressBar

    names = (
        "data_dir",
        "database_url",
        "key_database_url",
        "key_provider",
        "policy_path",
        "retention_path",
    )
    settings = config.from_env({name: getattr(args, name, None) for name in names})
    path = settings.effective_retention_path
    try:
        rules = RetentionRules.load(path)
    except RetentionError as error:
        print(f"invalid retention rules: {error}", file=sys.stderr)
        return 2
    if rules.empty:
        print(f"no retention rules in {path}: nothing to do")
        return 0
    print(f"rules from {path}: {rules.describe()}", file=sys.stderr)
    with build_app(settings) as app:
        bar = ProgressBar(sys.stderr, "items due")
        report = build_sweeper(app, rules).run(bar.update, dry_run=args.dry_run)
        bar.finish()
    print(report.summary())
    return 1 if report.errors else 0
