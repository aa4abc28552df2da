"""callback fields read again: every type's status, a message's member, a status's message

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 21:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dashboard import payloads

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2000
# What the parser now reads that it did not before: the columns to bring up to date.
FIELDS = ("status", "participant", "participant_key_reversed", "message_id")


def upgrade() -> None:
    deliveries = sa.table(
        "deliveries",
        sa.column("id", sa.Integer),
        sa.column("raw", sa.Text),
        *map(sa.column, FIELDS),
    )
    connection = op.get_bind()
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(deliveries)
            .where(deliveries.c.id > last_id)
            .order_by(deliveries.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        changed = []
        for row in rows:
            try:
                callback = payloads.parse(row.raw.encode("utf-8", "surrogatepass"))
            except payloads.InvalidCallback:
                continue  # kept as it came, and shown raw
            fields = {name: getattr(callback, name) for name in FIELDS}
            if any(fields[name] != getattr(row, name) for name in FIELDS):
                changed.append({"row_id": row.id, **{f"new_{k}": v for k, v in fields.items()}})
        if changed:
            connection.execute(
                deliveries.update()
                .where(deliveries.c.id == sa.bindparam("row_id"))
                .values({name: sa.bindparam(f"new_{name}") for name in FIELDS}),
                changed,
            )
        last_id = rows[-1].id


def downgrade() -> None:
    # The columns stay valid for the older code: it only read fewer of them.
    pass
