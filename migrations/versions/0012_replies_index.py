"""the customer's replies in a chat are found through an index of their own

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 20:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_phone_key_reversed_type_id",
        "deliveries",
        ["phone_key_reversed", "type", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_phone_key_reversed_type_id", table_name="deliveries")
