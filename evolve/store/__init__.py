"""The store: campaigns, programs, elites, model calls and events (SQLAlchemy)."""

from evolve.store.rows import CampaignRow, EliteRow, LLMCallRecord, ModelStats, RecordOutcome
from evolve.store.store import Store, database_url

__all__ = ["CampaignRow", "EliteRow", "LLMCallRecord", "ModelStats", "RecordOutcome", "Store", "database_url"]
