"""Render prompts from the Jinja templates under ``prompts/``.

Templates get the problem description, the parent's code, metrics and
evaluator feedback, the inspirations with their scores, and the errors of
recent failed attempts. The problem's known best value is never given to a
template, so it cannot leak into a prompt.

Two styles: ``full`` (the problem, the inspirations, the recent failures, the
program) and ``compact`` for small in-process models, whose CPU time goes
mostly into reading the prompt: the problem, the program and the last failure
only, asking for one small change (``prompts/compact/``). Both start with what
stays the same (the system prompt, the problem), which llama.cpp keeps cached
from one proposal to the next; the compact task comes after the program, where
a small model follows it best (the rewrite trials in benchmarks/models.py's
history read it there), at the cost of reading those hundred tokens each time.

Feedback keeps its provenance: what the evaluator said (its messages and
artifacts) is ``parent_feedback``; what the candidate program printed or
raised is ``program_output``, clipped and quoted line by line (``| ``), so a
program cannot write a line that reads as the evaluator's; the trusted side's
own tracebacks never reach a prompt.
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path
from typing import Any

import jinja2

from evolve.archive import Sample
from evolve.config import Kind
from evolve.evaluators.validate import artifact_source
from evolve.problem import ProblemConfig
from evolve.values import Program

__all__ = ["PromptBuilder", "default_template_dir"]

_ARTIFACT_CHARS = 1500
_PROGRAM_OUTPUT_CHARS = 1000
_NOTES_CHARS = 2000


def default_template_dir() -> Path:
    return Path(str(importlib.resources.files("evolve") / "prompts"))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.4e}"
    return "n/a" if value is None else str(value)


def _oneline(text: str, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _quoted(text: str) -> str:
    """Each line prefixed with ``| ``: text shown as a quotation that cannot start a line of its own.

    Every line boundary counts (``\\r``, ``\\v``, ``\\f``, ``\\x1c``-``\\x1e``, ``\\x85``, ``\\u2028``,
    ``\\u2029``, not only ``\\n``): each starts a new quoted line.
    """
    return "\n".join(f"| {line}" for line in str(text).strip("\r\n").splitlines())


def _fenced(code: str, language: str = "python") -> str:
    """``code`` in a fence longer than any run of backticks in it, so no line of the program can close it."""
    longest = max((len(run) for run in re.findall(r"`+", str(code))), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{code}\n{fence}"


def _tail(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


class PromptBuilder:
    """Turns a ``Sample`` into chat messages for a model."""

    def __init__(self, problem: ProblemConfig, *, template_dir: Path | None = None) -> None:
        self._problem = problem
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(template_dir or default_template_dir())),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
        )
        self._env.filters["fmt"] = _fmt
        self._env.filters["oneline"] = _oneline
        self._env.filters["quoted"] = _quoted
        self._env.filters["fenced"] = _fenced

    def build(self, sample: Sample, *, mode: Kind, mate: Program | None = None, notes: str | None = None,
              style: str = "full", focus: list[str] | None = None) -> list[dict[str, str]]:
        """Messages for one proposal of kind ``mode`` ("diff", "rewrite" or "crossover", which needs ``mate``).

        ``notes`` is the island's latest meta-summary (a model's own words about what worked), clipped. ``style``
        "compact" leaves out the inspirations, the notes and all failures but the last (a crossover stays full);
        ``focus`` (compact diffs) names the lines this proposal is to change (``evolve.llm.grammar.choose_focus``).
        """
        if mode == "crossover" and mate is None:
            raise ValueError("a crossover prompt needs a second parent")
        objective = self._problem.objective
        context = {
            "mate": mate,
            "notes": notes.strip()[:_NOTES_CHARS] if notes else None,
            "description": self._problem.description,
            "metric": objective.metric,
            "direction": objective.direction.value,
            "parent": sample.parent,
            "parent_feedback": {k: _tail(v, _ARTIFACT_CHARS) for k, v in sample.parent.artifacts.items()
                                if artifact_source(k) == "evaluator"},
            "program_output": {k: _tail(v, _PROGRAM_OUTPUT_CHARS) for k, v in sample.parent.artifacts.items()
                               if artifact_source(k) == "program"},
            "inspirations": sample.inspirations,
            "failures": sample.failures,
            "cascade": len(self._problem.stages) > 1,
            "focus": focus,
        }
        if style == "compact" and mode != "crossover":
            return self._render(f"compact/{mode}.j2", context, system="compact/system.j2")
        return self._render(f"{mode}.j2", context)

    def meta(self, *, best: list[Program], failures: list[Program], notes: str | None) -> list[dict[str, str]]:
        """Messages asking for a summary of what the best programs and the recent failures have in common."""
        objective = self._problem.objective
        return self._render("meta.j2", {
            "description": self._problem.description, "metric": objective.metric, "direction": objective.direction.value,
            "best": best, "failures": failures, "notes": notes.strip()[:_NOTES_CHARS] if notes else None,
            "cascade": len(self._problem.stages) > 1,
        })

    def _render(self, template: str, context: dict[str, Any], *, system: str = "system.j2") -> list[dict[str, str]]:
        system = self._env.get_template(system).render(**context).strip()
        user = self._env.get_template(template).render(**context).strip()
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]
