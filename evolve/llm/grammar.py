"""A grammar that lets a small model write only SEARCH/REPLACE edits that apply.

Small models copy SEARCH lines badly: they re-indent them, paraphrase them,
echo the format's placeholder or copy the whole program. llama.cpp can
constrain decoding with a GBNF grammar, so an in-process model answering a
one-edit diff prompt is held to this shape::

    one line saying the idea
    <<<<<<< SEARCH
    1 to MAX_SEARCH_LINES consecutive lines of an EVOLVE-BLOCK, the first of them unique in the program
    =======
    1 to MAX_REPLACE_LINES new lines, none starting with a marker's character (<, =, >)
    >>>>>>> REPLACE

Every SEARCH it can write is text of the program that occurs once, inside a
block: the answer always applies (its REPLACE may still be wrong, which the
evaluator judges). The answer is then applied by ``evolve.diff`` exactly like
any other, so nothing about the strictness of application changes.
"""

from __future__ import annotations

import re

from evolve.blocks import START_MARKER, find_regions
from evolve.errors import DiffError
from evolve.llm.base import Message

__all__ = ["MAX_REPLACE_LINES", "MAX_SEARCH_LINES", "asks_for_edit", "edit_grammar", "program_from_prompt"]

_CODE_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
_SEARCH_LINE = re.compile(r"^<{5,9} ?SEARCH\s*$", re.MULTILINE)

#: Lines a SEARCH may hold: one concrete change, not a copy of the program.
MAX_SEARCH_LINES = 4
#: Lines a REPLACE may hold.
MAX_REPLACE_LINES = 12
_LINE_CHARS = 200  # characters of a REPLACE line
_IDEA_CHARS = 120  # characters of the line saying the idea (each token of it costs a CPU model about 0.2 s)
_MAX_BLOCK_LINES = 400  # a block longer than this gets no grammar (its rules would be large); answers are then free


def program_from_prompt(messages: list[Message]) -> str | None:
    """The current program of a prompt: its last fenced Python block with EVOLVE-BLOCK markers."""
    text = "\n".join(m.get("content", "") for m in messages)
    blocks = [b for b in _CODE_BLOCK.findall(text) if START_MARKER in b]
    return blocks[-1] if blocks else None


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


def edit_grammar(code: str) -> str | None:
    """The GBNF grammar of one SEARCH/REPLACE edit of ``code`` that applies, or None when there is none to offer
    (no markers, no unique line inside a block, or blocks too long)."""
    try:
        regions = find_regions(code)
    except DiffError:
        return None
    lines_of = [body.split("\n")[:-1] if body.endswith("\n") else body.split("\n") for body in regions.bodies(code)]
    if sum(len(lines) for lines in lines_of) > _MAX_BLOCK_LINES:
        return None
    rules: list[str] = []
    starts: list[str] = []
    for b, lines in enumerate(lines_of):
        for i, line in enumerate(lines):
            rules.append(f"l{b}x{i} ::= {_literal(line + chr(10))}")
        for i in range(len(lines)):
            for depth in range(1, MAX_SEARCH_LINES + 1):
                last = depth == 1 or i + 1 >= len(lines)
                rule = f"c{b}x{i}d{depth} ::= l{b}x{i}"
                rules.append(rule if last else f"{rule} | l{b}x{i} c{b}x{i + 1}d{depth - 1}")
            # unique as text, not only as a line: a SEARCH is found with str.find, so '    n = 2' must not occur inside
            # '    n = 20' or an indented copy of itself
            if lines[i].strip() and code.count(lines[i]) == 1:
                starts.append(f"c{b}x{i}d{MAX_SEARCH_LINES}")
    if not starts:
        return None
    head = [
        'root ::= idea "<<<<<<< SEARCH\\n" search "=======\\n" replace ">>>>>>> REPLACE\\n"',
        f'idea ::= [^\\n<`]{{1,{_IDEA_CHARS}}} "\\n"',
        "search ::= " + " | ".join(starts),
        f"replace ::= rline{{1,{MAX_REPLACE_LINES}}}",
        f'rline ::= ([^<=>\\n] [^\\n]{{0,{_LINE_CHARS}}})? "\\n"',
    ]
    return "\n".join(head + rules) + "\n"
