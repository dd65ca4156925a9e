"""The data path end to end on three real agents (127.0.0.21..23, 256 KiB chunks):
round trips at chunk edges and of a ~50 MB file built from this machine's own files, reads
from every peer, random ranges, listing, overwrite and delete, bad input, and the CLI."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from dfspeer.client import Client, auth_headers, sha256_file
from dfspeer.errors import BadDigest, NoSuchKey
from dfspeer.localcluster import LocalCluster
from tests.integration.conftest import DATA_CHUNK_BYTES

pytestmark = pytest.mark.integration

C = DATA_CHUNK_BYTES
BUCKET = "itest"


@pytest.fixture
async def cs(data_cluster: LocalCluster) -> AsyncIterator[list[Client]]:
    """One client per peer."""
    clients = [Client(url, timeout_s=60.0) for url in data_cluster.urls]
    yield clients
    for c in clients:
        await c.close()


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def assert_everywhere(cs: list[Client], key: str, want: bytes) -> None:
    """Every peer returns ``want`` whole, and stat agrees on size and SHA-256."""
    sha = hashlib.sha256(want).hexdigest()
    for c in cs:
        got = await c.get_object(BUCKET, key)
        assert len(got) == len(want) and got == want, f"{c.base_url} {key}"
        info = await c.stat_object(BUCKET, key)
        assert (info["size"], info["sha256"]) == (len(want), sha), c.base_url


async def assert_missing_everywhere(cs: list[Client], key: str) -> None:
    for c in cs:
        with pytest.raises(NoSuchKey):
            await c.get_object(BUCKET, key)


@pytest.mark.parametrize(
    "size", [0, 1, 4096, 4097, C - 1, C, C + 1, 3 * C + 17], ids=lambda s: f"{s}B"
)
async def test_round_trip_sizes_from_every_peer(cs: list[Client], size: int) -> None:
    data = payload(size, size)
    key = f"sizes/{size}.bin"
    coordinator = cs[size % len(cs)]
    info = await coordinator.put_object(BUCKET, key, data, sha256=hashlib.sha256(data).hexdigest())
    assert info["size"] == size and info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["bucket"] == BUCKET and info["key"] == key and info["version"]
    await assert_everywhere(cs, key, data)
    if size:
        for i, c in enumerate(cs):  # the last byte and a span over a chunk edge
            assert await c.get_object(BUCKET, key, range=(size - 1, None)) == data[-1:]
            lo = max(0, min(size, C) - 3 - i)
            assert (
                await c.get_object(BUCKET, key, range=(lo, min(size, lo + 7))) == data[lo : lo + 7]
            )


async def test_machine_file_round_trip_and_random_ranges(
    cs: list[Client], machine_file: Path, tmp_path: Path
) -> None:
    sha = sha256_file(machine_file)
    size = machine_file.stat().st_size
    info = await cs[0].put_object(BUCKET, "big/machine.bin", machine_file, sha256=sha)
    assert (info["size"], info["sha256"]) == (size, sha)
    assert info["chunks"] == -(-size // C)
    for i, c in enumerate(cs):
        out = tmp_path / f"from-{i}.bin"
        got = await c.download(BUCKET, "big/machine.bin", out)
        assert (got["bytes"], got["sha256"]) == (size, sha)
        assert out.read_bytes() == machine_file.read_bytes()
        out.unlink()
    data = machine_file.read_bytes()
    rng = random.Random(4)
    spans: list[tuple[int, int | None]] = [(0, 1), (size - 1, None), (-1, None), (-C - 5, None)]
    while len(spans) < 200:
        length = rng.choice((1, rng.randrange(1, 2 * C), rng.randrange(1, 6 * C)))
        start = rng.randrange(0, size - length)
        spans.append((start, start + length))

    async def check(i: int, span: tuple[int, int | None]) -> None:
        got = await cs[i % len(cs)].get_object(BUCKET, "big/machine.bin", range=span)
        start, end = span
        assert got == (data[start:] if end is None else data[start:end]), span

    sem = asyncio.Semaphore(6)

    async def bounded(i: int, span: tuple[int, int | None]) -> None:
        async with sem:
            await check(i, span)

    await asyncio.gather(*(bounded(i, s) for i, s in enumerate(spans)))


async def test_listing_with_prefix_and_delimiter(cs: list[Client]) -> None:
    keys = ["list/a/1", "list/a/2", "list/b/x/y", "list/c", "list/d.txt", "listing-not"]
    for i, key in enumerate(keys):
        await cs[i % 3].put_object(BUCKET, key, key.encode())
    for c in cs:
        page = await c.list_objects(BUCKET, prefix="list/", delimiter="/")
        assert [o["key"] for o in page["objects"]] == ["list/c", "list/d.txt"]
        assert page["common_prefixes"] == ["list/a/", "list/b/"]
        assert not page["is_truncated"]
        obj = page["objects"][0]
        assert obj["size"] == 6 and obj["sha256"] == hashlib.sha256(b"list/c").hexdigest()
        assert obj["version"] and obj["modified"] > 0
        flat = await c.list_objects(BUCKET, prefix="list/")
        assert [o["key"] for o in flat["objects"]] == sorted(keys[:-1])
        assert flat["common_prefixes"] == []
        sub = await c.list_objects(BUCKET, prefix="list/a/", delimiter="/")
        assert [o["key"] for o in sub["objects"]] == ["list/a/1", "list/a/2"]
    first = await cs[1].list_objects(BUCKET, prefix="list/", limit=2)
    assert [o["key"] for o in first["objects"]] == ["list/a/1", "list/a/2"]
    assert first["is_truncated"] and first["next_start_after"] == "list/a/2"
    paged = [o["key"] async for o, _ in cs[2].iter_objects(BUCKET, "list/", page_size=2) if o]
    assert paged == sorted(keys[:-1])


async def test_overwrite_and_delete(cs: list[Client]) -> None:
    key = "mutable/obj"
    v1, v2 = payload(C + 5, 1), payload(100, 2)
    first = await cs[0].put_object(BUCKET, key, v1)
    second = await cs[1].put_object(BUCKET, key, v2)
    assert first["version"] != second["version"]
    await assert_everywhere(cs, key, v2)
    for c in cs:
        assert (await c.stat_object(BUCKET, key))["version"] == second["version"]
    await cs[2].delete_object(BUCKET, key)
    await assert_missing_everywhere(cs, key)
    for c in cs:
        listed = await c.list_objects(BUCKET, prefix="mutable/")
        assert listed["objects"] == []
    await cs[0].delete_object(BUCKET, key)  # idempotent
    await cs[0].put_object(BUCKET, key, v1)  # a key lives again after a delete
    await assert_everywhere(cs, key, v1)


async def _status(url: str, method: str, path: str, **kw: object) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession(headers=auth_headers()) as s,
        s.request(method, url + path, **kw) as resp,  # type: ignore[arg-type]
    ):
        body = await resp.json(content_type=None) if resp.content_length != 0 else None
        return resp.status, (body or {})


@pytest.mark.parametrize(
    ("bucket", "key", "code"),
    [
        ("Upper", "k", "invalid_bucket_name"),
        ("ab", "k", "invalid_bucket_name"),
        ("a" * 64, "k", "invalid_bucket_name"),
        ("-dash", "k", "invalid_bucket_name"),
        ("under_score", "k", "invalid_bucket_name"),
        ("192.168.1.1", "k", "invalid_bucket_name"),
        ("good", "k" * 1025, "invalid_key"),
        ("good", "é" * 513, "invalid_key"),
    ],
)
async def test_invalid_names_answer_400(
    data_cluster: LocalCluster, bucket: str, key: str, code: str
) -> None:
    url = data_cluster.urls[0]
    c = Client(url)
    status, body = await _status(url, "PUT", c.object_url(bucket, key)[len(url) :], data=b"x")
    assert status == 400 and body["error"]["code"] == code  # type: ignore[index]
    assert body["error"]["request_id"]  # type: ignore[index]
    status, _ = await _status(url, "GET", c.object_url(bucket, key)[len(url) :])
    assert status == 400
    await c.close()


async def test_lying_digest_is_rejected_and_changes_nothing(cs: list[Client]) -> None:
    key = "digest/obj"
    good = payload(C * 2 + 3, 7)
    await cs[0].put_object(BUCKET, key, good)
    for size in (10, C * 3):  # inline and chunked bodies
        lie = hashlib.sha256(b"something else").hexdigest()
        with pytest.raises(BadDigest) as exc:
            await cs[1].put_object(BUCKET, key, payload(size, 8), sha256=lie)
        assert exc.value.status == 400
        with pytest.raises(BadDigest):
            await cs[2].put_object(BUCKET, "digest/new", payload(size, 9), sha256=lie)
    await assert_everywhere(cs, key, good)
    await assert_missing_everywhere(cs, "digest/new")


def _raw_short_put(host: str, port: int, path: str, declared: int, sent: bytes) -> bytes:
    """Send a PUT whose body is shorter than its Content-Length, half-close, read reply."""
    import socket

    with socket.create_connection((host, port), timeout=15) as s:
        auth = "".join(f"{k}: {v}\r\n" for k, v in auth_headers().items())
        head = (
            f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}"
            f"Content-Length: {declared}\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        s.sendall(head.encode() + sent)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        try:
            while chunk := s.recv(65536):
                reply += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return reply


async def put_400_count(url: str) -> float:
    """``dfspeer_http_requests_total`` for PUT answers with status 400, from ``/metrics``."""
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as resp:
        text = await resp.text()
    total = 0.0
    for line in text.splitlines():
        wanted = 'method="PUT"' in line and 'status="400"' in line
        if line.startswith("dfspeer_http_requests_total{") and wanted:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("sent", [100, C + 100], ids=["inline", "chunked"])
async def test_short_body_answers_400_and_stores_nothing(
    data_cluster: LocalCluster, cs: list[Client], sent: int
) -> None:
    """The client sends half of its declared Content-Length and half-closes. aiohttp's
    server closes a connection on EOF, so the 400 may not reach the client; the peer's
    request counter shows the answer it gave, and the object must not exist."""
    key = f"short/{sent}"
    peer = data_cluster.peer(1)
    before = await put_400_count(peer.url)
    reply = await asyncio.to_thread(
        _raw_short_put,
        peer.host,
        peer.port,
        f"/v1/objects/{BUCKET}/{key}",
        sent * 2,
        payload(sent, 3),
    )
    if reply:
        assert reply.split(b"\r\n", 1)[0].startswith(b"HTTP/1.1 400"), reply[:300]
        assert b"incomplete_body" in reply
    deadline = time.monotonic() + 10
    while await put_400_count(peer.url) < before + 1:
        assert time.monotonic() < deadline, "the peer never answered the short body with 400"
        await asyncio.sleep(0.1)
    await assert_missing_everywhere(cs, key)
    assert [o async for o, _ in cs[0].iter_objects(BUCKET, "short/") if o] == []


async def test_unauthenticated_internal_call_is_401_and_stores_nothing(
    data_cluster: LocalCluster,
) -> None:
    from dfspeer.blockstore import BlockNotFound
    from dfspeer.cluster.rpc import PeerRpcClient, RpcError
    from dfspeer.gossip import Keyring, load_keyring

    block = payload(1000, 11)
    digest = hashlib.sha256(block).hexdigest()
    url = data_cluster.urls[0]
    forged = {
        "X-Dfspeer-Peer": "peer-2",
        "X-Dfspeer-Date": str(int(time.time())),
        "X-Dfspeer-Body-SHA256": digest,
        "X-Dfspeer-Signature": "0" * 64,
    }
    for headers in ({}, forged):
        status, body = await _status(
            url, "PUT", f"/internal/blocks/{digest}", data=block, headers=headers
        )
        assert status == 401 and body["error"]["code"] == "unauthorized"  # type: ignore[index]
    status, _ = await _status(url, "GET", "/internal/status")
    assert status == 401
    # A peer signing with another cluster's key is refused as well.
    outsider = PeerRpcClient(Keyring([os.urandom(32)]), "outsider", timeout_s=10.0)
    try:
        with pytest.raises(RpcError) as exc:
            await outsider.put_block(url.removeprefix("http://"), bytes.fromhex(digest), block)
        assert (exc.value.status, exc.value.code) == (401, "unauthorized")
    finally:
        await outsider.close()
    # Nothing was stored: a properly signed read finds no such block on any peer.
    insider = PeerRpcClient(load_keyring(data_cluster.key_file), "tester", timeout_s=10.0)
    try:
        for peer_url in data_cluster.urls:
            with pytest.raises(BlockNotFound):
                await insider.get_block(peer_url.removeprefix("http://"), bytes.fromhex(digest))
    finally:
        await insider.close()


def dfspeer_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFSPEER_")}
    env["DFSPEER_ADMIN_TOKEN"] = os.environ.get("DFSPEER_ADMIN_TOKEN", "")
    return subprocess.run(
        [sys.executable, "-m", "dfspeer", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_end_to_end(data_cluster: LocalCluster, tmp_path: Path) -> None:
    urls = data_cluster.urls
    src = tmp_path / "notes.bin"
    src.write_bytes(payload(3 * C + 99, 21))
    r = dfspeer_cli("put", str(src), f"{BUCKET}/cli/", "--peer", urls[0])
    assert r.returncode == 0, r.stderr
    assert f"{BUCKET}/cli/notes.bin" in r.stdout.decode()
    assert sha256_file(src) in r.stdout.decode()
    out = tmp_path / "back.bin"
    r = dfspeer_cli("get", f"{BUCKET}/cli/notes.bin", "-o", str(out), "--peer", urls[1])
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == src.read_bytes()
    r = dfspeer_cli("get", f"{BUCKET}/cli/notes.bin", "--range", "10-19", "--peer", urls[2])
    assert r.returncode == 0 and r.stdout == src.read_bytes()[10:20]
    r = dfspeer_cli("put", "-", f"{BUCKET}/cli/stdin.txt", "--peer", urls[2], stdin=b"from stdin")
    assert r.returncode == 0, r.stderr
    r = dfspeer_cli("ls", f"{BUCKET}/cli/", "--peer", urls[0])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert [ln.split()[-1] for ln in lines] == ["cli/notes.bin", "cli/stdin.txt"]
    r = dfspeer_cli("ls", BUCKET, "--peer", urls[0])
    assert "PRE" in r.stdout.decode() and "cli/" in r.stdout.decode()
    r = dfspeer_cli("stat", f"{BUCKET}/cli/notes.bin", "--peer", urls[1])
    assert r.returncode == 0 and sha256_file(src) in r.stdout.decode()
    assert str(src.stat().st_size) in r.stdout.decode()
    r = dfspeer_cli("rm", f"{BUCKET}/cli/notes.bin", "--peer", urls[2])
    assert r.returncode == 0, r.stderr
    r = dfspeer_cli("get", f"{BUCKET}/cli/notes.bin", "--peer", urls[0])
    assert r.returncode == 1 and r.stderr.decode().startswith("dfspeer: no_such_key: ")
    assert r.stderr.decode().count("\n") == 1
    for command in ("status", "members"):
        r = dfspeer_cli(command, "--peer", urls[0])
        assert r.returncode == 0, r.stderr
    members = r.stdout.decode()
    assert all(f"peer-{i}" in members for i in (1, 2, 3)) and members.count("alive") == 3
