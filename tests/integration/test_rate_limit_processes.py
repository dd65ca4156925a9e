"""Rate limits on 3 real ``dfspeer agent`` processes (127.0.0.146..148, HTTP 29170..,
gossip 30170..; 5 requests/s and 256 KiB/s of uploads per principal): a burst over the
limit gets ``429 slow_down`` with ``Retry-After``, and ``dfspeer put`` / ``get`` still
complete, by waiting and sending again (the peer counted the 429s it answered them)."""

from __future__ import annotations

import asyncio
import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dfspeer.cli import main
from dfspeer.client import Client
from dfspeer.errors import DfsError
from dfspeer.localcluster import LocalCluster
from tests.integration.conftest import start_cluster

KiB = 1024
REQUESTS_PER_S = 5
BYTES_PER_S = 256 * KiB
OBJECT_ROUTE = "/v1/objects/{bucket}/{key}"


@pytest.fixture(scope="module")
def limited_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from start_cluster(
        tmp_path_factory.mktemp("limited-cluster"),
        host_base=145,
        base_port=29170,
        gossip_base_port=30170,
        settings={
            "map_size_bytes": 256 * 1024 * 1024,
            "chunk_size_bytes": 256 * KiB,
            "log_level": "info",
            "rate_limit_requests_per_s": REQUESTS_PER_S,
            "rate_limit_bytes_per_s": BYTES_PER_S,
        },
    )


async def _new_key(cluster: LocalCluster) -> str:
    """A key that may create buckets, made by the admin (whose own budget the cluster's
    readiness polling shares: a 429 on this POST, which is never resent, is waited out)."""
    async with Client(cluster.peer(1).url, timeout_s=30.0, token=cluster.admin_token) as admin:
        while True:
            try:
                doc = await admin.create_key("limited", allow_create_bucket=True)
                return f"{doc['id']}.{doc['secret']}"
            except DfsError as exc:
                if exc.code != "slow_down":
                    raise
                await asyncio.sleep(exc.retry_after_s or 1)


def _slow_downs(cluster: LocalCluster, index: int, method: str) -> float:
    """``429`` answers peer ``index`` gave to ``method`` on the object route (``/metrics``)."""
    with urllib.request.urlopen(cluster.peer(index).url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    total = 0.0
    for labels, value in re.findall(r"^dfspeer_http_requests_total\{(.*)\} (\S+)$", text, re.M):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if (fields.get("method"), fields.get("route"), fields.get("status")) == (
            method,
            OBJECT_ROUTE,
            "429",
        ):
            total += float(value)
    return total


async def _burst(url: str, credential: str, n: int) -> list[tuple[int, Any, str | None]]:
    headers = {"Authorization": f"Bearer {credential}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def one() -> tuple[int, Any, str | None]:
            async with http.get(f"{url}/v1/buckets") as resp:
                return resp.status, await resp.json(), resp.headers.get("Retry-After")

        return await asyncio.gather(*(one() for _ in range(n)))


def test_burst_gets_429_and_the_cli_completes_by_retrying(
    limited_cluster: LocalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    credential = asyncio.run(_new_key(limited_cluster))
    url = limited_cluster.peer(1).url
    answers = asyncio.run(_burst(url, credential, 4 * REQUESTS_PER_S))
    refused = [a for a in answers if a[0] == 429]
    assert len(refused) >= REQUESTS_PER_S and any(a[0] == 200 for a in answers)
    for _, doc, retry_after in refused:
        assert doc["error"]["code"] == "slow_down"
        assert retry_after is not None and int(retry_after) >= 1
    # two uploads of 4 s of byte budget each, right after the burst: both wait and resend
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(4 * BYTES_PER_S))
    before = _slow_downs(limited_cluster, 1, "PUT")
    for name in ("one", "two"):
        code = main(["put", str(source), f"limited/{name}", "--peer", url, "--key", credential])
        assert code == 0, capsys.readouterr().err
    assert _slow_downs(limited_cluster, 1, "PUT") > before  # it was refused, then resent
    asyncio.run(_burst(url, credential, 2 * REQUESTS_PER_S))  # empty the request budget
    copy = tmp_path / "copy.bin"
    get = ["get", "limited/two", "-o", str(copy), "--peer", url, "--key", credential]
    assert main(get) == 0, capsys.readouterr().err
    assert copy.read_bytes() == source.read_bytes()
