"""``Client.upload_file`` and the session methods against one in-process Peer, the state
files of :mod:`dfspeer.resume_state`, and the CLI's size parser."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfspeer import PeerConfig
from dfspeer.client import Client, UploadProgress, UploadStats
from dfspeer.commands.uploads import parse_size, resuming_line
from dfspeer.config import MiB
from dfspeer.errors import IncompleteUpload, NoSuchUpload, UploadNotOpen
from dfspeer.peer import Peer
from dfspeer.resume_state import FileIdentity, ResumeStore, new_state, state_dir

CHUNK = 64 * 1024


class Crash(Exception):
    """Stands for the client being killed."""


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Peer]:
    extra = {"s3_port": 0} if "s3_port" in PeerConfig.__dataclass_fields__ else {}
    config = PeerConfig(
        data_dir=tmp_path / "p1",
        host="127.0.0.1",
        port=0,
        gossip_port=0,
        insecure=True,
        replication_factor=1,
        write_quorum=1,
        read_quorum=1,
        chunk_size_bytes=CHUNK,
        upload_min_chunk_bytes=CHUNK,
        durable=False,
        map_size_bytes=64 * MiB,
        log_level="warning",
        **extra,  # type: ignore[arg-type]
    )
    async with Peer(config) as running:
        await running.wait_ready(10)
        yield running


def write_file(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def crash_after(limit: int) -> UploadProgress:
    def progress(done: int, total: int) -> None:
        if done >= limit:
            raise Crash(f"{done} of {total}")

    return progress


def test_parse_size() -> None:
    assert parse_size("123") == 123
    assert parse_size("64MiB") == 64 * MiB
    assert parse_size("4M") == 4 * MiB
    assert parse_size("1.5GiB") == 3 * 512 * MiB
    assert parse_size("10MB") == 10_000_000
    assert parse_size(" 2 kib ") == 2048
    for bad in ("", "MiB", "-1", "64 parsecs", "1e6"):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert resuming_line(412 * MiB, 512 * MiB) == "resuming: 412 of 512 MiB already stored"


def test_state_files(tmp_path: Path) -> None:
    assert state_dir({"XDG_CACHE_HOME": "/x/cache"}) == Path("/x/cache/dfspeer/uploads")
    assert state_dir({"XDG_CACHE_HOME": "relative"}).parts[-3:] == (".cache", "dfspeer", "uploads")
    f = tmp_path / "f.bin"
    write_file(f, 10)
    identity = FileIdentity.of(f, "bkt", "k")
    assert identity.path == str(f.absolute()) and identity.size == 10
    assert identity != FileIdentity.of(f, "bkt", "other")
    store = ResumeStore(tmp_path / "state")
    assert store.load(identity) is None
    state = new_state("a" * 32, "http://peer:1", CHUNK, identity.digest(), identity)
    store.save(state)
    assert store.load(identity) == state
    store.path_of(identity).write_text("{not json")
    assert store.load(identity) is None
    store.remove(identity)
    store.remove(identity)  # no error when absent
    assert not store.path_of(identity).exists()


async def test_session_methods(peer: Peer) -> None:
    data = os.urandom(3 * CHUNK + 5)
    async with Client(peer.api_url) as c:
        session, created = await c.init_upload(
            "bkt", "k", size=len(data), chunk_size=CHUNK, idempotency_key="x"
        )
        assert created and session["total_chunks"] == 4 and session["state"] == "initiated"
        again, created = await c.init_upload(
            "bkt", "k", size=len(data), chunk_size=CHUNK, idempotency_key="x"
        )
        assert not created and again["upload_id"] == session["upload_id"]
        upload_id = session["upload_id"]
        await c.put_chunk(upload_id, 3, data[3 * CHUNK :])
        await c.put_chunk(upload_id, 1, data[CHUNK : 2 * CHUNK], sha256=None)
        assert await c.missing_chunks(upload_id) == [0, 2]
        got = await c.get_upload(upload_id)
        assert got["received"] == [[1, 1], [3, 3]] and got["bytes_received"] == CHUNK + 5
        assert [u["upload_id"] for u in await c.list_uploads("bkt")] == [upload_id]
        with pytest.raises(IncompleteUpload) as caught:
            await c.complete_upload(upload_id)
        assert caught.value.details["missing"] == [0, 2]
        await c.abort_upload(upload_id)
        with pytest.raises(UploadNotOpen):
            await c.abort_upload(upload_id)
        with pytest.raises(NoSuchUpload):
            await c.get_upload("0" * 32)


async def test_upload_file_resumes_after_a_crash(peer: Peer, tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    data = write_file(f, 10 * CHUNK + 100)
    store = ResumeStore(tmp_path / "state")
    async with Client(peer.api_url) as c:
        with pytest.raises(Crash):
            await c.upload_file(
                f, "bkt", "k", parallel=2, progress=crash_after(4 * CHUNK), state_store=store
            )
    identity = FileIdentity.of(f, "bkt", "k")
    saved = store.load(identity)
    assert saved is not None and saved.chunk_size == CHUNK and saved.peer == peer.api_url
    await asyncio.sleep(0.5)  # a chunk in flight at the crash may still land
    async with Client(peer.api_url) as c:
        before = (await c.get_upload(saved.upload_id))["bytes_received"]
        assert before >= 4 * CHUNK
        seen: list[tuple[int, int]] = []
        stats = UploadStats()
        info = await c.upload_file(
            f,
            "bkt",
            "k",
            progress=lambda done, total: seen.append((done, total)),
            stats=stats,
            state_store=store,
        )
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
        assert await c.get_object("bkt", "k") == data
    assert stats.resumed and stats.upload_id == saved.upload_id and stats.sessions == 1
    assert stats.stored_bytes == before and stats.sent_bytes == len(data) - before
    assert seen[0] == (before, len(data)) and seen[-1] == (len(data), len(data))
    assert store.load(identity) is None

    # the state of a completed session left behind (killed after complete): same object
    store.save(saved)
    async with Client(peer.api_url) as c:
        stats = UploadStats()
        assert await c.upload_file(f, "bkt", "k", stats=stats, state_store=store) == info
    assert stats.sent_bytes == 0 and store.load(identity) is None

    # the same file again, nothing saved: a new session, not the completed one
    async with Client(peer.api_url) as c:
        stats = UploadStats()
        again = await c.upload_file(f, "bkt", "k", stats=stats, state_store=store)
    assert stats.upload_id != saved.upload_id and not stats.resumed
    assert again["sha256"] == info["sha256"] and again["version"] != info["version"]


async def test_stale_or_changed_sessions_start_over(peer: Peer, tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    write_file(f, 6 * CHUNK)
    store = ResumeStore(tmp_path / "state")
    async with Client(peer.api_url) as c:
        with pytest.raises(Crash):
            await c.upload_file(
                f, "bkt", "k", parallel=1, progress=crash_after(CHUNK), state_store=store
            )
        first = store.load(FileIdentity.of(f, "bkt", "k"))
        assert first is not None
        await c.abort_upload(first.upload_id)  # gone from under the client
        stats = UploadStats()
        await c.upload_file(f, "bkt", "k", stats=stats, state_store=store)
        assert stats.upload_id != first.upload_id and not stats.resumed
        assert stats.sent_bytes == 6 * CHUNK

        # the file changed (new mtime and bytes): its identity changed, a new session
        with pytest.raises(Crash):
            await c.upload_file(
                f, "bkt", "k2", parallel=1, progress=crash_after(CHUNK), state_store=store
            )
        data = write_file(f, 6 * CHUNK)
        os.utime(f, ns=(1, 1))
        stats = UploadStats()
        info = await c.upload_file(f, "bkt", "k2", stats=stats, state_store=store)
        assert not stats.resumed and info["sha256"] == hashlib.sha256(data).hexdigest()
        assert await c.get_object("bkt", "k2") == data
        # resume=False never resumes, even with state saved
        with pytest.raises(Crash):
            await c.upload_file(
                f, "bkt", "k3", parallel=1, progress=crash_after(CHUNK), state_store=store
            )
        stats = UploadStats()
        await c.upload_file(f, "bkt", "k3", resume=False, stats=stats, state_store=store)
        assert not stats.resumed and stats.sent_bytes == 6 * CHUNK
