"""Read-only queries behind reports, the REST API and the dashboard.

Browsing a campaign (a page of programs, a lineage, the filled cells, the
Pareto front, per-model statistics) is kept apart from the engine's hot
paths in ``store.py``. Pages use keyset pagination: the cost of a page does
not grow with how deep into a 100,000-program campaign it is.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, Row, and_, case, func, literal, or_, select

from evolve.pareto import front_indices
from evolve.problem import Objective
from evolve.store.rows import LLMCallRecord, ModelStats
from evolve.store.schema import elites, problems, programs
from evolve.store.schema import llm_calls as llm_calls_table
from evolve.values import EvalStatus, Origin, Program

__all__ = ["ArchiveCell", "PageKey", "ProgramOrder", "Queries", "StoredProblem", "program_from_row"]

_MAX_LINEAGE = 100_000


def program_from_row(row: Row[Any]) -> Program:
    m = row._mapping
    return Program(
        id=m["id"], campaign_id=m["campaign_id"], code=m["code"], parent_id=m["parent_id"],
        island=m["island"], generation=m["generation"], iteration=m["iteration"],
        origin=Origin(m["origin"]), status=EvalStatus(m["status"]), score=m["score"], fitness=m["fitness"],
        metrics=dict(m["metrics"]), features=dict(m["features"]), artifacts=dict(m["artifacts"]),
        diff=m["diff"], model=m["model"], template=m["template"], cell=m["cell"],
        eval_seconds=m["eval_seconds"], llm_seconds=m["llm_seconds"], created_at=m["created_at"], stage=m["stage"],
        node=m["node"], mate_id=m["mate_id"], applied=m["applied"],
    )


class ProgramOrder(enum.StrEnum):
    """How a page of programs is sorted."""

    SCORE = "score"  # by fitness: best first when descending, whatever the objective's direction; unscored last
    TIME = "time"  # by iteration


@dataclass(frozen=True, slots=True)
class PageKey:
    """Where a page ends: the sort value (fitness or iteration) and the iteration of its last program."""

    value: float | None
    iteration: int


@dataclass(frozen=True, slots=True)
class ArchiveCell:
    island: int
    cell: str
    program_id: str
    score: float | None
    fitness: float


@dataclass(frozen=True, slots=True)
class StoredProblem:
    id: str
    name: str
    source: str
    created_at: float


class Queries:
    """Read-only browsing of the store; mixed into ``Store``, which provides ``_reading``."""

    def _reading(self, what: str) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def get_programs(self, ids: list[str]) -> dict[str, Program]:
        raise NotImplementedError

    # --------------------------------------------------------------- problems
    def list_problems(self) -> list[StoredProblem]:
        """Every stored problem, oldest first."""
        with self._reading("reading problems") as conn:
            rows = conn.execute(select(problems.c.id, problems.c.name, problems.c.source, problems.c.created_at)
                                .order_by(problems.c.created_at)).all()
        return [StoredProblem(id=r.id, name=r.name, source=r.source or "", created_at=r.created_at) for r in rows]

    # --------------------------------------------------------------- programs
    def page_programs(
        self, campaign_id: str, *, order: ProgramOrder = ProgramOrder.TIME, descending: bool = True,
        after: PageKey | None = None, limit: int = 50, island: int | None = None, status: EvalStatus | None = None,
        generation: int | None = None,
    ) -> tuple[list[Program], PageKey | None]:
        """One page of a campaign's programs and the key of the next page (None on the last page).

        Ties are broken by iteration, ascending, so every program appears on exactly one page.
        """
        where: list[Any] = [programs.c.campaign_id == campaign_id]
        if island is not None:
            where.append(programs.c.island == island)
        if status is not None:
            where.append(programs.c.status == status.value)
        if generation is not None:
            where.append(programs.c.generation == generation)
        it = programs.c.iteration
        if order is ProgramOrder.TIME:
            sort = [it.desc() if descending else it.asc()]
            if after is not None:
                where.append(it < after.iteration if descending else it > after.iteration)
        else:
            f = programs.c.fitness
            sort = [(f.desc() if descending else f.asc()).nulls_last(), it.asc()]  # unscored programs last
            if after is not None:
                where.append(_after_fitness(after, descending))
        with self._reading("reading programs") as conn:
            rows = conn.execute(select(programs).where(*where).order_by(*sort).limit(limit + 1)).all()
        page = [program_from_row(r) for r in rows[:limit]]
        if len(rows) <= limit:
            return page, None
        last = page[-1]
        return page, PageKey(value=last.fitness if order is ProgramOrder.SCORE else float(last.iteration), iteration=last.iteration)

    def children_ids(self, program_id: str) -> list[str]:
        """The programs proposed from this one, in iteration order."""
        with self._reading("reading children") as conn:
            rows = conn.execute(select(programs.c.id).where(programs.c.parent_id == program_id).order_by(programs.c.iteration)).all()
        return [r.id for r in rows]

    def lineage(self, program_id: str) -> list[Program]:
        """The program's ancestors from the initial program down to the program itself (empty if unknown)."""
        start = select(programs.c.id, programs.c.parent_id, literal(0).label("depth")).where(programs.c.id == program_id)
        chain = start.cte("chain", recursive=True)
        step = (select(programs.c.id, programs.c.parent_id, (chain.c.depth + 1).label("depth"))
                .join(chain, programs.c.id == chain.c.parent_id).where(chain.c.depth < _MAX_LINEAGE))
        chain = chain.union_all(step)
        query = select(programs).join(chain, programs.c.id == chain.c.id).order_by(chain.c.depth.desc())
        with self._reading("reading a lineage") as conn:
            rows = conn.execute(query).all()
        return [program_from_row(r) for r in rows]

    def archive_cells(self, campaign_id: str) -> list[ArchiveCell]:
        """Every filled cell of every island with its elite's score, by island then best first."""
        query = (select(elites.c.island, elites.c.cell, elites.c.program_id, elites.c.fitness, programs.c.score)
                 .join(programs, programs.c.id == elites.c.program_id)
                 .where(elites.c.campaign_id == campaign_id).order_by(elites.c.island, elites.c.fitness.desc(), elites.c.cell))
        with self._reading("reading the archive") as conn:
            rows = conn.execute(query).all()
        return [ArchiveCell(island=r.island, cell=r.cell, program_id=r.program_id, score=r.score, fitness=r.fitness) for r in rows]

    def pareto_front(self, campaign_id: str, objectives: Sequence[Objective]) -> list[Program]:
        """The campaign's valid programs that no other beats on every objective, best on the first objective first.

        Programs missing an objective's metric are left out. A scan of the
        campaign's valid programs' metrics: a report, not a hot path.
        """
        with self._reading("reading metrics") as conn:
            rows = conn.execute(select(programs.c.id, programs.c.metrics)
                                .where(programs.c.campaign_id == campaign_id, programs.c.status == EvalStatus.OK.value)
                                .order_by(programs.c.iteration)).all()
        ids: list[str] = []
        values: list[list[float]] = []
        for pid, metrics in rows:
            point = [metrics.get(o.metric) for o in objectives]
            if all(isinstance(v, (int, float)) and math.isfinite(v) for v in point):
                ids.append(pid)
                values.append([o.fitness(float(v)) for o, v in zip(objectives, point, strict=True)])
        if not ids:
            return []
        keep = [ids[i] for i in front_indices(np.array(values, dtype=np.float64))]
        found = self.get_programs(keep)
        return [found[i] for i in keep]


    def llm_calls(self, campaign_id: str) -> list[LLMCallRecord]:
        """Every model request of a campaign, in order."""
        with self._reading("reading model calls") as conn:
            rows = conn.execute(select(llm_calls_table).where(llm_calls_table.c.campaign_id == campaign_id)
                                .order_by(llm_calls_table.c.id)).all()
        return [LLMCallRecord(model=r.model, template=r.template, prompt_tokens=r.prompt_tokens,
                              completion_tokens=r.completion_tokens, cost_usd=r.cost_usd, latency_s=r.latency_s,
                              ok=r.ok, error=r.error, outcome=r.outcome, attempt=r.attempt, iteration=r.iteration) for r in rows]

    def model_stats(self, campaign_id: str) -> list[ModelStats]:
        """Per model and mode: proposals, valid share, improvement over the parent, requests, tokens, cost."""
        child = programs  # a proposal; its parent's fitness was copied onto it when it was recorded
        is_ok = child.c.status == EvalStatus.OK.value
        gain = case((is_ok, child.c.fitness - child.c.parent_fitness), else_=None)
        calls = llm_calls_table
        with self._reading("reading model statistics") as conn:
            proposals = conn.execute(
                select(child.c.model, child.c.template, func.count(), func.sum(case((is_ok, 1), else_=0)),
                       func.sum(case((and_(is_ok, child.c.fitness > child.c.parent_fitness), 1), else_=0)), func.avg(gain),
                       func.max(case((is_ok, child.c.fitness), else_=None)))
                .where(child.c.campaign_id == campaign_id, child.c.iteration > 0)  # every program but the initial one
                .group_by(child.c.model, child.c.template)
            ).all()
            requests = {
                (r[0], r[1]): r[2:] for r in conn.execute(
                    select(calls.c.model, calls.c.template, func.count(), func.sum(case((calls.c.ok, 0), else_=1)),
                           func.sum(calls.c.prompt_tokens), func.sum(calls.c.completion_tokens), func.sum(calls.c.cost_usd),
                           func.avg(calls.c.latency_s))
                    .where(calls.c.campaign_id == campaign_id).group_by(calls.c.model, calls.c.template)
                ).all()
            }
        applied = self.applied_counts(campaign_id)
        stats = []
        for model, template, n, valid, improved, mean_gain, best in proposals:
            n_req, failed, p_tok, c_tok, cost, latency = requests.get((model, template), (0, 0, 0, 0, 0.0, None))
            stats.append(ModelStats(
                model=model or "", template=template, proposals=int(n), valid=int(valid or 0), improved=int(improved or 0),
                mean_improvement=None if mean_gain is None else float(mean_gain), best_fitness=None if best is None else float(best),
                requests=int(n_req), failed_requests=int(failed or 0), prompt_tokens=int(p_tok or 0),
                completion_tokens=int(c_tok or 0), cost_usd=float(cost or 0.0),
                mean_latency_s=None if latency is None else float(latency), applied=applied.get((model or "", template), {}),
            ))
        return sorted(stats, key=lambda s: (-s.proposals, s.model, s.template or ""))

    def applied_counts(self, campaign_id: str) -> dict[tuple[str, str | None], dict[str, int]]:
        """Per model and mode: how many of its answers were applied each way (``evolve.diff.Applied``), and how many
        made no new program (``unchanged``, ``diff_failed``)."""
        status = programs.c.status
        how = case((status == EvalStatus.UNCHANGED.value, status), (programs.c.applied.is_not(None), programs.c.applied),
                   else_=status)
        made = or_(programs.c.applied.is_not(None), status.in_([EvalStatus.UNCHANGED.value, EvalStatus.DIFF_FAILED.value]))
        with self._reading("reading how answers were applied") as conn:
            rows = conn.execute(
                select(programs.c.model, programs.c.template, how, func.count())
                .where(programs.c.campaign_id == campaign_id, programs.c.iteration > 0, made)
                .group_by(programs.c.model, programs.c.template, how)
            ).all()
        counts: dict[tuple[str, str | None], dict[str, int]] = {}
        for model, template, path, n in rows:
            counts.setdefault((model or "", template), {})[str(path)] = int(n)
        return counts




def _after_fitness(key: PageKey, descending: bool) -> Any:
    """Programs after ``key`` in the order (unscored last, fitness, iteration ascending)."""
    f, it = programs.c.fitness, programs.c.iteration
    if key.value is None:  # inside the unscored tail
        return and_(f.is_(None), it > key.iteration)
    beyond = f < key.value if descending else f > key.value
    return or_(beyond, and_(f == key.value, it > key.iteration), f.is_(None))
