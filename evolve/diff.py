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

Every failure is a ``DiffError`` whose message is fed back to the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from evolve.blocks import END_MARKER, START_MARKER, find_regions, splice_blocks
from evolve.errors import DiffError

__all__ = [
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


@dataclass(frozen=True, slots=True)
class SearchReplace:
    """One edit: replace the unique occurrence of ``search`` with ``replace``."""

    search: str
    replace: str


def _normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_diff(answer: str) -> list[SearchReplace]:
    """Parse every SEARCH/REPLACE block of an answer.

    Text outside blocks (explanations, code fences) is ignored. Each marker
    must stand alone on its line.

    Raises:
        DiffError: when there is no block, or a block is unterminated or malformed.
    """
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
        DiffError: when a SEARCH matches nothing or several places, touches
            frozen code or a marker, or the result changes frozen code.
    """
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


def longest_parsable_prefix(code: str) -> str:
    """``code`` cut after its last whole top-level statement such that the rest compiles ("" if none)."""
    lines = code.split("\n")
    cuts = [i for i, line in enumerate(lines) if line[:1] not in ("", " ", "\t", ")", "]", "}", "#")] + [len(lines)]
    for cut in sorted(set(cuts), reverse=True):
        prefix = "\n".join(lines[:cut]).rstrip() + "\n"
        try:
            compile(prefix, "<rewrite>", "exec", dont_inherit=True)  # unlike ast.parse, rejects a 'return' outside a function
        except (SyntaxError, ValueError):
            continue
        if prefix.strip():
            return prefix
    return ""


def _without_echo(code: str, head: str, tail: str) -> str:
    """A markerless rewrite minus the frozen header and footer it may have copied."""
    head_lines = {line.rstrip() for line in head.split("\n") if line.strip() and START_MARKER not in line}
    lines = code.split("\n")
    while lines and (not lines[0].strip() or lines[0].rstrip() in head_lines):
        lines.pop(0)
    body = "\n".join(lines).rstrip() + "\n"
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
        DiffError: when there is no code block, or its EVOLVE-BLOCK markers are
            missing or do not match the parent's (for a program of several blocks).
    """
    parent = _normalize(parent)
    blocks, tail = _code_blocks(answer)
    cut_off = not blocks and tail is not None
    code = tail if tail is not None and not blocks else extract_code_block(answer)  # raises when there is no block
    try:
        regions = find_regions(code)
    except DiffError as exc:
        if len(find_regions(parent).spans) != 1:
            raise DiffError(f"the rewritten program must keep its EVOLVE-BLOCK markers: {exc}") from exc
        return splice_blocks(parent, [_single_block_body(parent, code, cut_off=cut_off)])
    bodies = regions.bodies(code)
    if cut_off and len(bodies) == 1:
        bodies = [longest_parsable_prefix(bodies[0]) or bodies[0]]
    return splice_blocks(parent, bodies)
