"""Byte range -> chunk mapping (property-based) and range resolution."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfspeer.errors import InvalidRange
from dfspeer.objects.download import map_range, resolve_range


@st.composite
def chunks_and_range(draw: st.DrawFn) -> tuple[list[int], int, int]:
    sizes = draw(st.lists(st.integers(1, 50), min_size=1, max_size=20))
    total = sum(sizes)
    start = draw(st.integers(0, total))
    end = draw(st.integers(start, total))
    return sizes, start, end


@given(chunks_and_range())
def test_slices_reassemble_the_range(case: tuple[list[int], int, int]) -> None:
    sizes, start, end = case
    chunks = [bytes([i % 256]) * n for i, n in enumerate(sizes)]
    whole = b"".join(chunks)
    slices = map_range(sizes, start, end)
    got = b"".join(chunks[s.index][s.lo : s.hi] for s in slices)
    assert got == whole[start:end]
    assert all(s.hi > s.lo for s in slices)
    assert [s.index for s in slices] == sorted({s.index for s in slices})


def test_map_range_rejects_out_of_bounds() -> None:
    with pytest.raises(ValueError):
        map_range([4, 4], 0, 9)


@pytest.mark.parametrize(
    ("size", "start", "end", "expected"),
    [
        (10, 0, None, (0, 10)),
        (10, 3, 7, (3, 7)),
        (10, 3, 100, (3, 10)),  # an end past the object is clamped
        (10, 9, None, (9, 10)),
        (0, 0, None, (0, 0)),  # a plain read of an empty object
        (10, 4, 4, (4, 4)),
    ],
)
def test_resolve_range(size: int, start: int, end: int | None, expected: tuple[int, int]) -> None:
    assert resolve_range(size, start, end) == expected


@pytest.mark.parametrize(
    ("size", "start", "end"), [(10, 10, None), (10, 11, 12), (10, -1, 3), (10, 5, 4), (0, 1, None)]
)
def test_unsatisfiable_ranges(size: int, start: int, end: int | None) -> None:
    with pytest.raises(InvalidRange):
        resolve_range(size, start, end)
