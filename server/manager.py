"""Campaigns running in the server's background, independent of any client connection.

Each running campaign is an asyncio task in the server's event loop; all of
them share one cap on concurrent evaluations. A campaign is claimed in the
store under this process (host:pid), so when the server is killed the next
start finds it still marked running by a process that is gone and marks it
interrupted; ``resume`` continues it from the store. On a clean shutdown the
running campaigns are stopped and marked interrupted too, so a restart shows
what was cut short and a user stop stays a user stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from evolve.campaign import Campaign
from evolve.config import CampaignConfig
from evolve.errors import EvolveError, StoreError
from evolve.problem import Problem
from evolve.scratch import owned_tempdir
from evolve.store import Store
from evolve.values import CampaignStatus

__all__ = ["CampaignManager", "ConflictError", "Quota", "QuotaError"]

log = logging.getLogger("evolve.server")

_STOP_WAIT_S = 60.0


class ConflictError(EvolveError):
    """The request does not fit the campaign's state (stop what is not running, resume what runs)."""


class QuotaError(EvolveError):
    """A token's limit would be exceeded (answered 429, naming the limit)."""


@dataclass(frozen=True, slots=True)
class Quota:
    """Whose campaign it is (a token's name; None: the CLI's) and that token's limits (None: none)."""

    creator: str | None = None
    max_campaigns: int | None = None
    max_evaluations: int | None = None
    max_cost_usd: float | None = None


@dataclass
class _Running:
    campaign: Campaign
    creator: str | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[CampaignStatus] | None = None
    shutting_down: bool = False


