"""The upload body of ``PUT /v1/objects/{bucket}/{key}``: streamed in as it arrives with
its length, idle time and size limits checked, and ``Expect: 100-continue`` answered
before the client sends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dfspeer.access.middleware import ACCESS_KEY
from dfspeer.api.context import CONFIG_KEY, METRICS_KEY
from dfspeer.api.middleware import error_response, render_dfs_error
from dfspeer.api.public_fields import _names, user_meta
from dfspeer.errors import DfsError, EntityTooLarge, IncompleteBody

_BODY_ERRORS = (
    web.RequestPayloadError,
    HttpProcessingError,
    aiohttp.ClientPayloadError,
    aiohttp.EofStream,
    ConnectionError,
)


async def _body(
    request: web.Request, *, timeout_s: float, max_bytes: int
) -> AsyncGenerator[bytes, None]:
    """The request body as it arrives (``Content-Length`` or chunked).

    Raises IncompleteBody when the body breaks off before its declared length (aiohttp
    reports that as a payload/connection error), a 408 ``request_timeout`` when no byte
    arrives for ``timeout_s`` seconds, EntityTooLarge past ``max_bytes``.
    """
    content, declared = request.content, request.content_length
    counter = request.app[METRICS_KEY].bytes_received
    received = 0
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                data = await content.readany()
        except TimeoutError:
            raise DfsError(
                f"no body bytes for {timeout_s:g} s after {received} bytes",
                code="request_timeout",
                status=408,
            ) from None
        except _BODY_ERRORS as exc:
            raise IncompleteBody(f"body broke off after {received} bytes: {exc}") from None
        if not data:
            break
        received += len(data)
        if received > max_bytes:
            raise EntityTooLarge(f"body exceeds the {max_bytes}-byte object limit")
        counter.inc(len(data))
        yield data
    if declared is not None and received != declared:
        raise IncompleteBody(f"body has {received} bytes, Content-Length says {declared}")


def _check_length(request: web.Request) -> None:
    limit = request.app[CONFIG_KEY].max_object_size_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise EntityTooLarge(f"Content-Length {declared} exceeds the {limit}-byte object limit")


async def _expect_upload(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` on PUT: answer a missing credential or permission, a bad
    name or an oversized Content-Length before the client sends the body; otherwise send
    ``100 Continue`` (aiohttp's default)."""
    expect = request.headers.get("Expect", "")
    if request.version != aiohttp.HttpVersion11:
        return None
    if expect.lower() != "100-continue":
        return error_response(request, 417, "expectation_failed", f"unknown Expect: {expect}")
    try:
        access = request.app.get(ACCESS_KEY)
        if access is not None:  # refuse before the body is sent, not after
            await access.check(request)
        _names(request)
        _check_length(request)
        user_meta(request.headers)
    except DfsError as exc:
        return render_dfs_error(request, exc)
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None
