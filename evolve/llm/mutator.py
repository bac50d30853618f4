"""The built-in ``mutator`` model: random, seeded, instant, offline.

It reads the current program from the prompt (the last fenced Python block
with EVOLVE-BLOCK markers) and answers with SEARCH/REPLACE edits that perturb
numeric literals and swap operators inside the EVOLVE-BLOCK regions. It is the
random-mutation baseline every serious comparison needs, and the fast model of
the tests and benchmarks.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass

import numpy as np

from evolve.blocks import START_MARKER, find_regions
from evolve.diff import SearchReplace, render_diff
from evolve.errors import DiffError
from evolve.llm.base import Message, RawAnswer
from evolve.llm.grammar import program_from_prompt

__all__ = ["MutatorTransport", "propose_edits"]

_SWAPS = {"+": "-", "-": "+", "*": "/", "/": "*", "<": "<=", "<=": "<", ">": ">=", ">=": ">", "min": "max", "max": "min"}


@dataclass(frozen=True, slots=True)
class _Token:
    start: int  # absolute character offsets in the program
    end: int
    text: str
    kind: int


def _line_offsets(code: str) -> list[int]:
    offsets = [0]
    for line in code.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def _mutable_tokens(code: str) -> list[_Token]:
    regions = find_regions(code)
    offsets = _line_offsets(code)
    found: list[_Token] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type not in (tokenize.NUMBER, tokenize.OP, tokenize.NAME):
                continue
            if tok.type != tokenize.NUMBER and tok.string not in _SWAPS:
                continue
            if tok.start[0] != tok.end[0]:
                continue
            start = offsets[tok.start[0] - 1] + tok.start[1]
            end = start + len(tok.string)
            if regions.contains(start, end):
                found.append(_Token(start, end, tok.string, tok.type))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []
    return found


def _mutate_number(text: str, rng: np.random.Generator) -> str | None:
    clean = text.replace("_", "")
    try:
        if re.fullmatch(r"\d+", clean):
            value = int(clean)
            new = max(0, value + int(rng.choice([-2, -1, 1, 2]))) if value > 1 else value + 1
            return str(new)
        if clean.lower().endswith("j"):
            return None
        fval = float(clean)
    except ValueError:
        return None
    if fval == 0.0:
        new_f = float(rng.normal(0, 0.05))
    elif rng.random() < 0.5:
        new_f = fval * float(np.exp(rng.normal(0, 0.15)))
    else:
        new_f = fval + float(rng.normal(0, 0.1 * abs(fval)))
    out = f"{new_f:.4g}"
    return out if any(c in out for c in ".e") else out + ".0"


def _unique_context(code: str, start: int, end: int) -> tuple[int, int]:
    """Widen ``[start, end)`` to whole lines until the text occurs once in ``code``."""
    lo = code.rfind("\n", 0, start) + 1
    hi = code.find("\n", end)
    hi = len(code) if hi < 0 else hi
    while code.count(code[lo:hi]) > 1:
        prev = code.rfind("\n", 0, max(0, lo - 1)) + 1 if lo > 0 else 0
        nxt = code.find("\n", hi + 1)
        nxt = len(code) if nxt < 0 else nxt
        if prev == lo and nxt == hi:
            break
        lo, hi = prev, nxt
    return lo, hi


def propose_edits(code: str, rng: np.random.Generator, *, max_edits: int = 3) -> list[SearchReplace]:
    """Random SEARCH/REPLACE edits of ``code`` that apply strictly, in order.

    Raises:
        DiffError: when the program has nothing the mutator can change.
    """
    edits: list[SearchReplace] = []
    n_edits = 1 + int(rng.binomial(max_edits - 1, 0.25))
    current = code
    for _ in range(n_edits):
        tokens = _mutable_tokens(current)
        numbers = [t for t in tokens if t.kind == tokenize.NUMBER]
        swaps = [t for t in tokens if t.kind != tokenize.NUMBER]
        pool = numbers if numbers and (not swaps or rng.random() < 0.8) else swaps
        if not pool:
            break
        tok = pool[int(rng.integers(len(pool)))]
        new = _mutate_number(tok.text, rng) if tok.kind == tokenize.NUMBER else _SWAPS[tok.text]
        if new is None or new == tok.text:
            continue
        lo, hi = _unique_context(current, tok.start, tok.end)
        search = current[lo:hi]
        replace = current[lo : tok.start] + new + current[tok.end : hi]
        if START_MARKER in search or current.count(search) != 1:
            continue
        edits.append(SearchReplace(search=search, replace=replace))
        current = current[:lo] + replace + current[hi:]
    if not edits:
        raise DiffError("nothing to mutate: the EVOLVE-BLOCK regions have no numbers or operators")
    return edits


class MutatorTransport:
    """A model that answers with random numeric and operator mutations."""

    name = "mutator"

    async def call(
        self, messages: list[Message], *, temperature: float, seed: int, max_tokens: int, timeout_s: float
    ) -> RawAnswer:
        prompt_chars = sum(len(m.get("content", "")) for m in messages)
        code = program_from_prompt(messages)
        if code is None:
            text = "I found no program with EVOLVE-BLOCK markers in the prompt."
        else:
            try:
                text = "Random mutation of numeric constants and operators.\n\n" + render_diff(
                    propose_edits(code, np.random.default_rng(seed))
                )
            except DiffError as exc:
                text = f"No edit possible: {exc}"
        # estimates: the mutator has no tokenizer (about 4 characters a token)
        return RawAnswer(text=text, prompt_tokens=prompt_chars // 4, completion_tokens=len(text) // 4, cost_usd=0.0, finish_reason="stop")
