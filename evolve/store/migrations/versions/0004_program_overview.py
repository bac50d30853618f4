"""Programs keep their parent's fitness; one covering index serves the dashboard's aggregates, one the best-first pages.

The campaign overview (score series, best-so-far steps, island and model
statistics, status and stage counts) then reads only this index: about 0.2 s
at 100,000 programs instead of a second, as no program row (its code, its
diff) is read. The parent's fitness is fixed once the parent is recorded, so
"improved over its parent" no longer needs a join per program.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OVERVIEW_COLUMNS = ["campaign_id", "iteration", "status", "fitness", "score", "island", "model", "template", "stage",
                    "parent_fitness", "id"]


def upgrade() -> None:
    with op.batch_alter_table("programs") as batch:
        batch.add_column(sa.Column("parent_fitness", sa.Float, nullable=True))
    op.execute("UPDATE programs SET parent_fitness = (SELECT p.fitness FROM programs AS p WHERE p.id = programs.parent_id) "
               "WHERE parent_id IS NOT NULL")
    op.create_index("ix_programs_overview", "programs", OVERVIEW_COLUMNS)
    # pages of the best programs (fitness descending, ties by iteration) without sorting the campaign
    op.drop_index("ix_programs_fitness", table_name="programs")
    op.create_index("ix_programs_best", "programs", ["campaign_id", sa.text("fitness DESC"), "iteration"])


def downgrade() -> None:
    op.drop_index("ix_programs_best", table_name="programs")
    op.create_index("ix_programs_fitness", "programs", ["campaign_id", "fitness"])
    op.drop_index("ix_programs_overview", table_name="programs")
    with op.batch_alter_table("programs") as batch:
        batch.drop_column("parent_fitness")
