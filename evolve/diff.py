"""Turning a model's answer into a child program, strictly.

Two modes:

* **diff**: ``<<<<<<< SEARCH`` / ``=======`` / ``>>>>>>> REPLACE`` blocks. Each
  SEARCH text must occur exactly once in the program (after the earlier blocks
  were applied) and lie inside one EVOLVE-BLOCK body. Tolerant, still strict,
  where small models slip: a SEARCH that matches nothing exactly but exactly
  one place once every line is shifted by the same indentation is applied
  there, its REPLACE shifted the same way (``Applied.REINDENTED``); an answer
  with no SEARCH block but a fenced whole EVOLVE-BLOCK is applied as a rewrite
  (``Applied.BLOCK``); a SEARCH that is the prompt's own placeholder is
  reported as such. Anything ambiguous fails with a message, never a skip.
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

import ast
import bisect
import enum
import re
from dataclasses import dataclass

from evolve.blocks import END_MARKER, START_MARKER, find_regions, splice_blocks
from evolve.errors import DiffError
from evolve.novelty import parse
from evolve.problem import MAX_PROGRAM_BYTES, text_problem

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_BLOCKS",
    "MAX_MATCH_WORK",
    "MAX_PREFIX_TRIES",
    "MAX_PROGRAM_BYTES",
    "PLACEHOLDER_REPLACE",
    "PLACEHOLDER_SEARCH",
    "Applied",
    "SearchReplace",
    "apply_answer",
    "apply_diff",
    "apply_rewrite",
    "diff_with_path",
    "extract_code_block",
    "longest_parsable_prefix",
    "parse_diff",
    "render_diff",
    "rewrite_with_path",
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

#: The prompts' placeholder lines of the SEARCH/REPLACE format (``prompts/*.j2`` show them; a test keeps them equal).
PLACEHOLDER_SEARCH = "exact lines copied from the current program, inside an EVOLVE-BLOCK"
PLACEHOLDER_REPLACE = "the new lines"


class Applied(enum.StrEnum):
    """How an answer became a child: counted per model, so a user sees which tolerance a model leans on."""

    EXACT = "exact"  # every SEARCH text matched exactly
    REINDENTED = "reindented"  # a SEARCH matched only once shifted by one indentation; its REPLACE was shifted too
    BLOCK = "block"  # a diff answer gave the whole EVOLVE-BLOCK instead of SEARCH/REPLACE blocks: taken as a rewrite
    REWRITE = "rewrite"  # a rewrite with its markers
    BODY = "body"  # a markerless rewrite of a one-block program, taken as the block's body
    CUT = "cut"  # a rewrite cut off mid-program, kept to its whole statements


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
        if search.strip() == PLACEHOLDER_SEARCH or replace.strip() == PLACEHOLDER_REPLACE:
            raise DiffError(f"SEARCH block {len(blocks) + 1} repeats the format's placeholder text "
                            f"('{PLACEHOLDER_SEARCH}'): put the program's own lines in SEARCH and your new lines in REPLACE")
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


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _shifted(search: list[str], code: list[str]) -> tuple[str, str] | None:
    """``(add, remove)`` when every non-blank code line is a search line with ``remove`` cut from its start and ``add``
    put before it (one of the two empty), up to trailing whitespace; None when the shift is not the same for all.
    Stops at the first line that differs."""
    shift: tuple[str, str] | None = None
    for s_line, c_line in zip(search, code, strict=True):
        s_line, c_line = s_line.rstrip(), c_line.rstrip()
        if not s_line.strip() and not c_line.strip():
            continue
        if not s_line.strip() or not c_line.strip():
            return None
        if shift is None:
            si, ci = _indent(s_line), _indent(c_line)
            if ci.startswith(si):
                shift = (ci[len(si):], "")
            elif si.startswith(ci):
                shift = ("", si[len(ci):])
            else:
                return None
        add, remove = shift
        if not s_line.startswith(remove) or c_line != add + s_line[len(remove):]:
            return None
    return shift


#: Line comparisons one re-indented match may cost (a program of repeated lines and a long SEARCH would be quadratic).
MAX_MATCH_WORK = 2_000_000


def _reindented_match(code: str, search: str, n: int) -> tuple[int, int, str, str] | None:
    """The one place ``search`` matches once shifted by one indentation: ``(start, end, add, remove)``.

    Raises:
        DiffError: when it matches that way in several places, or would cost over ``MAX_MATCH_WORK`` comparisons.
    """
    lines = search.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return None
    code_lines = code.split("\n")
    starts = [0]
    for line in code_lines:
        starts.append(starts[-1] + len(line) + 1)
    found: list[tuple[int, int, str, str]] = []
    first = lines[0].strip()
    work = 0
    for i in range(len(code_lines) - len(lines) + 1):
        if code_lines[i].strip() != first:
            continue
        work += len(lines)
        if work > MAX_MATCH_WORK:
            raise DiffError(f"SEARCH block {n} matches nothing exactly and is too costly to match re-indented: "
                            "copy the lines exactly, indentation included")
        shift = _shifted(lines, code_lines[i : i + len(lines)])
        if shift is not None:
            end = starts[i + len(lines)] - 1  # the end of the last matched line, without its newline
            found.append((starts[i], end, *shift))
            if len(found) > 1:
                break
    if len(found) > 1:
        raise DiffError(f"SEARCH block {n} matches nothing exactly, and several places once re-indented: "
                        "copy the lines exactly, indentation included, with enough of them to be unique")
    return found[0] if found else None


def _shift_lines(text: str, add: str, remove: str, n: int) -> str:
    out = []
    for line in text.split("\n"):
        if not line.strip():
            out.append("")
            continue
        if not line.startswith(remove):
            raise DiffError(f"REPLACE of block {n} is indented less than its SEARCH: keep the SEARCH's indentation")
        out.append(add + line[len(remove):])
    return "\n".join(out)


def _locate(code: str, block: SearchReplace, n: int) -> tuple[int, int, str, bool]:
    """Where a block applies: ``(start, end, replacement, reindented)``.

    Raises:
        DiffError: when it matches nothing (even re-indented) or several places.
    """
    first = code.find(block.search)
    if first >= 0:
        if code.find(block.search, first + 1) >= 0:
            raise DiffError(f"SEARCH block {n} matches more than once: include more surrounding lines to make it unique")
        return first, first + len(block.search), block.replace, False
    shifted = _reindented_match(code, block.search, n)
    if shifted is None:
        stripped = "\n".join(line.rstrip() for line in block.search.split("\n"))
        hint = ""
        if stripped != block.search and stripped in code:
            hint = " (it matches only with trailing whitespace removed)"
        raise DiffError(f"SEARCH block {n} matches nothing in the program{hint}: copy the lines exactly, indentation included")
    start, end, add, remove = shifted
    replace = block.replace.strip("\n")
    return start, end, _shift_lines(replace, add, remove, n), True


def apply_diff(parent: str, blocks: list[SearchReplace]) -> str:
    """Apply edits in order, strictly, inside EVOLVE-BLOCK bodies only (see ``diff_with_path``)."""
    return diff_with_path(parent, blocks)[0]


def diff_with_path(parent: str, blocks: list[SearchReplace]) -> tuple[str, Applied]:
    """Apply edits in order, strictly, inside EVOLVE-BLOCK bodies only, and say whether any needed re-indenting.

    Raises:
        DiffError: when there are more than ``MAX_BLOCKS`` edits, a SEARCH
            matches nothing or several places (exactly, else once shifted by
            one indentation), touches frozen code or a marker, the result
            changes frozen code, or it is not text a program can be
            (``evolve.problem.text_problem``).
    """
    if len(blocks) > MAX_BLOCKS:
        raise DiffError(f"more than {MAX_BLOCKS} SEARCH/REPLACE blocks: make fewer, larger edits")
    before = find_regions(parent)
    code = _normalize(parent)
    reindented = False
    for n, block in enumerate(blocks, start=1):
        for text in (block.search, block.replace):
            if START_MARKER in text or END_MARKER in text:
                raise DiffError(f"block {n} touches an EVOLVE-BLOCK marker line: edit only the code between the markers")
        start, end, replace, shifted = _locate(code, block, n)
        reindented |= shifted
        regions = find_regions(code)
        if not regions.contains(start, end):
            raise DiffError(f"SEARCH block {n} matches code outside the EVOLVE-BLOCK regions, which may not change")
        code = code[:start] + replace + code[end:]
    _checked_child(code)
    after = find_regions(code)
    if after.frozen != find_regions(_normalize(parent)).frozen or len(after.spans) != len(before.spans):
        raise DiffError("the edit changed code outside the EVOLVE-BLOCK regions")
    return code, Applied.REINDENTED if reindented else Applied.EXACT


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


_IMPORT_LINE = re.compile(r"^(import\s+[\w.]+|from\s+[\w.]+\s+import\s+\S)")


def _header_imports(head: str) -> list[str]:
    """The import statements at the top level of the text above a block: whole (however many lines) when that text
    parses on its own, else the unindented lines that read as one (the text ends inside a class or function)."""
    try:
        tree = parse(head)
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return [line.rstrip() for line in head.split("\n") if _IMPORT_LINE.match(line)]
    return [ast.get_source_segment(head, node) or "" for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]


def _carried_imports(parent: str, code: str, bodies: list[str]) -> list[str]:
    """``bodies`` with the imports a rewrite added above its first block carried into that block.

    The frame outside the blocks is frozen, so an import the model put there would be dropped by the splice and
    the child would fail with a NameError; at the top of a top-level block it means the same thing. Only top-level
    import statements count (not one guarded by ``try``, not the word "from" in a docstring).

    Raises:
        DiffError: when the first block is indented (inside a function or class), where an import cannot go as is,
            or the import is a ``__future__`` one, which must stay the program's first statement.
    """
    added_by_answer = _header_imports(code[: find_regions(code).spans[0][0]])
    known = _header_imports(find_regions(parent).frozen[0])
    added = [imp for imp in added_by_answer if imp and imp not in known]
    if not added:
        return bodies
    if any(imp.startswith("from __future__") for imp in added):
        raise DiffError("the rewrite adds a 'from __future__' import, which cannot move into the EVOLVE-BLOCK: leave it out")
    first = next((line for line in bodies[0].split("\n") if line.strip()), "")
    if _indent(first):
        raise DiffError(f"the rewrite adds {'; '.join(added)!r} above the EVOLVE-BLOCK, where nothing may change: "
                        "put the import inside the block, at the top of the function that uses it")
    return ["\n".join(added) + "\n" + bodies[0], *bodies[1:]]


def apply_rewrite(parent: str, answer: str) -> str:
    """Take the rewritten program from an answer and splice its blocks into the parent (see ``rewrite_with_path``)."""
    return rewrite_with_path(parent, answer)[0]


def rewrite_with_path(parent: str, answer: str) -> tuple[str, Applied]:
    """Take the rewritten program from an answer and splice its blocks into the parent, and say how.

    Imports the rewrite adds above its first block are carried into that block (see ``_carried_imports``).

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
        body = _single_block_body(parent, code, cut_off=cut_off)
        return _checked_child(splice_blocks(parent, [body])), Applied.CUT if cut_off else Applied.BODY
    bodies = regions.bodies(code)
    if cut_off and len(bodies) == 1:
        bodies = [longest_parsable_prefix(bodies[0]) or bodies[0]]
    bodies = _carried_imports(parent, code, bodies)
    return _checked_child(splice_blocks(parent, bodies)), Applied.CUT if cut_off else Applied.REWRITE


