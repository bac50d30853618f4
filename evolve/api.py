"""The Python API: run a campaign from a notebook, a script or a scheduler, and read what it found.

    import evolve

    problem = evolve.Problem.builtin("circle_packing")       # or evolve.Problem.from_folder("my_problem")
    config = evolve.CampaignConfig(iterations=20, models=[evolve.ModelSpec(name="mutator")])
    with evolve.run(problem, config, db="runs.db") as result:
        print(result.status, result.best.score)

``run`` blocks until the campaign ends (its iterations, a budget, ``max_wall_s``
or ``stop``); ``run_async`` is the same coroutine for callers with an event
loop of their own. ``run`` works inside a running loop too (a Jupyter cell):
it runs the campaign on a thread of its own then. ``open_campaign`` reads a
campaign already in a store (one the CLI ran, say). Every campaign is
committed as it goes, exactly as with ``evolve run``: an interrupted one is
continued with ``resume`` or ``evolve resume``.

The ask/tell primitives under ``run`` are ``evolve.Campaign``'s own: ``ask``,
``generate``, ``evaluate`` and ``tell`` (``step`` is the four for one proposal).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from evolve.campaign import Campaign, Progress
from evolve.config import CampaignConfig, parse_campaign_config
from evolve.errors import ConfigError, StoreError
from evolve.problem import Problem, resolve_problem
from evolve.scratch import scratch_dir
from evolve.store import ArchiveCell, Store
from evolve.values import CampaignStatus, Program

__all__ = ["CampaignResult", "open_campaign", "resume", "resume_async", "run", "run_async"]

_INTERRUPT_POLL_S = 0.2  # how soon a blocking run notices a Ctrl-C that another of its threads received

ProgressCallback = Callable[[Progress], Any]


@dataclass
class CampaignResult:
    """A campaign in a store, and what it found. Holds the store open: ``close()`` it, or use it in a ``with`` block."""

    store: Store
    id: str
    status: CampaignStatus
    stop_reason: str | None = None
    _closed: bool = field(default=False, repr=False)

    @property
    def problem(self) -> Problem:
        return self.store.load_problem(self.store.get_campaign(self.id).problem_id)

    @property
    def config(self) -> CampaignConfig:
        return self.store.get_campaign(self.id).config

    @property
    def best(self) -> Program | None:
        """The best valid program so far (the initial program until a child beats it)."""
        return self.store.best_program(self.id)

    def programs(self) -> list[Program]:
        """Every program of the campaign, valid or not, in iteration order."""
        return self.store.list_programs(self.id)

    def archive(self) -> list[ArchiveCell]:
        """The MAP-Elites archive: every filled cell of every island with its elite, by island then best first."""
        return self.store.archive_cells(self.id)

    def counts(self) -> dict[str, int]:
        """How many programs ended in each status (ok, invalid, timeout, duplicate, ...)."""
        return self.store.status_counts(self.id)

    def close(self) -> None:
        if not self._closed:
            self.store.close()
            self._closed = True

    def __enter__(self) -> CampaignResult:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _problem(problem: Problem | str | Path) -> Problem:
    return problem if isinstance(problem, Problem) else resolve_problem(str(problem))


def _config(config: CampaignConfig | None, settings: dict[str, Any]) -> CampaignConfig:
    if config is not None and settings:
        raise ConfigError(f"give either a CampaignConfig or settings ({', '.join(settings)}), not both: "
                          "config.model_copy(update={...}) changes a config")
    return config if config is not None else parse_campaign_config(settings, source="evolve.run settings")


async def run_async(problem: Problem | str | Path, config: CampaignConfig | None = None, *, db: str | Path = "evolve.db",
                    stop: asyncio.Event | None = None, on_progress: ProgressCallback | None = None,
                    **settings: Any) -> CampaignResult:
    """Create a campaign on ``problem`` (a ``Problem``, a built-in name or a folder) and run it to its end.

    ``config`` is the campaign's settings; instead, give them as keywords
    (``iterations=20, models=[{"name": "mutator"}]``), validated the same way.
    ``stop`` ends the run cleanly when set (what was told stays committed).

    Raises:
        ProblemError: when the problem is invalid or its initial program does not evaluate.
        ConfigError: for invalid settings.
        StoreError: when the store cannot be opened or written.
    """
    prob, cfg = _problem(problem), _config(config, settings)
    store = Store.open(str(db))
    try:
        with scratch_dir("campaign") as workdir:
            campaign = await Campaign.create(store, prob, cfg, workdir=workdir)
            status = await campaign.run(stop=stop, on_progress=on_progress)
    except BaseException:
        store.close()
        raise
    return CampaignResult(store, campaign.id, status, campaign.stop_reason)


async def resume_async(db: str | Path, campaign_id: str | None = None, *, iterations: int | None = None,
                       budgets: Mapping[str, float | int | None] | None = None, stop: asyncio.Event | None = None,
                       on_progress: ProgressCallback | None = None) -> CampaignResult:
    """Continue a campaign of the store at ``db`` (the most recent resumable one when ``campaign_id`` is None) to
    ``iterations`` in all; ``budgets`` (``max_cost_usd``, ``max_tokens``; None removes one) replace the stored ones.

    Raises:
        StoreError: when there is no such store or campaign, or another live process runs it.
        ConfigError: for a target below what is done, or an invalid budget.
    """
    store = _existing(db)
    try:
        store.mark_interrupted()
        campaign_id = campaign_id or _latest(store, resumable=True)
        with scratch_dir("campaign") as workdir:
            campaign = Campaign.resume(store, campaign_id, workdir=workdir, iterations=iterations, budgets=budgets)
            status = await campaign.run(stop=stop, on_progress=on_progress)
    except BaseException:
        store.close()
        raise
    return CampaignResult(store, campaign.id, status, campaign.stop_reason)


def _blocking(make: Callable[[asyncio.Event], Coroutine[Any, Any, CampaignResult]]) -> CampaignResult:
    """Run the campaign ``make(stop)`` starts to its end, on a loop of its own (on a thread of its own when this thread
    already runs one: a notebook). Ctrl-C sets ``stop``: the campaign stops cleanly, the stopped result comes back."""
    loops: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    started = threading.Event()

    async def main() -> CampaignResult:
        stop = asyncio.Event()
        loops.append((asyncio.get_running_loop(), stop))
        started.set()
        return await make(stop)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="evolve-run") as pool:
        future = pool.submit(asyncio.run, main())
        while True:
            try:
                # Waited in slices: the kernel may hand Ctrl-C to any of the campaign's threads, and Python then runs
                # its handler only when this (the main) thread next runs, which a wait without timeout never does
                # (measured: 2 hangs in 128 interrupted runs)
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    return future.result(timeout=_INTERRUPT_POLL_S)
            except KeyboardInterrupt:  # stop cleanly: what was told stays committed, the stopped result is returned
                started.wait()
                loop, stop = loops[0]
                loop.call_soon_threadsafe(stop.set)


def run(problem: Problem | str | Path, config: CampaignConfig | None = None, *, db: str | Path = "evolve.db",
        on_progress: ProgressCallback | None = None, **settings: Any) -> CampaignResult:
    """``run_async``, blocking until the campaign ends. Ctrl-C stops it cleanly (resumable) and returns the result."""
    return _blocking(lambda stop: run_async(problem, config, db=db, stop=stop, on_progress=on_progress, **settings))


def resume(db: str | Path, campaign_id: str | None = None, *, iterations: int | None = None,
           budgets: Mapping[str, float | int | None] | None = None,
           on_progress: ProgressCallback | None = None) -> CampaignResult:
    """``resume_async``, blocking until the campaign ends. Ctrl-C stops it cleanly and returns the result."""
    return _blocking(lambda stop: resume_async(db, campaign_id, iterations=iterations, budgets=budgets, stop=stop,
                                               on_progress=on_progress))


def _existing(db: str | Path) -> Store:
    """The store at ``db``, which must exist already (a typo must not create an empty database)."""
    spec = str(db)
    if "://" not in spec and spec != ":memory:" and not Path(spec).expanduser().exists():
        raise StoreError(f"no database at {spec}: start a campaign with evolve.run(problem, db={spec!r})")
    return Store.open(spec)


def _latest(store: Store, *, resumable: bool = False) -> str:
    rows = [r for r in store.list_campaigns() if not (resumable and r.status is CampaignStatus.FAILED)]
    if not rows:
        raise StoreError(f"no {'resumable ' if resumable else ''}campaign in {store.url}: start one with evolve.run(problem)")
    return rows[-1].id


def open_campaign(db: str | Path, campaign_id: str | None = None) -> CampaignResult:
    """A campaign already in the store at ``db`` (the most recent when ``campaign_id`` is None), to read.

    Raises:
        StoreError: when the store cannot be opened or has no such campaign.
    """
    store = _existing(db)
    try:
        row = store.get_campaign(campaign_id or _latest(store))
    except BaseException:
        store.close()
        raise
    return CampaignResult(store, row.id, row.status)

