"""Keys carried across a key-provider migration: ``carried_keys``.

The audit chain is keyed by the key provider's audit key, which differs from
one provider to the next. ``pii-vault keys migrate`` therefore stores the
chain key in use, wrapped by the new provider's master key, as the row
``audit-chain`` of this key table; from then on the chain key is that row's
key (``vault.domain.carried_keys``). Rewrapping and retirement count and move
it like a blind-index key.

Downgrading drops the table: a vault that carried its chain key then opens
its chain under the provider's own audit key and reports it as altered.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "carried_keys",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("kek_id", sa.String(length=64), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_carried_keys")),
    )


def downgrade() -> None:
    op.drop_table("carried_keys")
