"""Programs record how the model's answer was applied (``evolve.diff.Applied``: exact, reindented, block, rewrite,
body, cut), so the tolerances a model leans on can be counted per model.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("programs") as batch:
        batch.add_column(sa.Column("applied", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("programs") as batch:
        batch.drop_column("applied")
