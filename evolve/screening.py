"""Before a child costs an evaluation: is it a program the campaign has (dedup), or nearly one of its elites (novelty)?

``Screen.check`` runs in the campaign's event loop. A child whose key matches
a program being evaluated at that moment waits for that evaluation's verdict
and is then judged against the store like any other, so it is a duplicate
only of a program that was really scored (one that timed out, or was
cancelled by a stop, leaves the child to be evaluated itself). The key is
registered before anything else awaits, so two identical children can never
both pass. ``release`` (from any thread) ends a registration when its program
is told, rejected or cancelled.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from evolve.config import SearchConfig
from evolve.novelty import Neighbour, code_key, nearest, shingles
from evolve.store import Store
from evolve.values import EvalStatus

__all__ = ["NOVELTY_POOL", "Rejection", "Screen"]

NOVELTY_POOL = 500  # elites of an island a child is compared with (the best)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a child is not evaluated: a DUPLICATE or NEAR_DUPLICATE, the message for later prompts, and artifacts."""

    status: EvalStatus
    error: str
    artifacts: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Held:
    proposal_id: str
    iteration: int
    done: asyncio.Event
    loop: asyncio.AbstractEventLoop


class Screen:
    """Dedup and the novelty filter for one campaign's children.

    ``exact``: the problem's score reads the program's text (an objective on
    ``code_length``, say), so only the same text is the same program.
    """

    def __init__(self, store: Store, campaign_id: str, search: SearchConfig, *, exact: bool = False) -> None:
        self._store = store
        self._campaign_id = campaign_id
        self._search = search
        self._exact = exact
        self._held: dict[str, _Held] = {}
        self._shingles: dict[str, frozenset[int]] = {}

    @property
    def exact(self) -> bool:
        """Whether only the same text counts as the same program (the score reads the text)."""
        return self._exact

    def key(self, code: str) -> str:
        return "=" + hashlib.sha256(code.encode("utf-8", errors="replace")).hexdigest()[:31] if self._exact else code_key(code)

    async def check(self, *, proposal_id: str, iteration: int, island: int, code: str, novelty: bool,
                    exclude: tuple[str, ...] = ()) -> Rejection | None:
        """A rejection, or None: the child is registered as being evaluated (``release`` it once told).

        ``exclude``: programs the child is not compared with for novelty (its parents: an edit is meant to resemble them).
        """
        key = await asyncio.to_thread(self.key, code) if self._search.dedup else ""
        if self._search.dedup:
            while (held := self._held.get(key)) is not None and held.proposal_id != proposal_id:
                await held.done.wait()  # the same program is being evaluated: its verdict decides
            self._held[key] = _Held(proposal_id, iteration, asyncio.Event(), asyncio.get_running_loop())
        try:
            rejection = await asyncio.to_thread(self._judge, code, island=island, novelty=novelty, exclude=exclude)
        except BaseException:
            self.release(code, proposal_id)
            raise
        if rejection is not None:
            self.release(code, proposal_id)
        return rejection

    def release(self, code: str, proposal_id: str) -> None:
        """End ``proposal_id``'s registration of ``code`` (any thread; nothing when it holds none)."""
        if not self._search.dedup:
            return
        key = self.key(code)
        held = self._held.get(key)
        if held is not None and held.proposal_id == proposal_id:
            del self._held[key]
            held.loop.call_soon_threadsafe(held.done.set)

    def _judge(self, code: str, *, island: int, novelty: bool, exclude: tuple[str, ...]) -> Rejection | None:
        if self._search.dedup and (same := self._store.same_program(self._campaign_id, code, exact=self._exact)) is not None:
            return Rejection(EvalStatus.DUPLICATE,
                             f"the change reproduced program {same[0]} (iteration {same[1]}) exactly, up to formatting and "
                             "comments; it was not evaluated again", {"duplicate_of": same[0]})
        if novelty:
            threshold = self._search.novelty.threshold
            close = self._nearest(island, code, exclude)
            if close is not None and close.similarity >= threshold:
                return Rejection(EvalStatus.NEAR_DUPLICATE,
                                 f"too similar to program {close.program_id}, an elite of island {island} (token "
                                 f"similarity {close.similarity:.3f}, threshold {threshold:g}); it was not evaluated",
                                 {"nearest": close.program_id, "similarity": f"{close.similarity:.4f}"})
        return None

    def _nearest(self, island: int, code: str, exclude: tuple[str, ...]) -> Neighbour | None:
        ids = [e.program_id for e in self._store.elites(self._campaign_id, island)[:NOVELTY_POOL]
               if e.program_id not in exclude]
        missing = [pid for pid in ids if pid not in self._shingles]
        loaded = self._store.get_programs(missing)
        self._shingles = {pid: self._shingles[pid] if pid in self._shingles else shingles(loaded[pid].code)
                          for pid in ids if pid in self._shingles or pid in loaded}  # only current elites stay cached
        return nearest(shingles(code), ((pid, self._shingles[pid]) for pid in ids if pid in self._shingles))
