"""Per-route metrics, the request-id context and event-loop lag, through a real aiohttp server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dfspeer.api.app import build_app
from dfspeer.api.observability import EventLoopLag, request_context_middleware
from dfspeer.config import PeerConfig
from dfspeer.logsetup import current_request_id
from tests.unit.api_fakes import FakeObjects, FakeState

Client = TestClient[aiohttp.web.Request, aiohttp.web.Application]
DATA = bytes(range(256)) * 64  # 16 KiB
URL = "/v1/objects/photos/dir/cat.jpg"
OBJECT_ROUTE = "/v1/objects/{bucket}/{key}"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(registry: CollectorRegistry) -> AsyncIterator[Client]:
    config = PeerConfig(max_object_size_bytes=1 << 20, request_timeout_s=5.0)
    app = build_app(FakeObjects(piece=4096), FakeState(), config, registry=registry)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_latency_histogram_counts_requests_under_the_route_pattern(
    client: Client, registry: CollectorRegistry
) -> None:
    assert (await client.put(URL, data=DATA)).status == 201
    assert (await client.get(URL)).status == 200
    assert (await client.get("/v1/objects/photos/other")).status == 404
    count = "dfspeer_http_request_duration_seconds_count"
    assert sample(registry, count, method="PUT", route=OBJECT_ROUTE, status="201") == 1.0
    assert sample(registry, count, method="GET", route=OBJECT_ROUTE, status="200") == 1.0
    assert sample(registry, count, method="GET", route=OBJECT_ROUTE, status="404") == 1.0
    text = await (await client.get("/metrics")).text()
    assert "dir/cat.jpg" not in text  # never the raw path
    assert "/v1/objects/photos" not in text
    requests = "dfspeer_http_requests_total"
    assert sample(registry, requests, method="GET", route=OBJECT_ROUTE, status="404") == 1.0


async def test_bytes_in_and_out_per_route(client: Client, registry: CollectorRegistry) -> None:
    put = await client.put(URL, data=DATA)
    assert put.status == 201
    get = await client.get(URL)
    assert await get.read() == DATA
    request_bytes = "dfspeer_http_request_bytes_total"
    response_bytes = "dfspeer_http_response_bytes_total"
    assert sample(registry, request_bytes, route=OBJECT_ROUTE, method="PUT") == len(DATA)
    assert sample(registry, request_bytes, route=OBJECT_ROUTE, method="GET") == 0.0
    # the whole response on the wire: body plus status line and headers
    sent = sample(registry, response_bytes, route=OBJECT_ROUTE, method="GET")
    assert sent is not None
    assert len(DATA) < sent < len(DATA) + 2048
    put_sent = sample(registry, response_bytes, route=OBJECT_ROUTE, method="PUT")
    assert put_sent is not None
    assert put_sent > len(await put.read())


async def test_unknown_routes_share_one_label(client: Client, registry: CollectorRegistry) -> None:
    for path in ("/nope", "/nope/again", "/x"):
        assert (await client.get(path, data=b"abc")).status == 404
    received = sample(registry, "dfspeer_http_request_bytes_total", route="unmatched", method="GET")
    assert received == 9.0
    sent = sample(registry, "dfspeer_http_response_bytes_total", route="unmatched", method="GET")
    assert sent is not None and sent > 0


async def test_request_id_is_in_the_context_while_the_handler_runs() -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        async def in_a_task() -> str | None:
            return current_request_id.get()

        seen.append(current_request_id.get())
        seen.append(await asyncio.create_task(in_a_task()))
        return web.Response(text="ok")

    app = web.Application(middlewares=[request_context_middleware])
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app)) as test_client:
        resp = await test_client.get("/", headers={"X-Request-Id": "req-42"})
        assert resp.status == 200
        await test_client.get("/")
    assert seen[:2] == ["req-42", "req-42"]
    assert seen[2] is not None and len(seen[2]) == 32  # a fresh uuid4 hex
    assert current_request_id.get() is None


async def test_event_loop_lag_reports_a_blocked_loop(registry: CollectorRegistry) -> None:
    lag = EventLoopLag(registry, interval_s=0.01)
    app = web.Application()
    app.cleanup_ctx.append(lag.cleanup_ctx)
    async with TestClient(TestServer(app)):
        while lag.samples < 1:  # the sampler runs once the app has started
            await asyncio.sleep(0.01)
        before = lag.samples
        time.sleep(0.2)  # block the event loop: the sample in flight wakes ~0.2 s late
        while lag.samples == before:
            await asyncio.sleep(0.01)
        value = sample(registry, "dfspeer_event_loop_lag_seconds")
        assert value is not None and value >= 0.15
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "event-loop-lag"]


def test_event_loop_lag_needs_a_positive_interval(registry: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        EventLoopLag(registry, interval_s=0)


async def test_build_app_exports_the_lag_gauge(client: Client) -> None:
    text = await (await client.get("/metrics")).text()
    assert "# TYPE dfspeer_event_loop_lag_seconds gauge" in text