class CampaignManager:
    """Starts, stops and resumes campaigns of one store inside the running event loop."""

    def __init__(self, store: Store, *, max_evaluations: int, workdir: Path | None, sandbox: str) -> None:
        self.store = store
        self.sandbox = sandbox
        self.slots = asyncio.Semaphore(max_evaluations)  # every evaluation of this server, first ones included
        self._own_workdir = workdir is None
        self.workdir = owned_tempdir("server") if workdir is None else workdir
        self._running: dict[str, _Running] = {}
        self._resuming: set[str] = set()
        # admitted, not yet running (evaluating the initial program, claiming): counted against quotas meanwhile
        self._reserved: dict[str, tuple[str, int, int, float]] = {}  # key: (creator, campaigns, evaluations, may spend)
        self._admitted = 0

    def reconcile(self) -> list[str]:
        """Mark campaigns left running by a process that is gone as interrupted; returns their ids."""
        found = self.store.mark_interrupted()
        for cid in found:
            log.warning("campaign %s was interrupted (its server stopped while it ran); resume it with POST /campaigns/%s/resume",
                        cid, cid)
        return found

    def is_running(self, campaign_id: str) -> bool:
        return campaign_id in self._running

    def _campaign_dir(self, campaign_id: str) -> Path:
        return self.workdir / campaign_id

    # ----------------------------------------------------------------- quotas
    def _usage(self, creator: str) -> tuple[int, int, float]:
        """What ``creator``'s running and admitted campaigns hold now: campaigns, evaluation slots, and cost they may
        still spend under their caps."""
        campaigns = evaluations = 0
        committed = 0.0
        for cid, running in self._running.items():
            if running.creator == creator:
                config = running.campaign.config
                campaigns += 1
                evaluations += config.eval_concurrency
                if config.max_cost_usd is not None:
                    committed += max(0.0, config.max_cost_usd - self.store.get_campaign(cid).cost_usd)
        for who, count, slots, may_spend in self._reserved.values():
            if who == creator:
                campaigns += count
                evaluations += slots
                committed += may_spend
        return campaigns, evaluations, committed

    def _admit(self, key: str, quota: Quota, config: CampaignConfig, *, spent: float = 0.0) -> float | None:
        """Check ``quota`` for one more running campaign of ``config`` (which has spent ``spent`` already) and reserve
        its share under ``key``; returns its cost cap: its own, lowered to what the token has left. Synchronous, so two
        requests admitted together are counted one after the other.

        Raises:
            QuotaError: naming the limit that would be exceeded.
        """
        if quota.creator is None:
            return config.max_cost_usd
        who = quota.creator
        campaigns, evaluations, committed = self._usage(who)
        if quota.max_campaigns is not None and campaigns + 1 > quota.max_campaigns:
            raise QuotaError(f"limit max_campaigns: token '{who}' may run {quota.max_campaigns} campaign(s) at once and "
                             f"runs {campaigns}; stop one first, or ask an admin for a higher limit")
        if quota.max_evaluations is not None and evaluations + config.eval_concurrency > quota.max_evaluations:
            raise QuotaError(f"limit max_evaluations: token '{who}' may have {quota.max_evaluations} evaluations in "
                             f"flight and its running campaigns hold {evaluations}; ask for eval_concurrency "
                             f"{max(0, quota.max_evaluations - evaluations)} or less")
        cap = config.max_cost_usd
        if quota.max_cost_usd is not None:
            left = quota.max_cost_usd - self.store.spent_by(who) - committed
            if left <= 0:
                raise QuotaError(f"limit max_cost_usd: token '{who}' has spent or committed all of its "
                                 f"${quota.max_cost_usd:g} for model calls; ask an admin for a higher limit")
            cap = spent + left if cap is None else min(cap, spent + left)
        self._reserved[key] = (who, 1, config.eval_concurrency, 0.0 if cap is None else max(0.0, cap - spent))
        return cap

    @contextlib.asynccontextmanager
    async def evaluation(self, quota: Quota) -> AsyncIterator[None]:
        """Hold one of this server's evaluation slots for a one-off evaluation (a submitted problem's check), counted
        against the token's ``max_evaluations`` meanwhile.

        Raises:
            QuotaError: when the token's evaluations in flight are at its limit.
        """
        self._admitted += 1
        key = f"eval-{self._admitted}"
        if quota.creator is not None:
            _campaigns, evaluations, _committed = self._usage(quota.creator)
            if quota.max_evaluations is not None and evaluations + 1 > quota.max_evaluations:
                raise QuotaError(f"limit max_evaluations: token '{quota.creator}' may have {quota.max_evaluations} "
                                 f"evaluations in flight and holds {evaluations}; wait for one to end")
            self._reserved[key] = (quota.creator, 0, 1, 0.0)
        try:
            async with self.slots:
                yield
        finally:
            self._reserved.pop(key, None)

    async def start(self, problem: Problem, config: CampaignConfig, *, quota: Quota | None = None) -> str:
        """Evaluate the initial program, create the campaign and run it in the background; returns its id.

        ``quota``: whose campaign it is, and that token's limits.

        Raises:
            ProblemError: when the initial program does not evaluate OK.
            SandboxError: when the sandbox cannot run here.
            QuotaError: when the token's limits do not allow it.
        """
        quota = quota or Quota()
        self._admitted += 1
        key = f"new-{self._admitted}"
        cap = self._admit(key, quota, config)
        config = config.model_copy(update={"sandbox": self.sandbox, "max_cost_usd": cap})
        scratch: Path | None = None
        try:
            scratch = Path(tempfile.mkdtemp(dir=self.workdir, prefix="new-"))
            async with self.slots:
                campaign = await Campaign.create(self.store, problem, config, workdir=scratch, created_by=quota.creator)
        except BaseException:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        finally:
            self._reserved.pop(key, None)
        self._launch(campaign, quota.creator)
        return campaign.id

    async def resume(self, campaign_id: str, *, iterations: int | None, budgets: dict[str, float | int | None],
                     quota: Quota | None = None, confine: bool = False) -> None:
        """Continue a stopped, interrupted, finished or budget-spent campaign in the background.

        ``quota``: the limits of the token that started it (its campaigns are counted against them). ``confine``: its
        evaluator runs sandboxed from now on, whatever its stored config says (one started before submitted evaluators
        were sandboxed).

        Raises:
            ConflictError: when it is running already.
            StoreError: when it is unknown or another live process runs it.
            ConfigError: when a new budget or target is invalid.
        """
        if campaign_id in self._running or campaign_id in self._resuming:
            raise ConflictError(f"campaign {campaign_id} is already running")
        row = self.store.get_campaign(campaign_id)
        if (holder := self.store.holder(campaign_id)) is not None:
            raise ConflictError(f"campaign {campaign_id} is run by another process ({holder}); stop it there first, "
                                "or resume it once its lease has expired")
        if iterations is not None and iterations < row.iterations_done:
            raise ConflictError(f"campaign {campaign_id} has done {row.iterations_done} iterations; "
                                f"a new target must be at least that (got {iterations})")
        quota = quota or Quota()
        asked = budgets.get("max_cost_usd", row.config.max_cost_usd)  # None here removes the campaign's own cap
        config = row.config.model_copy(update={"max_cost_usd": asked if asked is None else float(asked)})
        cap = self._admit(campaign_id, quota, config, spent=row.cost_usd)
        if quota.max_cost_usd is not None:  # the token's limit holds whatever the request asked for
            budgets = {**budgets, "max_cost_usd": cap}
        if confine and not row.config.evaluator_sandbox:
            budgets = {**budgets, "evaluator_sandbox": True}
        self._resuming.add(campaign_id)  # a second request meanwhile is refused here, before its claim
        try:
            campaign = await asyncio.to_thread(
                Campaign.resume, self.store, campaign_id, workdir=self._campaign_dir(campaign_id), iterations=iterations,
                budgets=budgets or None,
            )
        finally:
            self._resuming.discard(campaign_id)
            self._reserved.pop(campaign_id, None)
        self._launch(campaign, row.created_by)

    def _launch(self, campaign: Campaign, creator: str | None) -> None:
        running = _Running(campaign, creator)
        self._running[campaign.id] = running
        running.task = asyncio.create_task(self._drive(running), name=f"campaign-{campaign.id}")

    async def _drive(self, running: _Running) -> CampaignStatus:
        cid = running.campaign.id
        status = CampaignStatus.FAILED
        try:
            status = await running.campaign.run(stop=running.stop, shared_eval_slots=self.slots)
            log.info("campaign %s ended: %s", cid, status.value)
        except EvolveError as exc:  # recorded as FAILED with its message by the campaign itself
            log.warning("campaign %s failed: %s", cid, exc)
        except Exception:
            log.exception("campaign %s failed unexpectedly", cid)
            with contextlib.suppress(EvolveError):  # only while the campaign is still this server's own
                await asyncio.to_thread(self.store.set_status, cid, CampaignStatus.FAILED, owner=running.campaign.owner,
                                        error="internal error in the server; see its log, then resume the campaign")
        finally:
            if running.shutting_down:
                with contextlib.suppress(EvolveError):
                    await asyncio.to_thread(self.store.set_status, cid, CampaignStatus.INTERRUPTED,
                                            owner=running.campaign.owner)
            if self._running.get(cid) is running:
                del self._running[cid]
        return status

    async def stop(self, campaign_id: str) -> None:
        """Stop a running campaign and wait until what was in flight is cancelled and the status recorded.

        Raises:
            ConflictError: when it is not running in this server.
            StoreError: when it is unknown.
        """
        running = self._running.get(campaign_id)
        if running is None:
            row = self.store.get_campaign(campaign_id)
            if (holder := self.store.holder(campaign_id)) is not None:
                raise ConflictError(f"campaign {campaign_id} is run by another process ({holder}); stop it there")
            raise ConflictError(f"campaign {campaign_id} is not running (status: {row.status.value})")
        running.stop.set()
        await self._wait(running)

    async def _wait(self, running: _Running) -> None:
        assert running.task is not None
        try:
            await asyncio.wait_for(asyncio.shield(running.task), timeout=_STOP_WAIT_S)
        except TimeoutError as exc:
            running.task.cancel()
            raise StoreError(f"campaign {running.campaign.id} did not stop within {_STOP_WAIT_S:g} s; it was cancelled") from exc

    async def shutdown(self) -> None:
        """Stop every running campaign (they become interrupted, resumable) and remove the temporary work folder."""
        for running in list(self._running.values()):
            running.shutting_down = True
            running.stop.set()
        for running in list(self._running.values()):
            with contextlib.suppress(EvolveError):
                await self._wait(running)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
