"""Resumable upload sessions with real agents: ``/v1/uploads`` end to end, and the CLI.

Two module-scoped clusters of three ``dfspeer agent`` processes, N = 3, W = R = 2, with
``block_gc_grace_s=0`` so freed blocks go within a pass (``block_gc_interval_s=1``):

- ``sessions_cluster``: 127.0.0.81..83, HTTP 24070.., gossip 24946..; fast failure
  detection; ``max_open_uploads=3`` (per bucket, so only the bucket that tests the limit
  reaches it);
- ``expiry_cluster``: 127.0.0.86..88, HTTP 24080.., gossip 24956..; ``upload_expiry_s=3``.

Blocks are counted through every peer's ``GET /v1/cluster/status`` ("blocks"); with three
peers and N = 3 every chunk is one block on each peer. Tests run in file order: the one
that SIGKILLs the initiating peer restarts it at its end, for the CLI test after it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dfspeer.client import Client, UploadJson, auth_headers
from dfspeer.localcluster import LocalCluster
from tests.integration.conftest import start_cluster

MiB = 1024 * 1024
CHUNK = 1 * MiB
BASE_SETTINGS: dict[str, object] = {
    "map_size_bytes": 1024 * MiB,
    "durable": False,
    "block_gc_grace_s": 0.0,
    "block_gc_interval_s": 1.0,
    "log_level": "info",
    "insecure": True,  # no client authentication: these tests are about sessions
}
SESSIONS_SETTINGS: dict[str, object] = {
    **BASE_SETTINGS,
    "max_open_uploads": 3,
    "probe_interval_s": 0.4,
    "probe_timeout_s": 0.2,
    "suspicion_mult": 3,
    "suspicion_max_timeout_mult": 2,
    "push_pull_interval_s": 5.0,
    "request_timeout_s": 10.0,
}
EXPIRY_S = 3.0
EXPIRY_SETTINGS: dict[str, object] = {**BASE_SETTINGS, "upload_expiry_s": EXPIRY_S}
SETTLE_TIMEOUT_S = 60.0
CLI_FILE_BYTES = 200 * MiB
CLI_CHUNK = 4 * MiB
CLI_PARALLEL = 4


@pytest.fixture(scope="module")
def sessions_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from start_cluster(
        tmp_path_factory.mktemp("sessions-cluster"),
        host_base=80,
        base_port=24070,
        gossip_base_port=24946,
        settings=SESSIONS_SETTINGS,
    )


@pytest.fixture(scope="module")
def expiry_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from start_cluster(
        tmp_path_factory.mktemp("expiry-cluster"),
        host_base=85,
        base_port=24080,
        gossip_base_port=24956,
        settings=EXPIRY_SETTINGS,
    )


# ---------------------------------------------------------------------- helpers
async def block_counts(urls: list[str]) -> list[int]:
    """Blocks held by each peer (``GET /v1/cluster/status``)."""
    counts = []
    for url in urls:
        async with Client(url) as c:
            counts.append(int((await c.status())["blocks"]))
    return counts


async def settled_counts(urls: list[str]) -> list[int]:
    """Block counts once they stayed the same for three readings 1 s apart (earlier tests'
    garbage collected, nothing in flight)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    seen = [await block_counts(urls)]
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        seen.append(await block_counts(urls))
        if len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]:
            return seen[-1]
    raise AssertionError(f"block counts did not settle: {seen[-5:]}")


async def wait_counts(urls: list[str], want: list[int]) -> list[int]:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    counts = await block_counts(urls)
    while counts != want and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        counts = await block_counts(urls)
    assert counts == want, f"blocks per peer {SETTLE_TIMEOUT_S} s later: {counts}, want {want}"
    return counts


