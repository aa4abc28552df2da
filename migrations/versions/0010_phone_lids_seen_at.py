"""phone_lids.seen_at: when a callback last carried each pair, so retention can forget it

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dashboard.models

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("phone_lids", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seen_at", dashboard.models.UTCDateTime(), nullable=True))
    # When stored pairs were last seen is not known: the upgrade counts as seeing them, so
    # retention keeps them a full period from now.
    phone_lids = sa.table("phone_lids", sa.column("seen_at", dashboard.models.UTCDateTime()))
    op.execute(phone_lids.update().values(seen_at=dashboard.models.utcnow()))
    with op.batch_alter_table("phone_lids", schema=None) as batch_op:
        batch_op.alter_column(
            "seen_at", existing_type=dashboard.models.UTCDateTime(), nullable=False
        )
        batch_op.create_index(batch_op.f("ix_phone_lids_seen_at"), ["seen_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("phone_lids", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_phone_lids_seen_at"))
        batch_op.drop_column("seen_at")
