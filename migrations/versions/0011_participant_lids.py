"""a group member known only by their LID is the callback's participant

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dashboard import payloads

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2000


def upgrade() -> None:
    deliveries = sa.table(
        "deliveries",
        sa.column("id", sa.Integer),
        sa.column("raw", sa.Text),
        sa.column("participant", sa.String),
        sa.column("participant_lid_key_reversed", sa.String),
    )
    # Only a row with a member's LID and no participant can change: its body is read again
    # by the same parser as new callbacks; every other row is left unread.
    connection = op.get_bind()
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(deliveries.c.id, deliveries.c.raw)
            .where(
                deliveries.c.id > last_id,
                deliveries.c.participant.is_(None),
                deliveries.c.participant_lid_key_reversed.is_not(None),
            )
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
            if callback.participant is not None:
                changed.append({"row_id": row.id, "member": callback.participant})
        if changed:
            connection.execute(
                deliveries.update()
                .where(deliveries.c.id == sa.bindparam("row_id"))
                .values(participant=sa.bindparam("member")),
                changed,
            )
        last_id = rows[-1].id


def downgrade() -> None:
    # The column stays valid for the older code: it showed fewer members.
    pass
