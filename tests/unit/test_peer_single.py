"""One real Peer in-process (insecure, N = W = R = 1): HTTP and Python API end to end."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from dfspeer import PeerConfig
from dfspeer.access.credentials import new_admin_token, write_secret_file
from dfspeer.config import ConfigError, MiB
from dfspeer.errors import NoSuchKey
from dfspeer.gossip import MemberState
from dfspeer.gossip.keyring import generate_key
from dfspeer.peer import Peer

CHUNK = 64 * 1024


def config_for(data_dir: Path, **changes: object) -> PeerConfig:
    base = PeerConfig(
        data_dir=data_dir,
        host="127.0.0.1",
        port=0,
        gossip_port=0,
        s3_port=0,  # off: in-process peers would all want 7080 (tests that use S3 pick a port)
        insecure=True,
        replication_factor=1,
        write_quorum=1,
        read_quorum=1,
        chunk_size_bytes=CHUNK,
        default_chunking="fixed",  # these tests count fixed-size chunks
        durable=False,
        map_size_bytes=64 * MiB,
        probe_interval_s=0.2,
        probe_timeout_s=0.1,
        log_level="warning",
    )
    return base.replace(**changes)


def secured_config_for(secrets: Path, data_dir: Path, **changes: object) -> tuple[PeerConfig, str]:
    """:func:`config_for` with access control on: a new admin token and cluster key written
    under ``secrets``; returns the config and the admin token."""
    token = new_admin_token()
    write_secret_file(secrets / "admin.token", token)
    write_secret_file(secrets / "cluster.key", generate_key())
    config = config_for(
        data_dir,
        insecure=False,
        admin_token_file=secrets / "admin.token",
        cluster_key_file=secrets / "cluster.key",
        **changes,
    )
    return config, token


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Peer]:
    async with Peer(config_for(tmp_path / "p1")) as running:
        await running.wait_ready(10)
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_http_round_trip(peer: Peer, http: aiohttp.ClientSession) -> None:
    data = os.urandom(3 * CHUNK + 123)
    url = f"{peer.api_url}/v1/objects/bucket/dir/file.bin"
    async with http.put(url, data=data) as resp:
        assert resp.status == 201, await resp.text()
        put = await resp.json()
    assert put["size"] == len(data)
    assert put["sha256"] == hashlib.sha256(data).hexdigest()
    assert put["chunks"] == 4
    async with http.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == data
    async with http.get(url, headers={"Range": f"bytes={CHUNK - 5}-{2 * CHUNK + 5}"}) as resp:
        assert resp.status == 206
        assert await resp.read() == data[CHUNK - 5 : 2 * CHUNK + 6]
    async with http.get(url, headers={"Range": "bytes=-10"}) as resp:
        assert await resp.read() == data[-10:]
    async with http.get(f"{peer.api_url}/v1/objects/bucket", params={"prefix": "dir/"}) as resp:
        listing = await resp.json()
    assert [o["key"] for o in listing["objects"]] == ["dir/file.bin"]
    async with http.delete(url) as resp:
        assert resp.status == 204
    async with http.get(url) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "no_such_key"


async def test_python_api(peer: Peer) -> None:
    data = os.urandom(2 * CHUNK + 1)
    info = await peer.put_object("bucket", "k", data)
    assert (await peer.stat_object("bucket", "k")).sha256 == info.sha256
    assert await peer.read_object("bucket", "k") == data
    assert (
        await peer.read_object("bucket", "k", start=CHUNK, end=CHUNK + 10)
        == data[CHUNK : CHUNK + 10]
    )
    page = await peer.list_objects("bucket")
    assert [o.key for o in page.objects] == ["k"]
    await peer.delete_object("bucket", "k")
    with pytest.raises(NoSuchKey):
        await peer.stat_object("bucket", "k")


async def test_cluster_routes(peer: Peer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{peer.api_url}/ready") as resp:
        assert resp.status == 200
    async with http.get(f"{peer.api_url}/v1/cluster/members") as resp:
        members = await resp.json()
    assert members["self"] == peer.peer_id
    (me,) = members["members"]
    assert me["state"] == "alive"
    assert me["address"] == peer.api_url.removeprefix("http://")
    assert not me["gossip_address"].endswith(":0")  # the bound port is advertised
    async with http.get(f"{peer.api_url}/v1/cluster/ring") as resp:
        ring = await resp.json()
    assert ring["partitions"] == 1024
    assert ring["replication_factor"] == 1
    assert ring["peers"][peer.peer_id]["partitions"] == 1024
    await peer.put_object("bucket", "big", os.urandom(2 * CHUNK))
    async with http.get(f"{peer.api_url}/v1/cluster/status") as resp:
        status = await resp.json()
    assert status["id"] == peer.peer_id
    assert status["blocks"] == 2
    assert status["partitions_held"] == 1024
    assert status["members"]["alive"] == 1
    assert status["ring_digest"] == ring["digest"]
    async with http.get(f"{peer.api_url}/metrics") as resp:
        text = await resp.text()
    assert 'dfspeer_gossip_members{state="alive"} 1.0' in text
    assert "dfspeer_store_blocks 2.0" in text
    assert "dfspeer_ring_partitions_held 1024.0" in text
    assert "dfspeer_http_requests_total{" in text


async def test_internal_routes_need_the_cluster_key(
    peer: Peer, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{peer.api_url}/internal/status") as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_identity_and_data_survive_a_restart(tmp_path: Path) -> None:
    config = config_for(tmp_path / "p")
    async with Peer(config) as first:
        await first.put_object("bucket", "k", b"kept")
        peer_id = first.peer_id
    assert (tmp_path / "p" / "peer_id").read_text().strip() == peer_id
    async with Peer(config) as second:
        await second.wait_ready(10)
        assert second.peer_id == peer_id
        assert await second.read_object("bucket", "k") == b"kept"
    with pytest.raises(ConfigError, match="belongs to peer"):
        await Peer(config.replace(peer_id="someone-else")).start()


async def test_a_key_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cluster_key_file"):
        await Peer(config_for(tmp_path / "p", insecure=False)).start()
    assert not (tmp_path / "p").exists()  # refused before touching anything


async def test_failed_start_unwinds(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError):  # HTTP port taken: fails before anything opens
            await Peer(config_for(tmp_path / "p", port=port)).start()
        with pytest.raises(OSError):  # gossip port taken: fails after the store opened
            await Peer(config_for(tmp_path / "p", gossip_port=port)).start()
    # the block store was closed: the same directory opens again in this process
    async with Peer(config_for(tmp_path / "p")) as peer:
        assert peer.gossip.local_member.state is MemberState.ALIVE


async def test_embedded_without_http(tmp_path: Path) -> None:
    async with Peer(config_for(tmp_path / "p"), serve_http=False) as peer:
        await peer.wait_ready(10)
        await peer.put_object("bucket", "k", b"x" * 10)
        assert await peer.read_object("bucket", "k", start=2) == b"x" * 8
