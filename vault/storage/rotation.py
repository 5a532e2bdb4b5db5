"""Master-key rotation: counting and rewrapping stored keys, and the locks around it."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, Table, func, or_, select, update

from vault.domain.records import CarriedKeyMaterial, IndexKeyMaterial, KekUse
from vault.keys.hierarchy import SubjectKeyMaterial
from vault.keys.provider import WrappedKey
from vault.storage.carried_keys import carried_key_material
from vault.storage.keys import subject_key_material
from vault.storage.models import CarriedKeyRow, IndexKeyRow, SubjectKeyRow

_subject_keys = cast(Table, SubjectKeyRow.__table__)
_index_keys = cast(Table, IndexKeyRow.__table__)
_carried_keys = cast(Table, CarriedKeyRow.__table__)
_WRAPPED_KEY_TABLES = (_subject_keys, _index_keys, _carried_keys)


def _not_under(table: Table, kek_id: str, kek_version: int) -> Any:
    return or_(table.c.kek_version != kek_version, table.c.kek_id != kek_id)


# Any constant the vault alone uses as a PostgreSQL advisory lock key ("pii-vaul").
_KEY_ROTATION_LOCK = 0x7069692D7661756C


class RotationRows:
    """Subject and index keys by master key version, on the key store connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def count_keys_to_rewrap(self, kek_id: str, kek_version: int) -> int:
        """Subject, index and carried keys under anything but ``kek_id`` v``kek_version``."""
        total = 0
        for table in _WRAPPED_KEY_TABLES:
            total += self._conn.execute(
                select(func.count())
                .select_from(table)
                .where(_not_under(table, kek_id, kek_version))
            ).scalar_one()
        return total

    def subject_keys_to_rewrap(
        self, kek_id: str, kek_version: int, after_key_id: str, limit: int
    ) -> list[SubjectKeyMaterial]:
        """The next ``limit`` subject keys not under ``kek_id`` v``kek_version``, by key_id.

        Keyset pagination: pass the last key_id of the previous batch as
        ``after_key_id`` ("" for the first), so each key is visited once per pass
        even while the pass moves rows to another version.
        """
        rows = self._conn.execute(
            select(_subject_keys)
            .where(
                _not_under(_subject_keys, kek_id, kek_version),
                _subject_keys.c.key_id > after_key_id,
            )
            .order_by(_subject_keys.c.key_id)
            .limit(limit)
        )
        return [subject_key_material(row) for row in rows]

    def index_keys_to_rewrap(
        self, kek_id: str, kek_version: int, after_key_id: str, limit: int
    ) -> list[IndexKeyMaterial]:
        """As ``subject_keys_to_rewrap``, for blind-index keys."""
        rows = self._conn.execute(
            select(_index_keys)
            .where(
                _not_under(_index_keys, kek_id, kek_version), _index_keys.c.key_id > after_key_id
            )
            .order_by(_index_keys.c.key_id)
            .limit(limit)
        )
        return [
            IndexKeyMaterial(r.field_type, r.key_id, WrappedKey(r.kek_id, r.kek_version, r.wrapped))
            for r in rows
        ]

    def rewrap_subject_key(self, key_id: str, old: WrappedKey, new: WrappedKey) -> bool:
        """Replace a subject key's wrapping, only if it is still ``old``; False if not.

        A key shredded (deleted) or rewrapped by someone else since it was read
        is left alone: an update never brings a deleted key back.
        """
        result = self._conn.execute(
            update(_subject_keys)
            .where(
                _subject_keys.c.key_id == key_id,
                _subject_keys.c.kek_id == old.kek_id,
                _subject_keys.c.kek_version == old.kek_version,
                _subject_keys.c.wrapped == old.ciphertext,
            )
            .values(kek_id=new.kek_id, kek_version=new.kek_version, wrapped=new.ciphertext)
        )
        return result.rowcount == 1

    def rewrap_index_key(
        self, field_type: str, key_id: str, old: WrappedKey, new: WrappedKey
    ) -> bool:
        """As ``rewrap_subject_key``, for a blind-index key."""
        result = self._conn.execute(
            update(_index_keys)
            .where(
                _index_keys.c.field_type == field_type,
                _index_keys.c.key_id == key_id,
                _index_keys.c.kek_id == old.kek_id,
                _index_keys.c.kek_version == old.kek_version,
                _index_keys.c.wrapped == old.ciphertext,
            )
            .values(kek_id=new.kek_id, kek_version=new.kek_version, wrapped=new.ciphertext)
        )
        return result.rowcount == 1

    def carried_keys_to_rewrap(self, kek_id: str, kek_version: int) -> list[CarriedKeyMaterial]:
        """Carried keys (a handful at most) not under ``kek_id`` v``kek_version``, by name."""
        rows = self._conn.execute(
            select(_carried_keys)
            .where(_not_under(_carried_keys, kek_id, kek_version))
            .order_by(_carried_keys.c.name)
        )
        return [carried_key_material(row) for row in rows]

    def rewrap_carried_key(self, name: str, old: WrappedKey, new: WrappedKey) -> bool:
        """As ``rewrap_subject_key``, for a carried key."""
        result = self._conn.execute(
            update(_carried_keys)
            .where(
                _carried_keys.c.name == name,
                _carried_keys.c.kek_id == old.kek_id,
                _carried_keys.c.kek_version == old.kek_version,
                _carried_keys.c.wrapped == old.ciphertext,
            )
            .values(kek_id=new.kek_id, kek_version=new.kek_version, wrapped=new.ciphertext)
        )
        return result.rowcount == 1

    def count_keys_by_kek_version(self) -> list[KekUse]:
        """Stored subject, index and carried keys per (master key, version), in version order."""
        counts: dict[tuple[str, int], list[int]] = {}
        for slot, table in enumerate(_WRAPPED_KEY_TABLES):
            rows = self._conn.execute(
                select(table.c.kek_id, table.c.kek_version, func.count()).group_by(
                    table.c.kek_id, table.c.kek_version
                )
            )
            for kek_id, kek_version, count in rows:
                counts.setdefault((kek_id, kek_version), [0, 0, 0])[slot] = count
        return [
            KekUse(kek_id, version, subject, index, carried)
            for (kek_id, version), (subject, index, carried) in sorted(
                counts.items(), key=lambda i: i[0][::-1]
            )
        ]

    def hold_key_writes(self) -> None:
        """Until this transaction ends, no other may add or rewrap a key (PostgreSQL).

        ``SHARE`` mode waits for transactions that already wrote key rows and
        blocks new writers, so a count taken after it is exact until commit. On
        SQLite the write transaction (``BEGIN IMMEDIATE``) already excludes every
        other writer.
        """
        if self._conn.dialect.name == "postgresql":
            self._conn.exec_driver_sql(
                "LOCK TABLE subject_keys, index_keys, carried_keys IN SHARE MODE"
            )

    def lock_key_rotation(self) -> None:
        """Until this transaction ends, no other replica may rotate or retire a master key.

        Every replica and worker shares the key store, so this is where they
        agree on who rotates. PostgreSQL: a transaction-scoped advisory lock (key
        writers do not take it, so they are not held up). SQLite: the write
        transaction (``BEGIN IMMEDIATE``) already excludes every other writer.
        """
        if self._conn.dialect.name == "postgresql":
            self._conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_KEY_ROTATION_LOCK})")
