"""Range / precondition rules of the public API (pure functions)."""

from __future__ import annotations

import pytest

from dfspeer.api.ranges import content_range, etag_matches, if_range_allows, parse_range
from dfspeer.errors import InvalidRange


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, (0, 1)),
        ("bytes=2-5", 10, (2, 6)),
        ("bytes=2-100", 10, (2, 10)),  # last byte clipped
        ("bytes=7-", 10, (7, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),  # longer suffix = whole object
        ("BYTES = 1 - 2", 10, (1, 3)),
        ("bytes=0-1,4-5", 10, None),  # several ranges: whole object
        ("items=0-1", 10, None),  # unknown unit: ignored
        ("bytes=5-2", 10, None),  # invalid spec: ignored
        ("bytes=abc", 10, None),
        ("bytes=-", 10, None),
        ("bytes", 10, None),
        ("bytes=-5", 0, None),  # empty object: nothing to slice, 200
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0)]
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(InvalidRange):
        parse_range(header, size)


def test_content_range() -> None:
    assert content_range(2, 6, 10) == "bytes 2-5/10"


def test_etag_matching() -> None:
    tag = '"abc"'
    assert etag_matches('"abc"', tag)
    assert etag_matches('"x", W/"abc"', tag)
    assert etag_matches("*", tag)
    assert not etag_matches('"abd"', tag)
    assert not etag_matches(None, tag)
    assert if_range_allows(None, tag)
    assert if_range_allows('"abc"', tag)
    assert not if_range_allows('W/"abc"', tag)
    assert not if_range_allows("Wed, 21 Oct 2015 07:28:00 GMT", tag)
