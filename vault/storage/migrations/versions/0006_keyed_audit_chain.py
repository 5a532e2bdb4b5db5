"""The audit chain keyed under a key from the key provider.

Adds ``audit_head.scheme``. A head that exists now belongs to a chain of
unkeyed SHA-256 hashes (schema 0003), so it is marked ``sha256``. The
migration cannot re-chain it: the key is the key provider's and migrations
see only the database. The server does it on its first start after the
upgrade (``vault.audit.log.AuditLog.open_chain``): it verifies the unkeyed
chain, recomputes every hash as HMAC-SHA256 under the audit key in one
transaction, records an ``audit-rekey`` event and marks the head
``hmac-sha256``; from then on only the keyed form is accepted.

Downgrading drops the column but cannot undo the keying: code from before
0006 then reports the (keyed) chain as altered at position 1.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scheme", sa.String(length=16), server_default="sha256", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_column("scheme")
