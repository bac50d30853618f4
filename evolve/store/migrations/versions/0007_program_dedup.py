"""Programs are keyed by their normalized code (dedup: one lookup finds an earlier copy), and a crossover names its
second parent.

``code_hash`` was the SHA-256 of the exact text and read by nothing; it becomes ``evolve.novelty.code_key`` (the
syntax tree's hash: formatting and comments do not count), recomputed here for the programs already stored.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from evolve.novelty import code_key

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_BATCH = 500


def upgrade() -> None:
    with op.batch_alter_table("programs") as batch:
        batch.add_column(sa.Column("mate_id", sa.String(32), nullable=True))
    conn = op.get_bind()
    programs = sa.table("programs", sa.column("id", sa.String), sa.column("code", sa.Text), sa.column("code_hash", sa.String))
    last = ""
    while True:
        rows = conn.execute(sa.select(programs.c.id, programs.c.code).where(programs.c.id > last)
                            .order_by(programs.c.id).limit(_BATCH)).all()
        if not rows:
            break
        conn.execute(sa.update(programs).where(programs.c.id == sa.bindparam("pid")).values(code_hash=sa.bindparam("key")),
                     [{"pid": r.id, "key": code_key(r.code)} for r in rows])
        last = rows[-1].id
    op.create_index("ix_programs_code", "programs", ["campaign_id", "code_hash"])


def downgrade() -> None:
    op.drop_index("ix_programs_code", "programs")
    with op.batch_alter_table("programs") as batch:
        batch.drop_column("mate_id")
