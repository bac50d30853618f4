from __future__ import annotations

import pytest

from evolve.blocks import find_regions, splice_blocks
from evolve.errors import DiffError

TWO_BLOCKS = "a = 1\n# EVOLVE-BLOCK-START\nb = 2\n# EVOLVE-BLOCK-END\nc = 3\n# EVOLVE-BLOCK-START\nd = 4\n# EVOLVE-BLOCK-END\n"


def test_regions_cover_exactly_the_block_bodies() -> None:
    regions = find_regions(TWO_BLOCKS)
    assert regions.bodies(TWO_BLOCKS) == ["b = 2\n", "d = 4\n"]
    assert "".join(regions.frozen).count("EVOLVE-BLOCK") == 4
    assert "b = 2" not in "".join(regions.frozen)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("x = 1\n", "no evolvable region"),
        ("# EVOLVE-BLOCK-START\nx = 1\n", "without a matching"),
        ("x = 1\n# EVOLVE-BLOCK-END\n", "without a preceding"),
        ("# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-END\n", "nested"),
    ],
)
def test_malformed_markers_are_rejected_with_a_reason(code: str, message: str) -> None:
    with pytest.raises(DiffError, match=message):
        find_regions(code)


def test_splice_keeps_frozen_parts_and_checks_block_count() -> None:
    assert splice_blocks(TWO_BLOCKS, ["B\n", "D"]) == TWO_BLOCKS.replace("b = 2", "B").replace("d = 4", "D")
    with pytest.raises(DiffError, match="has 1 EVOLVE-BLOCK"):
        splice_blocks(TWO_BLOCKS, ["only one\n"])
