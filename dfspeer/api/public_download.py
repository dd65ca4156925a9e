"""The download answer of ``GET /v1/objects/{bucket}/{key}``: 304 and 416 decided on the
object's info before any block is read, then the status line, headers and the chosen
byte span streamed out chunk by chunk — or, for a span up to
:data:`~dfspeer.objects.download.SMALL_BODY_BYTES`, read
whole first and sent with the headers in one write.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from dfspeer.api.context import METRICS_KEY
from dfspeer.api.middleware import render_dfs_error, request_id
from dfspeer.api.public_fields import etag, object_headers
from dfspeer.api.ranges import content_range, etag_matches, if_range_allows, parse_range
from dfspeer.errors import DfsError, InvalidRange
from dfspeer.objects.download import SMALL_BODY_BYTES, close_stream, read_whole

if TYPE_CHECKING:
    from dfspeer.objects import ObjectInfo

log = logging.getLogger("dfspeer.api")


async def _close(stream: object) -> None:
    with contextlib.suppress(Exception):
        await close_stream(stream)


def _plan(request: web.Request, info: ObjectInfo) -> web.Response | tuple[int, int] | None:
    """304 or 416 answer, else the byte span to send (None = whole object, 200)."""
    if etag_matches(request.headers.get("If-None-Match"), etag(info)):
        headers = object_headers(info)
        del headers["Content-Type"]
        return web.Response(status=304, headers=headers)
    if not if_range_allows(request.headers.get("If-Range"), etag(info)):
        return None
    try:
        return parse_range(request.headers.get("Range"), info.size)
    except InvalidRange as exc:
        return render_dfs_error(request, exc, headers={"Content-Range": f"bytes */{info.size}"})


async def _respond(
    request: web.Request,
    info: ObjectInfo,
    span: tuple[int, int] | None,
    stream: AsyncIterator[bytes] | None,
) -> web.StreamResponse:
    start, end = span if span is not None else (0, info.size)
    status, headers = 200 if span is None else 206, object_headers(info)
    if span is not None:
        headers["Content-Range"] = content_range(start, end, info.size)
    if stream is not None and end - start <= SMALL_BODY_BYTES:
        # Read whole before the status line, sent with the headers in one write (a streamed
        # answer sends its headers first: one more send and client wake-up per request); a
        # read that fails now is an error answer (e.g. 503), not a cut-off body.
        body = await read_whole(stream, end - start, f"object {info.bucket}/{info.key}")
        request.app[METRICS_KEY].bytes_sent.inc(len(body))
        return web.Response(status=status, headers=headers, body=body)
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start
    await response.prepare(request)
    if stream is None:
        await response.write_eof()
    else:
        await _send(request, response, stream)
    return response


async def _send(
    request: web.Request, response: web.StreamResponse, stream: AsyncIterator[bytes]
) -> None:
    """Write every chunk after ``prepare``. A failure now cannot change the status line,
    so the connection is closed and the client sees a body shorter than Content-Length."""
    metrics = request.app[METRICS_KEY]
    sent = 0
    try:
        async for chunk in stream:
            await response.write(chunk)
            sent += len(chunk)
            metrics.bytes_sent.inc(len(chunk))
        await response.write_eof()
    except ConnectionError as exc:
        log.debug("client went away id=%s after %d bytes: %s", request_id(request), sent, exc)
    except Exception as exc:
        level = logging.WARNING if isinstance(exc, DfsError) else logging.ERROR
        log.log(
            level,
            "download broke off id=%s path=%s after %d bytes",
            request_id(request),
            request.path,
            sent,
            exc_info=not isinstance(exc, DfsError),
        )
        if request.transport is not None:
            request.transport.close()
