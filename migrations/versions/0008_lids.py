"""LID search keys on deliveries and the phone-to-LID map, both built from stored bodies

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

from dashboard import lids, payloads
from dashboard.database import upsert_insert

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = sa.String(length=255).with_variant(sa.String(length=255, collation="C"), "postgresql")
BACKFILL_BATCH = 2000
LID_KEYS = ("chat_lid_key_reversed", "sender_lid_key_reversed", "participant_lid_key_reversed")


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for name in LID_KEYS:
            batch_op.add_column(sa.Column(name, KEY, nullable=True))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for name in LID_KEYS:
            batch_op.create_index(
                f"ix_deliveries_{name}_id",
                [name, "id"],
                unique=False,
                sqlite_where=sa.text(f"{name} IS NOT NULL"),
                postgresql_where=sa.text(f"{name} IS NOT NULL"),
            )
    op.create_table(
        "phone_lids",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.String(length=255), nullable=False),
        sa.Column("phone_key_reversed", KEY, nullable=False),
        sa.Column("lid_key_reversed", KEY, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_lids")),
        sa.UniqueConstraint(
            "phone_key_reversed",
            "lid_key_reversed",
            "instance_id",
            name="uq_phone_lids_phone_key_reversed",
        ),
    )
    with op.batch_alter_table("phone_lids", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_phone_lids_lid_key_reversed"), ["lid_key_reversed"], unique=False
        )
    _backfill()


def _backfill() -> None:
    # Callbacks stored before LIDs were searched get their keys and map pairs through the
    # same parser and the same map as new ones, oldest first, in batches.
    deliveries = sa.table(
        "deliveries",
        sa.column("id", sa.Integer),
        sa.column("raw", sa.Text),
        *(sa.column(name, KEY) for name in LID_KEYS),
    )
    phone_lids = sa.table(
        "phone_lids",
        *(
            sa.column(name, KEY)
            for name in ("instance_id", "phone_key_reversed", "lid_key_reversed")
        ),
    )
    dialect = op.get_bind().dialect.name
    session = Session(bind=op.get_bind())
    last_id = 0
    while True:
        rows = session.execute(
            sa.select(deliveries.c.id, deliveries.c.raw)
            .where(deliveries.c.id > last_id)
            .order_by(deliveries.c.id)
            .limit(BACKFILL_BATCH)
        ).all()
        if not rows:
            return
        parsed, keys = [], []
        for row in rows:
            try:
                callback = payloads.parse(row.raw.encode("utf-8", "surrogatepass"))
            except payloads.InvalidCallback:
                continue  # kept as it came, and shown raw; it names no LID we can use
            parsed.append(callback)
            found = {name: getattr(callback, name) for name in LID_KEYS}
            if any(found.values()):
                keys.append({"row_id": row.id, **{f"new_{k}": v for k, v in found.items()}})
        if keys:
            session.execute(
                deliveries.update()
                .where(deliveries.c.id == sa.bindparam("row_id"))
                .values({name: sa.bindparam(f"new_{name}") for name in LID_KEYS}),
                keys,
            )
        # The pairs through the same extraction as new ones, into the table as it is at
        # this revision (lids.record writes columns added later).
        found = lids.pairs(parsed)
        if found:
            session.execute(upsert_insert(dialect, phone_lids).on_conflict_do_nothing(), found)
        last_id = rows[-1].id


def downgrade() -> None:
    op.drop_table("phone_lids")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        for name in LID_KEYS:
            batch_op.drop_index(f"ix_deliveries_{name}_id")
            batch_op.drop_column(name)
