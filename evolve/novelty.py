"""When two programs are the same, and when one is too like another: dedup and the novelty filter.

**Same program.** ``code_key`` hashes a program's syntax tree (without
positions, in a form that is the same on every Python version), so comments, blank lines, formatting, quote style and
the spelling of a literal (``0.30`` and ``.3``) do not count; names, values
and structure do. A program that does not parse falls back to its text with
comments, trailing blanks and blank lines removed. Two programs with one key
behave identically, so a campaign never pays to evaluate the second.

**Too like.** ``similarity`` is the Jaccard index of the two programs' sets of
token trigrams (comments and layout dropped, every name, operator and literal
kept). It is exact rather than a MinHash estimate: an island has at most a
few hundred elites and a trigram set of a 2,000-character program is about
500 hashes, so one comparison against all of them is a few milliseconds; and
it needs no model, so it runs offline and means the same on every machine. An
embedding would also call two programs alike when they read alike but differ
in one decisive constant; trigrams count that constant's three trigrams and
no more, which is what the threshold is set against: one changed token of a
500-token program leaves a similarity of about 0.99.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import threading
import tokenize
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Neighbour", "code_key", "nearest", "parse", "shingles", "similarity"]

# CPython 3.11 keeps the AST converter's recursion depth in shared state: two threads in ast.parse at once can raise
# "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905). Campaigns screen children on
# worker threads, so every parse here takes this lock.
_PARSING = threading.Lock()
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENCODING, tokenize.ENDMARKER}


def parse(code: str, filename: str = "<program>") -> ast.Module:
    """``ast.parse`` that is safe on any thread (see ``_PARSING``), without the warnings a candidate's text may raise.

    Raises:
        SyntaxError, ValueError, RecursionError, MemoryError: as ``ast.parse``.
    """
    with _PARSING, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(code, filename)


def _canonical(node: object) -> str:
    """A tree as text that does not change between Python versions: each node's type and its non-empty fields by name
    (``ast.dump`` adds fields in 3.12, such as ``type_params=[]``, and leaves out empty ones in 3.13)."""
    if isinstance(node, ast.AST):
        fields = ((name, getattr(node, name, None)) for name in node._fields)
        inner = " ".join(f"{name}={_canonical(value)}" for name, value in fields if value is not None and value != [])
        return f"{type(node).__name__}({inner})"
    if isinstance(node, list):
        return "[" + ",".join(_canonical(v) for v in node) + "]"
    return repr(node)


def _normalized(code: str) -> str:
    try:
        return _canonical(parse(code))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        lines = (line.split("#", 1)[0].rstrip() for line in code.splitlines())
        return "\x00text\n" + "\n".join(line for line in lines if line)


@functools.lru_cache(maxsize=512)
def code_key(code: str) -> str:
    """A 32-hex-digit key equal for two programs exactly when they are the same up to formatting and comments.

    Cached: one proposal asks for its child's key three times (unchanged? a duplicate? the stored row) and its
    parent's once per child, and each is a parse of the whole program."""
    return hashlib.sha256(_normalized(code).encode("utf-8", errors="replace")).hexdigest()[:32]


def _tokens(code: str) -> list[str]:
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type not in _SKIP]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return code.split()


def shingles(code: str) -> frozenset[int]:
    """The program's token trigrams, hashed (stable across processes: no ``hash()`` salt)."""
    toks = _tokens(code)
    if len(toks) < 3:
        toks = [*toks, "", ""][:3]
    return frozenset(
        int.from_bytes(hashlib.blake2b("\x1f".join(toks[i:i + 3]).encode("utf-8", errors="replace"), digest_size=8).digest())
        for i in range(len(toks) - 2)
    )


def similarity(a: frozenset[int], b: frozenset[int]) -> float:
    """Jaccard index of two shingle sets, in [0, 1]."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True, slots=True)
class Neighbour:
    program_id: str
    similarity: float


def nearest(child: frozenset[int], others: Iterable[tuple[str, frozenset[int]]]) -> Neighbour | None:
    """The most similar of ``others`` (id, shingles) to ``child``; None when there are none."""
    best: Neighbour | None = None
    for program_id, sh in others:
        s = similarity(child, sh)
        if best is None or s > best.similarity:
            best = Neighbour(program_id, s)
    return best
