"""Turning a model's answer into a child program, strictly.

Two modes:

* **diff**: ``<<<<<<< SEARCH`` / ``=======`` / ``>>>>>>> REPLACE`` blocks. Each
  SEARCH text must occur exactly once in the program (after the earlier blocks
  were applied) and lie inside one EVOLVE-BLOCK body.
* **rewrite**: a fenced code block holding the whole program; its block bodies
  are spliced into the parent's frame, so frozen parts stay identical.

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


def extract_code_block(answer: str) -> str:
    """The program from a fenced code block: the first one tagged python, else the first.

    Raises:
        DiffError: when the answer has no complete fenced block.
    """
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
            break
        blocks.append((tag, "\n".join(lines[i + 1 : j]) + "\n"))
        i = j + 1
    if not blocks:
        raise DiffError("the answer contains no fenced code block (```python ... ```) with the rewritten program")
    for tag, body in blocks:
        if tag in ("python", "py", "python3"):
            return body
    return blocks[0][1]


def apply_rewrite(parent: str, answer: str) -> str:
    """Take the rewritten program from an answer and splice its blocks into the parent.

    Raises:
        DiffError: when there is no code block, or its EVOLVE-BLOCK markers are
            missing or do not match the parent's.
    """
    code = extract_code_block(answer)
    try:
        regions = find_regions(code)
    except DiffError as exc:
        raise DiffError(f"the rewritten program must keep its EVOLVE-BLOCK markers: {exc}") from exc
    return splice_blocks(_normalize(parent), regions.bodies(code))
