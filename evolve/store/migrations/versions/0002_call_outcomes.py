"""Every request to a model is a row: its outcome (ok, rate_limited, timeout, ...) and attempt number.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_calls") as batch:
        batch.add_column(sa.Column("outcome", sa.String(24), nullable=False, server_default="ok"))
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="1"))
    # rows written before 0002 knew only ok / failed
    op.execute("UPDATE llm_calls SET outcome = 'error' WHERE NOT ok")


def downgrade() -> None:
    with op.batch_alter_table("llm_calls") as batch:
        batch.drop_column("attempt")
        batch.drop_column("outcome")
