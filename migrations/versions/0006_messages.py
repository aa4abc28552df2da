"""messages: one row per message we sent, built from its callbacks; deliveries.from_me

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 16:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

import dashboard.models
from dashboard import payloads
from dashboard.messages import store

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql")
BACKFILL_BATCH = 2000
STATES = ("queued", "sent", "received", "read", "played", "failed")
# Columns later revisions add, which today's store (run by the backfill) writes: they stand
# while the backfill runs, then go, and the revision that adds them fills them again.
LATER_COLUMNS = ("failure_category",)
# SQLite drops a column by copying the table, which would lose the model's AUTOINCREMENT.
KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("from_me", sa.Boolean(), nullable=True))
    step_columns = []
    for state in STATES:
        step_columns.append(sa.Column(f"{state}_at", dashboard.models.UTCDateTime(), nullable=True))
        step_columns.append(sa.Column(f"{state}_count", sa.Integer(), nullable=False))
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("zaap_id", sa.String(length=255), nullable=True),
        sa.Column("phone", sa.String(length=255), nullable=True),
        sa.Column("phone_key_reversed", KEY, nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("first_at", dashboard.models.UTCDateTime(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=255), nullable=True),
        *step_columns,
        sa.Column("first_delivery_id", sa.Integer(), nullable=False),
        sa.Column("last_delivery_id", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.Text(), nullable=True) for name in LATER_COLUMNS),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("instance_id", "message_id", name="uq_messages_instance_id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_messages_message_id"), ["message_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_zaap_id"), ["zaap_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_first_at"), ["first_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_messages_last_delivery_id"), ["last_delivery_id"], unique=False
        )
        batch_op.create_index(
            "ix_messages_phone_key_reversed_id", ["phone_key_reversed", "id"], unique=False
        )
    _backfill()
    with op.batch_alter_table("messages", schema=None, table_kwargs=KEEP_IDS) as batch_op:
        for name in LATER_COLUMNS:
            batch_op.drop_column(name)


def _backfill() -> None:
    # Callbacks stored before messages existed build them through the same parser and
    # fold as new ones, oldest first, in batches.
    deliveries = sa.table(
        "deliveries",
        sa.column("id", sa.Integer),
        sa.column("raw", sa.Text),
        sa.column("received_at", dashboard.models.UTCDateTime),
        sa.column("from_me", sa.Boolean),
    )
    session = Session(bind=op.get_bind())
    last_id = 0
    while True:
        rows = session.execute(
            sa.select(deliveries.c.id, deliveries.c.raw, deliveries.c.received_at)
            .where(deliveries.c.id > last_id)
            .order_by(deliveries.c.id)
            .limit(BACKFILL_BATCH)
        ).all()
        if not rows:
            return
        parsed, flags = [], []
        for row in rows:
            try:
                callback = payloads.parse(row.raw.encode("utf-8", "surrogatepass"))
            except payloads.InvalidCallback:
                continue  # kept as it came, and shown raw; it tells of no message
            parsed.append((callback, row.id, row.received_at))
            if callback.from_me is not None:
                flags.append({"row_id": row.id, "flag": callback.from_me})
        if flags:
            session.execute(
                deliveries.update()
                .where(deliveries.c.id == sa.bindparam("row_id"))
                .values(from_me=sa.bindparam("flag")),
                flags,
            )
        store.record(session, parsed)
        last_id = rows[-1].id


def downgrade() -> None:
    op.drop_table("messages")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("from_me")
