"""Subject keys and data keys, as stored wrapped in the key store."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, bindparam, delete, insert, select

from vault.errors import DataLoss
from vault.keys.hierarchy import DataKeyMaterial, SubjectKeyMaterial
from vault.keys.provider import WrappedKey
from vault.storage.models import DataKeyRow, SubjectKeyRow
from vault.storage.rows import record_mapper

_subject_keys = cast(Table, SubjectKeyRow.__table__)
_BINARY = (bytes, bytearray, memoryview)
_data_keys = cast(Table, DataKeyRow.__table__)


def subject_key_material(row: object) -> SubjectKeyMaterial:
    """A subject key row as the key hierarchy takes it."""
    r = row._mapping  # type: ignore[attr-defined]
    # The one record with a nested value: the wrapped key is three columns.
    return SubjectKeyMaterial(
        r["key_id"], r["subject_id"], WrappedKey(r["kek_id"], r["kek_version"], bytes(r["wrapped"]))
    )


_data_key_material = record_mapper(DataKeyMaterial)

_DATA_KEY = select(_data_keys).where(_data_keys.c.dek_id == bindparam("dek_id"))

_SUBJECT_KEY_BY_ID = select(_subject_keys).where(_subject_keys.c.key_id == bindparam("key_id"))

_SUBJECT_KEY_OF = select(_subject_keys).where(
    _subject_keys.c.subject_id == bindparam("b_subject_id")
)
# The cold read path in one statement: a data key with its subject key (None if gone).
DATA_KEYS_WITH_SUBJECT_KEYS = select(
    _data_keys.c.dek_id,
    _data_keys.c.subject_id,
    _data_keys.c.field,
    _data_keys.c.subject_key_id,
    _data_keys.c.wrapped,
    _subject_keys.c.key_id,
    _subject_keys.c.subject_id,
    _subject_keys.c.kek_id,
    _subject_keys.c.kek_version,
    _subject_keys.c.wrapped,
).select_from(
    _data_keys.outerjoin(_subject_keys, _subject_keys.c.key_id == _data_keys.c.subject_key_id)
)
DATA_KEY_WITH_SUBJECT_KEY = DATA_KEYS_WITH_SUBJECT_KEYS.where(
    _data_keys.c.dek_id == bindparam("dek_id")
)


def data_keys_in(count: int) -> Select[Any]:
    """``DATA_KEYS_WITH_SUBJECT_KEYS`` of ``count`` data keys, bound as ``d0``, ``d1``, ..."""
    return DATA_KEYS_WITH_SUBJECT_KEYS.where(
        _data_keys.c.dek_id.in_([bindparam(f"d{i}") for i in range(count)])
    )


def key_pair(row: Any) -> tuple[DataKeyMaterial, SubjectKeyMaterial | None]:
    """A row of ``DATA_KEY_WITH_SUBJECT_KEY``; ``DataLoss`` if it lacks the schema's shape."""
    dek_id, subject_id, field, subject_key_id, wrapped, key_id, owner, kek_id, version, sealed = row
    if not (
        isinstance(dek_id, str)
        and isinstance(subject_id, str)
        and isinstance(field, str)
        and isinstance(subject_key_id, str)
        and isinstance(wrapped, _BINARY)
    ):
        raise DataLoss("a stored data key row is malformed")
    data_key = DataKeyMaterial(dek_id, subject_id, field, subject_key_id, bytes(wrapped))
    if key_id is None:
        return data_key, None
    if not (
        isinstance(key_id, str)
        and isinstance(owner, str)
        and isinstance(kek_id, str)
        and type(version) is int
        and isinstance(sealed, _BINARY)
    ):
        raise DataLoss("a stored subject key row is malformed")
    return data_key, SubjectKeyMaterial(key_id, owner, WrappedKey(kek_id, version, bytes(sealed)))


_INSERT_SUBJECT_KEY = insert(_subject_keys)
_INSERT_DATA_KEY = insert(_data_keys)
_DELETE_DATA_KEY = delete(_data_keys).where(_data_keys.c.dek_id == bindparam("b_dek_id"))


class KeyRows:
    """The ``subject_keys`` and ``data_keys`` tables on the key store connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def subject_key_for(self, subject_id: str) -> SubjectKeyMaterial | None:
        row = self._conn.execute(_SUBJECT_KEY_OF, {"b_subject_id": subject_id}).first()
        return None if row is None else subject_key_material(row)

    def subject_key_by_id(self, key_id: str) -> SubjectKeyMaterial | None:
        row = self._conn.execute(_SUBJECT_KEY_BY_ID, {"key_id": key_id}).first()
        return None if row is None else subject_key_material(row)

    def insert_subject_key(self, material: SubjectKeyMaterial, now: datetime) -> None:
        self._conn.execute(
            _INSERT_SUBJECT_KEY,
            {
                "key_id": material.key_id,
                "subject_id": material.subject_id,
                "kek_id": material.wrapped.kek_id,
                "kek_version": material.wrapped.kek_version,
                "wrapped": material.wrapped.ciphertext,
                "created_at": now,
            },
        )

    def data_key(self, dek_id: str) -> DataKeyMaterial | None:
        row = self._conn.execute(_DATA_KEY, {"dek_id": dek_id}).first()
        if row is None:
            return None
        return _data_key_material(row)

    def insert_data_key(self, material: DataKeyMaterial, now: datetime) -> None:
        self._conn.execute(
            _INSERT_DATA_KEY,
            {
                "dek_id": material.dek_id,
                "subject_id": material.subject_id,
                "field": material.field,
                "subject_key_id": material.subject_key_id,
                "wrapped": material.wrapped,
                "created_at": now,
            },
        )

    def delete_data_key(self, dek_id: str) -> None:
        self._conn.execute(_DELETE_DATA_KEY, {"b_dek_id": dek_id})

    def data_key_ids_of(self, subject_id: str) -> list[str]:
        rows = self._conn.execute(
            select(_data_keys.c.dek_id)
            .where(_data_keys.c.subject_id == subject_id)
            .order_by(_data_keys.c.dek_id)
        )
        return [row[0] for row in rows]

    def delete_subject_keys(self, subject_id: str) -> None:
        """Destroy every key of a subject: its data keys and its subject key."""
        self._conn.execute(delete(_data_keys).where(_data_keys.c.subject_id == subject_id))
        self._conn.execute(delete(_subject_keys).where(_subject_keys.c.subject_id == subject_id))
