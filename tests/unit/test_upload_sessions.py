"""Upload sessions against one in-process Peer: a session's record stays small whatever
its chunk count (chunks live in ``upload_parts``), a write made while a session is open
does not win over its completion, and a completed session leaves its elements to purge."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import cbor2
import pytest

from dfspeer import PeerConfig
from dfspeer.config import MiB
from dfspeer.model.upload_parts import UPLOAD_PARTS_TABLE, UploadPartsSchema
from dfspeer.model.uploads import UPLOADS_TABLE
from dfspeer.peer import Peer

CHUNK = 64 * 1024


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Peer]:
    config = PeerConfig(
        data_dir=tmp_path / "p1",
        port=0,
        gossip_port=0,
        s3_port=0,
        insecure=True,
        replication_factor=1,
        write_quorum=1,
        read_quorum=1,
        chunk_size_bytes=CHUNK,
        upload_min_chunk_bytes=CHUNK,
        durable=False,
        map_size_bytes=64 * MiB,
        default_chunking="fixed",
        log_level="warning",
    )
    async with Peer(config) as running:
        await running.wait_ready(10)
        yield running


def record_bytes(peer: Peer, upload_id: str) -> int:
    record = peer.store.table(UPLOADS_TABLE).get(upload_id.encode())
    return len(cbor2.dumps(record, canonical=True))


async def test_the_session_record_does_not_grow_with_its_chunks(peer: Peer) -> None:
    uploads = peer.uploads
    session, _ = await uploads.init("bkt", "many", chunk_size=CHUNK)
    await uploads.put_chunk(session.id, 0, os.urandom(CHUNK))
    after_one = record_bytes(peer, session.id)
    for i in range(1, 60):
        await uploads.put_chunk(session.id, i, os.urandom(CHUNK))
    assert record_bytes(peer, session.id) == after_one
    elements = peer.store.table(UPLOAD_PARTS_TABLE).scan()
    assert len(elements) == 60
    full = await uploads.get(session.id)
    assert sorted(full.current()) == list(range(60))
    assert full.received_ranges() == [[0, 59]]


async def test_a_write_made_while_the_session_was_open_does_not_win(peer: Peer) -> None:
    uploads = peer.uploads
    data = os.urandom(3 * CHUNK)
    session, _ = await uploads.init("bkt", "k", chunk_size=CHUNK, size=len(data))
    for i in range(3):
        await uploads.put_chunk(session.id, i, data[i * CHUNK : (i + 1) * CHUNK])
    await peer.put_object("bkt", "k", b"a one-shot write while the session is open")
    info = await uploads.complete(session.id)
    assert info.version > session.version  # a fresh id at completion
    assert await peer.get_bytes("bkt", "k") == data
    await peer.objects.drain()
    await peer.gc_pass()
    assert await peer.get_bytes("bkt", "k") == data  # its blocks survived collection
    versions = await peer.list_object_versions("bkt", "k")
    assert [v.version for v in versions] == [info.version]  # the one-shot write is replaced


async def test_completion_ends_the_elements_for_purging(peer: Peer) -> None:
    uploads = peer.uploads
    session, _ = await uploads.init("bkt", "ended", chunk_size=CHUNK, size=CHUNK)
    await uploads.put_chunk(session.id, 0, os.urandom(CHUNK))
    await uploads.complete(session.id)
    schema = UploadPartsSchema()
    elements = [schema.decode(r) for _, r in peer.store.table(UPLOAD_PARTS_TABLE).scan()]
    assert elements and all(schema.tombstone_since(e) is not None for e in elements)
