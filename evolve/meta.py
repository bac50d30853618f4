"""Meta-summaries: every so many proposals of an island, the model says what worked; later prompts read it.

The summary (``prompts/meta.j2``) is asked of the proposal's own model after
its child is told, so nothing a summary does can cost an evaluated program.
It becomes a ``meta_summary`` event (the dashboard shows each island's newest)
and the notes of that island's later prompts, quoted as a model's words. Its
requests are recorded with template ``meta``. Never for the mutator, never in
the baseline strategies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from evolve.archive import Archive
from evolve.config import CampaignConfig, ModelSpec
from evolve.errors import EvolveError
from evolve.llm import CallAttempt, CallFailedError, Ensemble
from evolve.prompting import PromptBuilder
from evolve.store import LLMCallRecord, Store
from evolve.store.leases import LeaseLostError

__all__ = ["META_EVERY", "Notes"]

META_EVERY = 25  # proposals of an island between meta-summaries, for language models
_NOTE_CHARS = 2000  # of a meta-summary, kept from its start
_log = logging.getLogger("evolve.campaign")


class Notes:
    """One campaign's meta-summaries: the newest per island, when the next is due, and asking for it."""

    def __init__(self, store: Store, campaign_id: str, config: CampaignConfig, *, prompts: PromptBuilder,
                 ensemble: Ensemble, archive: Archive, owner: str) -> None:
        self.store, self.id, self.config = store, campaign_id, config
        self.prompts, self.ensemble, self.archive, self.owner = prompts, ensemble, archive, owner
        self._notes = self._load()

    def get(self, island: int) -> str | None:
        return self._notes.get(island)

    def _load(self) -> dict[int, str]:
        notes: dict[int, str] = {}
        after = 0
        while batch := self.store.events(self.id, after_id=after, kind="meta_summary"):
            for event in batch:
                notes[int(event["data"]["island"])] = str(event["data"]["text"])
            after = batch[-1]["id"]
        return notes

    def due(self, *, island: int, iteration: int, model: ModelSpec) -> bool:
        every = self.config.search.meta_every
        if self.config.search.strategy != "evolve":  # the baselines stay plain: nothing learned goes into their prompts
            return False
        if every is None:
            every = 0 if model.name == "mutator" else META_EVERY
        # island j proposes iterations j, j + I, j + 2I, ... (island 0 from I: iteration 0 is the initial program)
        islands = self.config.island_count
        count = (iteration - island) // islands + (island > 0)
        return every > 0 and count % every == 0

    async def summarise(self, *, island: int, iteration: int, spec: ModelSpec, seed: int) -> tuple[CallAttempt, ...]:
        """Ask ``spec`` what the island's best programs and failures have in common; returns the requests made
        (recorded, template 'meta'). A summary that fails for any reason but a lost lease is logged and skipped: it
        is never worth a campaign."""
        attempts: tuple[CallAttempt, ...] = ()
        try:
            elites = (await asyncio.to_thread(self.store.elites, self.id, island))[:3]
            best = list((await asyncio.to_thread(self.store.get_programs, [e.program_id for e in elites])).values())
            failures = await asyncio.to_thread(self.archive.failures, island)
            messages = self.prompts.meta(best=sorted(best, key=lambda p: -(p.fitness or 0.0)), failures=failures,
                                         notes=self._notes.get(island))
            try:
                completion = await self.ensemble.model_for(spec).complete(
                    messages, temperature=spec.temperature, seed=seed + 7, max_tokens=spec.max_tokens)
            except CallFailedError as exc:
                attempts = exc.attempts
                _log.warning("campaign %s: the meta-summary of island %d failed: %s", self.id, island, exc)
            else:
                attempts = completion.attempts
                text = completion.text.strip()[:_NOTE_CHARS]
                if text:
                    await asyncio.to_thread(self.store.add_event, self.id, "meta_summary", {
                        "island": island, "iteration": iteration, "model": spec.name, "text": text}, owner=self.owner)
                    self._notes[island] = text
        except LeaseLostError:
            raise
        except Exception as exc:  # a store hiccup, a template or a transport that broke oddly: this summary only
            _log.warning("campaign %s: the meta-summary of island %d failed: %s: %s", self.id, island, type(exc).__name__, exc)
        finally:
            calls = [LLMCallRecord(model=a.model, template="meta", prompt_tokens=a.prompt_tokens,
                                   completion_tokens=a.completion_tokens, cost_usd=a.cost_usd, latency_s=a.latency_s,
                                   ok=a.outcome.answered, error=a.error, outcome=a.outcome.value, attempt=n)
                     for n, a in enumerate(attempts, start=1)]
            with contextlib.suppress(EvolveError):  # accounted if the store takes it; a lost lease surfaces next tell
                await asyncio.shield(asyncio.to_thread(self.store.record_calls, self.id, iteration, calls, owner=self.owner))
        return attempts
