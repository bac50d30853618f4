"""The store: campaigns, programs, elites, model calls and events (SQLAlchemy)."""

from evolve.store.rows import CampaignRow, EliteRow, LLMCallRecord, RecordOutcome
from evolve.store.store import Store, database_url

__all__ = ["CampaignRow", "EliteRow", "LLMCallRecord", "RecordOutcome", "Store", "database_url"]
