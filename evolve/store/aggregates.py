"""Campaign overviews computed in the database: what a dashboard plots, whatever the campaign's size.

A 100,000-program campaign is never sent to a browser. Its candidates are
grouped into at most ``buckets`` runs of consecutive iterations (each run
with its count, valid count, score range and best program), its best-so-far
curve is the list of iterations where the best improved, and islands are
summed up per island. Every query here reads only the ``ix_programs_overview``
covering index or the elites table, never a program's row (code, diff).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, case, func, select

from evolve.store.schema import elites, events, programs
from evolve.values import EvalStatus

__all__ = ["Aggregates", "BestStep", "IslandSummary", "SeriesBucket"]


@dataclass(frozen=True, slots=True)
class SeriesBucket:
    """Programs of iterations ``first``..``last`` (a single iteration when the campaign is small)."""

    first: int
    last: int
    programs: int
    valid: int
    low: float | None  # the lowest and highest score among the valid ones
    high: float | None
    best_id: str | None  # the best valid one by fitness (the objective's direction applied)
    best_score: float | None


@dataclass(frozen=True, slots=True)
class BestStep:
    """The best-so-far score changed at this iteration, to this program's score."""

    iteration: int
    program_id: str
    score: float | None


@dataclass(frozen=True, slots=True)
class IslandSummary:
    island: int
    programs: int  # proposed on this island (its initial program included)
    valid: int
    cells: int  # filled MAP-Elites cells
    best_id: str | None  # the island's best elite
    best_score: float | None


class Aggregates:
    """Overview queries; mixed into ``Store``, which provides ``_reading``."""

    def _reading(self, what: str) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def score_series(self, campaign_id: str, *, buckets: int) -> list[SeriesBucket]:
        """Every program, grouped into at most ``buckets`` equal runs of iterations, in iteration order."""
        p = programs.c
        valid = p.status == EvalStatus.OK.value
        with self._reading("reading the score series") as conn:
            top = conn.execute(select(func.max(p.iteration)).where(p.campaign_id == campaign_id)).scalar()
            if top is None:
                return []
            width = max(1, math.ceil((int(top) + 1) / max(1, buckets)))
            bucket = (p.iteration // width).label("bucket")
            rows = conn.execute(
                select(bucket, func.min(p.iteration), func.max(p.iteration), func.count(), func.sum(case((valid, 1), else_=0)),
                       func.min(case((valid, p.score))), func.max(case((valid, p.score))))
                .where(p.campaign_id == campaign_id).group_by(bucket)
            ).all()
            ranked = (select(bucket, p.id, p.score, func.row_number().over(partition_by=bucket, order_by=(p.fitness.desc(), p.iteration))
                             .label("rank"))
                      .where(p.campaign_id == campaign_id, valid, p.fitness.is_not(None)).subquery())
            best = {int(r[0]): (r[1], r[2]) for r in conn.execute(
                select(ranked.c.bucket, ranked.c.id, ranked.c.score).where(ranked.c.rank == 1)).all()}
        out = []
        for b, first, last, n, n_valid, low, high in sorted(rows, key=lambda r: int(r[0])):
            best_id, best_score = best.get(int(b), (None, None))
            out.append(SeriesBucket(first=int(first), last=int(last), programs=int(n), valid=int(n_valid or 0), low=low, high=high,
                                    best_id=best_id, best_score=best_score))
        return out

    def best_steps(self, campaign_id: str, *, limit: int = 2000) -> list[BestStep]:
        """Where the best-so-far improved, in iteration order (at most ``limit``: the first, the last and evenly between)."""
        p = programs.c
        earlier_best = func.max(p.fitness).over(order_by=p.iteration, rows=(None, -1)).label("earlier")
        scored = (select(p.iteration, p.id, p.score, p.fitness, earlier_best)
                  .where(p.campaign_id == campaign_id, p.status == EvalStatus.OK.value, p.fitness.is_not(None)).subquery())
        query = (select(scored.c.iteration, scored.c.id, scored.c.score)
                 .where((scored.c.earlier.is_(None)) | (scored.c.fitness > scored.c.earlier)).order_by(scored.c.iteration))
        with self._reading("reading the best-score steps") as conn:
            rows = conn.execute(query).all()
        steps = [BestStep(iteration=int(r[0]), program_id=r[1], score=r[2]) for r in rows]
        if len(steps) <= limit:
            return steps
        keep = sorted({round(i * (len(steps) - 1) / (limit - 1)) for i in range(limit)})
        return [steps[i] for i in keep]

    def island_summary(self, campaign_id: str, *, islands: int) -> list[IslandSummary]:
        """Programs, valid programs, filled cells and the best elite of each of the ``islands`` islands."""
        p, e = programs.c, elites.c
        with self._reading("reading the islands") as conn:
            counts = {int(r[0]): (int(r[1]), int(r[2] or 0)) for r in conn.execute(
                select(p.island, func.count(), func.sum(case((p.status == EvalStatus.OK.value, 1), else_=0)))
                .where(p.campaign_id == campaign_id).group_by(p.island)).all()}
            ranked = (select(e.island, e.program_id, func.count().over(partition_by=e.island).label("cells"),
                             func.row_number().over(partition_by=e.island, order_by=(e.fitness.desc(), e.cell)).label("rank"))
                      .where(e.campaign_id == campaign_id).subquery())
            tops = {int(r[0]): (int(r[1]), r[2], r[3]) for r in conn.execute(
                select(ranked.c.island, ranked.c.cells, ranked.c.program_id, programs.c.score)
                .join(programs, programs.c.id == ranked.c.program_id).where(ranked.c.rank == 1)).all()}
        out = []
        for island in sorted(set(range(islands)) | counts.keys() | tops.keys()):
            n, n_valid = counts.get(island, (0, 0))
            cells, best_id, best_score = tops.get(island, (0, None, None))
            out.append(IslandSummary(island=island, programs=n, valid=n_valid, cells=cells, best_id=best_id, best_score=best_score))
        return out

    def elite_features(self, campaign_id: str) -> list[tuple[str, dict[str, float]]]:
        """Each elite's cell and its program's features (no code: the dashboard's polls read this)."""
        with self._reading("reading the elites' features") as conn:
            rows = conn.execute(select(elites.c.cell, programs.c.features).join(programs, programs.c.id == elites.c.program_id)
                                .where(elites.c.campaign_id == campaign_id)).all()
        return [(str(r.cell), dict(r.features)) for r in rows]

    def latest_notes(self, campaign_id: str, *, limit: int = 64) -> list[dict[str, Any]]:
        """The newest meta-summary of each island (from the last ``limit`` summaries), by island."""
        with self._reading("reading the meta-summaries") as conn:
            rows = conn.execute(select(events.c.ts, events.c.data).where(events.c.campaign_id == campaign_id,
                                                                         events.c.kind == "meta_summary")
                                .order_by(events.c.id.desc()).limit(limit)).all()
        newest: dict[int, dict[str, Any]] = {}
        for ts, data in rows:
            newest.setdefault(int(data["island"]), {**data, "ts": ts})
        return [newest[i] for i in sorted(newest)]

    def last_event_id(self, campaign_id: str) -> int:
        """The id of the campaign's latest event (0 when none): where a live view starts following."""
        with self._reading("reading the event log") as conn:
            value = conn.execute(select(func.max(events.c.id)).where(events.c.campaign_id == campaign_id)).scalar()
        return int(value or 0)
