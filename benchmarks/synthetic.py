"""A large campaign written straight into a store: the fixture of the scale benchmarks and tests.

Running a real 100,000-iteration campaign takes hours; the dashboard, the API
and the store's queries only need the rows one would leave. This writes them
in bulk with the store's own schema: the problem, a finished campaign, its
programs (a family tree across islands, every evaluation status, scores that
climb as a real search does, code that differs program to program, the diff
against the parent), the MAP-Elites elites each program would have won, one
model request per proposal and one ``program`` event per program.

    fill_campaign(Store.open("big.db"), programs=100_000)
"""

from __future__ import annotations

import difflib
import hashlib
import time
import uuid
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select

from evolve.archive import cell_key
from evolve.problem import Problem, resolve_problem
from evolve.store import Store
from evolve.store.schema import campaigns, elites, events, llm_calls, programs
from evolve.values import CampaignStatus, EvalStatus, Origin

__all__ = ["fill_campaign"]

_STATUSES = [EvalStatus.OK, EvalStatus.INVALID, EvalStatus.ERROR, EvalStatus.TIMEOUT, EvalStatus.BELOW_THRESHOLD,
             EvalStatus.DIFF_FAILED]
_STATUS_P = [0.55, 0.1, 0.15, 0.03, 0.05, 0.12]
_MODELS = ["mutator", "openai/gpt-4o-mini"]
_CHUNK = 5_000


def _variant(code: str, i: int, rng: np.random.Generator) -> str:
    """The code with one constant changed and a note of which iteration wrote it (so codes differ)."""
    step = float(rng.uniform(0.2, 0.4))
    return code.replace("0.3 * np.cos", f"{step:.4f} * np.cos", 1) + f"\n# variant {i}\n"


