"""settings: the chat-presence choice replaces the message-status one

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 15:56:50.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # "Save and apply" now always sets the message-status webhook, so its checkbox goes;
    # typing and presence events become the one optional kind, off until asked for.
    with op.batch_alter_table("zapi_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("set_chat_presence", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.drop_column("set_message_status")


def downgrade() -> None:
    # The older version then still sets the message-status webhook, as this one did.
    with op.batch_alter_table("zapi_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("set_message_status", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.drop_column("set_chat_presence")
