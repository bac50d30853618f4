"""The store: the single source of truth, behind one interface.

SQLite (WAL, busy timeout, ``BEGIN IMMEDIATE`` for writes) by default; any
SQLAlchemy URL otherwise. Every write is one short transaction; elite
replacement is a single compare-and-swap statement
(``INSERT .. ON CONFLICT DO UPDATE .. WHERE elites.fitness < excluded.fitness``).
Hot reads (elites of an island, best program, a random program of an island)
go through indexes and never scan a campaign's programs.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, create_engine, delete, event, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from evolve.config import CampaignConfig, stored_config
from evolve.errors import StoreError
from evolve.novelty import code_key
from evolve.problem import Problem
from evolve.store.access import Access
from evolve.store.aggregates import Aggregates
from evolve.store.leases import Leases, fence
from evolve.store.leases import write_event as _event
from evolve.store.queries import Queries, program_from_row
from evolve.store.rows import CampaignRow, EliteRow, LLMCallRecord, RecordOutcome
from evolve.store.schema import campaigns, elites, events, problems, programs
from evolve.store.schema import llm_calls as llm_calls_table
from evolve.values import CampaignStatus, EvalStatus, Program

__all__ = ["Store", "database_url", "schema_state", "shown_spec"]

_MIGRATIONS = Path(__file__).with_name("migrations")
_BUSY_S = 30  # how long a SQLite connection waits for another process's lock before it gives up
_IDLE_IN_TRANSACTION_S = 10  # every transaction of the store takes milliseconds: one idle this long is stalled
_MIGRATION_LOCK = 0x65766F6C7665  # "evolve": the PostgreSQL advisory lock that serializes schema upgrades


def database_url(spec: str) -> str:
    """A SQLAlchemy URL for a ``--db`` value: a URL as is, else a SQLite file path."""
    if "://" in spec:
        return spec
    if spec == ":memory:":
        return "sqlite://"
    return f"sqlite:///{Path(spec).expanduser().resolve()}"


class Store(Leases, Queries, Aggregates, Access):
    """Campaigns, programs, elites, model calls and events in one SQL database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # One write transaction at a time from this process: SQLite serializes writers anyway, and on PostgreSQL a
        # controller frozen mid-write (a suspended VM) then holds one session's locks, not a queue of sessions each
        # taking the campaign's row in turn as the server ends the one before (each after _IDLE_IN_TRANSACTION_S).
        self._one_writer = threading.RLock()
        self._write = engine.execution_options(evolve_begin="IMMEDIATE")
        self.url = engine.url.render_as_string(hide_password=True)

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, spec: str) -> Store:
        """Open (creating and migrating as needed) the store at a path or URL.

        Raises:
            StoreError: when the database cannot be opened or is not an evolve store.
        """
        url = database_url(spec)
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if not path.parent.is_dir():
                raise StoreError(f"cannot create database {path}: folder {path.parent} does not exist")
            if path.is_dir():
                raise StoreError(f"{path} is a folder; pass --db with a database file path")
        try:
            engine = _make_engine(url)
            if engine.dialect.name not in _UPSERT:
                raise StoreError(f"evolve stores run on SQLite and PostgreSQL, not {engine.dialect.name}: "
                                 "pass --db a file path or postgresql+psycopg://user@host/database")
            store = cls(engine)
            store._migrate()
        except StoreError:
            raise
        except (ArgumentError, ValueError) as exc:  # not a URL SQLAlchemy can read (a bad port, an unknown scheme)
            raise StoreError(f"cannot open database {shown_spec(spec)}: not a database URL ({_short(exc)}); pass --db a file "
                             "path or postgresql+psycopg://user@host:port/database") from exc
        except ImportError as exc:  # the URL's driver is not installed
            raise StoreError(f"cannot open database {shown_spec(spec)}: its driver is missing ({exc}); for PostgreSQL, "
                             "pip install 'evolve[postgresql]' (psycopg 3) and use postgresql+psycopg://") from exc
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot open database {shown_spec(spec)}: {_short(exc)} (pass --db with an evolve database)") from exc
        return store

    def _migrate(self) -> None:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        head = ScriptDirectory.from_config(cfg).get_current_head()
        with self._write.begin() as conn:
            if conn.dialect.name == "postgresql":  # processes opening a new database together: one migrates, the rest wait
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            current = MigrationContext.configure(conn).get_current_revision()
            if current == head:
                return
            known = {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}
            if current is not None and current not in known:
                raise StoreError(f"database schema {current} is newer than this evolve; upgrade evolve to open it")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _writing(self, what: str) -> Iterator[Connection]:
        try:
            with self._one_writer, self._write.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"{what} failed: {_short(exc)}") from exc

    @contextmanager
    def _reading(self, what: str) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"{what} failed: {_short(exc)}") from exc

    # --------------------------------------------------------------- problems
    def save_problem(self, problem: Problem, *, created_by: str | None = None) -> str:
        """Store a problem's files (idempotent: keyed by content); returns its id.

        ``created_by``: the API token submitting it; a problem keeps the first one recorded.
        """
        pid = problem.fingerprint()
        with self._writing("saving the problem") as conn:
            if conn.execute(select(problems.c.id).where(problems.c.id == pid)).first() is None:
                # another process may save the same problem at the same moment (PostgreSQL lets both past the read)
                conn.execute(_upsert(conn, problems).values(
                    id=pid, name=problem.name, config_text=problem.config_text,
                    initial_program=problem.initial_program, evaluator_source=problem.evaluator_source,
                    extra_files=problem.extra_files_json(), source=problem.source, created_at=time.time(),
                    created_by=created_by,
                ).on_conflict_do_nothing(index_elements=[problems.c.id]))
            elif created_by is not None:
                conn.execute(update(problems).where(problems.c.id == pid, problems.c.created_by.is_(None))
                             .values(created_by=created_by))
        return pid

    def load_problem(self, problem_id: str) -> Problem:
        """Rebuild a stored problem (validated again).

        Raises:
            StoreError: when no such problem is stored.
        """
        with self._reading("reading the problem") as conn:
            row = conn.execute(select(problems).where(problems.c.id == problem_id)).first()
        if row is None:
            raise StoreError(f"problem {problem_id} is not in the store")
        m = row._mapping
        return Problem.from_sources(
            config_text=m["config_text"], initial_program=m["initial_program"], evaluator_source=m["evaluator_source"],
            extra_files=Problem.extra_files_from_json(m["extra_files"]), source=m["source"] or f"store:{problem_id}",
        )

    # -------------------------------------------------------------- campaigns
    def create_campaign(
        self, *, campaign_id: str, problem_id: str, config: CampaignConfig, initial: Program, islands: int,
        created_by: str | None = None,
    ) -> None:
        """Create a campaign with its initial program, elite of every island, in one transaction.

        ``created_by``: the name of the API token that started it (its owner for stop, resume and quotas).
        """
        now = time.time()
        with self._writing("creating the campaign") as conn:
            conn.execute(insert(campaigns).values(
                id=campaign_id, problem_id=problem_id, status=CampaignStatus.RUNNING.value, config=config.model_dump(mode="json"),
                iterations_target=config.iterations, iterations_done=0, valid_done=0,
                best_program_id=initial.id, best_fitness=initial.fitness, last_migration=0,
                prompt_tokens=0, completion_tokens=0, cost_usd=0.0, owner=None, error=None,
                created_at=now, updated_at=now, created_by=created_by,
            ))
            conn.execute(insert(programs).values(**_program_values(initial)))
            assert initial.cell is not None and initial.fitness is not None
            for island in range(islands):
                conn.execute(insert(elites).values(
                    campaign_id=campaign_id, island=island, cell=initial.cell, program_id=initial.id,
                    fitness=initial.fitness, updated_at=now,
                ))
            _event(conn, campaign_id, "created", {"initial_score": initial.score, "islands": islands})

    def get_campaign(self, campaign_id: str) -> CampaignRow:
        """Raises: StoreError when there is no such campaign."""
        rows = self._campaign_rows(campaigns.c.id == campaign_id)
        if not rows:
            raise StoreError(f"no campaign '{campaign_id}' in {self.url} (run 'evolve status' to list them)")
        return rows[0]

    def list_campaigns(self) -> list[CampaignRow]:
        return self._campaign_rows(None)

    def _campaign_rows(self, where: Any) -> list[CampaignRow]:
        query = select(campaigns, problems.c.name.label("problem_name")).join(problems, problems.c.id == campaigns.c.problem_id)
        if where is not None:
            query = query.where(where)
        with self._reading("reading campaigns") as conn:
            rows = conn.execute(query.order_by(campaigns.c.created_at)).all()
        out = []
        for row in rows:
            m = dict(row._mapping)
            m["status"] = CampaignStatus(m["status"])
            m["config"] = stored_config(m["config"], campaign=m["id"])
            out.append(CampaignRow(**m))
        return out

    # --------------------------------------------------------------- programs
    def record_program(self, program: Program, *, llm_calls: Sequence[LLMCallRecord] = (),
                       owner: str | None = None) -> RecordOutcome:
        """Commit one iteration's program (any status), its model requests, counters and elite CAS atomically.

        Raises:
            LeaseLostError: when ``owner`` is given and no longer holds the campaign (nothing is recorded).
        """
        now = time.time()
        cid = program.campaign_id
        calls = list(llm_calls)
        ok = program.status is EvalStatus.OK and program.fitness is not None
        with self._writing("recording a program") as conn:
            fence(conn, cid, owner)  # the campaign's row first: one lock order for every writer
            parent_fitness = None
            if program.parent_id is not None:  # one statement counts the child and reads the parent's fitness
                parent_fitness = conn.execute(update(programs).where(programs.c.id == program.parent_id)
                                              .values(n_children=programs.c.n_children + 1).returning(programs.c.fitness)).scalar()
            conn.execute(insert(programs).values(**_program_values(program), parent_fitness=parent_fitness))
            counters: dict[str, Any] = {
                "iterations_done": campaigns.c.iterations_done + 1,
                "valid_done": campaigns.c.valid_done + (1 if ok else 0),
                "updated_at": now,
            }
            if calls:
                counters.update(_insert_calls(conn, cid, program.iteration, calls, now))
            done = int(conn.execute(update(campaigns).where(campaigns.c.id == cid).values(**counters)
                                    .returning(campaigns.c.iterations_done)).scalar_one())
            new_elite = new_best = False
            if ok and program.cell is not None:
                assert program.fitness is not None
                new_elite = _cas_elite(conn, cid, program.island, program.cell, program.id, program.fitness, now)
                res = conn.execute(update(campaigns).where(
                    campaigns.c.id == cid, or_(campaigns.c.best_fitness.is_(None), campaigns.c.best_fitness < program.fitness)
                ).values(best_program_id=program.id, best_fitness=program.fitness))
                new_best = res.rowcount == 1
            _event(conn, cid, "program", {
                "id": program.id, "iteration": program.iteration, "island": program.island,
                "status": program.status.value, "score": program.score, "new_elite": new_elite, "new_best": new_best,
            })
        return RecordOutcome(new_elite=new_elite, new_best=new_best, iterations_done=done)

    def upsert_elite(self, campaign_id: str, island: int, cell: str, program_id: str, fitness: float) -> bool:
        """Compare-and-swap one elite; True when ``program_id`` now holds the cell."""
        with self._writing("updating an elite") as conn:
            return _cas_elite(conn, campaign_id, island, cell, program_id, fitness, time.time())

    def get_program(self, program_id: str) -> Program:
        """Raises: StoreError when there is no such program."""
        with self._reading("reading a program") as conn:
            row = conn.execute(select(programs).where(programs.c.id == program_id)).first()
        if row is None:
            raise StoreError(f"no program '{program_id}'")
        return program_from_row(row)

    def get_programs(self, ids: list[str]) -> dict[str, Program]:
        if not ids:
            return {}
        with self._reading("reading programs") as conn:
            rows = conn.execute(select(programs).where(programs.c.id.in_(ids))).all()
        return {row.id: program_from_row(row) for row in rows}

    def list_programs(self, campaign_id: str) -> list[Program]:
        """Every program of a campaign in iteration order (exports and tests, not hot paths)."""
        with self._reading("reading programs") as conn:
            rows = conn.execute(select(programs).where(programs.c.campaign_id == campaign_id).order_by(programs.c.iteration)).all()
        return [program_from_row(r) for r in rows]

    def initial_program(self, campaign_id: str) -> Program:
        """The campaign's initial program (iteration 0). Raises: StoreError when the campaign has none."""
        with self._reading("reading the initial program") as conn:
            row = conn.execute(select(programs).where(programs.c.campaign_id == campaign_id, programs.c.iteration == 0)).first()
        if row is None:
            raise StoreError(f"campaign '{campaign_id}' has no initial program")
        return program_from_row(row)

    def best_program(self, campaign_id: str) -> Program | None:
        best_id = self.get_campaign(campaign_id).best_program_id
        return self.get_program(best_id) if best_id else None

    def elites(self, campaign_id: str, island: int | None = None) -> list[EliteRow]:
        """Elites of one island (or all), best first. Bounded by the grid size."""
        query = (
            select(elites.c.island, elites.c.cell, elites.c.program_id, elites.c.fitness, programs.c.n_children)
            .join(programs, programs.c.id == elites.c.program_id)
            .where(elites.c.campaign_id == campaign_id)
        )
        if island is not None:
            query = query.where(elites.c.island == island)
        with self._reading("reading elites") as conn:
            rows = conn.execute(query.order_by(elites.c.fitness.desc(), elites.c.cell)).all()
        return [EliteRow(island=r.island, cell=r.cell, program_id=r.program_id, fitness=r.fitness, n_children=r.n_children) for r in rows]

    def random_program_id(self, campaign_id: str, island: int, u: float) -> str | None:
        """A valid program of an island, chosen by ``u`` in [0, 1) through the iteration index."""
        base = select(programs.c.id).where(
            programs.c.campaign_id == campaign_id, programs.c.island == island, programs.c.status == EvalStatus.OK.value
        )
        with self._reading("sampling a program") as conn:
            top = conn.execute(select(func.max(programs.c.iteration)).where(
                programs.c.campaign_id == campaign_id, programs.c.island == island)).scalar()
            threshold = int(u * (top or 0))
            row = conn.execute(base.where(programs.c.iteration >= threshold).order_by(programs.c.iteration).limit(1)).first()
            if row is None:
                row = conn.execute(base.order_by(programs.c.iteration.desc()).limit(1)).first()
        return row.id if row else None

    def recent_programs(self, campaign_id: str, island: int, limit: int) -> list[Program]:
        with self._reading("reading recent programs") as conn:
            rows = conn.execute(select(programs).where(programs.c.campaign_id == campaign_id, programs.c.island == island)
                                .order_by(programs.c.iteration.desc()).limit(limit)).all()
        return [program_from_row(r) for r in rows]

    def missing_iterations(self, campaign_id: str) -> list[int]:
        """Iterations below the highest recorded one that have no program: proposals a stop or a kill cut off.

        Reads the campaign's iteration numbers once (an index-only scan): for resumes, not hot paths.
        """
        with self._reading("reading the iteration numbers") as conn:
            done = conn.execute(select(programs.c.iteration).where(programs.c.campaign_id == campaign_id)
                                .order_by(programs.c.iteration)).scalars().all()
        missing: list[int] = []
        expected = 0
        for iteration in done:
            missing.extend(range(expected, iteration))
            expected = iteration + 1
        return missing

    def max_iteration(self, campaign_id: str) -> int:
        with self._reading("reading the iteration counter") as conn:
            value = conn.execute(select(func.max(programs.c.iteration)).where(programs.c.campaign_id == campaign_id)).scalar()
        return int(value or 0)

    def same_program(self, campaign_id: str, code: str, *, exact: bool = False) -> tuple[str, int] | None:
        """An earlier program of the campaign that is ``code`` up to formatting and comments (``exact``: the same
        text), and was scored to a verdict: OK, INVALID or BELOW_THRESHOLD (not an ERROR or a TIMEOUT, which a broken
        worker or a loaded machine may cause): (id, iteration) of the first."""
        where = [programs.c.campaign_id == campaign_id, programs.c.code_hash == code_key(code), programs.c.status.in_(_VERDICTS)]
        if exact:
            where.append(programs.c.code == (_storable(code) or ""))
        with self._reading("looking for a duplicate") as conn:
            row = conn.execute(select(programs.c.id, programs.c.iteration).where(*where)
                               .order_by(programs.c.iteration).limit(1)).first()
        return None if row is None else (str(row.id), int(row.iteration))

    def status_counts(self, campaign_id: str) -> dict[str, int]:
        with self._reading("counting programs") as conn:
            rows = conn.execute(select(programs.c.status, func.count()).where(programs.c.campaign_id == campaign_id)
                                .group_by(programs.c.status)).all()
        return {str(status): int(n) for status, n in rows}

    def stage_counts(self, campaign_id: str) -> dict[str, int]:
        """How many programs' evaluations ended at each cascade stage."""
        with self._reading("counting stages") as conn:
            rows = conn.execute(select(programs.c.stage, func.count()).where(programs.c.campaign_id == campaign_id,
                                                                              programs.c.stage.is_not(None))
                                .group_by(programs.c.stage)).all()
        return {str(stage): int(n) for stage, n in rows}

    def filled_cells(self, campaign_id: str) -> int:
        with self._reading("counting cells") as conn:
            return int(conn.execute(select(func.count()).select_from(elites).where(elites.c.campaign_id == campaign_id)).scalar() or 0)

    def refile_elites(self, campaign_id: str, cell_of: Callable[[dict[str, float]], str], *, islands: int,
                      event: dict[str, Any], owner: str | None = None) -> int:
        """Give every valid program the cell ``cell_of(features)`` and rebuild the campaign's elites from them (the best
        per island and cell; the initial program on every island, as at creation; copies that migrated are not kept),
        with a ``cvt_centroids`` event, in one transaction. Returns the elites made.

        Raises:
            LeaseLostError: when ``owner`` is given and no longer holds the campaign (nothing changes).
        """
        now = time.time()
        with self._writing("re-filing the archive") as conn:
            fence(conn, campaign_id, owner)
            rows = conn.execute(select(programs.c.id, programs.c.island, programs.c.iteration, programs.c.features,
                                       programs.c.fitness).where(
                programs.c.campaign_id == campaign_id, programs.c.status == EvalStatus.OK.value,
                programs.c.fitness.is_not(None))).all()
            best: dict[tuple[int, str], tuple[float, str]] = {}
            for r in rows:
                cell = cell_of(dict(r.features))
                conn.execute(update(programs).where(programs.c.id == r.id).values(cell=cell))
                for island in range(islands) if r.iteration == 0 else (int(r.island),):
                    key = (island, cell)
                    if key not in best or r.fitness > best[key][0]:
                        best[key] = (float(r.fitness), str(r.id))
            conn.execute(delete(elites).where(elites.c.campaign_id == campaign_id))
            if best:
                conn.execute(insert(elites), [{"campaign_id": campaign_id, "island": island, "cell": cell, "program_id": pid,
                                               "fitness": fitness, "updated_at": now}
                                              for (island, cell), (fitness, pid) in best.items()])
            _event(conn, campaign_id, "cvt_centroids", event)
        return len(best)

    # -------------------------------------------------------------- migration
    def migrate_islands(self, campaign_id: str, *, upto_iteration: int, islands: int, size: int,
                        owner: str | None = None) -> int:
        """Ring migration: each island's ``size`` best elites are offered to the next island.

        Idempotent per ``upto_iteration``; returns the number of elites that moved in.

        Raises:
            LeaseLostError: when ``owner`` is given and no longer holds the campaign (nothing moves).
        """
        if islands < 2:
            return 0
        now = time.time()
        moved = 0
        with self._writing("migrating between islands") as conn:
            # The campaign's row first, as record_program takes it before its elite (one lock order: no deadlock
            # on PostgreSQL), and held to the end: two controllers cannot both migrate at one boundary.
            fence(conn, campaign_id, owner)
            last = conn.execute(select(campaigns.c.last_migration).where(campaigns.c.id == campaign_id)).scalar()
            if last is not None and last >= upto_iteration:
                return 0
            snapshot = {
                isl: conn.execute(select(elites.c.cell, elites.c.program_id, elites.c.fitness).where(
                    elites.c.campaign_id == campaign_id, elites.c.island == isl,
                ).order_by(elites.c.fitness.desc()).limit(size)).all()
                for isl in range(islands)
            }
            for isl, rows in snapshot.items():
                for row in rows:
                    moved += _cas_elite(conn, campaign_id, (isl + 1) % islands, row.cell, row.program_id, row.fitness, now)
            conn.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(last_migration=upto_iteration))
            _event(conn, campaign_id, "migration", {"iteration": upto_iteration, "moved": moved})
        return moved

    # ----------------------------------------------------------------- events
    def add_event(self, campaign_id: str, kind: str, data: dict[str, Any], *, owner: str | None = None) -> None:
        """Raises: LeaseLostError when ``owner`` is given and no longer holds the campaign (nothing is recorded)."""
        with self._writing("recording an event") as conn:
            fence(conn, campaign_id, owner)
            _event(conn, campaign_id, kind, data)

    def record_calls(self, campaign_id: str, iteration: int, calls: Sequence[LLMCallRecord], *,
                     owner: str | None = None) -> None:
        """Model requests that made no program (a meta-summary's), with the campaign's token and cost counters.

        Raises:
            LeaseLostError: when ``owner`` is given and no longer holds the campaign (nothing is recorded).
        """
        if not calls:
            return
        with self._writing("recording model calls") as conn:
            fence(conn, campaign_id, owner)
            counters = _insert_calls(conn, campaign_id, iteration, calls, time.time())
            conn.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(**counters))

    def events(self, campaign_id: str, *, after_id: int = 0, limit: int = 1000, kind: str | None = None) -> list[dict[str, Any]]:
        """A campaign's events after ``after_id`` in order, optionally of one kind only."""
        where = [events.c.campaign_id == campaign_id, events.c.id > after_id]
        if kind is not None:
            where.append(events.c.kind == kind)
        with self._reading("reading events") as conn:
            rows = conn.execute(select(events).where(*where).order_by(events.c.id).limit(limit)).all()
        return [{"id": r.id, "ts": r.ts, "kind": r.kind, "data": r.data} for r in rows]

