"""API tokens with roles (stored as digests), the audit trail of every write, and who created each campaign and problem.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("max_campaigns", sa.Integer, nullable=True),
        sa.Column("max_evaluations", sa.Integer, nullable=True),
        sa.Column("max_cost_usd", sa.Float, nullable=True),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String(100), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_audit_actor", "audit", ["actor", "id"])
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("created_by", sa.String(64), nullable=True))
    with op.batch_alter_table("problems") as batch:
        batch.add_column(sa.Column("created_by", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("problems") as batch:
        batch.drop_column("created_by")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("created_by")
    op.drop_index("ix_audit_actor", "audit")
    op.drop_table("audit")
    op.drop_table("api_tokens")
