"""HTTP byte ranges and entity-tag preconditions (RFC 9110 sections 13 and 14), pure functions.

Decisions (also in the README's API notes):

- Only the ``bytes`` unit is understood; another unit, or a syntactically invalid
  ``Range`` value (``bytes=abc``, ``bytes=5-2``), is ignored and the whole object is sent
  with 200, as RFC 9110 section 14.2 allows and as Amazon S3 does.
- Several ranges (``bytes=0-1,5-6``) are not served as ``multipart/byteranges``: the whole
  object is sent with 200 (RFC 9110 lets a server ignore ``Range``; S3 does the same).
- ``bytes=a-b`` with ``b`` past the end is clipped to the last byte; ``bytes=-n`` with ``n``
  larger than the object is the whole object (206); a first byte at or past the end, or
  ``bytes=-0``, is unsatisfiable (416). An empty object has no satisfiable byte range, so
  a suffix range on it is ignored (200 with an empty body) and ``a-``/``a-b`` give 416.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from dfspeer.errors import InvalidRange

_SPEC = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")


def range_spec(header: str | None) -> tuple[int | None, int | None] | None:
    """The single byte range a ``Range`` header asks for, before knowing the size.

    Returns ``(first, last)`` (inclusive positions; ``last`` None = to the end), or
    ``(None, n)`` for the suffix range ``-n``, or None when the header is absent or ignored
    (unknown unit, several ranges, bad syntax, ``last < first``).
    """
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _SPEC.fullmatch(spec)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:
        return None, int(last)
    if last and int(last) < int(first):
        return None  # invalid byte-range-spec: ignored (RFC 9110 section 14.1.1)
    return int(first), int(last) if last else None


def expected_span(headers: Mapping[str, str]) -> tuple[int, int | None] | None:
    """The byte span ``(start, end)`` (``end`` exclusive, None = to the end) a GET with
    these headers will most likely send, known before the object's size, so its first
    bytes can be fetched early; None when that cannot be told (a suffix range, or an
    ``If-Range`` / ``If-None-Match`` that may change or cancel the answer). A guess only:
    the answer is always planned on the object itself."""
    if "If-None-Match" in headers or "If-Range" in headers:
        return None
    spec = range_spec(headers.get("Range"))
    if spec is None:
        return 0, None
    first, last = spec
    if first is None:
        return None
    return first, None if last is None else last + 1


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Resolve a ``Range`` header against an object of ``size`` bytes.

    Returns ``(start, end)`` with ``end`` exclusive (so ``end - start`` bytes are sent with
    206), or None when the header is absent or ignored (send the whole object with 200).
    Raises :class:`~dfspeer.errors.InvalidRange` when the range is valid but unsatisfiable.
    """
    spec = range_spec(header)
    if spec is None:
        return None
    first, last = spec
    if first is None:  # suffix range: the last n bytes
        n = last or 0
        if n == 0:
            raise InvalidRange(f"suffix range bytes=-0 cannot be satisfied (size {size})")
        if size == 0:
            return None
        return max(0, size - n), size
    if first >= size:
        raise InvalidRange(f"range starts at byte {first}, object has {size} bytes")
    return first, size if last is None else min(last + 1, size)


def content_range(start: int, end: int, size: int) -> str:
    """``Content-Range`` value for bytes ``[start, end)`` of ``size``: ``bytes a-b/size``."""
    return f"bytes {start}-{end - 1}/{size}"


def etag_matches(header: str | None, etag: str) -> bool:
    """True if an ``If-None-Match`` / ``If-Range`` list names ``etag`` (weak comparison).

    ``etag`` is the quoted tag (``"<sha256>"``); ``*`` matches any existing object.
    """
    if header is None:
        return False
    wanted = etag.removeprefix("W/")
    for item in header.split(","):
        tag = item.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False


def if_range_allows(header: str | None, etag: str) -> bool:
    """Whether a ``Range`` may be honoured given ``If-Range`` (RFC 9110 section 13.1.5).

    Absent header: yes. An entity tag: only a strong match (weak tags never match). An
    HTTP date (our ``Last-Modified`` has one-second resolution, too coarse to prove the
    object unchanged): no, the whole object is sent.
    """
    if header is None:
        return True
    tag = header.strip()
    return tag.startswith('"') and tag == etag
