"""A grammar that lets a small model write only SEARCH/REPLACE edits that apply.

Small models copy SEARCH lines badly: they re-indent them, paraphrase them,
echo the format's placeholder or copy the whole program. llama.cpp can
constrain decoding with a GBNF grammar, so an in-process model answering a
one-edit diff prompt is held to this shape::

    one line saying the idea
    <<<<<<< SEARCH
    1 to MAX_SEARCH_LINES consecutive lines of an EVOLVE-BLOCK, the first of them unique in the program
    =======
    1 to MAX_REPLACE_LINES new lines, none starting (after its indentation) with a marker's character (<, =, >)
    or a code fence
    >>>>>>> REPLACE

When the prompt names a focus (``# Lines to change``, chosen per proposal by
``choose_focus``), the SEARCH must begin at one of those lines.

Every SEARCH it can write is text of the program that occurs once, inside a
block: the answer always applies (its REPLACE may still be wrong, which the
evaluator judges). The answer is then applied by ``evolve.diff`` exactly like
any other, so nothing about the strictness of application changes.
"""

from __future__ import annotations

import re

import numpy as np

from evolve.blocks import START_MARKER, find_regions
from evolve.errors import DiffError
from evolve.llm.base import Message

__all__ = ["FOCUS_HEADING", "FOCUS_LINES", "MAX_REPLACE_LINES", "MAX_SEARCH_LINES", "asks_for_edit", "choose_focus",
           "edit_grammar", "focus_from_prompt", "program_from_prompt"]

_CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
_SEARCH_LINE = re.compile(r"^<{5,9} ?SEARCH\s*$", re.MULTILINE)
#: The heading of a compact prompt's focus: the lines this proposal is to change (``prompts/compact/diff.j2``).
FOCUS_HEADING = "# Lines to change"
_FOCUS = re.compile(re.escape(FOCUS_HEADING) + r"[^\n]*\n(`{3,})python\n(.*?)\n\1", re.DOTALL)
#: Lines of the program a focus shows: where this proposal's SEARCH may begin.
FOCUS_LINES = 4

#: Lines a SEARCH may hold: one concrete change, not a copy of the program.
MAX_SEARCH_LINES = 3
#: Lines a REPLACE may hold.
MAX_REPLACE_LINES = 8
_LINE_CHARS = 200  # characters of a REPLACE line
_IDEA_CHARS = 80  # characters of the line saying the idea (each token of it costs a CPU model about 0.2 s)
_MAX_BLOCK_LINES = 400  # a block longer than this gets no grammar (its rules would be large); answers are then free


def program_from_prompt(messages: list[Message]) -> str | None:
    """The current program of a prompt: its last fenced Python block with EVOLVE-BLOCK markers."""
    text = "\n".join(m.get("content", "") for m in messages)
    blocks = [b for b in _CODE_BLOCK.findall(text) if START_MARKER in b]
    return blocks[-1] if blocks else None


def choose_focus(code: str, rng: np.random.Generator) -> list[str] | None:
    """A window of ``FOCUS_LINES`` consecutive block lines, starting at a random line whose text occurs once, for one
    proposal to change; None when the program offers none. A small model asked for "one change" edits the part that
    looks most like the objective every time (circle packing's radius formula, never the layout); spreading the
    proposals' focus over the whole block is what random mutation does, with the model choosing the edit."""
    starts = _unique_starts(code)
    if not starts:
        return None
    b, i = starts[int(rng.integers(len(starts)))]
    lines = _block_lines(code)[b]
    return lines[i : i + FOCUS_LINES]


def focus_from_prompt(messages: list[Message]) -> list[str] | None:
    """The focus lines a prompt's last request shows, if any."""
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    found = _FOCUS.search(users[-1]) if users else None
    return found.group(2).split("\n") if found else None


def asks_for_edit(messages: list[Message]) -> bool:
    """Whether the prompt's last request asks for SEARCH/REPLACE blocks (a rewrite prompt does not show the format)."""
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return bool(users) and _SEARCH_LINE.search(users[-1]) is not None


def _literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _block_lines(code: str) -> list[list[str]]:
    return [body.split("\n")[:-1] if body.endswith("\n") else body.split("\n") for body in find_regions(code).bodies(code)]


def _unique_starts(code: str) -> list[tuple[int, int]]:
    """(block, line) of every block line a SEARCH may begin with: not blank, and its text occurs once in the program
    (unique as text, not only as a line: a SEARCH is found with str.find, so '    n = 2' must not occur inside
    '    n = 20' or an indented copy of itself)."""
    try:
        blocks = _block_lines(code)
    except DiffError:
        return []
    return [(b, i) for b, lines in enumerate(blocks) for i, line in enumerate(lines) if line.strip() and code.count(line) == 1]


def edit_grammar(code: str, focus: list[str] | None = None) -> str | None:
    """The GBNF grammar of one SEARCH/REPLACE edit of ``code`` that applies, or None when there is none to offer
    (no markers, no unique line inside a block, or blocks too long). With ``focus``, a SEARCH may begin only at one
    of those lines (all of them, when none of them can begin one)."""
    try:
        lines_of = _block_lines(code)
    except DiffError:
        return None
    if sum(len(lines) for lines in lines_of) > _MAX_BLOCK_LINES:
        return None
    unique = _unique_starts(code)
    if focus is not None:
        wanted = set(focus)
        unique = [(b, i) for b, i in unique if lines_of[b][i] in wanted] or unique
    if not unique:
        return None
    rules: list[str] = []
    for b, lines in enumerate(lines_of):
        for i, line in enumerate(lines):
            rules.append(f"l{b}x{i} ::= {_literal(line + chr(10))}")
        for i in range(len(lines)):
            for depth in range(1, MAX_SEARCH_LINES + 1):
                last = depth == 1 or i + 1 >= len(lines)
                rule = f"c{b}x{i}d{depth} ::= l{b}x{i}"
                rules.append(rule if last else f"{rule} | l{b}x{i} c{b}x{i + 1}d{depth - 1}")
    starts = [f"c{b}x{i}d{MAX_SEARCH_LINES}" for b, i in unique]
    head = [
        'root ::= idea "<<<<<<< SEARCH\\n" search "=======\\n" replace ">>>>>>> REPLACE\\n"',
        f'idea ::= [^\\n<`]{{1,{_IDEA_CHARS}}} "\\n"',
        "search ::= " + " | ".join(starts),
        f"replace ::= rline{{1,{MAX_REPLACE_LINES}}}",
        f'rline ::= ([ \\t]{{0,40}} [^<=>`\\n \\t] [^\\n]{{0,{_LINE_CHARS}}})? "\\n"',
    ]
    return "\n".join(head + rules) + "\n"
