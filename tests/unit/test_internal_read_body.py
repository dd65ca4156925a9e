"""The internal routes read a block body whole, or refuse it when it is short."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from dfspeer.api.internal_hints import read_body

CAP = 8 * 1024 * 1024
SMALL = 1000


async def _handler(request: web.Request) -> web.Response:
    data = await read_body(request, SMALL if request.path == "/small" else CAP)
    if isinstance(data, web.Response):
        return data
    return web.Response(text=f"{len(data)} {hashlib.sha256(data).hexdigest()}")


async def _serve() -> tuple[web.AppRunner, int]:
    app = web.Application(client_max_size=CAP + 1)
    app.router.add_put("/b", _handler)
    app.router.add_put("/small", _handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)  # the server wakes up between pieces


@pytest.mark.parametrize("size", [0, 5, 3 * 1024 * 1024 + 11])
def test_a_body_sent_in_pieces_arrives_whole(size: int) -> None:
    data = os.urandom(size)

    async def run() -> str:
        runner, port = await _serve()
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.put(
                    f"http://127.0.0.1:{port}/b",
                    data=_pieces(data, 100_000),
                    headers={"Content-Length": str(size)},
                ) as resp,
            ):
                assert resp.status == 200
                return await resp.text()
        finally:
            await runner.cleanup()

    assert asyncio.run(run()) == f"{size} {hashlib.sha256(data).hexdigest()}"


def _short_put(port: int, declared: int, sent: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = f"PUT /b HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n"
        s.sendall(head.encode() + sent)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        try:
            while chunk := s.recv(65536):
                reply += chunk
        except OSError:
            pass
        return reply


def test_a_short_body_is_refused_or_the_connection_closed() -> None:
    async def run() -> bytes:
        runner, port = await _serve()
        try:
            return await asyncio.to_thread(_short_put, port, 1000, b"x" * 400)
        finally:
            await runner.cleanup()

    reply = asyncio.run(run())
    if reply:  # aiohttp may close on EOF before the answer goes out
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
        assert b"incomplete_body" in reply


def test_a_body_over_the_cap_is_refused() -> None:
    async def run() -> int:
        runner, port = await _serve()
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.put(f"http://127.0.0.1:{port}/small", data=b"x" * (SMALL + 1)) as resp,
            ):
                return resp.status
        finally:
            await runner.cleanup()

    assert asyncio.run(run()) == 413
