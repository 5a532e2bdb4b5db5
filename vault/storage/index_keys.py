"""Blind-index keys, one per field type, stored wrapped in the key store."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, insert, select

from vault.domain.records import IndexKeyMaterial
from vault.keys.provider import WrappedKey
from vault.storage.models import IndexKeyRow

_index_keys = cast(Table, IndexKeyRow.__table__)


class IndexKeyRows:
    """The ``index_keys`` table on the key store connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def index_keys(self) -> list[IndexKeyMaterial]:
        rows = self._conn.execute(select(_index_keys))
        return [
            IndexKeyMaterial(r.field_type, r.key_id, WrappedKey(r.kek_id, r.kek_version, r.wrapped))
            for r in rows
        ]

    def insert_index_key(self, material: IndexKeyMaterial, now: datetime) -> None:
        self._conn.execute(
            insert(_index_keys).values(
                field_type=material.field_type,
                key_id=material.key_id,
                kek_id=material.wrapped.kek_id,
                kek_version=material.wrapped.kek_version,
                wrapped=material.wrapped.ciphertext,
                created_at=now,
            )
        )