def schema_state(spec: str) -> tuple[str | None, str]:
    """The schema revision of the store at ``spec`` and this evolve's latest, read without migrating anything.

    Raises:
        StoreError: when the database cannot be opened, or its schema is newer than this evolve.
    """
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    scripts = ScriptDirectory.from_config(cfg)
    try:
        engine = _make_engine(database_url(spec))
        try:
            with engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        finally:
            engine.dispose()
    except (ArgumentError, ValueError, ImportError, SQLAlchemyError, OSError) as exc:
        raise StoreError(f"cannot open database {shown_spec(spec)}: {_short(exc)}") from exc
    if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
        raise StoreError(f"database schema {current} is newer than this evolve; upgrade evolve to open it")
    return current, scripts.get_current_head() or ""


def shown_spec(spec: str) -> str:
    """A ``--db`` value as errors may show it: a URL's password masked."""
    if "://" not in spec:
        return spec
    try:
        return make_url(spec).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return spec.split("://", 1)[0] + "://…"  # unparseable: show no more than its scheme


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return text[:300]


def _storable(text: str | None) -> str | None:
    """``text`` as every backend can hold it: NUL (PostgreSQL refuses it) and lone surrogates (no UTF-8 holds them) become '?'.

    A model's answer or a provider's error message may carry either (JSON can
    spell ``\\ud800`` and ``\\u0000``); the campaign refuses such text as a
    program, but records the answer. Artifacts get the same, so whatever is
    stored can be served again as UTF-8 (the API, the dashboard).
    """
    if text is None:
        return None
    return text.replace("\0", "?").encode("utf-8", errors="replace").decode("utf-8")


