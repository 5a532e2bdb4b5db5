"""``pii-vault keys migrate --to URI``: move every wrapped key to another key provider, online.

An operator command: it opens the data directory itself (as ``retention
run`` does) while servers keep serving from it. The steps, each idempotent,
so that running the command again after a kill (even ``kill -9``) at any
point finishes the job:

0. ``DIR/key-migration`` records the target and the sources (the URIs
   ``DIR/key-provider`` named before), unless a migration to the same
   target is recorded already; one to another target is refused.
1. The target's master key is made where it does not exist
   (``create_master_key``; kept if it exists).
2. The audit chain's key is carried: stored wrapped by the target
   (``vault.domain.carried_keys``), so the chain verifies across the move.
3. ``DIR/key-provider`` becomes "TARGET\\nSOURCE\\n" (atomic rename); servers
   see it at their next seal check and switch to a ``MigratingKeyProvider``
   without a restart. The command waits two seal-check intervals.
4. Every subject, index and carried key is rewrapped under the target, in
   batches (``--batch``), with a progress bar on stderr
   (``vault.domain.key_migration``).
5. ``DIR/key-provider`` becomes "TARGET\\n"; the command waits two intervals
   again and moves any key a straggler wrote under a source meanwhile.
6. The sources' master keys are destroyed: a local keyring loses every
   version's key material and its audit key (the file then opens nothing;
   the operator may delete it); of an HSM or Transit source every version
   but the current one is retired, and the command says that the operator
   must destroy the rest in the provider, which the vault cannot do through
   its key interface.
7. ``DIR/key-migration`` is removed.

Steps 5 and 6 are in this order (the sources leave ``DIR/key-provider``
before they are destroyed) because every server checks every provider its
file names, once a second: a source destroyed while still named would seal
them all. ``DIR/key-migration`` is what remembers, across a kill between
the two, which master key is still to be destroyed.

Refused when the provider is set by ``--key-provider`` or
``PII_VAULT_KEY_PROVIDER``: servers started that way do not follow
``DIR/key-provider``, so they would keep wrapping under the old provider.
Also refused when receipts are signed by the current provider's own signing
key (no receipt key file): that key does not move with the master key.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vault.config import Settings
    from vault.domain.key_migration import KeyMigration

REFUSE_SETTING = (
    "keys migrate: the key provider is set by --key-provider or PII_VAULT_KEY_PROVIDER, "
    "and servers started that way do not follow DIR/key-provider. Write the current URI "
    "to DIR/key-provider, restart the servers without the setting, then run keys migrate "
    "without it; or stop every server, do the same for this command, and start the servers "
    "again with the setting naming the new URI."
)


def run_migrate(args: argparse.Namespace) -> int:
    """Exit 0 when every key is under the target and the sources are destroyed."""
    from vault import config
    from vault.bootstrap.app import is_initialised
    from vault.errors import VaultError
    from vault.keys.local import KeyringError
    from vault.keys.uri import scheme_of

    os.umask(0o077)
    names = ("data_dir", "database_url", "key_database_url")
    settings = config.from_env({name: getattr(args, name, None) for name in names})
    if settings.key_provider:
        print(REFUSE_SETTING, file=sys.stderr)
        return 2
    try:
        scheme_of(args.to)
    except ValueError as error:
        print(f"keys migrate: {error}", file=sys.stderr)
        return 2
    if not is_initialised(settings.data_dir):
        print(f"keys migrate: {settings.data_dir} is not initialised", file=sys.stderr)
        return 2
    if args.batch <= 0:
        print("keys migrate: --batch must be positive", file=sys.stderr)
        return 2
    try:
        return _migrate(settings, args.to, args.batch)
    except (VaultError, KeyringError, OSError) as error:
        message = error.message if isinstance(error, VaultError) else str(error)
        print(
            f"keys migrate stopped ({type(error).__name__}: {message}); run it again to continue",
            file=sys.stderr,
        )
        return 1


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def _plan(settings: Settings, to: str) -> list[str] | str:
    """The sources to migrate from (recorded in DIR/key-migration), or why not (a message)."""
    from vault.bootstrap.provider_file import MIGRATION_FILE, write_lines
    from vault.keys.uri import scheme_of

    recorded = _lines(settings.data_dir / MIGRATION_FILE)
    if recorded:
        if recorded[0] != to:
            return (
                f"a migration to {recorded[0]} is unfinished; finish it first: "
                f"pii-vault keys migrate --to {recorded[0]}"
            )
        return recorded[1:]
    current = settings.effective_key_providers
    if current == [to]:
        return []
    if len(current) > 1 or to in current:
        return (
            f"DIR/key-provider names {', '.join(current)} but no migration is recorded in "
            f"DIR/{MIGRATION_FILE}; write the one URI the vault uses to DIR/key-provider"
        )
    if scheme_of(current[0]) != "local" and not settings.effective_receipt_key_path.exists():
        return (
            "receipts are signed by the current provider's own signing key, which does not "
            "move with the master key; migrating such a vault is not supported yet"
        )
    write_lines(settings.data_dir / MIGRATION_FILE, [to, *current])
    return current


def _create_target(to: str) -> None:
    from vault.keys.uri import create_master_key, local_keyring_path, scheme_of

    if scheme_of(to) == "local" and local_keyring_path(to).exists():
        return
    create_master_key(to)


def _switch(settings: Settings, uris: list[str]) -> None:
    """Rewrite DIR/key-provider (unless it says so already) and give servers time to follow."""
    from vault.bootstrap.provider_file import write_key_provider_file

    if settings.effective_key_providers == uris:
        return
    write_key_provider_file(settings.data_dir, uris)
    wait = 2 * settings.seal_check_interval
    print(f"DIR/key-provider: {' + '.join(uris)}; waiting {wait:g}s for servers", file=sys.stderr)
    time.sleep(wait)


def _migrate(settings: Settings, to: str, batch: int) -> int:
    from vault.bootstrap.app import build_app
    from vault.bootstrap.provider_file import MIGRATION_FILE
    from vault.domain.key_migration import KeyMigration
    from vault.keys.migrating import MigratingKeyProvider
    from vault.keys.provider import KeyProvider
    from vault.keys.uri import provider_from_uri

    plan = _plan(settings, to)
    if isinstance(plan, str):
        print(f"keys migrate: {plan}", file=sys.stderr)
        return 2
    if not plan:
        print(f"keys migrate: the vault already uses {to} alone; nothing to do")
        return 0
    sources = plan
    started = time.monotonic()
    _create_target(to)
    target = provider_from_uri(to)
    with build_app(settings) as app:
        moved = 0
        migration = KeyMigration(app.store, target, target, app.audit)
        if settings.effective_key_providers != [to]:  # steps 2-4; after step 5 all done
            opened: list[KeyProvider] = [provider_from_uri(uri) for uri in sources]
            reader = MigratingKeyProvider(target, opened)
            migration = KeyMigration(app.store, target, reader, app.audit)
            if migration.carry_audit_key():
                print("audit chain key carried (wrapped by the new master key)", file=sys.stderr)
            _switch(settings, [to, *sources])
            moved = _move(migration, batch)
            _switch(settings, [to])
        moved += _move(migration, batch)  # anything a straggler wrote under a source
        for uri in sources:
            _destroy(migration, uri)
    (settings.data_dir / MIGRATION_FILE).unlink(missing_ok=True)
    print(
        f"migrated to {to}: {moved} keys moved in {time.monotonic() - started:.1f}s; "
        f"DIR/key-provider names {to} alone"
    )
    return 0


def _move(migration: KeyMigration, batch: int) -> int:
    from vault.errors import Unavailable
    from vault.progress import ProgressBar

    if not migration.remaining():
        return 0
    bar = ProgressBar(sys.stderr, "keys moved")
    report = migration.move(batch, bar.update)
    bar.finish()
    if report.left:
        raise Unavailable(f"{report.left} keys are still to move after {report.passes} passes")
    return report.moved


def _destroy(migration: KeyMigration, uri: str) -> None:
    """Step 6 for one source: see the module docstring."""
    from vault.domain.vault import utc_now
    from vault.keys.keyring_destroy import destroy_keyring
    from vault.keys.uri import local_keyring_path, provider_from_uri, scheme_of

    if scheme_of(uri) == "local":
        path = local_keyring_path(uri)
        if destroy_keyring(path, utc_now()):
            migration.record_destroyed(f"keyring {path} destroyed: every version retired")
        print(
            f"destroyed the keyring {path}: no version of it opens anything any more "
            "(the file only records what existed; it may be deleted)"
        )
        return
    source = provider_from_uri(uri)
    retired = migration.retire_all_but_current(source)
    print(
        f"retired {len(retired)} old versions of {uri}. NOTE: its current version "
        f"{source.current_version()} still exists in the provider; destroy that key "
        "there (HSM: delete the object; Transit: delete the key after allowing deletion), "
        "which the vault cannot do through its key interface"
    )
