"""A block body is sent piece by piece from the caller's bytes and arrives whole."""

from __future__ import annotations

import asyncio
import hashlib
import os

import aiohttp
import pytest
from aiohttp import web

from dfspeer.cluster.block_payload import BlockBody


class Recorder:
    """Counts the writes a body makes and what they hold."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    async def write(self, chunk: bytes | memoryview) -> None:
        self.pieces.append(bytes(chunk))


async def _echo_digest(data: bytes, body: BlockBody) -> tuple[int, str, str]:
    async def handler(request: web.Request) -> web.Response:
        got = await request.read()
        return web.Response(text=hashlib.sha256(got).hexdigest(), headers={"X-Len": str(len(got))})

    app = web.Application(client_max_size=len(data) + 1)
    app.router.add_put("/b", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"http://127.0.0.1:{port}/b", data=body) as resp,
        ):
            return resp.status, await resp.text(), resp.headers["X-Len"]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("size", [0, 1, 1000, 3 * 1024 * 1024 + 7])
def test_the_block_arrives_whole(size: int) -> None:
    data = os.urandom(size)
    status, digest, length = asyncio.run(_echo_digest(data, BlockBody(data)))
    assert status == 200
    assert int(length) == size
    assert digest == hashlib.sha256(data).hexdigest()


def test_the_block_is_written_in_pieces_from_its_own_bytes() -> None:
    data = os.urandom(10_000)
    writer = Recorder()
    asyncio.run(BlockBody(data, piece_bytes=4096).write(writer))  # type: ignore[arg-type]
    assert [len(p) for p in writer.pieces] == [4096, 4096, 1808]
    assert b"".join(writer.pieces) == data


def test_a_content_length_clips_the_body() -> None:
    data = bytes(range(256)) * 10
    writer = Recorder()
    body = BlockBody(data, piece_bytes=1000)
    asyncio.run(body.write_with_length(writer, 2100))  # type: ignore[arg-type]
    assert b"".join(writer.pieces) == data[:2100]
    assert body.size == len(data)
    assert asyncio.run(body.as_bytes()) == data


def test_a_piece_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="piece_bytes"):
        BlockBody(b"x", piece_bytes=0)