def fill_campaign(store: Store, *, programs_n: int, problem: str = "circle_packing", islands: int = 4, seed: int = 0,
                  with_diffs: bool = True, models: list[str] | None = None) -> str:
    """Write a finished campaign of ``programs_n`` programs (the initial one included); returns its id.

    ``models`` are the campaign's configured models (default: the mutator and a hosted model, as recorded); a
    benchmark that resumes the campaign gives ones that run here.
    """
    prob: Problem = resolve_problem(problem)
    objective = prob.config.objective
    axes = prob.config.features
    problem_id = store.save_problem(prob)
    rng = np.random.default_rng(seed)
    cid = uuid.uuid4().hex
    now = time.time()
    start = now - programs_n * 0.5
    base = prob.initial_program
    base_score = 0.96
    config = {"iterations": programs_n - 1, "islands": islands, "seed": seed, "models": [{"name": m} for m in models or _MODELS]}

    best: dict[tuple[int, str], tuple[float, str]] = {}
    valid_ids: list[list[str]] = [[] for _ in range(islands)]
    scores: dict[str, float] = {}
    prog_rows: list[dict[str, Any]] = []
    call_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    best_overall: tuple[float, str] | None = None
    valid_total = 0
    tokens = [0, 0]
    cost = 0.0

    def features_of() -> dict[str, float]:  # spread around the middle of each axis, as a search fills a map
        return {a.name: float(np.clip(rng.normal(0.5, 0.2), 0, 1) * (a.max - a.min) + a.min) for a in axes}

    with store._write.begin() as conn:  # one transaction: a benchmark fixture, not an engine path
        conn.execute(insert(campaigns).values(
            id=cid, problem_id=problem_id, status=CampaignStatus.FINISHED.value, config=config,
            iterations_target=programs_n - 1, iterations_done=0, valid_done=0, best_program_id=None, best_fitness=None,
            last_migration=0, prompt_tokens=0, completion_tokens=0, cost_usd=0.0, owner=None, error=None,
            created_at=start, updated_at=now,
        ))
        for i in range(programs_n):
            pid = uuid.uuid4().hex
            island = i % islands
            parent_id: str | None = None
            code = base
            score: float | None = base_score
            if i == 0:
                status, origin = EvalStatus.OK, Origin.INITIAL
            else:
                pool = valid_ids[island] or valid_ids[0]
                parent_id = pool[int(len(pool) * (1 - rng.random() ** 3)) - 1] if len(pool) > 1 else pool[0]
                code = _variant(base, i, rng)
                status = _STATUSES[int(rng.choice(len(_STATUSES), p=_STATUS_P))]
                origin = Origin.DIFF if rng.random() < 0.8 else Origin.REWRITE
                drift = 1.6 * (1 - np.exp(-i / max(programs_n / 4, 1)))
                score = base_score + float(drift * rng.beta(2, 5)) if status is EvalStatus.OK else None
            fitness = None if score is None else objective.fitness(score)
            features = features_of() if score is not None else {}
            cell = cell_key(features, axes) if score is not None else None
            diff = None
            if with_diffs and parent_id is not None:
                diff = "".join(difflib.unified_diff(base.splitlines(keepends=True), code.splitlines(keepends=True)))
            model = None if i == 0 else _MODELS[i % len(_MODELS)]
            prog_rows.append({
                "id": pid, "campaign_id": cid, "parent_id": parent_id, "island": island, "generation": 0 if i == 0 else 1 + i // 1000,
                "iteration": i, "origin": origin.value, "status": status.value, "score": score, "fitness": fitness,
                "metrics": {objective.metric: score} if score is not None else {}, "features": features,
                "artifacts": {} if score is not None else {"error": f"{status.value}: synthetic failure {i}"},
                "cell": cell, "code": code, "code_hash": hashlib.sha256(code.encode()).hexdigest()[:32], "diff": diff,
                "model": model, "template": None if i == 0 else "diff", "eval_seconds": 0.05, "llm_seconds": 0.0 if i == 0 else 1.0,
                "n_children": 0, "created_at": start + i * 0.5, "stage": None,
                "parent_fitness": scores.get(parent_id) if parent_id else None,
            })
            if fitness is not None and cell is not None:
                valid_total += 1
                valid_ids[island].append(pid)
                scores[pid] = fitness
                for isl in range(islands) if i == 0 else (island,):
                    held = best.get((isl, cell))
                    if held is None or fitness > held[0]:
                        best[(isl, cell)] = (fitness, pid)
                if best_overall is None or fitness > best_overall[0]:
                    best_overall = (fitness, pid)
            if i > 0:
                p_tok, c_tok = int(rng.integers(800, 3000)), int(rng.integers(50, 600))
                tokens[0] += p_tok
                tokens[1] += c_tok
                price = 0.0 if model == "mutator" else (p_tok * 0.15 + c_tok * 0.6) / 1e6
                cost += price
                call_rows.append({
                    "campaign_id": cid, "iteration": i, "model": model, "template": "diff", "prompt_tokens": p_tok,
                    "completion_tokens": c_tok, "cost_usd": price, "latency_s": 1.0, "ok": True, "error": None,
                    "created_at": start + i * 0.5, "outcome": "ok", "attempt": 1,
                })
            event_rows.append({"campaign_id": cid, "ts": start + i * 0.5, "kind": "program", "data": {
                "id": pid, "iteration": i, "island": island, "status": status.value, "score": score}})
            if len(prog_rows) >= _CHUNK:
                _flush(conn, prog_rows, call_rows, event_rows)
        _flush(conn, prog_rows, call_rows, event_rows)
        conn.execute(insert(elites), [{"campaign_id": cid, "island": isl, "cell": cell, "program_id": pid, "fitness": f,
                                       "updated_at": now} for (isl, cell), (f, pid) in best.items()])
        child = programs.alias("child")
        conn.execute(programs.update().where(programs.c.campaign_id == cid).values(
            n_children=select(func.count()).where(child.c.parent_id == programs.c.id).scalar_subquery()))
        assert best_overall is not None
        conn.execute(campaigns.update().where(campaigns.c.id == cid).values(
            iterations_done=programs_n - 1, valid_done=valid_total - 1, best_program_id=best_overall[1],
            best_fitness=best_overall[0], prompt_tokens=tokens[0], completion_tokens=tokens[1], cost_usd=cost,
        ))
    return cid


def _flush(conn: Any, prog_rows: list[dict[str, Any]], call_rows: list[dict[str, Any]], event_rows: list[dict[str, Any]]) -> None:
    for table, rows in ((programs, prog_rows), (llm_calls, call_rows), (events, event_rows)):
        if rows:
            conn.execute(insert(table), rows)
            rows.clear()
