"""dfspeer.Client against a tiny in-process aiohttp server that speaks the public API."""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dfspeer.client import (
    Client,
    PeerUnreachable,
    error_from_response,
    parse_retry_after,
    range_header,
)
from dfspeer.errors import BadDigest, DfsError, InsufficientReplicas, NoSuchKey

SEEN: dict[str, Any] = {}
STORE = web.AppKey("store", dict[str, bytes])


def _error(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message, "request_id": "r-1"}}
    return web.json_response(body, status=status)


async def put_handler(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    SEEN["headers"] = dict(request.headers)
    SEEN["key"] = key
    data = b""
    async for piece in request.content.iter_any():
        data += piece
    sha = hashlib.sha256(data).hexdigest()
    if request.headers.get("X-Content-SHA256", sha) != sha:
        return _error(400, "bad_digest", "body does not match X-Content-SHA256")
    if key == "full":
        return _error(503, "insufficient_replicas", "1 of 2 replicas acknowledged")
    request.app[STORE][key] = data
    return web.json_response(
        {"bucket": "b", "key": key, "version": "v1", "size": len(data), "sha256": sha, "chunks": 1},
        status=201,
    )


async def get_handler(request: web.Request) -> web.StreamResponse:
    key = request.match_info["key"]
    data = request.app[STORE].get(key)
    if data is None:
        if request.method == "HEAD":
            return web.Response(status=404)
        return _error(404, "no_such_key", f"b/{key} does not exist")
    etag = hashlib.sha256(data).hexdigest() if key != "liar" else "0" * 64
    headers = {
        "ETag": f'"{etag}"',
        "X-Object-Version": "v1",
        "Last-Modified": "Fri, 21 Nov 2025 04:33:00 GMT",
    }
    rng = request.headers.get("Range")
    SEEN["range"] = rng
    if rng:
        first, _, last = rng.removeprefix("bytes=").partition("-")
        if not first:
            start, end = len(data) - int(last), len(data)
        else:
            start, end = int(first), (int(last) + 1 if last else len(data))
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        return web.Response(body=data[start:end], status=206, headers=headers)
    return web.Response(body=data, headers=headers)


async def list_handler(request: web.Request) -> web.Response:
    keys = sorted(request.app[STORE])
    after = request.query.get("start_after", "")
    limit = int(request.query.get("limit", "1000"))
    page = [k for k in keys if k > after][:limit]
    truncated = len([k for k in keys if k > after]) > limit
    return web.json_response(
        {
            "objects": [{"key": k, "size": len(request.app[STORE][k])} for k in page],
            "common_prefixes": ["dir/"] if not after else [],
            "is_truncated": truncated,
            "next_start_after": page[-1] if truncated else None,
        }
    )


async def teapot(request: web.Request) -> web.Response:
    return web.Response(status=502, text="<html>bad gateway</html>")


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app[STORE] = {"hello": b"hello world"}
    app.router.add_put("/v1/objects/{bucket}/{key:.+}", put_handler)
    app.router.add_get("/v1/objects/{bucket}/{key:.+}", get_handler)
    app.router.add_get("/v1/objects/{bucket}", list_handler)
    app.router.add_get("/v1/cluster/status", teapot)
    srv = TestServer(app)
    await srv.start_server()
    yield srv
    await srv.close()


@pytest.fixture
async def client(server: TestServer) -> AsyncIterator[Client]:
    async with Client(str(server.make_url("/"))) as c:
        yield c


async def test_put_bytes_and_get(client: Client) -> None:
    info = await client.put_object("b", "k1", b"abc", sha256=hashlib.sha256(b"abc").hexdigest())
    assert info["size"] == 3 and info["key"] == "k1"
    assert await client.get_object("b", "k1") == b"abc"


async def test_put_path_streams_with_content_length(client: Client, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(bytes(range(256)) * 10_000)
    seen: list[int] = []
    info = await client.put_object("b", "dir/f.bin", src, progress=seen.append)
    assert info["size"] == 2_560_000
    assert SEEN["headers"]["Content-Length"] == "2560000"
    assert "Transfer-Encoding" not in SEEN["headers"]
    assert sum(seen) == 2_560_000 and len(seen) >= 2  # handed over in pieces


async def test_put_async_iterable_is_chunked(client: Client) -> None:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(5):
            yield bytes([i]) * 1000

    info = await client.put_object("b", "gen", gen())
    assert info["size"] == 5000
    assert SEEN["headers"].get("Transfer-Encoding") == "chunked"


async def test_key_is_percent_encoded(client: Client) -> None:
    await client.put_object("b", "a dir/ü?x=1#f", b"z")
    assert SEEN["key"] == "a dir/ü?x=1#f"
    assert await client.get_object("b", "a dir/ü?x=1#f") == b"z"


async def test_server_error_maps_to_dfs_error_subclass(client: Client) -> None:
    with pytest.raises(NoSuchKey) as exc:
        await client.get_object("b", "missing")
    assert exc.value.code == "no_such_key" and exc.value.status == 404
    assert "does not exist" in exc.value.message
    with pytest.raises(BadDigest) as bad:
        await client.put_object("b", "k", b"abc", sha256="0" * 64)
    assert bad.value.status == 400
    with pytest.raises(InsufficientReplicas) as ir:
        await client.put_object("b", "full", b"abc")
    assert ir.value.status == 503


async def test_non_json_error_and_head_404(client: Client) -> None:
    with pytest.raises(DfsError) as exc:
        await client.status()
    assert exc.value.status == 502 and exc.value.code == "internal_error"
    with pytest.raises(NoSuchKey):
        await client.stat_object("b", "missing")


async def test_stat_reads_headers(client: Client) -> None:
    info = await client.stat_object("b", "hello")
    assert info["size"] == 11
    assert info["sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert info["version"] == "v1"
    assert info["modified"] == pytest.approx(1763699580.0)


@pytest.mark.parametrize(
    ("rng", "header", "want"),
    [
        ((0, 5), "bytes=0-4", b"hello"),
        ((6, None), "bytes=6-", b"world"),
        ((-3, None), "bytes=-3", b"rld"),
    ],
)
async def test_ranges(
    client: Client, rng: tuple[int, int | None], header: str, want: bytes
) -> None:
    assert await client.get_object("b", "hello", range=rng) == want
    assert SEEN["range"] == header


def test_range_header_rejects_empty() -> None:
    with pytest.raises(ValueError):
        range_header((5, 5))
    with pytest.raises(ValueError):
        range_header((-5, 10))


async def test_download_to_path_and_file(client: Client, tmp_path: Path) -> None:
    dest = tmp_path / "out.bin"
    totals: list[int] = []
    info = await client.download("b", "hello", dest, total=totals.append)
    assert dest.read_bytes() == b"hello world" and info["bytes"] == 11
    assert totals == [11] and not (tmp_path / "out.bin.part").exists()
    with open(tmp_path / "part.bin", "wb") as f:
        info = await client.download("b", "hello", f, range=(0, 5))
    assert (tmp_path / "part.bin").read_bytes() == b"hello" and info["status"] == 206


async def test_download_detects_wrong_etag(
    client: Client, server: TestServer, tmp_path: Path
) -> None:
    server.app[STORE]["liar"] = b"data"
    with pytest.raises(DfsError) as exc:
        await client.download("b", "liar", tmp_path / "x")
    assert exc.value.code == "bad_digest"
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()


async def test_download_missing_leaves_no_file(client: Client, tmp_path: Path) -> None:
    with pytest.raises(NoSuchKey):
        await client.download("b", "missing", tmp_path / "y")
    assert list(tmp_path.iterdir()) == []


async def test_iter_objects_follows_pages(client: Client, server: TestServer) -> None:
    for i in range(5):
        server.app[STORE][f"k{i}"] = b"x"
    got = [(o["key"] if o else p) async for o, p in client.iter_objects("b", page_size=2)]
    assert got == ["dir/", "hello", "k0", "k1", "k2", "k3", "k4"]


async def test_unreachable_peer() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with Client(f"127.0.0.1:{port}", timeout_s=5) as c:
        with pytest.raises(PeerUnreachable) as exc:
            await c.members()
        assert exc.value.reason == "connection refused"
        assert str(exc.value) == f"cannot reach http://127.0.0.1:{port}: connection refused"
        assert await c.ready() is False


def test_error_from_response_unknown_code() -> None:
    exc = error_from_response(418, b'{"error": {"code": "teapot", "message": "short"}}')
    assert type(exc) is DfsError and exc.code == "teapot" and exc.status == 418


# ---------------------------------------------------------------------- retries
FLAKY = web.AppKey("flaky", dict[str, Any])


async def flaky_handler(request: web.Request) -> web.StreamResponse:
    """Answers 503 + ``Retry-After: 1`` to the first ``fail`` attempts of each request
    (method + path), then 200 / 201 / 204; records every body received."""
    state = request.app[FLAKY]
    name = f"{request.method} {request.path}"
    body = await request.read()
    state["bodies"].setdefault(name, []).append(body)
    attempts = state["attempts"][name] = state["attempts"].get(name, 0) + 1
    if attempts <= state["fail"]:
        resp = _error(503, state["code"], "not now")
        if state["retry_after"] is not None:
            resp.headers["Retry-After"] = state["retry_after"]
        return resp
    if request.method == "PUT":
        sha = hashlib.sha256(body).hexdigest()
        return web.json_response({"key": "k", "size": len(body), "sha256": sha}, status=201)
    if request.method == "DELETE":
        return web.Response(status=204, headers={"X-Object-Version": "m1"})
    if request.method == "POST":
        return web.json_response({"state": "draining"}, status=202)
    data = b"flaky bytes"
    return web.Response(
        body=data, headers={"ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
    )


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[TestServer, dict[str, Any]]]:
    app = web.Application()
    state: dict[str, Any] = {
        "attempts": {}, "bodies": {}, "fail": 2, "code": "not_ready", "retry_after": "1",
    }
    app[FLAKY] = state
    app.router.add_route("*", "/{tail:.*}", flaky_handler)
    srv = TestServer(app)
    await srv.start_server()
    yield srv, state
    await srv.close()


def _fast_client(srv: TestServer, **kwargs: Any) -> Client:
    """Retries capped at 10 ms: the server's ``Retry-After: 1`` is honoured up to the cap."""
    return Client(str(srv.make_url("/")), retry_max_delay_s=0.01, **kwargs)


async def test_idempotent_requests_retry_503_with_retry_after(
    flaky: tuple[TestServer, dict[str, Any]], tmp_path: Path
) -> None:
    srv, state = flaky
    source = tmp_path / "up.bin"
    source.write_bytes(b"file body " * 1000)
    async with _fast_client(srv) as c:
        assert await c.get_object("bkt", "a") == b"flaky bytes"
        assert c.retries == 2
        assert (await c.stat_object("bkt", "b"))["sha256"]  # HEAD
        assert await c.delete_object("bkt", "c") == "m1"
        assert (await c.put_object("bkt", "d", b"bytes body"))["size"] == 10
        assert (await c.put_object("bkt", "e", source))["size"] == 10_000
        out = tmp_path / "down.bin"
        assert (await c.download("bkt", "f", out))["bytes"] == len(b"flaky bytes")
        assert out.read_bytes() == b"flaky bytes"
        assert c.retries == 6 * 2
    assert set(state["attempts"].values()) == {3}
    assert len(state["attempts"]) == 6
    # every attempt carried the whole body again, a file's too
    assert state["bodies"]["PUT /v1/objects/bkt/d"] == [b"bytes body"] * 3
    assert state["bodies"]["PUT /v1/objects/bkt/e"] == [source.read_bytes()] * 3


async def test_one_shot_streams_posts_and_503_without_retry_after_are_not_retried(
    flaky: tuple[TestServer, dict[str, Any]],
) -> None:
    srv, state = flaky

    async def stream() -> AsyncIterator[bytes]:
        yield b"once"

    async with _fast_client(srv) as c:
        with pytest.raises(DfsError) as exc:
            await c.put_object("bkt", "s", stream())
        assert exc.value.code == "not_ready" and exc.value.status == 503
        assert exc.value.retry_after_s == 1.0
        with pytest.raises(DfsError):
            await c.drain()  # POST
        state["retry_after"] = None
        with pytest.raises(DfsError) as exc:
            await c.get_object("bkt", "no-header")
        assert exc.value.retry_after_s is None
        assert c.retries == 0
    assert set(state["attempts"].values()) == {1}


async def test_retries_are_bounded_by_max_attempts(
    flaky: tuple[TestServer, dict[str, Any]],
) -> None:
    srv, state = flaky
    state["fail"] = 100
    state["code"] = "insufficient_replicas"
    async with _fast_client(srv, max_attempts=3) as c:
        with pytest.raises(InsufficientReplicas) as exc:
            await c.get_object("bkt", "k")
        assert exc.value.retry_after_s == 1.0
        assert c.retries == 2
    assert state["attempts"] == {"GET /v1/objects/bkt/k": 3}
    async with _fast_client(srv, max_attempts=1) as c:  # 1: never retry
        with pytest.raises(InsufficientReplicas):
            await c.get_object("bkt", "k")
        assert c.retries == 0
    with pytest.raises(ValueError):
        Client("http://x", max_attempts=0)


def test_retry_delay_honours_retry_after_with_backoff_jitter_and_cap() -> None:
    c = Client("http://x", rng=random.Random(7))  # backoff 0.25 s doubling, cap 5 s
    for _ in range(50):
        d = c.retry_delay("GET", 503, "1", 1)
        assert d is not None and 1.0 <= d <= 1.25  # Retry-After wins over 0.25 s
        d = c.retry_delay("DELETE", 503, "0", 4)
        assert d is not None and 2.0 <= d <= 2.5  # backoff 0.25 * 2**3 wins over 0
        assert c.retry_delay("PUT", 503, "120", 2) == 5.0  # capped
    later = email.utils.format_datetime(
        datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=3), usegmt=True
    )
    d = c.retry_delay("HEAD", 503, later, 1)
    assert d is not None and 1.5 <= d <= 5.0  # an HTTP date
    assert parse_retry_after("soon") is None and parse_retry_after("-3") == 0.0
    assert c.retry_delay("GET", 503, None, 1) is None  # no Retry-After
    assert c.retry_delay("GET", 503, "soon", 1) is None  # malformed
    assert c.retry_delay("GET", 500, "1", 1) is None  # not a 503
    assert c.retry_delay("POST", 503, "1", 1) is None  # not idempotent
    assert c.retry_delay("PUT", 503, "1", 1, replayable=False) is None  # one-shot body
    assert c.retry_delay("GET", 503, "1", 5) is None  # the 5th attempt was the last
