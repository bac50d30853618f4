"""Tables of the store (SQLAlchemy Core). Alembic migrations mirror this file."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from evolve.store.types import StoredJSON

__all__ = ["api_tokens", "audit", "campaigns", "elites", "events", "llm_calls", "metadata", "problems", "programs"]

metadata = MetaData()



problems = Table(
    "problems",
    metadata,
    Column("id", String(32), primary_key=True),  # content fingerprint
    Column("name", String(100), nullable=False),
    Column("config_text", Text, nullable=False),
    Column("initial_program", Text, nullable=False),
    Column("evaluator_source", Text, nullable=False),
    Column("extra_files", Text, nullable=False, default="{}"),
    Column("source", Text, nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(64), nullable=True),  # the API token (by name) that first submitted it
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("problem_id", String(32), ForeignKey("problems.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("config", StoredJSON, nullable=False),
    Column("iterations_target", Integer, nullable=False),
    Column("iterations_done", Integer, nullable=False, default=0),
    Column("valid_done", Integer, nullable=False, default=0),
    Column("best_program_id", String(32), nullable=True),
    Column("best_fitness", Float, nullable=True),
    Column("last_migration", Integer, nullable=False, default=0),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("owner", String(200), nullable=True),  # host:pid:token of the controller that claimed it
    Column("lease_expires", Float, nullable=True),  # the owner holds it until then, unless it renews (a heartbeat)
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("created_by", String(64), nullable=True),  # the API token (by name) that started it; None: the CLI
)

programs = Table(
    "programs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("campaign_id", String(32), ForeignKey("campaigns.id"), nullable=False),
    Column("parent_id", String(32), nullable=True),
    Column("island", Integer, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("iteration", Integer, nullable=False),
    Column("origin", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("score", Float, nullable=True),
    Column("fitness", Float, nullable=True),
    Column("metrics", StoredJSON, nullable=False),
    Column("features", StoredJSON, nullable=False),
    Column("artifacts", StoredJSON, nullable=False),
    Column("cell", String(64), nullable=True),
    Column("code", Text, nullable=False),
    Column("code_hash", String(32), nullable=False),  # evolve.novelty.code_key: equal for the same program, however formatted
    Column("diff", Text, nullable=True),
    Column("model", String(200), nullable=True),
    Column("template", String(64), nullable=True),
    Column("eval_seconds", Float, nullable=False, default=0.0),
    Column("llm_seconds", Float, nullable=False, default=0.0),
    Column("n_children", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("stage", String(40), nullable=True),  # the last cascade stage the evaluation reached
    Column("node", String(200), nullable=True),  # the cluster node that evaluated it (None: the controller's host)
    Column("parent_fitness", Float, nullable=True),  # the parent's, copied when recorded: "improved?" needs no join
    Column("mate_id", String(32), nullable=True),  # a crossover's second parent
    Column("applied", String(16), nullable=True),  # how the model's answer was applied (evolve.diff.Applied)
    # one program per iteration: a resumed campaign can never duplicate one
    UniqueConstraint("campaign_id", "iteration", name="uq_programs_campaign_iteration"),
    Index("ix_programs_island_iteration", "campaign_id", "island", "iteration"),
    Index("ix_programs_island_status_iteration", "campaign_id", "island", "status", "iteration"),
    Index("ix_programs_parent", "parent_id"),
    Index("ix_programs_code", "campaign_id", "code_hash"),  # dedup: is this program in the campaign already?
    # covers every column the campaign overview aggregates, so it never reads a program row (code, diff)
    Index("ix_programs_overview", "campaign_id", "iteration", "status", "fitness", "score", "island", "model", "template",
          "stage", "parent_fitness", "id"),
)

# best first, ties by iteration: a page of the best programs reads a few index entries instead of sorting the campaign
Index("ix_programs_best", programs.c.campaign_id, programs.c.fitness.desc(), programs.c.iteration)

elites = Table(
    "elites",
    metadata,
    Column("campaign_id", String(32), ForeignKey("campaigns.id"), nullable=False),
    Column("island", Integer, nullable=False),
    Column("cell", String(64), nullable=False),
    Column("program_id", String(32), ForeignKey("programs.id"), nullable=False),
    Column("fitness", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    PrimaryKeyConstraint("campaign_id", "island", "cell", name="pk_elites"),
    Index("ix_elites_fitness", "campaign_id", "island", "fitness"),
)

llm_calls = Table(
    "llm_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", String(32), ForeignKey("campaigns.id"), nullable=False),
    Column("iteration", Integer, nullable=True),
    Column("model", String(200), nullable=False),
    Column("template", String(64), nullable=True),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("latency_s", Float, nullable=False, default=0.0),
    Column("ok", Boolean, nullable=False),  # the request got an answer (possibly empty or cut off)
    Column("error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("outcome", String(24), nullable=False, default="ok"),  # CallOutcome
    Column("attempt", Integer, nullable=False, default=1),  # 1 for the first request of a proposal, 2 for its first retry...
    Index("ix_llm_calls_campaign", "campaign_id", "id"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", String(32), ForeignKey("campaigns.id"), nullable=False),
    Column("ts", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("data", StoredJSON, nullable=False),
    Index("ix_events_campaign", "campaign_id", "id"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("name", String(64), primary_key=True),  # kept after revocation: a name means one token, for the audit trail
    Column("role", String(8), nullable=False),  # evolve.server.access.Role
    Column("digest", String(64), nullable=False, unique=True),  # SHA-256 of the token, hex; the token itself is never stored
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("max_campaigns", Integer, nullable=True),  # running at once; None: no limit
    Column("max_evaluations", Integer, nullable=True),  # in flight at once, over its running campaigns
    Column("max_cost_usd", Float, nullable=True),  # model spend over all its campaigns
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("actor", String(64), nullable=False),  # a token's name, "EVOLVE_API_TOKEN", "loopback" or "cli"
    Column("action", String(32), nullable=False),
    Column("target", String(100), nullable=True),  # the campaign, problem or token acted on
    Column("outcome", String(16), nullable=False),  # ok, refused, failed
    Column("detail", Text, nullable=True),
    Index("ix_audit_actor", "actor", "id"),
)
