"""The first schema: problems, campaigns, programs, elites, model calls, events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from evolve.store.types import StoredJSON

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "problems",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("config_text", sa.Text, nullable=False),
        sa.Column("initial_program", sa.Text, nullable=False),
        sa.Column("evaluator_source", sa.Text, nullable=False),
        sa.Column("extra_files", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("problem_id", sa.String(32), sa.ForeignKey("problems.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", StoredJSON, nullable=False),
        sa.Column("iterations_target", sa.Integer, nullable=False),
        sa.Column("iterations_done", sa.Integer, nullable=False),
        sa.Column("valid_done", sa.Integer, nullable=False),
        sa.Column("best_program_id", sa.String(32), nullable=True),
        sa.Column("best_fitness", sa.Float, nullable=True),
        sa.Column("last_migration", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "programs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("campaign_id", sa.String(32), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("parent_id", sa.String(32), nullable=True),
        sa.Column("island", sa.Integer, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("iteration", sa.Integer, nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("fitness", sa.Float, nullable=True),
        sa.Column("metrics", StoredJSON, nullable=False),
        sa.Column("features", StoredJSON, nullable=False),
        sa.Column("artifacts", StoredJSON, nullable=False),
        sa.Column("cell", sa.String(64), nullable=True),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("code_hash", sa.String(32), nullable=False),
        sa.Column("diff", sa.Text, nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("template", sa.String(64), nullable=True),
        sa.Column("eval_seconds", sa.Float, nullable=False),
        sa.Column("llm_seconds", sa.Float, nullable=False),
        sa.Column("n_children", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("campaign_id", "iteration", name="uq_programs_campaign_iteration"),
    )
    op.create_index("ix_programs_island_iteration", "programs", ["campaign_id", "island", "iteration"])
    op.create_index("ix_programs_island_status_iteration", "programs", ["campaign_id", "island", "status", "iteration"])
    op.create_index("ix_programs_fitness", "programs", ["campaign_id", "fitness"])
    op.create_index("ix_programs_parent", "programs", ["parent_id"])
    op.create_table(
        "elites",
        sa.Column("campaign_id", sa.String(32), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("island", sa.Integer, nullable=False),
        sa.Column("cell", sa.String(64), nullable=False),
        sa.Column("program_id", sa.String(32), sa.ForeignKey("programs.id"), nullable=False),
        sa.Column("fitness", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "island", "cell", name="pk_elites"),
    )
    op.create_index("ix_elites_fitness", "elites", ["campaign_id", "island", "fitness"])
    op.create_table(
        "llm_calls",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.String(32), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("iteration", sa.Integer, nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("template", sa.String(64), nullable=True),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("latency_s", sa.Float, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_llm_calls_campaign", "llm_calls", ["campaign_id", "id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.String(32), sa.ForeignKey("campaigns.id"), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("data", StoredJSON, nullable=False),
    )
    op.create_index("ix_events_campaign", "events", ["campaign_id", "id"])


def downgrade() -> None:
    for table in ("events", "llm_calls", "elites", "programs", "campaigns", "problems"):
        op.drop_table(table)
