"""The store: campaigns, programs, elites, model calls and events (SQLAlchemy)."""

from evolve.store.access import ROLES, AuditEntry, TokenRow
from evolve.store.aggregates import BestStep, IslandSummary, SeriesBucket
from evolve.store.queries import ArchiveCell, PageKey, ProgramOrder, StoredProblem
from evolve.store.rows import CampaignRow, EliteRow, LLMCallRecord, ModelStats, RecordOutcome
from evolve.store.store import Store, database_url

__all__ = [
    "ROLES",
    "ArchiveCell",
    "AuditEntry",
    "BestStep",
    "CampaignRow",
    "EliteRow",
    "IslandSummary",
    "LLMCallRecord",
    "ModelStats",
    "PageKey",
    "ProgramOrder",
    "RecordOutcome",
    "SeriesBucket",
    "Store",
    "StoredProblem",
    "TokenRow",
    "database_url",
]
