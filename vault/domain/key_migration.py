"""Moving every wrapped key to another key provider while the vault serves.

The use case behind ``pii-vault keys migrate --to URI`` (the command, in
``vault.cli.key_commands``, owns the files and the waiting; this module owns
the keys). Every stored key that the master key wraps is moved: subject
keys, blind-index keys and the carried audit-chain key
(``vault.domain.carried_keys``). Data keys are wrapped by subject keys, not
by the master key, so no data key and no ciphertext is touched; neither is
any plaintext key changed, so the servers' key caches stay valid throughout.

How a batch is moved, and why it is safe next to live servers:

- the batch is read in one short read transaction (keyset pagination by key
  id, as ``key_admin`` rewraps); each key is unwrapped by whichever provider
  wrapped it (``MigratingKeyProvider``) and wrapped by the target *outside*
  any transaction, so the database's write lock is never held across a
  round trip to an HSM or Transit;
- the new wrappings are then written in one write transaction, each as a
  compare-and-swap on (key id, kek id, kek version, wrapped bytes): a key
  shredded meanwhile stays deleted (an update never resurrects a row), one
  rewritten meanwhile (a new subject key, a rewrap by someone else) is left
  as it is;
- a pass visits every key once; passes repeat until no key is left under
  anything but the target's current version, so keys written by a server
  that had not switched yet are moved too.

Killed at any point, the store holds every key under its old or its new
wrapping, never neither; running again continues with what is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from vault.audit.log import AuditLog
from vault.audit.records import AuditAction
from vault.crypto.envelope import index_key_context, subject_key_context
from vault.domain.carried_keys import carried_key_context, carry_audit_key
from vault.domain.ports import Store
from vault.errors import Unavailable
from vault.keys.provider import KeyProvider, MasterKeyInfo, MasterKeyState, WrappedKey

MIGRATION_CALLER = "keys-migrate"
"""The audit caller of what a migration does."""

DEFAULT_BATCH = 200
MAX_PASSES = 10

Progress = Callable[[int, int], None]


@dataclass
class MoveReport:
    moved: int = 0
    skipped: int = 0  # changed or deleted meanwhile (compare-and-swap lost): left alone
    passes: int = 0
    left: int = 0


class KeyMigration:
    """Moves keys to ``target``; ``reader`` unwraps them (target and the sources)."""

    def __init__(
        self,
        store: Store,
        target: KeyProvider,
        reader: KeyProvider,
        audit: AuditLog,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._target = target
        self._reader = reader
        self._audit = audit
        self._clock = clock

    def carry_audit_key(self) -> bool:
        """Store the chain key in use wrapped by the target, unless carried already."""
        return carry_audit_key(self._store, self._audit.open_chain(), self._target, self._clock())

    def _goal(self) -> tuple[str, int]:
        return self._target.kek_id, self._target.current_version()

    def remaining(self) -> int:
        """Stored keys not yet under the target's current version."""
        kek_id, version = self._goal()
        with self._store.read() as tx:
            return tx.rotation.count_keys_to_rewrap(kek_id, version)

    def uses_of(self, kek_ids: Sequence[str]) -> int:
        """Stored keys still wrapped by any of the master keys ``kek_ids``."""
        with self._store.read() as tx:
            uses = tx.rotation.count_keys_by_kek_version()
        return sum(u.keys for u in uses if u.kek_id in kek_ids)

    def move(self, batch: int = DEFAULT_BATCH, progress: Progress | None = None) -> MoveReport:
        """Move every key to the target, pass after pass until none is left."""
        if batch <= 0:
            raise ValueError("the batch size must be positive")
        report = MoveReport()
        total = self.remaining()
        step = progress or (lambda done, all_: None)
        step(0, total)
        while report.passes < MAX_PASSES:
            left = self.remaining()
            if not left:
                break
            total = max(total, report.moved + report.skipped + left)
            report.passes += 1

            def counted(moved: int, skipped: int, total: int = total) -> None:
                report.moved += moved
                report.skipped += skipped
                step(min(report.moved + report.skipped, total), total)

            self._pass(batch, counted)
        report.left = self.remaining()
        if not report.left:
            step(total, total)
        if report.moved:
            kek_id, version = self._goal()
            self._audit.record(
                MIGRATION_CALLER,
                AuditAction.REWRAP,
                detail=f"migration: {report.moved} keys moved to master key {kek_id} "
                f"version {version}",
            )
        return report

    def _rewrapped(self, wrapped: WrappedKey, context: bytes) -> WrappedKey:
        return self._target.wrap(self._reader.unwrap(wrapped, context), context)

    def _pass(self, batch: int, counted: Callable[[int, int], None]) -> None:
        kek_id, version = self._goal()
        after = ""
        while True:
            with self._store.read() as tx:
                subjects = tx.rotation.subject_keys_to_rewrap(kek_id, version, after, batch)
            if not subjects:
                break
            new = [
                self._rewrapped(k.wrapped, subject_key_context(k.subject_id, k.key_id))
                for k in subjects
            ]
            with self._store.write() as tx:
                done = sum(
                    tx.rotation.rewrap_subject_key(k.key_id, k.wrapped, w)
                    for k, w in zip(subjects, new, strict=True)
                )
            after = subjects[-1].key_id
            counted(done, len(subjects) - done)
        with self._store.read() as tx:
            index = tx.rotation.index_keys_to_rewrap(kek_id, version, "", 1000)
            carried = tx.rotation.carried_keys_to_rewrap(kek_id, version)
        new_index = [
            self._rewrapped(m.wrapped, index_key_context(m.field_type, m.key_id)) for m in index
        ]
        new_carried = [
            self._rewrapped(c.wrapped, carried_key_context(c.name, c.key_id)) for c in carried
        ]
        with self._store.write() as tx:
            done = sum(
                tx.rotation.rewrap_index_key(m.field_type, m.key_id, m.wrapped, w)
                for m, w in zip(index, new_index, strict=True)
            )
            done += sum(
                tx.rotation.rewrap_carried_key(c.name, c.wrapped, w)
                for c, w in zip(carried, new_carried, strict=True)
            )
        counted(done, len(index) + len(carried) - done)

    def retire_all_but_current(self, source: KeyProvider) -> list[MasterKeyInfo]:
        """Retire every version of ``source`` but its current one, oldest first.

        For an HSM or Transit source, whose current version the vault cannot
        destroy through the provider interface (``retire`` refuses the
        current version): the operator destroys that one in the provider.
        Refuses while any stored key is still wrapped by ``source``.
        """
        if left := self.uses_of([source.kek_id]):
            raise Unavailable(f"{left} stored keys are still wrapped by {source.kek_id}")
        current = source.current_version()
        retired = [
            source.retire(info.version)
            for info in sorted(source.versions(), key=lambda i: i.version)
            if info.version != current and info.state != MasterKeyState.RETIRED
        ]
        for info in retired:
            self.record_destroyed(f"master key {info.kek_id} version {info.version} retired")
        return retired

    def record_destroyed(self, detail: str) -> None:
        self._audit.record(MIGRATION_CALLER, AuditAction.RETIRE, detail=f"migration: {detail}")
