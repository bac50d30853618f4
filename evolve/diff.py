"""Turning a model's answer into a child program, strictly.

Two modes:

* **diff**: ``<<<<<<< SEARCH`` / ``=======`` / ``>>>>>>> REPLACE`` blocks. Each
  SEARCH text must occur exactly once in the program (after the earlier blocks
  were applied) and lie inside one EVOLVE-BLOCK body.
* **rewrite**: a fenced code block holding the whole program; its block bodies
  are spliced into the parent's frame, so frozen parts stay identical. Small
  models often drop the markers or run out of tokens mid-program; for a
  program with one block, a markerless answer is taken as that block's body
  (minus any echo of the frozen header and footer), and a cut-off answer keeps
  its longest prefix of whole top-level statements that parses. Neither can
  touch frozen code: only block bodies are ever spliced.

Every failure is a ``DiffError`` whose message is fed back to the model,
and every step is bounded, whatever the answer holds: an answer of at most
``MAX_ANSWER_CHARS`` characters, at most ``MAX_BLOCKS`` SEARCH/REPLACE
blocks, a child of at most ``MAX_PROGRAM_BYTES`` of text without NUL or lone
surrogates, at most ``MAX_PREFIX_TRIES`` compiles to cut a cut-off answer,
and no parser ``RecursionError``/``MemoryError`` escapes. Each step is linear
in the answer's length, or that times ``MAX_BLOCKS`` or ``MAX_PREFIX_TRIES``.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from evolve.blocks import END_MARKER, START_MARKER, find_regions, splice_blocks
from evolve.errors import DiffError
from evolve.problem import MAX_PROGRAM_BYTES, text_problem

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_BLOCKS",
    "MAX_PREFIX_TRIES",
    "MAX_PROGRAM_BYTES",
    "SearchReplace",
    "apply_diff",
    "apply_rewrite",
    "extract_code_block",
    "longest_parsable_prefix",
    "parse_diff",
    "render_diff",
]

_SEARCH = re.compile(r"^<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^={5,9}\s*$")
_REPLACE = re.compile(r"^>{5,9} ?REPLACE\s*$")
_FENCE = re.compile(r"^```([\w+-]*)\s*$")

#: The longest answer read: ten times a long rewrite of the built-in problems' largest programs.
MAX_ANSWER_CHARS = 200_000
#: SEARCH/REPLACE blocks one answer may hold (each costs a scan of the program).
MAX_BLOCKS = 64
#: Compiles ``longest_parsable_prefix`` may spend on one cut-off answer.
MAX_PREFIX_TRIES = 24
_TAIL_TRIES = 8  # of which, walking back from the end: a cut-off answer usually parses one statement earlier


@dataclass(frozen=True, slots=True)
class SearchReplace:
    """One edit: replace the unique occurrence of ``search`` with ``replace``."""

    search: str
    replace: str


def _normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _check_answer(answer: str) -> None:
    if len(answer) > MAX_ANSWER_CHARS:
        raise DiffError(f"the answer is {len(answer)} characters long, over the limit of {MAX_ANSWER_CHARS}: answer with less")


def _checked_child(code: str) -> str:
    """``code``, once it is known to be text a program can be (size, NUL, surrogates)."""
    problem = text_problem(code, what="the resulting program")
    if problem is not None:
        raise DiffError(problem)
    return code


def parse_diff(answer: str) -> list[SearchReplace]:
    """Parse every SEARCH/REPLACE block of an answer.

    Text outside blocks (explanations, code fences) is ignored. Each marker
    must stand alone on its line.

    Raises:
        DiffError: when the answer is over ``MAX_ANSWER_CHARS``, has no block or
            more than ``MAX_BLOCKS``, or a block is unterminated or malformed.
    """
    _check_answer(answer)
    lines = _normalize(answer).split("\n")
    blocks: list[SearchReplace] = []
    i = 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
        start = i + 1
        j = start
        while j < len(lines) and not _DIVIDER.match(lines[j]):
            if _SEARCH.match(lines[j]) or _REPLACE.match(lines[j]):
                raise DiffError(f"SEARCH block {len(blocks) + 1} has no '=======' divider before line {j + 1}")
            j += 1
        if j == len(lines):
            raise DiffError(f"SEARCH block {len(blocks) + 1} is not terminated: expected '=======' then '>>>>>>> REPLACE'")
        k = j + 1
        while k < len(lines) and not _REPLACE.match(lines[k]):
            if _SEARCH.match(lines[k]) or _DIVIDER.match(lines[k]):
                raise DiffError(f"SEARCH block {len(blocks) + 1} has a marker where '>>>>>>> REPLACE' was expected (line {k + 1})")
            k += 1
        if k == len(lines):
            raise DiffError(f"SEARCH block {len(blocks) + 1} is not terminated: expected '>>>>>>> REPLACE'")
        search = "\n".join(lines[start:j])
        replace = "\n".join(lines[j + 1 : k])
        if not search.strip():
            raise DiffError(f"SEARCH block {len(blocks) + 1} is empty: copy the exact lines to change into SEARCH")
        blocks.append(SearchReplace(search=search, replace=replace))
        if len(blocks) > MAX_BLOCKS:
            raise DiffError(f"the answer holds more than {MAX_BLOCKS} SEARCH/REPLACE blocks: make fewer, larger edits")
        i = k + 1
    if not blocks:
        raise DiffError("the answer contains no SEARCH/REPLACE block")
    return blocks


def render_diff(blocks: list[SearchReplace]) -> str:
    """The canonical text of a list of edits (what ``parse_diff`` reads back)."""
    return "\n".join(
        f"<<<<<<< SEARCH\n{b.search}\n=======\n{b.replace}\n>>>>>>> REPLACE" for b in blocks
    )


def _find_unique(code: str, search: str, n: int) -> int:
    first = code.find(search)
    if first < 0:
        stripped = "\n".join(line.rstrip() for line in search.split("\n"))
        hint = ""
        if stripped != search and stripped in code:
            hint = " (it matches only with trailing whitespace removed)"
        raise DiffError(f"SEARCH block {n} matches nothing in the program{hint}: copy the lines exactly, indentation included")
    if code.find(search, first + 1) >= 0:
        raise DiffError(f"SEARCH block {n} matches more than once: include more surrounding lines to make it unique")
    return first


def apply_diff(parent: str, blocks: list[SearchReplace]) -> str:
    """Apply edits in order, strictly, inside EVOLVE-BLOCK bodies only.

    Raises:
        DiffError: when there are more than ``MAX_BLOCKS`` edits, a SEARCH
            matches nothing or several places, touches frozen code or a
            marker, the result changes frozen code, or it is not text a
            program can be (``evolve.problem.text_problem``).
    """
    if len(blocks) > MAX_BLOCKS:
        raise DiffError(f"more than {MAX_BLOCKS} SEARCH/REPLACE blocks: make fewer, larger edits")
    before = find_regions(parent)
    code = _normalize(parent)
    for n, block in enumerate(blocks, start=1):
        for text in (block.search, block.replace):
            if START_MARKER in text or END_MARKER in text:
                raise DiffError(f"block {n} touches an EVOLVE-BLOCK marker line: edit only the code between the markers")
        at = _find_unique(code, block.search, n)
        regions = find_regions(code)
        if not regions.contains(at, at + len(block.search)):
            raise DiffError(f"SEARCH block {n} matches code outside the EVOLVE-BLOCK regions, which may not change")
        code = code[:at] + block.replace + code[at + len(block.search) :]
    _checked_child(code)
    after = find_regions(code)
    if after.frozen != find_regions(_normalize(parent)).frozen or len(after.spans) != len(before.spans):
        raise DiffError("the edit changed code outside the EVOLVE-BLOCK regions")
    return code


def _code_blocks(answer: str) -> tuple[list[tuple[str, str]], str | None]:
    """Complete fenced blocks as (tag, body), and the body of a final unterminated python block."""
    lines = _normalize(answer).split("\n")
    blocks: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i].strip())
        if m is None:
            i += 1
            continue
        tag = m.group(1).lower()
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        if j == len(lines):
            tail = "\n".join(lines[i + 1 :]) + "\n" if tag in _PYTHON_TAGS | {""} else None
            return blocks, tail
        blocks.append((tag, "\n".join(lines[i + 1 : j]) + "\n"))
        i = j + 1
    return blocks, None


_PYTHON_TAGS = frozenset({"python", "py", "python3"})


def extract_code_block(answer: str) -> str:
    """The program from a fenced code block: the first one tagged python, else the first.

    Raises:
        DiffError: when the answer has no complete fenced block.
    """
    blocks, _ = _code_blocks(answer)
    if not blocks:
        raise DiffError("the answer contains no fenced code block (```python ... ```) with the rewritten program")
    for tag, body in blocks:
        if tag in _PYTHON_TAGS:
            return body
    return blocks[0][1]


def _compiles(prefix: str) -> tuple[bool, int | None]:
    """Whether ``prefix`` compiles, and the line a syntax error names (None for other failures)."""
    try:
        compile(prefix, "<rewrite>", "exec", dont_inherit=True)  # unlike ast.parse, rejects a 'return' outside a function
    except SyntaxError as exc:
        return False, exc.lineno
    except (RecursionError, MemoryError, ValueError, OverflowError):  # nested too deeply, NUL...
        return False, None
    return True, None


def longest_parsable_prefix(code: str) -> str:
    """``code`` cut after its last whole top-level statement such that the rest compiles ("" if none).

    At most ``MAX_PREFIX_TRIES`` compiles: walking back from the end (a
    syntax error on line n rules out every cut after line n at once), then a
    binary search over the remaining cuts, so on some pathological texts the
    prefix found is not the longest. Never raises.
    """
    lines = code.split("\n")
    cuts = sorted({i for i, line in enumerate(lines) if i and line[:1] not in ("", " ", "\t", ")", "]", "}", "#")} | {len(lines)})
    tries = 0

    def attempt(index: int) -> tuple[str | None, int]:
        """The prefix at ``cuts[index]`` if it compiles, and the highest cut index worth trying next."""
        nonlocal tries
        tries += 1
        prefix = "\n".join(lines[: cuts[index]]).rstrip() + "\n"
        ok, line = _compiles(prefix)
        if ok and prefix.strip():
            return prefix, index
        # a syntax error on line n (1-based) stays while line n is kept: the next cut must drop it
        below = bisect.bisect_left(cuts, line) - 1 if line and line <= cuts[index] else index - 1
        return None, min(index - 1, below)

    hi = len(cuts) - 1
    while hi >= 0 and tries < _TAIL_TRIES:
        found, hi = attempt(hi)
        if found is not None:
            return found
    lo, best = 0, ""
    while lo <= hi and tries < MAX_PREFIX_TRIES:
        mid = (lo + hi) // 2
        found, below = attempt(mid)
        if found is not None:
            best, lo = found, mid + 1
        else:
            hi = below
    return best


def _without_echo(code: str, head: str, tail: str) -> str:
    """A markerless rewrite minus the frozen header and footer it may have copied."""
    head_lines = {line.rstrip() for line in head.split("\n") if line.strip() and START_MARKER not in line}
    lines = code.split("\n")
    first = 0
    while first < len(lines) and (not lines[first].strip() or lines[first].rstrip() in head_lines):
        first += 1
    body = "\n".join(lines[first:]).rstrip() + "\n"
    footer = "\n".join(line for line in tail.split("\n") if END_MARKER not in line).strip()
    if footer and body.rstrip().endswith(footer):
        body = body.rstrip()[: -len(footer)].rstrip() + "\n"
    return body


def _single_block_body(parent: str, code: str, *, cut_off: bool) -> str:
    regions = find_regions(parent)
    lines = code.split("\n")
    starts = [i for i, line in enumerate(lines) if START_MARKER in line]
    if starts:  # the markers are there but unbalanced (an answer cut off before the END marker)
        lines = lines[starts[0] + 1 :]
        ends = [i for i, line in enumerate(lines) if END_MARKER in line]
        body = "\n".join(lines[: ends[0]] if ends else lines).rstrip() + "\n"
    else:
        body = _without_echo(code, regions.frozen[0], regions.frozen[-1])
    if cut_off:
        body = longest_parsable_prefix(body)
    if not body.strip():
        raise DiffError("the rewritten program is empty once cut to whole statements: answer with the complete code")
    return body


def apply_rewrite(parent: str, answer: str) -> str:
    """Take the rewritten program from an answer and splice its blocks into the parent.

    Raises:
        DiffError: when the answer is over ``MAX_ANSWER_CHARS``, has no code
            block, its EVOLVE-BLOCK markers are missing or do not match the
            parent's (for a program of several blocks), or the child is not
            text a program can be (``evolve.problem.text_problem``).
    """
    _check_answer(answer)
    parent = _normalize(parent)
    blocks, tail = _code_blocks(answer)
    cut_off = not blocks and tail is not None
    code = tail if tail is not None and not blocks else extract_code_block(answer)  # raises when there is no block
    problem = text_problem(code, what="the rewritten program")  # before any compile of it
    if problem is not None:
        raise DiffError(problem)
    try:
        regions = find_regions(code)
    except DiffError as exc:
        if len(find_regions(parent).spans) != 1:
            raise DiffError(f"the rewritten program must keep its EVOLVE-BLOCK markers: {exc}") from exc
        return _checked_child(splice_blocks(parent, [_single_block_body(parent, code, cut_off=cut_off)]))
    bodies = regions.bodies(code)
    if cut_off and len(bodies) == 1:
        bodies = [longest_parsable_prefix(bodies[0]) or bodies[0]]
    return _checked_child(splice_blocks(parent, bodies))