def _insert_calls(conn: Connection, campaign_id: str, iteration: int, calls: Sequence[LLMCallRecord], now: float) -> dict[str, Any]:
    """Insert model requests; returns the campaign counters' new values (expressions) they add to."""
    conn.execute(insert(llm_calls_table), [{
        "campaign_id": campaign_id, "iteration": iteration, "model": c.model, "template": c.template,
        "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "cost_usd": c.cost_usd,
        "latency_s": c.latency_s, "ok": c.ok, "error": _storable(c.error), "outcome": c.outcome, "attempt": c.attempt,
        "created_at": now,
    } for c in calls])
    return {"prompt_tokens": campaigns.c.prompt_tokens + sum(c.prompt_tokens for c in calls),
            "completion_tokens": campaigns.c.completion_tokens + sum(c.completion_tokens for c in calls),
            "cost_usd": campaigns.c.cost_usd + sum(c.cost_usd for c in calls)}


def _program_values(p: Program) -> dict[str, Any]:
    code = _storable(p.code) or ""
    return {
        "id": p.id, "campaign_id": p.campaign_id, "parent_id": p.parent_id, "island": p.island,
        "generation": p.generation, "iteration": p.iteration, "origin": p.origin.value, "status": p.status.value,
        "score": p.score, "fitness": p.fitness, "metrics": p.metrics, "features": p.features,
        "artifacts": {k: _storable(v) for k, v in p.artifacts.items()}, "cell": p.cell, "code": code,
        "code_hash": code_key(code), "mate_id": p.mate_id, "applied": p.applied, "diff": _storable(p.diff), "model": p.model,
        "template": p.template, "eval_seconds": p.eval_seconds, "llm_seconds": p.llm_seconds, "n_children": 0,
        "created_at": p.created_at or time.time(), "stage": p.stage, "node": p.node,
    }


