"""Access control on 3 real ``dfspeer agent`` processes (127.0.0.91..93, HTTP 25070..,
gossip 25946..): unauthenticated requests are refused and change nothing, a read-only key
cannot write, a key sees only its buckets, the owner grants and revokes, and a disabled
key is refused by every peer: at once by the peer the change went through, by the others
once their auth cache's read expires (``auth_cache_ttl_s``, 1 s by default; polled)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dfspeer.client import Client
from dfspeer.errors import DfsError
from dfspeer.localcluster import LocalCluster
from tests.integration._propagation import until_allowed, until_refused
from tests.integration.conftest import start_cluster

SECRETS: list[str] = []  # the secrets created here, looked for in the agents' logs
SETTINGS: dict[str, object] = {
    "map_size_bytes": 256 * 1024 * 1024,
    "chunk_size_bytes": 256 * 1024,
    "log_level": "info",
}


@pytest.fixture(scope="module")
def access_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from start_cluster(
        tmp_path_factory.mktemp("access-cluster"),
        host_base=90,
        base_port=25070,
        gossip_base_port=25946,
        settings=SETTINGS,
    )


async def raw(
    method: str, url: str, *, headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, Any]:
    """One request without any credential unless ``headers`` has one: (status, JSON)."""
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url, headers=headers or {}, data=data) as r,
    ):
        body = await r.read()
        try:
            return r.status, await r.json(content_type=None) if body else None
        except ValueError:
            return r.status, None


def admin(cluster: LocalCluster, index: int = 1) -> Client:
    return Client(cluster.peer(index).url, timeout_s=30.0, token=cluster.admin_token)


def as_key(cluster: LocalCluster, doc: dict[str, Any], index: int = 1) -> Client:
    return Client(
        cluster.peer(index).url, timeout_s=30.0, credentials=f"{doc['id']}.{doc['secret']}"
    )


async def test_unauthenticated_requests_are_refused_and_change_nothing(
    access_cluster: LocalCluster,
) -> None:
    async with admin(access_cluster) as c:
        await c.put_object("guarded", "obj", b"precious")
    for peer in access_cluster.peers:
        obj = f"{peer.url}/v1/objects/guarded/obj"
        assert (await raw("GET", obj))[0] == 401
        status, doc = await raw("PUT", obj, data=b"overwritten")
        assert status == 401 and doc["error"]["code"] == "unauthenticated"
        assert (await raw("DELETE", obj))[0] == 401
        assert (await raw("POST", f"{peer.url}/v1/cluster/drain"))[0] == 401
        assert (await raw("GET", f"{peer.url}/v1/cluster/members"))[0] == 401
        bad = {"Authorization": "Bearer DK000000000000000000000000.not-the-secret-at-all"}
        assert (await raw("GET", obj, headers=bad))[0] == 401
        assert (await raw("GET", f"{peer.url}/health"))[0] == 200
        assert (await raw("GET", f"{peer.url}/ready"))[0] == 200
        assert (await raw("GET", f"{peer.url}/metrics"))[0] == 200
    for i in range(1, 4):
        async with admin(access_cluster, i) as c:
            assert await c.get_object("guarded", "obj") == b"precious"
            assert (await c.drain_progress()).get("state") in (None, "idle", "")
    assert all(p.running for p in access_cluster.peers)


async def test_keys_buckets_and_permissions_across_peers(access_cluster: LocalCluster) -> None:
    async with admin(access_cluster) as c:
        maker = await c.create_key("maker", allow_create_bucket=True)
        reader = await c.create_key("reader")
        assert {"id", "secret", "name", "created"} <= set(maker)
        listed = await c.list_keys()
        assert {maker["id"], reader["id"]} <= {k["id"] for k in listed}
        assert all("secret" not in k for k in listed)
        SECRETS.extend([maker["secret"], reader["secret"]])
    # the maker creates a bucket by writing into it (through peer 2) and owns it
    async with as_key(access_cluster, maker, 2) as m:
        await m.put_object("makers", "a.txt", b"made")
        assert [b["name"] for b in await m.list_buckets()] == ["makers"]
        with pytest.raises(DfsError) as denied:
            await m.get_object("guarded", "obj")
        assert denied.value.status == 403 and denied.value.code == "access_denied"
        with pytest.raises(DfsError) as denied:
            await m.create_key("sneaky")
        assert denied.value.status == 403
    # the reader sees nothing until the owner grants it read (through peer 3)
    async with as_key(access_cluster, reader, 1) as r:
        assert await r.list_buckets() == []
        with pytest.raises(DfsError) as denied:
            await r.get_object("makers", "a.txt")
        assert denied.value.code == "access_denied"
    async with as_key(access_cluster, maker, 3) as m:
        doc = await m.set_bucket_permissions("makers", reader["id"], read=True)
        assert doc["permissions"][reader["id"]]["read"] is True
    async with as_key(access_cluster, reader, 3) as r:  # the peer it went through: at once
        assert await r.get_object("makers", "a.txt") == b"made"
    for i in (1, 2, 3):  # peer 1 may still hold its read of the bucket from before the grant
        async with as_key(access_cluster, reader, i) as r:
            got = await until_allowed(lambda: r.get_object("makers", "a.txt"), f"peer {i}")
            assert got == b"made"
            assert [b["name"] for b in await r.list_buckets()] == ["makers"]
            with pytest.raises(DfsError) as denied:
                await r.put_object("makers", "b.txt", b"nope")
            assert denied.value.status == 403
            with pytest.raises(DfsError) as denied:
                await r.delete_object("makers", "a.txt")
            assert denied.value.status == 403
    async with admin(access_cluster) as c:
        assert await c.get_object("makers", "a.txt") == b"made"
        with pytest.raises(DfsError):
            await c.stat_object("makers", "b.txt")
    # the owner revokes (through peer 1): refused there at once, by the others within the
    # auth cache's TTL
    async with as_key(access_cluster, maker, 1) as m:
        await m.set_bucket_permissions("makers", reader["id"], read=False)
    async with as_key(access_cluster, reader, 1) as r:
        with pytest.raises(DfsError) as denied:
            await r.get_object("makers", "a.txt")
        assert denied.value.status == 403 and denied.value.code == "access_denied"
    for i in (1, 2, 3):
        async with as_key(access_cluster, reader, i) as r:
            error = await until_refused(lambda: r.get_object("makers", "a.txt"), f"peer {i}")
            assert error.status == 403 and error.code == "access_denied"
    # disabling the maker (through peer 2) locks it out of peer 2 at once, of every peer
    # within the TTL
    async with admin(access_cluster, 2) as c:
        await c.disable_key(maker["id"])
    async with as_key(access_cluster, maker, 2) as m:
        with pytest.raises(DfsError) as refused:
            await m.get_object("makers", "a.txt")
        assert refused.value.status == 401 and refused.value.code == "unauthenticated"
    for i in (1, 2, 3):
        async with as_key(access_cluster, maker, i) as m:
            error = await until_refused(lambda: m.get_object("makers", "a.txt"), f"peer {i}")
            assert error.status == 401 and error.code == "unauthenticated"
    async with admin(access_cluster, 3) as c:
        await c.delete_key(reader["id"])
        assert reader["id"] not in {k["id"] for k in await c.list_keys()}
    async with as_key(access_cluster, reader, 3) as r:
        with pytest.raises(DfsError) as refused:
            await r.members()
        assert refused.value.status == 401
    async with as_key(access_cluster, reader, 1) as r:
        error = await until_refused(r.members, "peer 1")
        assert error.status == 401 and error.code == "unauthenticated"


def test_no_secret_in_any_agent_log(access_cluster: LocalCluster) -> None:
    token = access_cluster.admin_token or ""
    assert token and len(SECRETS) == 2, "runs after the keys test"
    for peer in access_cluster.peers:
        text = Path(peer.log_path).read_text(errors="replace")
        assert "access key created" in text or peer.index != 1
        for secret in (token, *SECRETS):
            assert secret not in text
