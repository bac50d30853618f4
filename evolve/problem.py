"""Problems: a folder (or payload) with a config, an initial program and a trusted evaluator.

A problem folder holds::

    problem.yaml          name, description, objective, feature axes, limits
    initial_program.py    a working program with EVOLVE-BLOCK regions
    evaluator.py          trusted ``evaluate(candidate) -> dict``

Everything is validated here, at the edge; the rest of the engine trusts a
``Problem``.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import enum
import hashlib
import importlib.resources
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evolve.blocks import find_regions
from evolve.errors import DiffError, ProblemError, format_errors
from evolve.novelty import parse as parse_python

__all__ = [
    "BUILTIN_FEATURES",
    "MAX_LINE_CHARS",
    "MAX_PROGRAM_BYTES",
    "Direction",
    "FeatureAxis",
    "KnownBest",
    "Limits",
    "Objective",
    "Problem",
    "ProblemConfig",
    "Stage",
    "Threshold",
    "builtin_problem_names",
    "compile_problem",
    "load_problem",
    "problem_root",
    "resolve_problem",
    "text_problem",
]

CONFIG_FILE = "problem.yaml"
PROGRAM_FILE = "initial_program.py"
EVALUATOR_FILE = "evaluator.py"
README_FILE = "README.md"  # documentation for people; not part of the problem's content
_MAX_EXTRA_BYTES = 8 * 1024 * 1024
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", "tests"}

#: Features computed from the program text itself; any other axis name must be
#: returned by the evaluator (in ``features`` or ``metrics``).
BUILTIN_FEATURES = frozenset({"code_length", "line_count"})

#: The largest program (UTF-8 bytes) evolve compiles, evaluates or stores. The
#: built-in problems' programs are a few KiB; 256 KiB leaves a model room for
#: forty times that while bounding what one compile, one prompt and one row cost.
MAX_PROGRAM_BYTES = 256 << 10
#: The longest line a program may have: CPython 3.11 compiles some lines (a long f-string)
#: in time quadratic in their length (4-6 s for one of 256 KiB), and the controller compiles.
MAX_LINE_CHARS = 4000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Direction(enum.StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


class Objective(_Strict):
    """A metric and its direction.

    As the problem's ``objective`` it is the single scalar the archive ranks
    by. With ``weights`` that scalar is formed by the controller as
    ``sum(weight * metric)`` over the named metrics (the evaluator must not
    return ``metric`` itself then).
    """

    metric: str = Field(min_length=1, max_length=100, description="name of the metric the evaluator returns")
    direction: Direction = Direction.MAXIMIZE
    weights: dict[str, float] | None = Field(default=None, description="form the metric as a weighted sum of these metrics")

    @model_validator(mode="after")
    def _weights(self) -> Objective:
        if self.weights is not None:
            if not self.weights:
                raise ValueError("weights must name at least one metric")
            if self.metric in self.weights:
                raise ValueError(f"the weighted metric '{self.metric}' cannot weigh itself")
            bad = [k for k, w in self.weights.items() if not math.isfinite(w)]
            if bad:
                raise ValueError(f"weights must be finite numbers; check {', '.join(bad)}")
        return self

    def fitness(self, value: float) -> float:
        """Map an objective value to 'higher is better'."""
        return value if self.direction is Direction.MAXIMIZE else -value


class FeatureAxis(_Strict):
    """A fixed MAP-Elites axis. Values outside ``[min, max]`` clamp to the edge bins."""

    name: str = Field(min_length=1)
    min: float
    max: float
    bins: int = Field(ge=1, le=1000)

    @model_validator(mode="after")
    def _range(self) -> FeatureAxis:
        if not self.max > self.min:
            raise ValueError(f"max ({self.max}) must be greater than min ({self.min})")
        return self

    def bin(self, value: float) -> int:
        """Index of the bin holding ``value``; out-of-range values clamp to the edges."""
        if not value > self.min:  # below range, and NaN (callers reject NaN earlier)
            return 0
        if value >= self.max:
            return self.bins - 1
        return min(self.bins - 1, int((value - self.min) / (self.max - self.min) * self.bins))


class Limits(_Strict):
    """Resource limits of one evaluation."""

    timeout_s: float = Field(default=30.0, gt=0, le=3600, description="wall time of a whole evaluation")
    cpu_s: int | None = Field(default=None, ge=1, le=3600, description="CPU seconds of one candidate call (default: timeout_s)")
    memory_mb: int = Field(default=1024, ge=64, le=65536, description="memory of the candidate (address space and cgroup)")
    processes: int = Field(default=32, ge=1, le=1024, description="processes and threads the candidate may run at once")
    output_bytes: int = Field(default=1 << 20, ge=1024, le=1 << 28, description="cap on captured stdout+stderr")
    num_cpus: float = Field(default=1.0, gt=0, le=1024, description="CPUs each evaluation requests from a Ray cluster")
    num_gpus: float = Field(default=0.0, ge=0, le=64, description="GPUs each evaluation requests from a Ray cluster")

    def cpu_seconds(self) -> int:
        """The CPU-time limit of one candidate call."""
        return self.cpu_s if self.cpu_s is not None else max(1, math.ceil(self.timeout_s))


class Threshold(_Strict):
    """A cascade stage passes when ``metric`` is at least / at most a value."""

    metric: str = Field(min_length=1, max_length=100)
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("give exactly one of at_least and at_most")
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "at_least": self.at_least, "at_most": self.at_most}


class Stage(_Strict):
    """One step of an evaluation cascade: an evaluator function with its own limits.

    A candidate that fails a stage, or scores below its threshold, stops there.
    """

    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    function: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                          description="the evaluator.py function to call with the candidate")
    threshold: Threshold | None = None
    limits: Limits | None = Field(default=None, description="this stage's limits (default: the problem's)")


class KnownBest(_Strict):
    value: float
    source: str = ""


class ProblemConfig(_Strict):
    """Schema of ``problem.yaml``."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = Field(min_length=1, max_length=20000)
    objective: Objective
    features: list[FeatureAxis] = Field(default_factory=list, max_length=8)
    limits: Limits = Field(default_factory=Limits)
    known_best: KnownBest | None = None
    objectives: list[Objective] = Field(default_factory=list, max_length=8,
                                        description="objectives of the Pareto front (default: the objective alone)")
    stages: list[Stage] = Field(default_factory=list, max_length=8,
                                description="evaluation cascade, cheap to expensive (default: one stage calling evaluate)")
    held_out: Stage | None = Field(default=None, description="scores a program on held-out instances, for reports only")

    @model_validator(mode="after")
    def _consistent(self) -> ProblemConfig:
        for what, names in (
            ("feature axes", [axis.name for axis in self.features]),
            ("objectives", [o.metric for o in self.objectives]),
            ("stages", [s.name for s in self.stages]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what} must have distinct names; repeated: {', '.join(dupes)}")
        if self.stages and self.stages[-1].threshold is not None:
            raise ValueError(f"the last stage ('{self.stages[-1].name}') cannot have a threshold: it is the final score")
        if self.held_out is not None and self.held_out.threshold is not None:
            raise ValueError("held_out cannot have a threshold")
        if any(o.weights for o in self.objectives):
            raise ValueError("only the main objective may be a weighted sum; list the Pareto objectives as plain metrics")
        return self

    def pipeline(self) -> list[Stage]:
        """The evaluation cascade, each stage with its effective limits."""
        stages = self.stages or [Stage(name="evaluate", function="evaluate")]
        return [s if s.limits is not None else s.model_copy(update={"limits": self.limits}) for s in stages]

    def held_out_stage(self) -> Stage | None:
        """The held-out report stage with its effective limits, if the problem has one."""
        if self.held_out is None:
            return None
        return self.held_out if self.held_out.limits is not None else self.held_out.model_copy(update={"limits": self.limits})

    def pareto_objectives(self) -> list[Objective]:
        """The objectives of the Pareto front (the main objective when none are declared)."""
        return list(self.objectives) or [self.objective]


@dataclass(frozen=True)
class Problem:
    """A validated problem. ``extra_files`` maps relative paths to file bytes."""

    config: ProblemConfig
    config_text: str
    initial_program: str
    evaluator_source: str
    extra_files: dict[str, bytes] = field(default_factory=dict)
    source: str = ""  # where it was loaded from, for messages

    @property
    def name(self) -> str:
        return self.config.name

    def fingerprint(self) -> str:
        """Content hash: two problems with the same files have the same fingerprint."""
        h = hashlib.sha256()
        for part in (self.config_text, self.initial_program, self.evaluator_source):
            h.update(part.encode())
            h.update(b"\0")
        for path in sorted(self.extra_files):
            h.update(path.encode() + b"\0" + self.extra_files[path] + b"\0")
        return h.hexdigest()[:16]

    def write_to(self, folder: Path) -> Path:
        """Materialize the problem's files in ``folder`` (for the evaluator process)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(self.config_text)
        (folder / PROGRAM_FILE).write_text(self.initial_program)
        (folder / EVALUATOR_FILE).write_text(self.evaluator_source)
        for rel, data in self.extra_files.items():
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return folder

    def extra_files_json(self) -> str:
        return json.dumps({k: base64.b64encode(v).decode() for k, v in sorted(self.extra_files.items())})

    @staticmethod
    def extra_files_from_json(text: str) -> dict[str, bytes]:
        return {k: base64.b64decode(v) for k, v in json.loads(text or "{}").items()}

    @classmethod
    def from_folder(cls, folder: str | Path) -> Problem:
        """Load and validate a problem folder (``problem.yaml``, ``initial_program.py``, ``evaluator.py``, extra files).

        Raises:
            ProblemError: when a file is missing or invalid.
        """
        return load_problem(Path(folder).expanduser())

    @classmethod
    def builtin(cls, name: str) -> Problem:
        """A problem shipped with evolve, by name (``evolve problems`` lists them).

        Raises:
            ProblemError: for an unknown name.
        """
        if name not in builtin_problem_names():
            raise ProblemError(f"unknown built-in problem '{name}': use one of {', '.join(builtin_problem_names())}")
        return load_problem(problem_root() / name)

    @classmethod
    def from_sources(
        cls,
        *,
        config_text: str,
        initial_program: str,
        evaluator_source: str,
        extra_files: dict[str, bytes] | None = None,
        source: str = "<payload>",
    ) -> Problem:
        """Validate a problem given as texts (a folder, the store, or an API payload).

        Raises:
            ProblemError: naming the file and field at fault.
        """
        with _blame("config"):
            config = parse_config(config_text, source=f"{source}/{CONFIG_FILE}")
        with _blame("initial_program"):
            _check_program(initial_program, f"{source}/{PROGRAM_FILE}")
        with _blame("evaluator"):
            _check_evaluator(evaluator_source, f"{source}/{EVALUATOR_FILE}", config)
        return cls(
            config=config,
            config_text=config_text,
            initial_program=initial_program,
            evaluator_source=evaluator_source,
            extra_files=dict(extra_files or {}),
            source=source,
        )


@contextlib.contextmanager
def _blame(part: str) -> Iterator[None]:
    """Name ``part`` as the field at fault of a ProblemError raised inside."""
    try:
        yield
    except ProblemError as exc:
        exc.field = exc.field or part
        raise


def parse_config(text: str, *, source: str) -> ProblemConfig:
    """Parse and validate ``problem.yaml`` text.

    Raises:
        ProblemError: for YAML syntax errors and schema violations, naming the field.
    """
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        raise ProblemError(f"{source}:{at} is not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    return config_from_data(data, source=source)


def config_from_data(data: Any, *, source: str) -> ProblemConfig:
    """Validate an already-parsed problem config (a mapping).

    Raises:
        ProblemError: naming the field at fault.
    """
    if not isinstance(data, dict):
        raise ProblemError(f"{source}: must be a mapping with keys name, description, objective, ...")
    try:
        return ProblemConfig.model_validate(data)
    except ValidationError as exc:
        raise ProblemError(f"{source}: {format_errors(exc)}") from exc


def text_problem(code: str, *, what: str = "the program") -> str | None:
    """What makes a program's text unusable before it is even compiled, or None.

    Four things: more than ``MAX_PROGRAM_BYTES`` of UTF-8, a line over
    ``MAX_LINE_CHARS`` (whose compile can take seconds), a NUL character (no
    Python source may hold one, and PostgreSQL cannot store it), and a lone
    surrogate (JSON from an HTTP model can carry ``\\ud800``; no UTF-8 file,
    row or prompt can hold it). Linear in the text's length; never raises.
    """
    if len(code) > MAX_PROGRAM_BYTES:  # every character is at least one byte: no need to encode
        return f"{what} is {len(code)} characters long, over the limit of {MAX_PROGRAM_BYTES} bytes"
    try:
        size = len(code.encode("utf-8"))
    except UnicodeEncodeError as exc:
        return f"{what} holds a lone surrogate character ({code[exc.start]!r} at offset {exc.start}), which is not text"
    if size > MAX_PROGRAM_BYTES:
        return f"{what} is {size} bytes long in UTF-8, over the limit of {MAX_PROGRAM_BYTES} bytes"
    nul = code.find("\0")
    if nul >= 0:
        return f"{what} holds a NUL character (offset {nul}), which Python source cannot contain"
    for number, line in enumerate(code.splitlines(), start=1):
        if len(line) > MAX_LINE_CHARS:
            return f"line {number} of {what} is {len(line)} characters long, over the limit of {MAX_LINE_CHARS}: break it up"
    return None


def compile_problem(code: str, filename: str) -> str | None:
    """Why ``code`` cannot be compiled, as a message naming what is wrong, or None when it compiles.

    Never raises for any text: besides syntax errors, a program of one
    expression nested a few thousand levels deep makes CPython's parser or
    compiler raise ``RecursionError`` or ``MemoryError``, and odd text raises
    ``ValueError`` or ``OverflowError``; each becomes a message. The text is
    first checked by ``text_problem``, so one compile costs at most that of
    ``MAX_PROGRAM_BYTES`` of source.
    """
    problem = text_problem(code)
    if problem is not None:
        return problem
    try:
        compile(code, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        # the compiler's message quotes the program's own names: quoted (and clipped), as the program's words
        said = str(exc.msg) if len(str(exc.msg)) <= 200 else str(exc.msg)[:200] + "…"
        return f"syntax error{f' on line {exc.lineno}' if exc.lineno else ''}: {said!r}"
    except RecursionError:
        return "the program is nested too deeply to compile (RecursionError); split deep expressions into statements"
    except MemoryError:
        return "the program is nested too deeply for the parser (MemoryError); split deep expressions into statements"
    except (ValueError, OverflowError) as exc:
        return f"the program cannot be compiled: {type(exc).__name__}: {exc}"
    return None


def _check_program(code: str, where: str) -> None:
    problem = compile_problem(code, where)
    if problem is not None:
        raise ProblemError(f"{where}: {problem}")
    try:
        find_regions(code)
    except DiffError as exc:
        raise ProblemError(f"{where}: {exc}") from exc


def _check_evaluator(code: str, where: str, config: ProblemConfig) -> None:
    try:
        tree = parse_python(code, where)
    except SyntaxError as exc:
        raise ProblemError(f"{where}: line {exc.lineno}: syntax error: {exc.msg}") from exc
    except (RecursionError, MemoryError, ValueError, OverflowError) as exc:
        raise ProblemError(f"{where}: cannot be parsed ({type(exc).__name__}): nested too deeply, or not Python text") from exc
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    held_out = config.held_out_stage()
    for stage in config.pipeline() + ([held_out] if held_out else []):
        if stage.function not in defined:
            role = "the evaluation" if not config.stages and stage is not held_out else f"stage '{stage.name}'"
            raise ProblemError(f"{where}: must define a top-level function '{stage.function}(candidate) -> dict' for {role}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ProblemError(f"{path}: missing; a problem folder needs {CONFIG_FILE}, {PROGRAM_FILE} and {EVALUATOR_FILE}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ProblemError(f"{path}: cannot be read ({exc})") from exc


def _extra_files(folder: Path) -> dict[str, bytes]:
    extra: dict[str, bytes] = {}
    total = 0
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if not path.is_file() or any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if rel.as_posix() in (CONFIG_FILE, PROGRAM_FILE, EVALUATOR_FILE, README_FILE):
            continue
        data = path.read_bytes()
        total += len(data)
        if total > _MAX_EXTRA_BYTES:
            raise ProblemError(f"{folder}: extra files exceed {_MAX_EXTRA_BYTES // (1 << 20)} MiB; keep large data outside the problem folder")
        extra[rel.as_posix()] = data
    return extra


def load_problem(folder: Path) -> Problem:
    """Load and validate a problem folder.

    Raises:
        ProblemError: when a file is missing or invalid.
    """
    if not folder.is_dir():
        raise ProblemError(f"{folder}: not a problem folder (run 'evolve problems' to list built-in problems)")
    return Problem.from_sources(
        config_text=_read_text(folder / CONFIG_FILE),
        initial_program=_read_text(folder / PROGRAM_FILE),
        evaluator_source=_read_text(folder / EVALUATOR_FILE),
        extra_files=_extra_files(folder),
        source=str(folder),
    )


def problem_root() -> Path:
    return Path(str(importlib.resources.files("evolve") / "problems"))


def builtin_problem_names() -> list[str]:
    """Names of the problems shipped with evolve."""
    root = problem_root()
    return sorted(p.name for p in root.iterdir() if (p / CONFIG_FILE).is_file())


def resolve_problem(spec: str) -> Problem:
    """A built-in problem name or a path to a problem folder.

    Raises:
        ProblemError: when neither exists or the problem is invalid.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_problem(path)
    if "/" not in spec and (problem_root() / spec / CONFIG_FILE).is_file():
        return load_problem(problem_root() / spec)
    known = ", ".join(builtin_problem_names())
    raise ProblemError(f"unknown problem '{spec}': give a problem folder or one of: {known}")
