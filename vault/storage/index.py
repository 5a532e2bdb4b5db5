"""The blind index: which subjects hold a value, by keyed digest."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Connection, Executable, Table, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from vault.storage.models import BlindIndexRow, SubjectRow

_subjects = cast(Table, SubjectRow.__table__)
_index = cast(Table, BlindIndexRow.__table__)

# Built once, executed with parameters: building a statement costs more than running it.
DELETE_INDEX = delete(_index).where(
    _index.c.subject_id == bindparam("b_subject_id"), _index.c.field == bindparam("b_field")
)


def _upsert(dialect: type[sqlite.Insert] | type[postgresql.Insert]) -> Executable:
    # The row of (subject, field) is replaced whole: one statement, not DELETE then INSERT.
    statement = dialect(_index)
    return statement.on_conflict_do_update(
        index_elements=[_index.c.subject_id, _index.c.field],
        set_={"field_type": statement.excluded.field_type, "digest": statement.excluded.digest},
    )


_UPSERT_INDEX = {"sqlite": _upsert(sqlite.Insert), "postgresql": _upsert(postgresql.Insert)}

# Who holds a value of a type: the search, also run on the hot-read connections.
FIND_SUBJECTS = (
    select(_index.c.subject_id)
    .where(_index.c.field_type == bindparam("field_type"), _index.c.digest == bindparam("digest"))
    .distinct()
    .order_by(_index.c.subject_id)
)


class IndexRows:
    """The ``blind_index`` table."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def put_index(self, subject_id: str, field: str, field_type: str, digest: bytes | None) -> None:
        if digest is None:
            self._conn.execute(DELETE_INDEX, {"b_subject_id": subject_id, "b_field": field})
        else:
            self._conn.execute(
                _UPSERT_INDEX[self._conn.dialect.name],
                {
                    "subject_id": subject_id,
                    "field": field,
                    "field_type": field_type,
                    "digest": digest,
                },
            )

    def find_subjects(self, field_type: str, digest: bytes) -> list[str]:
        rows = self._conn.execute(FIND_SUBJECTS, {"field_type": field_type, "digest": digest})
        return [row[0] for row in rows]
