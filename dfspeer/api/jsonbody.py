"""Reading a small JSON object body (bucket settings, upload sessions)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from dfspeer.errors import InvalidArgument


async def read_at_most(request: web.Request, limit: int) -> bytes:
    """The body, reading at most ``limit`` bytes (a longer body is cut there)."""
    parts: list[bytes] = []
    got = 0
    while got < limit:
        piece = await request.content.read(limit - got)
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


async def read_json_object(
    request: web.Request, *, max_bytes: int, required: bool
) -> dict[str, Any]:
    """The body as a JSON object; ``{}`` for an empty body unless ``required``. Raises
    InvalidArgument (too long, not JSON, not an object, missing)."""
    raw = await read_at_most(request, max_bytes + 1)
    if len(raw) > max_bytes:
        raise InvalidArgument(f"the body must be at most {max_bytes} bytes of JSON")
    if not raw.strip():
        if required:
            raise InvalidArgument("a JSON body is required")
        return {}
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"the body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("the body must be a JSON object")
    return doc
