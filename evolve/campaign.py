"""The campaign: ask → generate → evaluate → tell, with budgets, concurrency and resume.

``ask`` samples a parent and builds a prompt; ``generate`` calls a model and
turns its answer into a child program (or a recorded failure); ``evaluate``
(``Campaign.evaluate``) runs the trusted evaluator on the child; ``tell``
commits the result; ``step`` is generate, evaluate and tell for one asked
proposal (plus the island's meta-summary when one is due). Proposals are
matched by id, so model calls and evaluations may finish in any order.
``run`` is only a loop over those primitives, with ``Budget`` saying when
the money or tokens are spent; a caller may drive them by hand.

Every iteration is committed in one transaction, so ``kill -9`` at any moment
loses at most the proposals in flight; ``Campaign.resume`` continues from the
store alone (the initial program is never re-added, counters continue).

Nothing a model or a candidate produces can stop the loop: every known way an
answer or a program can be bad ends, where it happens, in a recorded non-OK
program with a message (``evolve.diff``, ``Evaluator.evaluate``). As a last
net, an unexpected exception from generating or evaluating one proposal is
recorded as that proposal's failure, naming the exception, and logged with
its traceback; only a broken sandbox (``SandboxError``), the store and
cancellation still end a run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from evolve.archive import Archive
from evolve.bandit import selector
from evolve.config import CampaignConfig, ModelSpec, auto_islands, parse_campaign_config
from evolve.cvt import Centroids
from evolve.diff import Applied, apply_answer
from evolve.errors import ConfigError, DiffError, EvolveError, LLMError, ProblemError, SandboxError
from evolve.evaluators.runner import Evaluator
from evolve.evaluators.validate import clip
from evolve.llm import CallAttempt, CallFailedError, Ensemble
from evolve.llm.embedded import prepare_embedded
from evolve.llm.grammar import choose_focus
from evolve.meta import Notes
from evolve.novelty import code_key
from evolve.problem import Problem
from evolve.prompting import PromptBuilder
from evolve.proposals import Budget, Child, Progress, Proposal
from evolve.screening import Screen
from evolve.store import CampaignRow, LLMCallRecord, RecordOutcome, Store
from evolve.store.leases import LEASE_S, LeaseLostError, new_owner
from evolve.values import CampaignStatus, EvalResult, EvalStatus, Origin, Program

__all__ = ["Budget", "Campaign", "Child", "Progress", "Proposal"]

_MAX_ANSWER_CHARS = 20_000
_ORIGINS = {"diff": Origin.DIFF, "rewrite": Origin.REWRITE, "crossover": Origin.CROSSOVER}
_log = logging.getLogger("evolve.campaign")


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


def _child_code(parent: str, mode: str, answer: str) -> tuple[str, Applied]:
    """The child program an answer makes of ``parent``, and how the answer was applied.

    Raises:
        DiffError: when it makes none.
    """
    if not answer.strip():
        raise DiffError("the model's answer is empty")
    return apply_answer(parent, mode, answer)


def _unchanged(parent: str, child: str, *, exact: bool) -> str | None:
    """Why ``child`` is its parent again (the same text, or unless ``exact`` the same program reformatted), or None."""
    if child == parent:
        return "the answer reproduces the current program unchanged: make one concrete change to its code"
    if not exact and code_key(child) == code_key(parent):
        return ("the answer only reformats the current program (layout, comments or literals' spelling): "
                "make one concrete change to what it computes")
    return None


class Campaign:
    """One campaign over one problem, driven through the store."""

    def __init__(self, store: Store, row: CampaignRow, problem: Problem, *, workdir: Path,
                 evaluator: Evaluator | None = None, lease_s: float = LEASE_S) -> None:
        self.store = store
        self.id = row.id
        assert row.owner is not None, "a Campaign is made from its claimed row"
        self.owner = row.owner  # every write names it: refused once another controller took the campaign over
        self.lease_s = lease_s
        self.problem = problem
        self.config = row.config
        self.archive = Archive(store, row.id, axes=list(problem.config.features), sampling=self.config.sampling,
                               cells=self.config.search.archive)
        self.prompts = PromptBuilder(problem.config)
        self.ensemble = Ensemble(self.config.models, default_in_flight=self.config.llm_concurrency,
                                 priced=self.config.max_cost_usd is not None)
        # a bandit's state is the store's counts: a resumed campaign goes on from them
        learned = store.model_stats(row.id) if self.config.search.selection == "bandit" else []
        self.selector = selector(self.config.models, self.config.search, learned)
        text_features = {"code_length", "line_count"}  # the score may read the text: only the same text is the same program
        exact = any(o.metric in text_features for o in problem.config.pareto_objectives())
        self.screen = Screen(store, row.id, self.config.search, exact=exact)
        self._cells = threading.Lock()
        self.archive.centroids = self._load_centroids()
        self.notes = Notes(store, row.id, self.config, prompts=self.prompts, ensemble=self.ensemble, archive=self.archive,
                           owner=self.owner)
        self.evaluator = evaluator or Evaluator(problem, problem_dir=workdir / "problem", sandbox=self.config.sandbox,
                                                executor=self.config.executor, slots=self.config.eval_concurrency,
                                                ray_address=self.config.ray_address,
                                                confine_evaluator=self.config.evaluator_sandbox)
        self._next_iteration = store.max_iteration(row.id) + 1
        # what a stop or a kill cut off is proposed again first, with the same seed and island
        self._missing = store.missing_iterations(row.id)
        self._pending: dict[str, Proposal] = {}
        self._migrated_upto = 0
        self.target = row.iterations_target
        self.stop_reason: str | None = None

    # ------------------------------------------------------------ lifecycle
    @classmethod
    async def create(cls, store: Store, problem: Problem, config: CampaignConfig, *, workdir: Path,
                     lease_s: float = LEASE_S, created_by: str | None = None) -> Campaign:
        """Evaluate the initial program, then create the campaign in one transaction (``created_by``: the API
        token that starts it, recorded in that transaction).

        Raises:
            ProblemError: when the initial program does not evaluate OK.
            ConfigError: when an embedded model's file is missing or not its pinned SHA-256 (nothing is created).
        """
        # off the event loop: the first use of a packaged model assembles and hashes about a gigabyte
        await asyncio.to_thread(prepare_embedded, [s.name for s in config.models if s.in_process],
                                show_progress=sys.stderr.isatty())
        evaluator = Evaluator(problem, problem_dir=workdir / "problem", sandbox=config.sandbox, executor=config.executor,
                              slots=config.eval_concurrency, ray_address=config.ray_address,
                              confine_evaluator=config.evaluator_sandbox)
        # 'auto' settings are decided once, for good: the sandbox, and the islands (the budget may grow on resume)
        config = config.model_copy(update={"sandbox": evaluator.backend, "islands": config.islands or auto_islands(config.iterations)})
        try:
            result = await evaluator.evaluate(problem.initial_program)
        except BaseException:
            await evaluator.close()
            raise
        score = result.objective(problem.config.objective.metric)
        if score is None:
            await evaluator.close()
            why = result.artifacts.get("error", "no message")
            raise ProblemError(f"the initial program of '{problem.name}' does not evaluate: {result.status.value}: {why}")
        problem_id = store.save_problem(problem)
        campaign_id = uuid.uuid4().hex[:12]
        cell = Archive(store, campaign_id, axes=list(problem.config.features), sampling=config.sampling,
                       cells=config.search.archive).cell(result.features)
        initial = Program(
            id=_new_id(), campaign_id=campaign_id, code=problem.initial_program, parent_id=None, island=0,
            generation=0, iteration=0, origin=Origin.INITIAL, status=EvalStatus.OK, score=score,
            fitness=problem.config.objective.fitness(score), metrics=result.metrics, features=result.features,
            artifacts=result.artifacts, cell=cell, eval_seconds=result.duration_s, created_at=time.time(),
            stage=result.stage, node=result.node,
        )
        store.create_campaign(
            campaign_id=campaign_id, problem_id=problem_id, config=config,
            initial=initial, islands=config.island_count, created_by=created_by,
        )
        row = store.claim_campaign(campaign_id, new_owner(), target=None, lease_s=lease_s)
        try:
            return cls(store, row, problem, workdir=workdir, evaluator=evaluator, lease_s=lease_s)
        except BaseException as exc:  # a model that cannot be made (a broken plug-in): recorded failed, workers stopped
            await evaluator.close()
            assert row.owner is not None
            with contextlib.suppress(EvolveError):
                store.set_status(campaign_id, CampaignStatus.FAILED, error=str(exc), owner=row.owner)
            raise

    @classmethod
    def resume(
        cls, store: Store, campaign_id: str, *, workdir: Path, iterations: int | None = None,
        budgets: Mapping[str, float | int | None] | None = None, lease_s: float = LEASE_S,
    ) -> Campaign:
        """Continue a campaign from the store alone.

        ``iterations`` sets a new total; ``budgets`` (``max_cost_usd``,
        ``max_tokens``; None removes one) replace the stored budgets. What was
        already spent counts against them.

        Raises:
            StoreError: when the campaign is unknown or another live process runs it.
            ConfigError: when a budget value is invalid.
        """
        row = store.get_campaign(campaign_id)
        if iterations is not None and iterations < row.iterations_done:
            raise ConfigError(f"the new target of {iterations} iterations is below the {row.iterations_done} already done")
        problem = store.load_problem(row.problem_id)
        config = None
        if budgets:
            config = parse_campaign_config({**row.config.model_dump(mode="json"), **budgets}, source="budgets")
        row = store.claim_campaign(campaign_id, new_owner(), target=iterations, config=config, lease_s=lease_s)
        try:
            return cls(store, row, problem, workdir=workdir, lease_s=lease_s)
        except BaseException:  # its evaluator could not be set up (no cluster, no sandbox): claimed, never run
            assert row.owner is not None
            with contextlib.suppress(EvolveError):
                store.set_status(campaign_id, CampaignStatus.INTERRUPTED, owner=row.owner)
            raise

    # ------------------------------------------------------------- ask/tell
    def ask(self) -> Proposal:
        """Sample a parent for the next iteration and build its prompt."""
        if self._missing:
            iteration = self._missing.pop(0)
        else:
            iteration = self._next_iteration
            self._next_iteration += 1
        rng = np.random.default_rng([self.config.seed, iteration])
        island = iteration % self.config.island_count
        search = self.config.search
        sample = self.archive.sample(island, rng, strategy=search.strategy)
        arm = self.selector.choose(rng)
        mate = None
        if arm.kind == "crossover":
            if search.strategy == "evolve":
                mate = self.archive.mate(island, sample.parent, rng, islands=self.config.island_count)
            if mate is None:  # nothing to cross with yet (or a baseline strategy): the model's plain kind
                arm = self.selector.fallback(arm)
        spec = self.config.models[arm.model]
        # a small model's one edit goes where the seed says, not always to the most salient lines (evolve.llm.grammar)
        focus = choose_focus(sample.parent.code, rng) if spec.prompt_style == "compact" and arm.kind == "diff" else None
        proposal = Proposal(
            id=_new_id(), iteration=iteration, island=island, sample=sample, model=spec, kind=arm.kind, mate=mate,
            messages=self.prompts.build(sample, mode=arm.kind, mate=mate, notes=self.notes.get(island), style=spec.prompt_style,
                                        focus=focus),
            seed=int(rng.integers(2**62)),
        )
        self._pending[proposal.id] = proposal
        return proposal

    async def generate(self, proposal: Proposal) -> Child:
        """Ask the proposal's model and turn its answer into a child program (or a recorded failure).

        Never raises for anything a model answers: a bad answer is a
        DIFF_FAILED child whose error says what was wrong (see ``evolve.diff``
        for the bounds on each step). A child the campaign has seen already
        (dedup) or one too like an elite of its island (the novelty filter)
        comes back as a DUPLICATE or NEAR_DUPLICATE failure naming that
        program, so it is never evaluated; with ``novelty.action: retry`` the
        model first hears which program it came too close to and answers once more.
        """
        spec = proposal.model
        messages = proposal.messages
        attempts: tuple[CallAttempt, ...] = ()
        retried = False
        while True:
            try:
                completion = await self.ensemble.model_for(spec).complete(
                    messages, temperature=spec.temperature, seed=proposal.seed + retried, max_tokens=spec.max_tokens
                )
            except CallFailedError as exc:
                return Child(code=None, answer="", completion=None, failure=EvalStatus.LLM_FAILED, error=str(exc),
                             attempts=attempts + exc.attempts, fatal=exc.fatal)
            attempts += completion.attempts
            mode = "rewrite" if proposal.kind == "rewrite" else "diff"
            try:
                # off the event loop: compiling a cut-off answer's prefixes is CPU work other proposals must not wait on
                code, applied = await asyncio.to_thread(_child_code, proposal.sample.parent.code, mode, completion.text)
            except DiffError as exc:
                error = str(exc)
            except Exception as exc:  # the LLM boundary: an answer no check foresaw is still this proposal's failure
                _log.exception("applying the answer of iteration %d failed unexpectedly", proposal.iteration)
                error = f"turning the model's answer into a program failed: {type(exc).__name__}: {exc}"
            else:
                same = _unchanged(proposal.sample.parent.code, code, exact=self.screen.exact)
                if same is not None:  # the model's answer, not a failure of the path: never evaluated, told next time
                    return Child(code=None, answer=completion.text, completion=completion, failure=EvalStatus.UNCHANGED,
                                 error=same, attempts=attempts, applied=applied)
                parents = (proposal.sample.parent.id, *((proposal.mate.id,) if proposal.mate else ()))
                rejected = await self.screen.check(proposal_id=proposal.id, iteration=proposal.iteration,
                                                   island=proposal.island, code=code, exclude=parents,
                                                   novelty=self._novelty_on(spec))
                if rejected is None:
                    return Child(code=code, answer=completion.text, completion=completion, attempts=attempts,
                                 applied=applied)
                status, error, artifacts = rejected.status, rejected.error, rejected.artifacts
                if status is EvalStatus.NEAR_DUPLICATE and self.config.search.novelty.action == "retry" and not retried:
                    retried = True
                    messages = [*proposal.messages, {"role": "assistant", "content": completion.text[:_MAX_ANSWER_CHARS]},
                                {"role": "user", "content": f"That change is not new enough: {error}. Propose a different, "
                                                            "more substantial change, in the same answer format."}]
                    continue
                return Child(code=code, answer=completion.text, completion=completion, failure=status, error=error,
                             attempts=attempts, artifacts=artifacts, applied=applied)
            return Child(code=None, answer=completion.text, completion=completion, failure=EvalStatus.DIFF_FAILED,
                         error=error, attempts=attempts)

    # ------------------------------------------------------------ screening
    def _novelty_on(self, spec: ModelSpec) -> bool:
        """The novelty filter applies: asked for, or 'auto' with a language model in the evolve strategy (the baselines
        are plain repeated sampling and hill-climbing; the mutator's one-token edits would all be near-duplicates)."""
        enabled = self.config.search.novelty.enabled
        if enabled == "auto":
            return spec.name != "mutator" and self.config.search.strategy == "evolve"
        return enabled == "on"

    # -------------------------------------------------------------- CVT cells
    def _load_centroids(self) -> Centroids | None:
        if not self.archive.cvt:
            return None
        chosen = self.store.events(self.id, kind="cvt_centroids", limit=1)
        return Centroids.from_json(chosen[0]["data"]["centroids"]) if chosen else None

    def _choose_centroids(self) -> None:
        """Once the warm-up's valid programs are in: learn the centroids, fix them, re-file the archive (evolve.cvt)."""
        cells = self.config.search.archive
        if self.store.get_campaign(self.id).valid_done < cells.warmup:
            return
        names = [axis.name for axis in self.archive.axes]
        samples = [p.features for p in self.store.list_programs(self.id) if p.status is EvalStatus.OK]
        if len({tuple(s.get(n, 0.0) for n in names) for s in samples}) < 2:  # one vector would make one cell for good
            return
        centroids = Centroids.learn(names, samples, cells=cells.cells, rng=np.random.default_rng([self.config.seed, 7]))
        moved = self.store.refile_elites(self.id, centroids.cell, islands=self.config.island_count, owner=self.owner,
                                         event={"centroids": centroids.to_json(), "programs": len(samples)})
        self.archive.centroids = centroids
        _log.info("campaign %s: %d CVT cells chosen from %d programs; %d elites", self.id, len(centroids.points),
                  len(samples), moved)

    def tell(self, proposal_id: str, child: Child, result: EvalResult | None) -> RecordOutcome:
        """Commit one iteration (whatever its outcome) to the store.

        Raises:
            KeyError: for a proposal id this campaign did not issue.
        """
        proposal = self._pending.pop(proposal_id)
        parent = proposal.sample.parent
        objective = self.problem.config.objective
        status = child.failure or (result.status if result else EvalStatus.ERROR)
        score = result.objective(objective.metric) if result is not None else None
        artifacts = dict(result.artifacts) if result is not None else {"error": clip(child.error), **(child.artifacts or {})}
        completion = child.completion
        # a CVT archive's warm-up: a program's cell and the choice of the centroids must not interleave
        with self._cells if self.archive.cvt else contextlib.nullcontext():
            program = Program(
                id=proposal.id, campaign_id=self.id, code=child.code or "", parent_id=parent.id, island=proposal.island,
                generation=parent.generation + 1, iteration=proposal.iteration,
                origin=_ORIGINS[proposal.kind], mate_id=proposal.mate.id if proposal.mate else None,
                status=status, score=score, fitness=objective.fitness(score) if score is not None else None,
                metrics=result.metrics if result else {}, features=result.features if result else {},
                artifacts=artifacts, diff=child.answer[:_MAX_ANSWER_CHARS] or None, model=proposal.model.name,
                template=proposal.kind, cell=self.archive.cell(result.features) if score is not None and result else None,
                eval_seconds=result.duration_s if result else 0.0,
                llm_seconds=completion.latency_s if completion else 0.0, created_at=time.time(),
                stage=result.stage if result else None, node=result.node if result else None,
                applied=child.applied.value if child.applied else None,
            )
            calls = [
                LLMCallRecord(
                    model=a.model, template=proposal.kind, prompt_tokens=a.prompt_tokens,
                    completion_tokens=a.completion_tokens, cost_usd=a.cost_usd, latency_s=a.latency_s,
                    ok=a.outcome.answered, error=a.error, outcome=a.outcome.value, attempt=n,
                )
                for n, a in enumerate(child.attempts, start=1)
            ]
            try:
                outcome = self.store.record_program(program, llm_calls=calls, owner=self.owner)
            finally:
                if child.code is not None:
                    self.screen.release(child.code, proposal.id)
            if self.archive.cvt and self.archive.centroids is None:
                self._choose_centroids()
        improved = program.fitness is not None and parent.fitness is not None and program.fitness > parent.fitness
        self.selector.record(proposal.model.name, proposal.kind, improved=int(improved),
                             tokens=sum(a.prompt_tokens + a.completion_tokens for a in child.attempts),
                             usd=sum(a.cost_usd for a in child.attempts))
        self._maybe_migrate(outcome.iterations_done)
        return outcome

    def _maybe_migrate(self, done: int) -> None:
        period = self.config.migration_interval * self.config.island_count
        upto = (done // period) * period
        if upto > self._migrated_upto:  # the store's own check keeps it idempotent; this one saves a transaction per iteration
            self.store.migrate_islands(self.id, upto_iteration=upto, islands=self.config.island_count,
                                       size=self.config.migration_size, owner=self.owner)
            self._migrated_upto = upto

    def progress(self, last: EvalStatus | None = None) -> Progress:
        row = self.store.get_campaign(self.id)
        best = self.store.get_program(row.best_program_id).score if row.best_program_id else None
        return Progress(
            iterations_done=row.iterations_done, iterations_target=row.iterations_target, valid_done=row.valid_done,
            best_score=best, cells_filled=self.store.filled_cells(self.id), prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens, cost_usd=row.cost_usd, last_status=last,
        )

    async def evaluate(self, child: Child, *, proposal: Proposal | None = None) -> EvalResult | None:
        """Run the trusted evaluator on a generated child; None when there is nothing to evaluate (``generate``
        recorded a failure, or screened the child out as a duplicate or unchanged).

        Raises:
            SandboxError: when the sandbox broke (no candidate is blamed).
        """
        if child.code is None or child.failure is not None:
            return None
        try:
            return await self.evaluator.evaluate(child.code)
        except SandboxError:
            raise  # the sandbox broke, not the candidate: fail loudly
        except Exception as exc:  # the last net, as in step: recorded as this candidate's failure
            _log.exception("evaluating iteration %s failed unexpectedly", proposal.iteration if proposal else "?")
            return EvalResult(status=EvalStatus.ERROR, artifacts={"error": clip(f"the evaluation failed: {type(exc).__name__}: {exc}")})

    # ------------------------------------------------------------------ run
    async def step(
        self, proposal: Proposal, eval_slots: asyncio.Semaphore | None = None, llm_slots: asyncio.Semaphore | None = None,
        shared_slots: asyncio.Semaphore | None = None,
    ) -> tuple[Child, EvalStatus]:
        """One whole iteration of an asked proposal: generate, evaluate (unless screened out), the island's
        meta-summary when one is due, tell. ``run`` drives this with its slots; a caller may drive it by hand.

        Raises:
            SandboxError: when the sandbox broke (no candidate is blamed); store errors as ``tell``.
        """
        eval_slots = eval_slots or asyncio.Semaphore(1)
        llm_slots = llm_slots or asyncio.Semaphore(1)
        async with llm_slots:
            try:
                child = await self.generate(proposal)
            except Exception as exc:  # the last net (generate catches what follows the call): a model that broke oddly
                _log.exception("the model call of iteration %d failed unexpectedly", proposal.iteration)
                child = Child(code=None, answer="", completion=None, failure=EvalStatus.LLM_FAILED,
                              error=f"the model call failed unexpectedly: {type(exc).__name__}: {exc}")
        result: EvalResult | None = None
        if child.code is not None and child.failure is None:
            async with eval_slots, shared_slots or contextlib.nullcontext():
                result = await self.evaluate(child, proposal=proposal)
        try:
            await asyncio.to_thread(self.tell, proposal.id, child, result)
        finally:  # told, or cut off (a stop, a store failure): an identical child waiting on this one goes on
            if child.code is not None:
                self.screen.release(child.code, proposal.id)
        if self.notes.due(island=proposal.island, iteration=proposal.iteration, model=proposal.model):
            async with llm_slots:  # after the tell: nothing a summary does can cost the evaluated child
                attempts = await self.notes.summarise(island=proposal.island, iteration=proposal.iteration,
                                                      spec=proposal.model, seed=proposal.seed)
            child = dataclasses.replace(child, meta_attempts=attempts)
        return child, child.failure or (result.status if result else EvalStatus.ERROR)

    async def run(
        self,
        *,
        stop: asyncio.Event | None = None,
        on_progress: Callable[[Progress], Any] | None = None,
        shared_eval_slots: asyncio.Semaphore | None = None,
    ) -> CampaignStatus:
        """Run until the iteration target, a budget, the wall-clock limit or ``stop``.

        The cost and token budgets stop new proposals as soon as what was spent
        reaches them; proposals already in flight finish and are recorded, so a
        budget is overshot by at most one batch of in-flight calls. A model
        that cannot be used as configured (a refused key, an unknown model)
        drains the same way, then fails the campaign with what to fix. In-flight
        proposals are cancelled on stop (their evaluations killed); everything
        already told stays committed. Returns the final status; ``stop_reason``
        says why a budget ended it. ``shared_eval_slots`` is a cap on concurrent
        evaluations shared between campaigns (a server's global cap), on top of
        the campaign's own ``eval_concurrency``.
        """
        stop = stop or asyncio.Event()
        deadline = time.monotonic() + self.config.max_wall_s if self.config.max_wall_s else None
        eval_slots = asyncio.Semaphore(self.config.eval_concurrency)
        llm_slots = asyncio.Semaphore(self.config.llm_concurrency)
        depth = self.config.eval_concurrency + self.config.llm_concurrency
        in_flight: set[asyncio.Task[tuple[Child, EvalStatus]]] = set()
        row = self.store.get_campaign(self.id)
        done_count = row.iterations_done
        budget = Budget.of(self.config, row)
        self.stop_reason = budget.reached()
        fatal: str | None = None
        stopper = asyncio.ensure_future(stop.wait())
        lost = asyncio.Event()
        heartbeat = asyncio.ensure_future(self._heartbeat(lost))
        lost_waiter = asyncio.ensure_future(lost.wait())
        status = CampaignStatus.FINISHED
        error: str | None = None
        try:
            while True:
                if lost.is_set():
                    raise LeaseLostError(f"this controller's lease on campaign {self.id} lapsed (was it suspended, or cut "
                                         "off from the database?) and the campaign is no longer its own: taken over by "
                                         "another controller, or marked interrupted; it stops here")
                out_of_time = deadline is not None and time.monotonic() >= deadline
                if stop.is_set() or out_of_time:
                    status = CampaignStatus.STOPPED
                    break
                while (self.stop_reason is None and fatal is None and len(in_flight) < depth
                       and done_count + len(in_flight) < self.target):
                    proposal = await asyncio.to_thread(self.ask)
                    in_flight.add(asyncio.ensure_future(self.step(proposal, eval_slots, llm_slots, shared_eval_slots)))
                if not in_flight:
                    break
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                await asyncio.wait({*in_flight, stopper, lost_waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                for task in [t for t in in_flight if t.done()]:
                    in_flight.discard(task)
                    child, last = task.result()  # a bug or a store failure propagates here
                    done_count += 1
                    if child.fatal and fatal is None:
                        fatal = f"{child.error}; then continue with 'evolve resume --campaign {self.id}'"
                    budget.spend(child)
                    self.stop_reason = self.stop_reason or budget.reached()
                    if on_progress is not None:
                        on_progress(await asyncio.to_thread(self.progress, last))
            if fatal is not None and status is CampaignStatus.FINISHED:
                raise LLMError(fatal)
            if status is CampaignStatus.FINISHED and self.stop_reason is not None and done_count < self.target:
                status = CampaignStatus.BUDGET_SPENT
                await asyncio.to_thread(self.store.add_event, self.id, "budget_reached", {"reason": self.stop_reason})
        except EvolveError as exc:
            status, error = CampaignStatus.FAILED, str(exc)
            if (taken := await asyncio.to_thread(self._taken_over, exc)) is not None:
                raise taken from exc
            raise
        except BaseException:
            status = CampaignStatus.STOPPED
            raise
        finally:
            try:
                stopper.cancel()
                lost_waiter.cancel()
                for task in in_flight:
                    task.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)
                try:
                    await self.evaluator.close()  # its workers; a later run starts fresh ones
                finally:
                    self._pending.clear()
                    with contextlib.suppress(EvolveError):  # refused when the campaign is no longer this controller's
                        await asyncio.shield(asyncio.to_thread(self.store.set_status, self.id, status, error=error,
                                                               owner=self.owner))
            finally:  # whatever happened above (a cancel, a close that raised): no lease outlives its run
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
        return status

    def _taken_over(self, exc: EvolveError) -> LeaseLostError | None:
        """What a failure really was when the campaign belongs to another controller now (the database may have cut
        off a controller frozen past its lease, mid-transaction): a lost lease, not a broken store."""
        if isinstance(exc, LeaseLostError):
            return None
        try:
            owner = self.store.get_campaign(self.id).owner
        except EvolveError:
            return None
        if owner == self.owner:
            return None
        return LeaseLostError(f"campaign {self.id} was taken over by another controller ({owner}) after this one's "
                              f"lease expired; it stops here (what failed on the way: {exc})")

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Campaign]:
        """Hold the campaign while a caller drives ``ask``/``generate``/``evaluate``/``tell`` by hand, as ``run`` does:
        its lease renewed meanwhile, and on leaving the evaluator's workers stopped and the campaign's status set
        (finished at its target, stopped before it, failed on an evolve error; resumable as after ``run``).

        Raises:
            LeaseLostError: on a ``tell`` after another controller took the campaign over.
        """
        lost = asyncio.Event()
        heartbeat = asyncio.ensure_future(self._heartbeat(lost))
        status, error = CampaignStatus.STOPPED, None
        try:
            yield self
            done = (await asyncio.to_thread(self.store.get_campaign, self.id)).iterations_done
            status = CampaignStatus.FINISHED if done >= self.target else CampaignStatus.STOPPED
        except EvolveError as exc:
            status, error = CampaignStatus.FAILED, str(exc)
            raise
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            try:
                await self.evaluator.close()
            finally:
                self._pending.clear()
                with contextlib.suppress(EvolveError):
                    await asyncio.to_thread(self.store.set_status, self.id, status, error=error, owner=self.owner)

    async def _heartbeat(self, lost: asyncio.Event) -> None:
        """Renew the campaign's lease every third of its length, on a thread of its own (a busy default executor
        must never let the lease lapse); set ``lost`` when another controller holds the campaign now."""
        loop = asyncio.get_running_loop()
        thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lease-{self.id}")
        try:
            while True:
                await asyncio.sleep(self.lease_s / 3)
                try:
                    renewed = await loop.run_in_executor(thread, self.store.renew_lease, self.id, self.owner, self.lease_s)
                except Exception as exc:  # the database away for a moment: the next beat tries again
                    _log.warning("campaign %s: renewing its lease failed (retrying): %s", self.id, exc)
                    continue
                if not renewed:
                    lost.set()
                    return
        finally:
            thread.shutdown(wait=False, cancel_futures=True)  # never block the loop on a renewal in progress
