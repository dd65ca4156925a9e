"""The agent's event loop, on real agents: the default runs on uvloop where it is installed,
``event_loop = "asyncio"`` on asyncio's own loop, and both serve the same data path."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dfspeer.client import Client
from dfspeer.localcluster import LocalCluster
from tests.integration.conftest import start_cluster

pytestmark = pytest.mark.integration

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


@pytest.fixture(scope="module", params=["auto", "asyncio"])
def loop_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """Three agents with ``event_loop`` set to the parameter."""
    offset = 0 if request.param == "auto" else 10
    yield from start_cluster(
        tmp_path_factory.mktemp(f"loop-{request.param}"),
        host_base=160 + offset,
        base_port=32070 + offset,
        gossip_base_port=32946 + offset,
        settings={"event_loop": request.param, "log_level": "info"},
    )


def loop_of(log: Path) -> str:
    """The event loop an agent's log says it runs on."""
    for line in log.read_text().splitlines():
        if "event loop " in line:
            return line.split("event loop ", 1)[1].rstrip(")")
    raise AssertionError(f"{log} names no event loop")


async def test_each_loop_serves_the_data_path(loop_cluster: LocalCluster) -> None:
    setting = loop_cluster.settings["event_loop"]
    want = "uvloop" if setting == "auto" and HAS_UVLOOP else "asyncio"
    assert [loop_of(p.log_path) for p in loop_cluster.peers] == [want] * 3
    data = os.urandom(3 * 1024 * 1024 + 17)
    clients = [Client(url, timeout_s=60.0) for url in loop_cluster.urls]
    try:
        await clients[0].put_object("loops", "obj", data, sha256=hashlib.sha256(data).hexdigest())
        for c in clients:
            assert await c.get_object("loops", "obj") == data
            assert (
                await c.get_object("loops", "obj", range=(1000, 1_200_000)) == data[1000:1_200_000]
            )
    finally:
        for c in clients:
            await c.close()
