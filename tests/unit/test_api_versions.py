"""Buckets, versions and user metadata over HTTP, the Python API and dfspeer.Client, against
one real in-process Peer (insecure, N = W = R = 1)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dfspeer.client import Client
from dfspeer.errors import BucketNotEmpty, NoSuchBucket, NoSuchKey, NoSuchVersion
from dfspeer.peer import Peer
from tests.unit.test_peer_single import CHUNK, config_for


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Peer]:
    async with Peer(config_for(tmp_path / "p1")) as running:
        await running.wait_ready(10)
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def error_code(resp: aiohttp.ClientResponse, status: int) -> str:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body["error"]) == {"code", "message", "request_id"}
    code: str = body["error"]["code"]
    return code


async def json_of(resp: aiohttp.ClientResponse, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_bucket_lifecycle(peer: Peer, http: aiohttp.ClientSession) -> None:
    base = f"{peer.api_url}/v1/buckets"
    async with http.put(f"{base}/photos", json={"versioning": "enabled"}) as resp:
        created = await json_of(resp, 201)
    assert created["name"] == "photos" and created["versioning"] == "enabled"
    assert isinstance(created["created"], float)
    async with http.put(f"{base}/photos") as resp:
        assert (await json_of(resp, 200))["versioning"] == "enabled"
    async with http.put(f"{base}/logs") as resp:
        assert (await json_of(resp, 201))["versioning"] == "unversioned"
    async with http.get(base) as resp:
        listed = await json_of(resp)
    assert [b["name"] for b in listed["buckets"]] == ["logs", "photos"]
    assert set(listed["buckets"][0]) == {"name", "created", "versioning", "chunking"}

    async with http.put(f"{peer.api_url}/v1/objects/photos/a.bin", data=b"x" * 10) as resp:
        assert resp.status == 201
    async with http.put(f"{peer.api_url}/v1/objects/photos/b.bin", data=b"y" * 5) as resp:
        assert resp.status == 201
    async with http.get(f"{base}/photos") as resp:
        info = await json_of(resp)
    assert (info["objects"], info["bytes"], info["versioning"]) == (2, 15, "enabled")

    async with http.put(f"{base}/photos/versioning", json={"status": "suspended"}) as resp:
        assert (await json_of(resp))["versioning"] == "suspended"
    async with http.put(f"{base}/photos/versioning", json={"status": "maybe"}) as resp:
        assert await error_code(resp, 400) == "invalid_argument"
    async with http.put(f"{base}/photos/versioning", data=b"{not json") as resp:
        assert await error_code(resp, 400) == "invalid_argument"
    async with http.put(f"{base}/photos", data=b"[1]") as resp:
        assert await error_code(resp, 400) == "invalid_argument"
    async with http.put(f"{base}/Bad_Name") as resp:
        assert await error_code(resp, 400) == "invalid_bucket_name"
    async with http.put(f"{base}/nope/versioning", json={"status": "enabled"}) as resp:
        assert await error_code(resp, 404) == "no_such_bucket"
    async with http.get(f"{base}/nope") as resp:
        assert await error_code(resp, 404) == "no_such_bucket"
    async with http.delete(f"{base}/nope") as resp:
        assert await error_code(resp, 404) == "no_such_bucket"

    async with http.delete(f"{base}/photos") as resp:
        assert await error_code(resp, 409) == "bucket_not_empty"
    async with http.delete(f"{base}/logs") as resp:
        assert resp.status == 204
    async with http.get(f"{base}/logs") as resp:
        assert await error_code(resp, 404) == "no_such_bucket"
    async with http.get(base) as resp:
        assert [b["name"] for b in (await json_of(resp))["buckets"]] == ["photos"]


async def test_metadata_and_content_type_round_trip(
    peer: Peer, http: aiohttp.ClientSession
) -> None:
    url = f"{peer.api_url}/v1/objects/meta/doc.txt"
    headers = {"Content-Type": "text/plain", "X-Meta-Author": "Ada", "x-meta-COLOR": "blue"}
    async with http.put(url, data=b"hello", headers=headers) as resp:
        assert resp.status == 201
    for method in ("GET", "HEAD"):
        async with http.request(method, url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/plain"
            assert resp.headers["X-Meta-author"] == "Ada"
            assert resp.headers["X-Meta-color"] == "blue"
    info = await peer.stat_object("meta", "doc.txt")
    assert dict(info.meta) == {"author": "Ada", "color": "blue"}
    too_big = {"X-Meta-Big": "v" * 2100}
    async with http.put(url, data=b"x", headers=too_big) as resp:
        assert await error_code(resp, 400) == "invalid_argument"
    async with http.put(url, data=b"x", headers={"X-Meta-": "empty name"}) as resp:
        assert await error_code(resp, 400) == "invalid_argument"
    async with http.get(url) as resp:  # the rejected writes changed nothing
        assert await resp.read() == b"hello"


async def test_versioned_bucket_flow(peer: Peer, http: aiohttp.ClientSession) -> None:
    async with http.put(f"{peer.api_url}/v1/buckets/vers", json={"versioning": "enabled"}):
        pass
    url = f"{peer.api_url}/v1/objects/vers/report.bin"
    old, new = os.urandom(2 * CHUNK + 7), b"second version"
    async with http.put(url, data=old) as resp:
        v1 = (await json_of(resp, 201))["version"]
    async with http.put(url, data=new) as resp:
        v2 = (await json_of(resp, 201))["version"]
    async with http.delete(url) as resp:
        assert resp.status == 204
        marker = resp.headers["X-Object-Version"]
    async with http.get(url, params={"versions": ""}) as resp:
        listing = await json_of(resp)
    versions = listing["versions"]
    assert [v["version"] for v in versions] == [marker, v2, v1]
    assert [v["is_latest"] for v in versions] == [True, False, False]
    assert [v["delete_marker"] for v in versions] == [True, False, False]
    assert {"version", "size", "sha256", "modified", "is_latest", "delete_marker"} <= set(
        versions[0]
    )
    assert versions[2]["size"] == len(old)

    async with http.get(url) as resp:
        assert await error_code(resp, 404) == "no_such_key"
    async with http.get(url, params={"version": v1}) as resp:
        assert resp.status == 200 and await resp.read() == old
        assert resp.headers["X-Object-Version"] == v1
    rng = {"Range": f"bytes={CHUNK - 3}-{CHUNK + 3}"}
    async with http.get(url, params={"version": v1}, headers=rng) as resp:
        assert resp.status == 206 and await resp.read() == old[CHUNK - 3 : CHUNK + 4]
    async with http.get(url, params={"version": v1}, headers={"Range": "bytes=-4"}) as resp:
        assert resp.status == 206 and await resp.read() == old[-4:]
    async with http.head(url, params={"version": v2}) as resp:
        assert resp.status == 200 and resp.headers["Content-Length"] == str(len(new))
    async with http.get(url, params={"version": "0-nope"}) as resp:
        assert await error_code(resp, 404) == "no_such_version"
    async with http.get(url, params={"version": marker}) as resp:
        assert await error_code(resp, 404) == "no_such_version"
    async with http.get(url, params={"version": ""}) as resp:
        assert await error_code(resp, 400) == "invalid_argument"

    async with http.delete(url, params={"version": v2}) as resp:
        assert resp.status == 204 and resp.headers["X-Object-Version"] == v2
    async with http.delete(url, params={"version": "0-never"}) as resp:
        assert await error_code(resp, 404) == "no_such_version"
    async with http.get(url, params={"versions": ""}) as resp:
        assert [v["version"] for v in (await json_of(resp))["versions"]] == [marker, v1]
    async with http.delete(url, params={"version": marker}) as resp:
        assert resp.status == 204
    async with http.get(url) as resp:  # the marker is gone: v1 is live again
        assert resp.status == 200 and await resp.read() == old
    async with http.get(f"{peer.api_url}/v1/objects/vers/never", params={"versions": ""}) as r:
        assert await error_code(r, 404) == "no_such_key"


async def test_unversioned_overwrite_keeps_one_version(
    peer: Peer, http: aiohttp.ClientSession
) -> None:
    url = f"{peer.api_url}/v1/objects/plain/k"
    for body in (b"one", b"two", b"three"):
        async with http.put(url, data=body) as resp:
            assert resp.status == 201
    async with http.get(url, params={"versions": ""}) as resp:
        versions = (await json_of(resp))["versions"]
    assert len(versions) == 1 and versions[0]["size"] == 5 and versions[0]["is_latest"]
    async with http.delete(url) as resp:
        assert resp.status == 204
    async with http.delete(f"{peer.api_url}/v1/objects/plain/never-there") as resp:
        assert resp.status == 204 and "X-Object-Version" not in resp.headers


async def test_bucket_versions_listing_pages(peer: Peer, http: aiohttp.ClientSession) -> None:
    await peer.create_bucket("pages", versioning="enabled")
    for key in ("a", "b", "c"):
        for n in range(2):
            await peer.put_object("pages", key, f"{key}{n}".encode())
    await peer.put_object("pages", "other/x", b"x")
    url = f"{peer.api_url}/v1/objects/pages"
    seen: list[tuple[str, bool]] = []
    cursor = ""
    pages = 0
    while True:
        params = {"versions": "", "limit": "1", "prefix": "", "start_after": cursor}
        async with http.get(url, params=params) as resp:
            page = await json_of(resp)
        pages += 1
        seen += [(v["key"], v["is_latest"]) for v in page["versions"]]
        if not page["is_truncated"]:
            assert page["next_start_after"] is None
            break
        cursor = page["next_start_after"]
    assert pages == 4
    assert seen == [
        ("a", True),
        ("a", False),
        ("b", True),
        ("b", False),
        ("c", True),
        ("c", False),
        ("other/x", True),
    ]
    async with http.get(url, params={"versions": "", "prefix": "other/"}) as resp:
        assert [v["key"] for v in (await json_of(resp))["versions"]] == ["other/x"]
    async with http.get(url, params={"versions": "", "limit": "0"}) as resp:
        assert await error_code(resp, 400) == "invalid_argument"


async def test_python_api(peer: Peer) -> None:
    bucket, created = await peer.create_bucket("pyapi", versioning="enabled")
    assert created and bucket.versioning == "enabled"
    first = await peer.put_object("pyapi", "k", b"first", meta={"a": "1"})
    second = await peer.put_object("pyapi", "k", b"second")
    assert await peer.get_bytes("pyapi", "k") == b"second"
    assert await peer.get_bytes("pyapi", "k", version=first.version, start=1, end=3) == b"ir"
    assert dict((await peer.stat_object("pyapi", "k", version=first.version)).meta) == {"a": "1"}
    _, stream = await peer.get_object("pyapi", "k", version=first.version)
    assert b"".join([c async for c in stream]) == b"first"
    assert [b.name for b in await peer.list_buckets()] == ["pyapi"]
    got, objects, size = await peer.get_bucket("pyapi")
    assert (got.name, objects, size) == ("pyapi", 1, len(b"second"))
    marker = await peer.delete_object("pyapi", "k")
    assert marker is not None
    listed = await peer.list_object_versions("pyapi", "k")
    assert [v.version for v in listed] == [marker, second.version, first.version]
    page = await peer.list_versions("pyapi", limit=10)
    assert len(page.versions) == 3 and not page.is_truncated
    with pytest.raises(BucketNotEmpty):
        await peer.delete_bucket("pyapi")
    assert (await peer.set_bucket_versioning("pyapi", "suspended")).versioning == "suspended"
    for v in (marker, second.version, first.version):
        assert await peer.delete_object("pyapi", "k", version=v) == v
    with pytest.raises(NoSuchVersion):
        await peer.delete_object("pyapi", "k", version="0-never")
    await peer.delete_bucket("pyapi")
    with pytest.raises(NoSuchBucket):
        await peer.get_bucket("pyapi")


async def test_client(peer: Peer) -> None:
    async with Client(peer.api_url, timeout_s=10) as c:
        bucket, created = await c.create_bucket("cli", versioning="enabled")
        assert created and bucket == {
            "name": "cli",
            "created": bucket["created"],
            "versioning": "enabled",
        }
        assert (await c.create_bucket("cli"))[1] is False
        one = await c.put_object("cli", "k", b"one", meta={"Owner": "me"})
        two = await c.put_object("cli", "k", b"two!")
        stat = await c.stat_object("cli", "k", version=one["version"])
        assert stat["size"] == 3 and stat["meta"] == {"owner": "me"}
        assert await c.get_object("cli", "k", version=one["version"]) == b"one"
        assert await c.get_object("cli", "k", version=one["version"], range=(1, None)) == b"ne"
        with pytest.raises(NoSuchVersion):
            await c.get_object("cli", "k", version="0-missing")
        with pytest.raises(NoSuchVersion):
            await c.stat_object("cli", "k", version="0-missing")
        assert [b["name"] for b in await c.list_buckets()] == ["cli"]
        usage = await c.get_bucket("cli")
        assert (usage["objects"], usage["bytes"]) == (1, 4)
        marker = await c.delete_object("cli", "k")
        assert marker is not None
        versions = await c.list_object_versions("cli", "k")
        assert [v["version"] for v in versions] == [marker, two["version"], one["version"]]
        assert versions[0]["delete_marker"] and versions[0]["is_latest"]
        page = await c.list_versions("cli", limit=1)
        assert len(page["versions"]) == 3 and page["is_truncated"] is False
        with pytest.raises(NoSuchKey):
            await c.list_object_versions("cli", "never")
        with pytest.raises(BucketNotEmpty):
            await c.delete_bucket("cli")
        assert (await c.set_bucket_versioning("cli", "suspended"))["versioning"] == "suspended"
        for v in versions:
            assert await c.delete_object("cli", "k", version=v["version"]) == v["version"]
        await c.delete_bucket("cli")
        with pytest.raises(NoSuchBucket):
            await c.get_bucket("cli")
        refs = await c.recount_block_refs()
        assert set(refs) == {"references", "blocks", "changed"}
        status = await c.status()
        assert isinstance(status["gc"], dict) and "blocks_deleted" in status["gc"]
