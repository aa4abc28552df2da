"""messages.failure_category: each message's decoded failure, kept for counting in SQL

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dashboard.messages import store

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2000
# SQLite drops a column by copying the table, which would lose the model's AUTOINCREMENT.
KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failure_category", sa.String(length=32), nullable=True))
    _backfill()
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_failure_category_id",
            ["failure_category", "id"],
            unique=False,
            sqlite_where=sa.text("failure_category IS NOT NULL"),
            postgresql_where=sa.text("failure_category IS NOT NULL"),
        )


def _backfill() -> None:
    # The messages stored so far get their category through the same decoding as new ones;
    # only a message with an error has one, in batches by id.
    messages = sa.table(
        "messages",
        sa.column("id", sa.Integer),
        sa.column("error", sa.Text),
        sa.column("error_code", sa.String),
        sa.column("failure_category", sa.String),
    )
    connection = op.get_bind()
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(messages.c.id, messages.c.error, messages.c.error_code)
            .where(messages.c.id > last_id, messages.c.error.is_not(None))
            .order_by(messages.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        connection.execute(
            messages.update()
            .where(messages.c.id == sa.bindparam("row_id"))
            .values(failure_category=sa.bindparam("category")),
            [
                {"row_id": row.id, "category": store.failure_category(row.error, row.error_code)}
                for row in rows
            ],
        )
        last_id = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None, table_kwargs=KEEP_IDS) as batch_op:
        batch_op.drop_index("ix_messages_failure_category_id")
        batch_op.drop_column("failure_category")
