"""The store: campaigns, programs, elites, model calls and events (SQLAlchemy)."""

from evolve.store.queries import ArchiveCell, PageKey, ProgramOrder, StoredProblem
from evolve.store.rows import CampaignRow, EliteRow, LLMCallRecord, ModelStats, RecordOutcome
from evolve.store.store import Store, database_url

__all__ = [
    "ArchiveCell",
    "CampaignRow",
    "EliteRow",
    "LLMCallRecord",
    "ModelStats",
    "PageKey",
    "ProgramOrder",
    "RecordOutcome",
    "Store",
    "StoredProblem",
    "database_url",
]
