"""Upload sessions on three in-process peers: before ``missing-chunks`` or ``complete`` call
an acknowledged chunk missing, they ask every replica of the session's elements, not only
the first R to answer (after a partition heals, those may both lack what a third holds)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dfspeer.errors import IncompleteUpload
from dfspeer.model.upload_parts import UPLOAD_PARTS_TABLE, UploadPartsSchema
from dfspeer.objects.session_records import missing_chunks
from dfspeer.objects.sessions import UploadService
from tests.unit.maintenance_cluster import CHUNK, CONFIG, Cluster, make_cluster

SESSIONS = dataclasses.replace(CONFIG, upload_min_chunk_bytes=CHUNK)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with make_cluster(tmp_path, 3, SESSIONS, objects=True, maintenance=False) as cl:
        yield cl


async def held_by_the_third_only(cluster: Cluster, index: int) -> None:
    """Remove chunk ``index``'s element from peers 0 and 1, as if only peer 2 took it, and
    make peer 2 the slowest to answer peer 0's scans."""
    schema = UploadPartsSchema()
    for node in cluster.nodes[:2]:
        table = node.store.table(UPLOAD_PARTS_TABLE)
        for key, record in table.scan():
            if (
                schema.decode(record).kind == "chunk"
                and schema.decode(record).chunk().index == index
            ):
                assert await table.delete(key)
    rpc = cluster.nodes[0].rpc
    scan, slow = rpc.scan_records, cluster.nodes[2].address

    async def slower(address: str, *args: Any, **kwargs: Any) -> Any:
        if address == slow:
            await asyncio.sleep(0.3)
        return await scan(address, *args, **kwargs)

    rpc.scan_records = slower  # type: ignore[method-assign]


async def test_a_chunk_one_replica_holds_is_not_called_missing(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    await node.service.buckets.ensure("bkt")
    uploads = UploadService(SESSIONS, node.service)
    data = os.urandom(2 * CHUNK)
    session, _ = await uploads.init("bkt", "k", chunk_size=CHUNK, size=len(data))
    await uploads.put_chunk(session.id, 0, data[:CHUNK])
    await uploads.put_chunk(session.id, 1, data[CHUNK:])
    await node.replicator.drain()
    await held_by_the_third_only(cluster, 1)

    first_r = await uploads.get(session.id)  # the quorum scan: peer 0 and peer 1 answer first
    assert missing_chunks(first_r) == [1]
    checked = await uploads.get_checked(session.id)  # what missing-chunks answers
    assert missing_chunks(checked) == []
    info = await uploads.complete(session.id)
    assert info.size == len(data)
    _, stream = await node.service.get_object("bkt", "k")
    assert b"".join([piece async for piece in stream]) == data


async def test_a_chunk_no_replica_holds_is_still_missing(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    await node.service.buckets.ensure("bkt")
    uploads = UploadService(SESSIONS, node.service)
    session, _ = await uploads.init("bkt", "k", chunk_size=CHUNK, size=2 * CHUNK)
    await uploads.put_chunk(session.id, 0, os.urandom(CHUNK))
    assert missing_chunks(await uploads.get_checked(session.id)) == [1]
    with pytest.raises(IncompleteUpload) as info:
        await uploads.complete(session.id)
    assert info.value.details["missing"] == [1]
