"""Public object routes against an in-memory ObjectService: HTTP mapping only."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import http_writer, web, web_protocol
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dfspeer.api.app import build_app
from dfspeer.config import PeerConfig
from dfspeer.errors import IncompleteBody
from dfspeer.objects.download import SMALL_BODY_BYTES
from tests.unit.api_fakes import FakeObjects, FakeState

DATA = bytes(range(256)) * 4  # 1024 bytes
URL = "/v1/objects/photos/dir/cat.jpg"


@pytest.fixture
def fake() -> FakeObjects:
    return FakeObjects()


@pytest.fixture
async def client(
    fake: FakeObjects,
) -> AsyncIterator[TestClient[aiohttp.web.Request, aiohttp.web.Application]]:
    config = PeerConfig(max_object_size_bytes=1 << 20, request_timeout_s=5.0)
    app = build_app(fake, FakeState(), config, registry=CollectorRegistry())
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


Client = TestClient[aiohttp.web.Request, aiohttp.web.Application]


async def put(client: Client, data: bytes = DATA, url: str = URL) -> dict[str, object]:
    resp = await client.put(url, data=data)
    assert resp.status == 201, await resp.text()
    body: dict[str, object] = await resp.json()
    return body


async def error_of(resp: aiohttp.ClientResponse, status: int, code: str) -> dict[str, str]:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == resp.headers["X-Request-Id"]
    error: dict[str, str] = body["error"]
    return error


async def test_put_answers_201_with_the_object(client: Client, fake: FakeObjects) -> None:
    resp = await client.put(URL, data=DATA, headers={"Content-Type": "image/jpeg"})
    assert resp.status == 201
    body = await resp.json()
    digest = hashlib.sha256(DATA).hexdigest()
    assert body == {
        "bucket": "photos",
        "key": "dir/cat.jpg",
        "version": "v0001",
        "size": len(DATA),
        "sha256": digest,
        "chunks": 1,
    }
    assert resp.headers["ETag"] == f'"{digest}"'
    assert len(resp.headers["X-Request-Id"]) == 32
    assert fake.objects[("photos", "dir/cat.jpg")][0].content_type == "image/jpeg"


async def test_chunked_upload_is_streamed(client: Client, fake: FakeObjects) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(8):
            yield DATA[i * 128 : (i + 1) * 128]
            await asyncio.sleep(0.01)  # separate network reads

    resp = await client.put(URL, data=pieces())
    assert resp.status == 201
    assert (await resp.json())["size"] == len(DATA)
    assert fake.objects[("photos", "dir/cat.jpg")][1] == DATA
    assert len(fake.upload_pieces) > 1  # handed over as it arrived, not in one buffer


async def test_sha256_header(client: Client) -> None:
    good = hashlib.sha256(DATA).hexdigest()
    resp = await client.put(URL, data=DATA, headers={"X-Content-SHA256": good.upper()})
    assert resp.status == 201
    resp = await client.put(URL, data=DATA, headers={"X-Content-SHA256": "abc"})
    await error_of(resp, 400, "invalid_argument")
    resp = await client.put(URL, data=DATA, headers={"X-Content-SHA256": "0" * 64})
    await error_of(resp, 400, "bad_digest")


async def test_body_over_the_size_limit(client: Client, fake: FakeObjects) -> None:
    resp = await client.put(URL, data=io.BytesIO(b"x" * ((1 << 20) + 1)))
    await error_of(resp, 413, "entity_too_large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(17):
            yield b"x" * 65536

    resp = await client.put(URL, data=chunked())
    await error_of(resp, 413, "entity_too_large")
    assert not fake.objects


async def test_expect_100_continue(client: Client, fake: FakeObjects) -> None:
    resp = await client.put(URL, data=DATA, expect100=True)
    assert resp.status == 201
    # refused before the body is sent: the client never has to send it
    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        f"PUT {URL} HTTP/1.1\r\nHost: x\r\nContent-Length: {(1 << 20) + 1}\r\n"
        "Expect: 100-continue\r\n\r\n".encode()
    )
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 413")
    assert len(fake.objects) == 1


async def test_short_body_is_incomplete(fake: FakeObjects) -> None:
    # a runner configured as the Peer's (TestServer cancels handlers on disconnect instead)
    app = build_app(fake, FakeState(), PeerConfig(), registry=CollectorRegistry())
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = f"PUT {URL} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        writer.write(head.encode() + b"x" * 10)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()  # the client gives up: 10 of 100 bytes sent
        await writer.wait_closed()
        for _ in range(200):
            if fake.upload_errors:
                break
            await asyncio.sleep(0.01)
        assert isinstance(fake.upload_errors[0], IncompleteBody)
        assert not fake.objects
    finally:
        await runner.cleanup()


async def test_get_whole_object_headers(client: Client, fake: FakeObjects) -> None:
    info = await put(client)
    resp = await client.get(URL)
    assert resp.status == 200
    assert await resp.read() == DATA
    assert resp.headers["ETag"] == f'"{info["sha256"]}"'
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Content-Length"] == str(len(DATA))
    assert resp.headers["Content-Type"] == "application/octet-stream"
    assert resp.headers["Last-Modified"].endswith(" GMT")
    assert resp.headers["X-Object-Version"] == info["version"]
    assert (fake.stat_calls, fake.open_calls) == (0, 1)  # one entry read


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=2-5", 2, 6),
        ("bytes=1000-", 1000, 1024),
        ("bytes=-7", 1017, 1024),
        ("bytes=-5000", 0, 1024),
        ("bytes=1020-9999", 1020, 1024),
    ],
)
async def test_ranges(client: Client, fake: FakeObjects, header: str, start: int, end: int) -> None:
    await put(client)
    resp = await client.get(URL, headers={"Range": header})
    assert resp.status == 206
    assert await resp.read() == DATA[start:end]
    assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(DATA)}"
    assert resp.headers["Content-Length"] == str(end - start)
    assert fake.get_calls[-1] == (start, end)  # only the range was read
    # one entry read for every range, a suffix range too
    assert (fake.stat_calls, fake.open_calls) == (0, 1)


async def test_unsatisfiable_range(client: Client) -> None:
    await put(client)
    resp = await client.get(URL, headers={"Range": "bytes=1024-"})
    await error_of(resp, 416, "invalid_range")
    assert resp.headers["Content-Range"] == f"bytes */{len(DATA)}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=9-2", "lines=1-2"])
async def test_ignored_ranges_serve_everything(client: Client, header: str) -> None:
    await put(client)
    resp = await client.get(URL, headers={"Range": header})
    assert resp.status == 200
    assert await resp.read() == DATA


async def test_if_range(client: Client) -> None:
    info = await put(client)
    tag = f'"{info["sha256"]}"'
    resp = await client.get(URL, headers={"Range": "bytes=0-1", "If-Range": tag})
    assert resp.status == 206
    resp = await client.get(URL, headers={"Range": "bytes=0-1", "If-Range": '"other"'})
    assert resp.status == 200
    assert await resp.read() == DATA


async def test_if_none_match(client: Client, fake: FakeObjects) -> None:
    info = await put(client)
    tag = f'"{info["sha256"]}"'
    for method in ("GET", "HEAD"):
        resp = await client.request(method, URL, headers={"If-None-Match": f'"x", {tag}'})
        assert resp.status == 304
        assert resp.headers["ETag"] == tag
        assert await resp.read() == b""
    assert fake.get_calls == []  # a 304 fetches no block
    assert (fake.stat_calls, fake.open_calls) == (1, 1)  # one entry read per request
    resp = await client.get(URL, headers={"If-None-Match": '"other"'})
    assert resp.status == 200
    assert fake.open_calls == 2 and len(fake.get_calls) == 1


async def test_head(client: Client) -> None:
    await put(client)
    resp = await client.head(URL)
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(DATA))
    assert await resp.read() == b""
    resp = await client.head(URL, headers={"Range": "bytes=10-19"})
    assert resp.status == 206
    assert resp.headers["Content-Length"] == "10"
    assert resp.headers["Content-Range"] == f"bytes 10-19/{len(DATA)}"


async def test_empty_object(client: Client) -> None:
    await put(client, b"")
    resp = await client.get(URL)
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "0"
    assert await resp.read() == b""
    resp = await client.get(URL, headers={"Range": "bytes=0-"})
    assert resp.status == 416


async def test_missing_key_and_delete(client: Client) -> None:
    await put(client)
    resp = await client.delete(URL)
    assert resp.status == 204
    assert await resp.read() == b""
    for method in ("GET", "DELETE"):
        resp = await client.request(method, URL)
        if method == "GET":
            await error_of(resp, 404, "no_such_key")
        else:
            assert resp.status == 204  # idempotent
    resp = await client.head(URL)
    assert resp.status == 404


async def test_download_failure_after_headers_breaks_the_connection(
    client: Client, fake: FakeObjects
) -> None:
    big = bytes(range(256)) * ((SMALL_BODY_BYTES + 4096) // 256)  # streamed: over the cap
    await put(client, big)
    fake.piece, fake.fail_download_after = 4096, 3
    resp = await client.get(URL)
    assert resp.status == 200  # already sent when the failure happened
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()  # shorter than Content-Length: never mistaken for the object


async def test_a_small_body_leaves_with_its_headers_in_one_write(
    client: Client, fake: FakeObjects, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's writes to the socket per answer: one for a small body (status line,
    headers and body together), more for a streamed one (the headers, then each piece)."""
    writes: list[int] = []
    writer = http_writer.StreamWriter
    real_write, real_writelines = writer._write, writer._writelines

    def server(stream: http_writer.StreamWriter) -> bool:  # not the test client's request
        return isinstance(stream._protocol, web_protocol.RequestHandler)

    def counted_write(self: http_writer.StreamWriter, chunk: Any) -> None:
        if server(self):
            writes.append(len(chunk))
        real_write(self, chunk)

    def counted_writelines(self: http_writer.StreamWriter, chunks: Any) -> None:
        chunks = list(chunks)
        if server(self):
            writes.append(sum(map(len, chunks)))
        real_writelines(self, chunks)

    async def get(body: bytes, piece: int) -> list[int]:
        await put(client, body)
        fake.piece = piece
        writes.clear()
        with monkeypatch.context() as patched:
            patched.setattr(http_writer.StreamWriter, "_write", counted_write)
            patched.setattr(http_writer.StreamWriter, "_writelines", counted_writelines)
            resp = await client.get(URL)
            assert await resp.read() == body
        return list(writes)

    small = await get(DATA, 256)
    assert len(small) == 1 and small[0] > len(DATA)
    big = DATA * (SMALL_BODY_BYTES // len(DATA) + 1)
    assert len(await get(big, 16384)) > 1


async def test_a_small_body_is_read_whole_so_a_failure_is_an_error_answer(
    client: Client, fake: FakeObjects
) -> None:
    small = bytes(range(256)) * (SMALL_BODY_BYTES // 256)  # exactly the cap: read whole
    resp = await client.put(URL, data=small, headers={"Content-Type": "image/jpeg"})
    assert resp.status == 201
    fake.piece = 4096
    resp = await client.get(URL, headers={"Range": "bytes=10-"})
    assert resp.status == 206
    assert resp.headers["Content-Type"] == "image/jpeg"
    assert resp.headers["Content-Range"] == f"bytes 10-{len(small) - 1}/{len(small)}"
    assert resp.headers["Content-Length"] == str(len(small) - 10)
    assert await resp.read() == small[10:]
    fake.fail_download_after = 3
    resp = await client.get(URL)
    await error_of(resp, 500, "internal_error")  # nothing sent yet: a whole error answer


async def test_invalid_names(client: Client) -> None:
    resp = await client.put("/v1/objects/No_Such..Bucket/k", data=b"x")
    await error_of(resp, 400, "invalid_bucket_name")
    resp = await client.put("/v1/objects/photos/" + "k" * 1025, data=b"x")
    await error_of(resp, 400, "invalid_key")


async def test_unicode_and_escaped_keys(client: Client, fake: FakeObjects) -> None:
    await put(client, b"1", "/v1/objects/photos/a%20b/%C3%A9t%C3%A9.txt")
    assert ("photos", "a b/été.txt") in fake.objects
    resp = await client.get("/v1/objects/photos/a%20b/%C3%A9t%C3%A9.txt")
    assert await resp.read() == b"1"


async def test_listing(client: Client, fake: FakeObjects) -> None:
    for key in ("a/1", "a/2", "b/1", "c"):
        await put(client, key.encode(), f"/v1/objects/photos/{key}")
    resp = await client.get("/v1/objects/photos", params={"delimiter": "/", "limit": "5"})
    assert resp.status == 200
    body = await resp.json()
    assert body["bucket"] == "photos"
    assert body["prefix"] == ""
    assert body["delimiter"] == "/"
    assert body["common_prefixes"] == ["a/", "b/"]
    assert [o["key"] for o in body["objects"]] == ["c"]
    assert set(body["objects"][0]) == {"key", "size", "sha256", "version", "modified"}
    assert body["is_truncated"] is False
    assert body["next_start_after"] is None
    resp = await client.get(
        "/v1/objects/photos", params={"prefix": "a/", "limit": "1", "start_after": "a/0"}
    )
    body = await resp.json()
    assert [o["key"] for o in body["objects"]] == ["a/1"]
    assert body["is_truncated"] is True
    assert body["next_start_after"] == "a/1"
    assert fake.list_calls[-1] == {
        "prefix": "a/",
        "delimiter": "",
        "limit": 1,
        "start_after": "a/0",
    }
    await client.get("/v1/objects/photos")
    assert fake.list_calls[-1]["limit"] == 1000


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "abc", "1.5"])
async def test_listing_bad_limit(client: Client, limit: str) -> None:
    resp = await client.get("/v1/objects/photos", params={"limit": limit})
    error = await error_of(resp, 400, "invalid_argument")
    assert "limit" in error["message"]