_VERDICTS = [s.value for s in (EvalStatus.OK, EvalStatus.INVALID, EvalStatus.BELOW_THRESHOLD)]
_UPSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def _upsert(conn: Connection, table: Table) -> Any:
    """An INSERT with ON CONFLICT for the connection's database (``Store.open`` admits only those in ``_UPSERT``)."""
    return _UPSERT[conn.dialect.name](table)


def _cas_elite(conn: Connection, campaign_id: str, island: int, cell: str, program_id: str, fitness: float, now: float) -> bool:
    """Insert the elite of a cell, or replace it only if ``fitness`` is strictly better."""
    values = {"campaign_id": campaign_id, "island": island, "cell": cell, "program_id": program_id, "fitness": fitness, "updated_at": now}
    ins = _upsert(conn, elites).values(**values)
    stmt = ins.on_conflict_do_update(
        index_elements=[elites.c.campaign_id, elites.c.island, elites.c.cell],
        set_={"program_id": ins.excluded.program_id, "fitness": ins.excluded.fitness, "updated_at": ins.excluded.updated_at},
        where=elites.c.fitness < ins.excluded.fitness,
    )
    # A row comes back only when the cell was inserted or replaced (psycopg reports no rowcount for this statement)
    return conn.execute(stmt.returning(elites.c.program_id)).first() is not None


def _enter_wal(cur: Any) -> None:
    """Switch a new SQLite connection's database to WAL, waiting out the other processes that open it too.

    The switch needs the database to itself, and SQLite answers "database is locked" at once, without its busy
    handler, while another connection is making the same switch or holds the file: several controllers or workers
    opening a new database together saw that in about one start in three (measured with four processes).
    """
    deadline = time.monotonic() + _BUSY_S
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")  # answers the mode it is in, WAL or (where it cannot) the old one
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() >= deadline:
                raise
        time.sleep(0.02)


def _make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        # A controller frozen inside a transaction (a suspended VM) would hold its campaign's row lock for good:
        # PostgreSQL ends such a session after a while, and the campaign can be resumed once its lease lapses.
        args = {"options": f"-c idle_in_transaction_session_timeout={_IDLE_IN_TRANSACTION_S * 1000}"} \
            if url.startswith("postgresql") and "options=" not in url else {}  # the user's own options win
        return create_engine(url, pool_pre_ping=True, connect_args=args)
    memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": _BUSY_S},
        poolclass=StaticPool if memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        if not memory:  # (the busy timeout is the driver's: sqlite3.connect(timeout=_BUSY_S) above)
            _enter_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("evolve_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine
