"""phone search keys, api tokens and job leases

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dashboard.models
from dashboard import payloads

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL_BATCH = 1000
KEY = sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone_key_reversed", KEY, nullable=True))
        batch_op.add_column(sa.Column("participant_key_reversed", KEY, nullable=True))
    _backfill_keys()
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_phone_key_reversed_id", ["phone_key_reversed", "id"], unique=False
        )
        batch_op.create_index(
            "ix_deliveries_participant_key_reversed_id",
            ["participant_key_reversed", "id"],
            unique=False,
            sqlite_where=sa.text("participant_key_reversed IS NOT NULL"),
            postgresql_where=sa.text("participant_key_reversed IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_deliveries_failed_id",
            ["id"],
            unique=False,
            sqlite_where=sa.text("error IS NOT NULL"),
            postgresql_where=sa.text("error IS NOT NULL"),
        )

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("hint", sa.String(length=4), nullable=False),
        sa.Column("created_at", dashboard.models.UTCDateTime(), nullable=False),
        sa.Column("last_used_at", dashboard.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_api_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_tokens_user_id"), ["user_id"], unique=False)

    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=True),
        sa.Column("expires_at", dashboard.models.UTCDateTime(), nullable=True),
        sa.Column("last_finished_at", dashboard.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_leases")),
    )


def _backfill_keys() -> None:
    # Callbacks stored before search existed get their keys from their own raw body,
    # through the same parser that keys new ones.
    deliveries = sa.table(
        "deliveries",
        sa.column("id", sa.Integer),
        sa.column("raw", sa.Text),
        sa.column("phone_key_reversed", sa.String),
        sa.column("participant_key_reversed", sa.String),
    )
    connection = op.get_bind()
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(deliveries.c.id, deliveries.c.raw)
            .where(deliveries.c.id > last_id)
            .order_by(deliveries.c.id)
            .limit(BACKFILL_BATCH)
        ).all()
        if not rows:
            return
        updates = []
        for row in rows:
            try:
                callback = payloads.parse(row.raw.encode("utf-8", "surrogatepass"))
            except payloads.InvalidCallback:
                continue
            updates.append(
                {
                    "row_id": row.id,
                    "phone_key": callback.phone_key_reversed,
                    "participant_key": callback.participant_key_reversed,
                }
            )
        if updates:
            connection.execute(
                deliveries.update()
                .where(deliveries.c.id == sa.bindparam("row_id"))
                .values(
                    phone_key_reversed=sa.bindparam("phone_key"),
                    participant_key_reversed=sa.bindparam("participant_key"),
                ),
                updates,
            )
        last_id = rows[-1].id


def downgrade() -> None:
    op.drop_table("job_leases")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_tokens_user_id"))
    op.drop_table("api_tokens")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_failed_id")
        batch_op.drop_index("ix_deliveries_participant_key_reversed_id")
        batch_op.drop_index("ix_deliveries_phone_key_reversed_id")
        batch_op.drop_column("participant_key_reversed")
        batch_op.drop_column("phone_key_reversed")