def _top_level_names(code: str) -> set[str] | None:
    try:
        tree = parse(code)  # thread-safe: this runs on a worker thread
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return names


def _whole_block(parent: str, answer: str) -> bool:
    """Whether a diff answer without SEARCH blocks gives a whole EVOLVE-BLOCK instead: a fenced block with the
    markers, or (for a one-block program) one that defines every function and class the block defines."""
    blocks, _ = _code_blocks(answer)
    if not blocks:
        return False
    code = next((body for tag, body in blocks if tag in _PYTHON_TAGS), blocks[0][1])
    if START_MARKER in code and END_MARKER in code:
        return True
    parent = _normalize(parent)
    regions = find_regions(parent)
    if len(regions.spans) != 1:
        return False
    wanted = _top_level_names(regions.bodies(parent)[0])
    given = _top_level_names(code)
    if not wanted or given is None:
        return False
    return wanted <= given


def apply_answer(parent: str, mode: str, answer: str) -> tuple[str, Applied]:
    """The child a model's answer makes of ``parent`` in ``mode`` ("diff" or "rewrite"), and how it was applied.

    Raises:
        DiffError: when the answer yields no program (the message says why, for the model).
    """
    if mode != "diff":
        return rewrite_with_path(parent, answer)
    _check_answer(answer)
    try:
        edits = parse_diff(answer)
    except DiffError:
        if _SEARCH_ANYWHERE.search(answer) is None and _whole_block(parent, answer):
            return rewrite_with_path(parent, answer)[0], Applied.BLOCK
        raise
    return diff_with_path(parent, edits)


_SEARCH_ANYWHERE = re.compile(r"^<{5,9} ?SEARCH\s*$", re.MULTILINE)
