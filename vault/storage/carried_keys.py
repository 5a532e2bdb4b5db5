"""Keys carried across a key-provider migration, stored wrapped in the key store."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select

from vault.domain.records import CarriedKeyMaterial
from vault.keys.provider import WrappedKey
from vault.storage.models import CarriedKeyRow

_carried_keys = cast(Table, CarriedKeyRow.__table__)


def carried_key_material(row: Any) -> CarriedKeyMaterial:
    return CarriedKeyMaterial(
        row.name, row.key_id, WrappedKey(row.kek_id, row.kek_version, row.wrapped)
    )


class CarriedKeyRows:
    """The ``carried_keys`` table on the key store connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def carried_key(self, name: str) -> CarriedKeyMaterial | None:
        row = self._conn.execute(select(_carried_keys).where(_carried_keys.c.name == name)).first()
        return None if row is None else carried_key_material(row)

    def insert_carried_key(self, material: CarriedKeyMaterial, now: datetime) -> bool:
        """Insert unless a key of that name exists (checked in this transaction)."""
        if self.carried_key(material.name) is not None:
            return False
        self._conn.execute(
            insert(_carried_keys).values(
                name=material.name,
                key_id=material.key_id,
                kek_id=material.wrapped.kek_id,
                kek_version=material.wrapped.kek_version,
                wrapped=material.wrapped.ciphertext,
                created_at=now,
            )
        )
        return True