async def test_request_ids(client: Client) -> None:
    resp = await client.get("/health", headers={"X-Request-Id": "abc-123.x"})
    assert resp.headers["X-Request-Id"] == "abc-123.x"
    resp = await client.get(URL, headers={"X-Request-Id": "bad id\twith spaces"})
    error = await error_of(resp, 404, "no_such_key")
    assert error["request_id"] != "bad id\twith spaces"
    assert len(error["request_id"]) == 32


async def test_route_errors(client: Client) -> None:
    resp = await client.get("/v2/nothing")
    await error_of(resp, 404, "not_found")
    resp = await client.post(URL, data=b"x")
    await error_of(resp, 405, "method_not_allowed")
    assert "PUT" in resp.headers["Allow"]


async def test_unexpected_error_is_hidden(client: Client, fake: FakeObjects) -> None:
    fake.explode = True
    resp = await client.get(URL)
    error = await error_of(resp, 500, "internal_error")
    assert "secret" not in json.dumps(error)
    assert "Traceback" not in json.dumps(error)


async def test_metrics_count_requests_by_route(client: Client) -> None:
    await put(client)
    await client.get(URL)
    await client.get("/nope")
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    route = 'route="/v1/objects/{bucket}/{key}"'
    assert f'dfspeer_http_requests_total{{method="PUT",{route},status="201"}} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "dfspeer_http_request_duration_seconds_bucket" in text
    assert f"dfspeer_object_bytes_received_total {float(len(DATA))}" in text
    assert f"dfspeer_object_bytes_sent_total {float(len(DATA))}" in text
    assert "dfspeer_store_blocks 3.0" in text