async def call(
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One raw request; (status, decoded JSON or None)."""
    async with (
        aiohttp.ClientSession(headers=auth_headers()) as s,
        s.request(method, url, data=data, json=json_body, headers=headers) as r,
    ):
        body = await r.read()
        return r.status, (json.loads(body) if body else None)


async def get_upload(url: str, upload_id: str) -> UploadJson:
    async with Client(url) as c:
        return await c.get_upload(upload_id)


def error_code(doc: Any) -> str:
    return str(doc["error"]["code"])


def chunks_of(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def read_back_everywhere(urls: list[str], bucket: str, key: str, data: bytes) -> None:
    for url in urls:
        async with Client(url) as c:
            got = await c.get_object(bucket, key)
            assert got == data, f"{url} returned {len(got)} bytes, sha {sha(got)[:12]}"
            tail = await c.get_object(bucket, key, range=(len(data) - 5000, None))
            assert tail == data[-5000:]


# ---------------------------------------------------------------------- idempotency
async def test_idempotent_init_chunk_and_complete(sessions_cluster: LocalCluster) -> None:
    u1, u2, u3 = sessions_cluster.urls
    data = os.urandom(3 * CHUNK + 777)
    body = {"bucket": "idem", "key": "obj", "size": len(data), "chunk_size": CHUNK}
    ikey = {"Idempotency-Key": "idem-test-1"}
    status, first = await call("POST", f"{u1}/v1/uploads", json_body=body, headers=ikey)
    assert status == 201, first
    assert first["total_chunks"] == 4 and first["state"] == "initiated"
    upload_id = first["upload_id"]
    # the same key and body again, through another peer: the same session, 200
    status, again = await call("POST", f"{u2}/v1/uploads", json_body=body, headers=ikey)
    assert status == 200 and again["upload_id"] == upload_id
    # the same key with another body: 409 idempotency_conflict
    other = {**body, "size": len(data) + 1}
    status, doc = await call("POST", f"{u3}/v1/uploads", json_body=other, headers=ikey)
    assert status == 409 and error_code(doc) == "idempotency_conflict"

    parts = chunks_of(data)
    async with Client(u1) as c1, Client(u2) as c2, Client(u3) as c3:
        for i, part in enumerate(parts):
            got = await (c1, c2, c3)[i % 3].put_chunk(upload_id, i, part, sha256=sha(part))
            assert got == {"index": i, "size": len(part), "sha256": sha(part)}
        before = await c2.get_upload(upload_id)
        counts = await block_counts(sessions_cluster.urls)
        # the same bytes again: a no-op (same answer, nothing more stored)
        again_chunk = await c3.put_chunk(upload_id, 1, parts[1])
        assert again_chunk == {"index": 1, "size": CHUNK, "sha256": sha(parts[1])}
        after = await c1.get_upload(upload_id)
        assert after["bytes_received"] == before["bytes_received"] == len(data)
        assert after["received"] == before["received"] == [[0, 3]]
        assert await block_counts(sessions_cluster.urls) == counts
        assert await c1.missing_chunks(upload_id) == []

        info = await c2.complete_upload(upload_id, sha256=sha(data))
        assert info["size"] == len(data) and info["sha256"] == sha(data)
        # a second complete (elsewhere): the same object
        assert await c3.complete_upload(upload_id) == info
        assert (await c1.get_upload(upload_id))["state"] == "completed"
        # init with the same key and body now finds the completed session
        status, doc = await call("POST", f"{u3}/v1/uploads", json_body=body, headers=ikey)
        assert status == 200 and doc["upload_id"] == upload_id and doc["state"] == "completed"
    await read_back_everywhere(sessions_cluster.urls, "idem", "obj", data)

    # a completed session takes no more chunks and cannot be aborted
    status, doc = await call("PUT", f"{u1}/v1/uploads/{upload_id}/chunks/0", data=parts[0])
    assert status == 409 and error_code(doc) == "upload_not_open"
    status, doc = await call("DELETE", f"{u2}/v1/uploads/{upload_id}")
    assert status == 409 and error_code(doc) == "upload_not_open"
    await read_back_everywhere(sessions_cluster.urls, "idem", "obj", data)


# ---------------------------------------------------------------------- errors
async def test_bad_requests_get_their_codes_and_change_nothing(
    sessions_cluster: LocalCluster,
) -> None:
    urls = sessions_cluster.urls
    u1, u2, u3 = urls
    data = os.urandom(2 * CHUNK + 100)
    parts = chunks_of(data)
    async with Client(u1) as c:
        session, created = await c.init_upload("errs", "obj", size=len(data), chunk_size=CHUNK)
        assert created
        upload_id = session["upload_id"]
        await c.put_chunk(upload_id, 0, parts[0])
    base = f"/v1/uploads/{upload_id}"
    counts = await settled_counts(urls)
    state = await get_upload(u2, upload_id)

    bad: list[tuple[str, str, dict[str, Any], int, str]] = [
        # (method, url, request kwargs, status, code)
        (
            "PUT",
            f"{u2}{base}/chunks/1",
            {"data": parts[1], "headers": {"X-Chunk-SHA256": sha(b"other")}},
            400,
            "bad_digest",
        ),
        ("PUT", f"{u3}{base}/chunks/1", {"data": parts[1][:-1]}, 400, "invalid_chunk_size"),
        ("PUT", f"{u1}{base}/chunks/2", {"data": parts[2] + b"x"}, 400, "invalid_chunk_size"),
        ("PUT", f"{u2}{base}/chunks/2", {"data": parts[2][:-1]}, 400, "invalid_chunk_size"),
        ("PUT", f"{u3}{base}/chunks/1", {"data": parts[1] + b"x"}, 400, "invalid_chunk_size"),
        ("PUT", f"{u1}{base}/chunks/3", {"data": parts[2]}, 400, "invalid_argument"),
        ("PUT", f"{u1}{base}/chunks/-1", {"data": parts[2]}, 400, "invalid_argument"),
        ("POST", f"{u2}{base}/complete", {}, 409, "incomplete_upload"),
        ("PUT", f"{u3}/v1/uploads/{'0' * 32}/chunks/0", {"data": parts[0]}, 404, "no_such_upload"),
        ("GET", f"{u1}/v1/uploads/{'f' * 32}", {}, 404, "no_such_upload"),
        ("GET", f"{u1}/v1/uploads/not-an-id/missing-chunks", {}, 404, "no_such_upload"),
        ("POST", f"{u2}/v1/uploads/{'a' * 32}/complete", {}, 404, "no_such_upload"),
        ("DELETE", f"{u3}/v1/uploads/{'b' * 32}", {}, 404, "no_such_upload"),
        (
            "POST",
            f"{u1}/v1/uploads",
            {"json_body": {"bucket": "errs", "key": "k", "chunk_size": 1000}},
            400,
            "invalid_argument",
        ),
    ]
    for method, url, kwargs, want_status, want_code in bad:
        status, doc = await call(method, url, **kwargs)
        assert (status, error_code(doc)) == (want_status, want_code), (method, url, doc)
    # incomplete_upload names the missing chunks
    status, doc = await call("POST", f"{u3}{base}/complete")
    assert status == 409 and doc["error"]["missing"] == [1, 2]

    # the session did not change, and no block was stored or freed
    assert await get_upload(u3, upload_id) == state
    async with Client(u1) as c:
        assert await c.missing_chunks(upload_id) == [1, 2]
    assert await block_counts(urls) == counts

    # a wrong whole-object SHA-256 at completion: bad_digest, and the session stays open
    async with Client(u2) as c:
        await c.put_chunk(upload_id, 2, parts[2])
        await c.put_chunk(upload_id, 1, parts[1])
    status, doc = await call("POST", f"{u1}{base}/complete", json_body={"sha256": sha(data + b"x")})
    assert status == 400 and error_code(doc) == "bad_digest"
    assert (await get_upload(u2, upload_id))["state"] == "in_progress"
    status, doc = await call("GET", f"{u3}/v1/objects/errs/obj")
    assert status == 404 and error_code(doc) == "no_such_key"
    status, doc = await call("POST", f"{u3}{base}/complete", json_body={"sha256": sha(data)})
    assert status == 200 and doc["sha256"] == sha(data)
    await read_back_everywhere(urls, "errs", "obj", data)


async def test_too_many_open_uploads(sessions_cluster: LocalCluster) -> None:
    u1, u2, _ = sessions_cluster.urls
    async with Client(u1) as c:
        ids = [(await c.init_upload("crowded", f"k{i}", size=10))[0]["upload_id"] for i in range(3)]
        status, doc = await call(
            "POST", f"{u2}/v1/uploads", json_body={"bucket": "crowded", "key": "k3"}
        )
        assert status == 409 and error_code(doc) == "too_many_uploads"
        listed = await c.list_uploads("crowded")
        assert sorted(u["upload_id"] for u in listed) == sorted(ids)
        await c.abort_upload(ids[0])
        fourth, created = await c.init_upload("crowded", "k3", size=10)
        assert created
        for upload_id in [*ids[1:], fourth["upload_id"]]:
            await c.abort_upload(upload_id)
        assert await c.list_uploads("crowded") == []


# ---------------------------------------------------------------------- abort
async def test_abort_frees_the_chunks(sessions_cluster: LocalCluster) -> None:
    urls = sessions_cluster.urls
    u1, u2, u3 = urls
    base_counts = await settled_counts(urls)
    data = os.urandom(4 * CHUNK)
    async with Client(u1) as c1, Client(u2) as c2, Client(u3) as c3:
        session, _ = await c1.init_upload("aborts", "obj", size=len(data), chunk_size=CHUNK)
        upload_id = session["upload_id"]
        for i, part in enumerate(chunks_of(data)):
            await (c3, c2, c1, c3)[i].put_chunk(upload_id, i, part)
        # a re-sent index with other bytes replaces the chunk; both blocks are freed
        await c2.put_chunk(upload_id, 3, os.urandom(CHUNK))
        await wait_counts(urls, [n + 5 for n in base_counts])  # third copies may lag W
        await c2.abort_upload(upload_id)
        assert (await c3.get_upload(upload_id))["state"] == "aborted"
        assert await c1.list_uploads("aborts") == []
        await wait_counts(urls, base_counts)
        for client in (c1, c2, c3):
            with pytest.raises(Exception) as caught:
                await client.put_chunk(upload_id, 0, data[:CHUNK])
            assert getattr(caught.value, "code", "") == "upload_not_open"
        status, doc = await call("POST", f"{u1}/v1/uploads/{upload_id}/complete")
        assert status == 409 and error_code(doc) == "upload_not_open"
        status, doc = await call("DELETE", f"{u3}/v1/uploads/{upload_id}")
        assert status == 409 and error_code(doc) == "upload_not_open"
        status, _ = await call("GET", f"{u2}/v1/objects/aborts/obj")
        assert status == 404
    assert await block_counts(urls) == base_counts


# ---------------------------------------------------------------------- crash of a peer
async def test_chunks_through_every_peer_and_the_initiator_killed(
    sessions_cluster: LocalCluster,
) -> None:
    urls = sessions_cluster.urls
    data = os.urandom(7 * CHUNK + 12345)
    parts = chunks_of(data)  # 8 chunks, the last one short
    clients = [Client(u) for u in urls]
    try:
        session, created = await clients[0].init_upload(
            "crash", "obj", size=len(data), chunk_size=CHUNK, content_type="application/x-test"
        )
        assert created and session["total_chunks"] == 8
        upload_id = session["upload_id"]
        missing = list(range(8))

        async def send(index: int, via: int, check_via: int) -> None:
            await clients[via].put_chunk(upload_id, index, parts[index], sha256=sha(parts[index]))
            missing.remove(index)
            assert await clients[check_via].missing_chunks(upload_id) == missing
            got = await clients[check_via].get_upload(upload_id)
            assert got["bytes_received"] == len(data) - sum(len(parts[i]) for i in missing)

        # out of order, through all three peers, each checked through another one
        for step, index in enumerate([6, 0, 7, 3]):
            await send(index, via=step % 3, check_via=(step + 1) % 3)

        sessions_cluster.kill(1)  # the initiating peer, before complete
        for step, index in enumerate([5, 1, 4, 2]):
            await send(index, via=1 + step % 2, check_via=2 - step % 2)
        assert missing == []

        info = await clients[2].complete_upload(upload_id, sha256=sha(data))
        assert info["size"] == len(data) and info["sha256"] == sha(data)
        assert info["chunks"] == 8
        assert await clients[1].complete_upload(upload_id) == info
        await read_back_everywhere(urls[1:], "crash", "obj", data)
        stat = await clients[1].stat_object("crash", "obj")
        assert stat["content_type"] == "application/x-test" and stat["sha256"] == sha(data)
    finally:
        for c in clients:
            await c.close()
        if not sessions_cluster.peer(1).running:
            sessions_cluster.start_peer(1)
        sessions_cluster.wait_ready(60.0)
        sessions_cluster.wait_view([1, 2, 3], timeout_s=60.0)
    await read_back_everywhere(urls, "crash", "obj", data)


# ---------------------------------------------------------------------- the CLI
def make_random_file(path: Path, size: int) -> None:
    with open("/dev/urandom", "rb") as src, open(path, "wb") as out:
        left = size
        while left:
            piece = src.read(min(8 * MiB, left))
            out.write(piece)
            left -= len(piece)


def sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(8 * MiB):
            h.update(piece)
    return h.hexdigest()


def put_command(path: Path, peer: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dfspeer",
        "put",
        str(path),
        "clibkt/big.bin",
        "--peer",
        peer,
        "--chunk-size",
        "4MiB",
        "--parallel",
        str(CLI_PARALLEL),
        "--json",
    ]


async def test_cli_put_resumes_after_sigkill(
    sessions_cluster: LocalCluster, tmp_path: Path
) -> None:
    urls = sessions_cluster.urls
    path = tmp_path / "big.bin"
    make_random_file(path, CLI_FILE_BYTES)
    digest = sha_file(path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFSPEER_")}
    env["DFSPEER_ADMIN_TOKEN"] = os.environ.get("DFSPEER_ADMIN_TOKEN", "")
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    state_dir = tmp_path / "cache" / "dfspeer" / "uploads"

    first = subprocess.Popen(
        put_command(path, urls[0]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    received_at_kill = 0
    try:
        async with Client(urls[2]) as watcher:
            deadline = time.monotonic() + 120.0
            upload_id = ""
            while time.monotonic() < deadline and first.poll() is None:
                states = list(state_dir.glob("*.json")) if state_dir.exists() else []
                if not upload_id and states:
                    upload_id = json.loads(states[0].read_text())["upload_id"]
                if upload_id:
                    got = await watcher.get_upload(upload_id)
                    if got["bytes_received"] >= 0.4 * CLI_FILE_BYTES:
                        os.killpg(first.pid, signal.SIGKILL)
                        received_at_kill = got["bytes_received"]
                        break
                await asyncio.sleep(0.05)
    finally:
        if first.poll() is None and not received_at_kill:
            os.killpg(first.pid, signal.SIGKILL)
        out, err = first.communicate(timeout=30)
    assert received_at_kill, (
        f"the first run was not caught half-way (exit {first.returncode}): "
        f"{out.decode()[-500:]} {err.decode()[-2000:]}"
    )
    assert first.returncode == -signal.SIGKILL
    await asyncio.sleep(1.0)  # chunks whose bodies had fully arrived finish on the server
    async with Client(urls[1]) as c:
        before = await c.get_upload(upload_id)
    received = before["bytes_received"]
    # at most the chunks in flight at the kill arrive after it, plus one: a chunk may finish
    # (and the next one start) between the watcher's reading and the kill
    assert received_at_kill <= received <= received_at_kill + (CLI_PARALLEL + 1) * CLI_CHUNK
    assert received < CLI_FILE_BYTES
    must_send = CLI_FILE_BYTES - received

    # the same command through another peer resumes the same session
    second = subprocess.run(
        put_command(path, urls[1]), capture_output=True, env=env, timeout=240, check=False
    )
    out_text, err_text = second.stdout.decode(), second.stderr.decode()
    assert second.returncode == 0, err_text[-2000:]
    line = re.search(r"resuming: (\d+) of (\d+) MiB already stored", err_text)
    assert line is not None, err_text[-2000:]
    assert int(line.group(1)) == round(received / MiB) and int(line.group(2)) == 200
    result = json.loads(out_text.strip().splitlines()[-1])
    upload = result["upload"]
    assert upload["upload_id"] == upload_id and upload["resumed"] is True
    assert upload["stored_bytes"] == received
    assert must_send <= upload["sent_bytes"] <= must_send + CLI_CHUNK, (upload, must_send)
    assert result["sha256"] == digest and result["size"] == CLI_FILE_BYTES
    print(
        f"\nCLI resume: killed at {received_at_kill / MiB:.0f} MiB received, "
        f"{received / MiB:.0f} MiB stored before the rerun, rerun sent "
        f"{upload['sent_bytes'] / MiB:.0f} MiB (had to send {must_send / MiB:.0f} MiB)"
    )
    assert not list(state_dir.glob("*.json")), "the state file outlived the upload"

    async with Client(urls[2]) as c:
        assert (await c.get_upload(upload_id))["state"] == "completed"
        assert await c.list_uploads("clibkt") == []
        got = await c.download("clibkt", "big.bin", tmp_path / "copy.bin")
        assert got["sha256"] == digest and got["bytes"] == CLI_FILE_BYTES
    (tmp_path / "copy.bin").unlink()


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dfspeer", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def test_cli_uploads_ls_and_abort(sessions_cluster: LocalCluster, tmp_path: Path) -> None:
    u1, u2, _ = sessions_cluster.urls
    env = {k: v for k, v in os.environ.items() if not k.startswith("DFSPEER_")}
    env["DFSPEER_ADMIN_TOKEN"] = os.environ.get("DFSPEER_ADMIN_TOKEN", "")
    async with Client(u1) as c:
        session, _ = await c.init_upload("lsbkt", "some/key", size=3 * CHUNK, chunk_size=CHUNK)
        await c.put_chunk(session["upload_id"], 1, os.urandom(CHUNK))
    listed = run_cli(["uploads", "ls", "lsbkt", "--peer", u2], env)
    assert listed.returncode == 0, listed.stderr
    assert session["upload_id"] in listed.stdout and "some/key" in listed.stdout
    assert "1.0 MiB" in listed.stdout  # received
    as_json = run_cli(["uploads", "ls", "lsbkt", "--json", "--peer", u1], env)
    doc = json.loads(as_json.stdout)
    assert doc["upload_id"] == session["upload_id"] and doc["bytes_received"] == CHUNK
    aborted = run_cli(["uploads", "abort", session["upload_id"], "--peer", u2], env)
    assert aborted.returncode == 0, aborted.stderr
    again = run_cli(["uploads", "abort", session["upload_id"], "--peer", u1], env)
    assert again.returncode == 1 and "upload_not_open" in again.stderr
    empty = run_cli(["uploads", "ls", "lsbkt", "--peer", u1], env)
    assert empty.returncode == 0 and empty.stdout == ""
    # a small file stays a one-shot PUT; above the threshold it goes through a session
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(3 * MiB + 5))
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    one_shot = run_cli(["put", str(small), "lsbkt/small", "--peer", u1, "--json"], env)
    assert one_shot.returncode == 0, one_shot.stderr
    assert json.loads(one_shot.stdout)["upload"] is None
    via_session = run_cli(
        [
            "put",
            str(small),
            "lsbkt/small2",
            "--peer",
            u2,
            "--json",
            "--resumable-threshold",
            "1MiB",
        ],
        env,
    )
    assert via_session.returncode == 0, via_session.stderr
    doc = json.loads(via_session.stdout)
    assert doc["upload"]["resumed"] is False and doc["upload"]["sent_bytes"] == 3 * MiB + 5
    assert doc["sha256"] == sha(small.read_bytes())
    bad = run_cli(["put", str(small), "lsbkt/x", "--resumable-threshold", "64 parsecs"], env)
    assert bad.returncode == 2 and "64 parsecs" in bad.stderr


# ---------------------------------------------------------------------- expiry
async def test_expiry_frees_the_chunks(expiry_cluster: LocalCluster) -> None:
    urls = expiry_cluster.urls
    u1, u2, u3 = urls
    base_counts = await settled_counts(urls)
    data = os.urandom(3 * CHUNK)
    async with Client(u1) as c1, Client(u2) as c2, Client(u3) as c3:
        session, _ = await c1.init_upload("expiry", "obj", size=len(data), chunk_size=CHUNK)
        upload_id = session["upload_id"]
        await c2.put_chunk(upload_id, 0, data[:CHUNK])
        await c3.put_chunk(upload_id, 2, data[2 * CHUNK :])
        # acknowledged after W replicas: the third copy of each chunk may still be on its way
        await wait_counts(urls, [n + 2 for n in base_counts])
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        state = ""
        while state != "expired" and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            state = (await c3.get_upload(upload_id))["state"]
        assert state == "expired"
        await wait_counts(urls, base_counts)
        assert await c2.list_uploads("expiry") == []
    status, doc = await call("PUT", f"{u1}/v1/uploads/{upload_id}/chunks/1", data=data[:CHUNK])
    assert status == 409 and error_code(doc) == "upload_not_open"
    status, doc = await call("POST", f"{u2}/v1/uploads/{upload_id}/complete")
    assert status == 409 and error_code(doc) == "upload_not_open"
    status, _ = await call("GET", f"{u3}/v1/objects/expiry/obj")
    assert status == 404
    assert await block_counts(urls) == base_counts


async def test_busy_session_does_not_expire(expiry_cluster: LocalCluster) -> None:
    """Expiry counts idle time: a session that keeps receiving chunks for longer than
    ``upload_expiry_s`` completes."""
    u1, u2, _ = expiry_cluster.urls
    data = os.urandom(6 * CHUNK)
    parts = chunks_of(data)
    async with Client(u1) as c1, Client(u2) as c2:
        session, _ = await c1.init_upload("expiry", "busy", size=len(data), chunk_size=CHUNK)
        upload_id = session["upload_id"]
        started = time.monotonic()
        for i, part in enumerate(parts):
            await (c1, c2)[i % 2].put_chunk(upload_id, i, part)
            await asyncio.sleep(EXPIRY_S / 3)
        assert time.monotonic() - started > EXPIRY_S * 1.5
        info = await c2.complete_upload(upload_id)
        assert info["sha256"] == sha(data)
    await read_back_everywhere(expiry_cluster.urls, "expiry", "busy", data)
