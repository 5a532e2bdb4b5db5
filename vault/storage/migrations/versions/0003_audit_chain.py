"""Hash-chained audit log: prev_hash/hash per event and a chain head.

Events written before this migration are chained in sequence order, so the
whole log verifies from the first event.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from vault.crypto.hash_chain import GENESIS, unkeyed_hash

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS = (
    "sequence",
    "time",
    "caller",
    "action",
    "subject_id",
    "field",
    "view",
    "purpose",
    "outcome",
    "status_code",
    "detail",
)


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.LargeBinary(length=32), nullable=True))
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    connection = op.get_bind()
    events = sa.table(
        "audit_events",
        *(sa.column(name) for name in _COLUMNS),
        sa.column("prev_hash"),
        sa.column("hash"),
    )
    prev, last = GENESIS, 0
    rows = connection.execute(
        sa.select(*(events.c[n] for n in _COLUMNS)).order_by(events.c.sequence)
    )
    for row in rows.mappings().all():
        moment = row["time"]
        if isinstance(moment, str):
            moment = datetime.fromisoformat(moment)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        document = {n: row[n] for n in _COLUMNS}
        document["time"] = moment.astimezone(UTC).isoformat()
        digest = unkeyed_hash(prev, document)
        connection.execute(
            events.update()
            .where(events.c.sequence == row["sequence"])
            .values(prev_hash=prev, hash=digest)
        )
        prev, last = digest, row["sequence"]
    head = sa.table(
        "audit_head", sa.column("id"), sa.column("last_sequence"), sa.column("last_hash")
    )
    if last:
        # Otherwise the first append creates the head.
        connection.execute(head.insert().values(id=1, last_sequence=last, last_hash=prev))
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("prev_hash", existing_type=sa.LargeBinary(length=32), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.LargeBinary(length=32), nullable=False)


def downgrade() -> None:
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
