"""EVOLVE-BLOCK regions: the only parts of a program a model may change.

A program marks its evolvable regions with lines containing
``# EVOLVE-BLOCK-START`` and ``# EVOLVE-BLOCK-END``. Everything else is *frozen*
and must stay byte-identical in every descendant.
"""

from __future__ import annotations

from dataclasses import dataclass

from evolve.errors import DiffError

__all__ = ["END_MARKER", "START_MARKER", "Regions", "find_regions", "splice_blocks"]

START_MARKER = "EVOLVE-BLOCK-START"
END_MARKER = "EVOLVE-BLOCK-END"


@dataclass(frozen=True, slots=True)
class Regions:
    """Character spans of a program's evolvable blocks.

    ``spans[i] = (start, end)``: the text ``code[start:end]`` is the body of
    block ``i``, from just after its START line to the beginning of its END
    line. ``frozen`` is the list of text pieces around the bodies, markers
    included; ``len(frozen) == len(spans) + 1``.
    """

    spans: tuple[tuple[int, int], ...]
    frozen: tuple[str, ...]

    def bodies(self, code: str) -> list[str]:
        return [code[a:b] for a, b in self.spans]

    def contains(self, start: int, end: int) -> bool:
        """Whether ``[start, end)`` lies inside a single block body."""
        return any(a <= start and end <= b for a, b in self.spans)


def find_regions(code: str) -> Regions:
    """Locate the EVOLVE-BLOCK bodies of a program.

    Raises:
        DiffError: when markers are missing, unbalanced or nested.
    """
    spans: list[tuple[int, int]] = []
    frozen: list[str] = []
    pos = 0
    open_at: int | None = None
    last_cut = 0
    for line in code.splitlines(keepends=True):
        line_start, pos = pos, pos + len(line)
        has_start = START_MARKER in line
        has_end = END_MARKER in line
        if has_start and has_end:
            raise DiffError(f"a line holds both {START_MARKER} and {END_MARKER}: {line.strip()!r}")
        if has_start:
            if open_at is not None:
                raise DiffError(f"nested {START_MARKER}: every block must end before the next starts")
            open_at = pos
            frozen.append(code[last_cut:pos])
        elif has_end:
            if open_at is None:
                raise DiffError(f"{END_MARKER} without a preceding {START_MARKER}")
            spans.append((open_at, line_start))
            last_cut = line_start
            open_at = None
    if open_at is not None:
        raise DiffError(f"{START_MARKER} without a matching {END_MARKER}")
    if not spans:
        raise DiffError(f"no evolvable region: mark one with '# {START_MARKER}' and '# {END_MARKER}' lines")
    frozen.append(code[last_cut:])
    return Regions(spans=tuple(spans), frozen=tuple(frozen))


def splice_blocks(parent: str, bodies: list[str]) -> str:
    """Put new block bodies into the parent's frame, keeping frozen parts identical.

    Raises:
        DiffError: when the number of bodies differs from the parent's blocks or
            a body contains a marker.
    """
    regions = find_regions(parent)
    if len(bodies) != len(regions.spans):
        raise DiffError(
            f"the answer has {len(bodies)} EVOLVE-BLOCK region(s) but the program has "
            f"{len(regions.spans)}; keep every region and its markers"
        )
    out: list[str] = []
    for frame, body in zip(regions.frozen, bodies, strict=False):
        if START_MARKER in body or END_MARKER in body:
            raise DiffError("an EVOLVE-BLOCK body may not contain marker lines")
        if body and not body.endswith("\n"):
            body += "\n"
        out.append(frame)
        out.append(body)
    out.append(regions.frozen[-1])
    return "".join(out)
