"""Distributed tracing (:mod:`dfspeer.tracing`): a no-op when off; on, one trace per client
request holding the coordinator's spans and every replica's server spans."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dfspeer import tracing
from dfspeer.api.app import build_app
from dfspeer.cluster.tracing_hooks import rpc_route, rpc_span
from dfspeer.config import PeerConfig
from dfspeer.logsetup import JsonFormatter
from dfspeer.peer import Peer
from tests.unit.api_fakes import FakeObjects, FakeState
from tests.unit.test_peer_single import CHUNK, config_for

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

OTEL_VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every span exported at once into memory (no OTEL_* variable involved)."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    assert tracing.configure(provider)
    try:
        yield memory
    finally:
        tracing.disable()
        provider.shutdown()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def hex_id(value: int, digits: int = 32) -> str:
    return format(value, f"0{digits}x")


# ---------------------------------------------------------------------- off
async def test_span_is_a_noop_when_tracing_is_off() -> None:
    tracing.disable()
    assert not tracing.enabled()
    first, second = tracing.span("a", x=1), tracing.span("b", {"y.z": "w"}, kind="server")
    assert first is second  # one shared object: nothing allocated per span
    with first as handle:
        handle.set_attribute("k", "v")
        handle.set_error("ignored")
        assert not handle.recording
        assert tracing.current_trace_id() is None
    async with tracing.span("c") as handle:
        assert not handle.recording
    with pytest.raises(ValueError, match="passes through"), tracing.span("d"):
        raise ValueError("passes through")
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {}
    assert tracing.extract({"traceparent": f"00-{'1' * 32}-{'2' * 16}-01"}) is None

    @tracing.traced("e", lambda *a, **k: pytest.fail("describe runs only when tracing is on"))
    async def work(value: int) -> int:
        return value + 1

    assert await work(1) == 2


def test_configure_stays_off_without_otel_variables(clean_env: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opentelemetry.trace")
    from opentelemetry import trace

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        pytest.skip("this process already has a global tracer provider")
    assert tracing.configure() is False
    assert not tracing.enabled()


def test_configure_stays_off_without_opentelemetry(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OTEL_TRACES_EXPORTER", "console")
    clean_env.setitem(sys.modules, "opentelemetry", None)  # import opentelemetry fails
    assert tracing.configure() is False
    assert tracing.span("x") is tracing.span("y")


def test_otel_variables_choose_the_exporters(clean_env: pytest.MonkeyPatch) -> None:
    names = tracing._exporter_names
    assert names() == []
    clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert names() == ["otlp_proto_grpc"]
    clean_env.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert names() == ["otlp_proto_http"]
    clean_env.setenv("OTEL_TRACES_EXPORTER", "none")
    assert names() == []
    clean_env.setenv("OTEL_TRACES_EXPORTER", "console, otlp")
    assert names() == ["console", "otlp_proto_http"]


def test_configure_from_the_environment_exports_spans() -> None:
    """``OTEL_TRACES_EXPORTER=console``: an SDK provider with that exporter (in a child
    process: a global tracer provider can be set once per process)."""
    pytest.importorskip("opentelemetry.sdk")
    script = (
        "from dfspeer import tracing\n"
        "assert tracing.configure()\n"
        "with tracing.span('hello-span', answer=42):\n"
        "    print('trace', tracing.current_trace_id())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env |= {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "dfspeer-test"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    trace_id = done.stdout.split("trace ", 1)[1].split()[0]
    assert len(trace_id) == 32
    assert '"name": "hello-span"' in done.stdout  # flushed by the SDK at exit
    assert f'"trace_id": "0x{trace_id}"' in done.stdout
    assert '"service.name": "dfspeer-test"' in done.stdout


def test_rpc_span_names_match_the_internal_routes() -> None:
    digest = "ab" * 32
    assert rpc_route(f"/internal/blocks/{digest}") == ("/internal/blocks/{digest}", {})
    assert rpc_route(f"/internal/blocks/{digest}?ref=00") == ("/internal/blocks/{digest}", {})
    assert rpc_route("/internal/blocks/has") == ("/internal/blocks/has", {})
    assert rpc_route("/internal/tables/objects/records/6162") == (
        "/internal/tables/{table}/records/{key}",
        {"dfspeer.table": "objects"},
    )
    assert rpc_route("/internal/hints/records/objects/61?target=70") == (
        "/internal/hints/records/{table}/{key}",
        {"dfspeer.table": "objects"},
    )
    assert rpc_route("/internal/status") == ("/internal/status", {})
    name, attributes = rpc_span("PUT", "127.0.0.1:7070", f"/internal/blocks/{digest}")
    assert name == "PUT /internal/blocks/{digest}"
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == 7070


# ---------------------------------------------------------------------- on
async def test_spans_nest_and_carry_the_trace_id(exporter: InMemorySpanExporter) -> None:
    async with tracing.span("outer", {"dfspeer.bucket": "b"}) as outer:
        assert outer.recording
        trace_id = tracing.current_trace_id()
        headers: dict[str, str] = {}
        tracing.inject(headers)
        with tracing.span("inner", n=1) as inner:
            inner.set_error("bad")
    assert trace_id is not None and headers["traceparent"].split("-")[1] == trace_id
    remote = tracing.extract(headers)
    with tracing.span("remote", kind="server", parent=remote):
        assert tracing.current_trace_id() == trace_id
    assert tracing.current_trace_id() is None
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert spans["inner"].parent is not None
    assert spans["inner"].parent.span_id == spans["outer"].context.span_id
    assert spans["inner"].status.status_code.name == "ERROR"
    assert spans["inner"].attributes == {"n": 1}
    assert spans["outer"].attributes == {"dfspeer.bucket": "b"}
    assert spans["remote"].parent is not None and spans["remote"].parent.is_remote
    assert spans["remote"].parent.span_id == spans["outer"].context.span_id
    assert {hex_id(s.context.trace_id) for s in spans.values()} == {trace_id}


async def test_log_line_of_a_traced_request_carries_its_trace_id(
    exporter: InMemorySpanExporter,
) -> None:
    """A record made inside a request's server span (the error middleware's) has that trace id:
    the caller's when it sent a ``traceparent``, else the new trace's."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    api_log = logging.getLogger("dfspeer.api")
    saved_level = api_log.level
    api_log.addHandler(handler)
    api_log.setLevel(logging.DEBUG)  # 4xx errors are logged at debug
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    try:
        app = build_app(FakeObjects(), FakeState(), PeerConfig(), registry=CollectorRegistry())
        async with TestClient(TestServer(app)) as client:
            traceparent = f"00-{caller_trace}-{caller_span}-01"
            joined = await client.put(
                "/v1/objects/b/k", data=b"x", headers={"traceparent": traceparent}
            )
            fresh = await client.put("/v1/objects/b/k", data=b"x")
    finally:
        api_log.removeHandler(handler)
        api_log.setLevel(saved_level)
    assert joined.status == fresh.status == 400  # "b": invalid bucket name
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    failures = [e for e in entries if e["message"].startswith("request failed")]
    servers = [s for s in exporter.get_finished_spans() if s.name.startswith("PUT ")]
    assert [s.name for s in servers] == ["PUT /v1/objects/{bucket}/{key}"] * 2
    assert servers[0].parent is not None and hex_id(servers[0].parent.span_id, 16) == caller_span
    assert servers[1].parent is None
    assert [e["trace_id"] for e in failures] == [hex_id(s.context.trace_id) for s in servers]
    assert failures[0]["trace_id"] == caller_trace
    assert servers[0].attributes is not None
    assert servers[0].attributes["http.response.status_code"] == 400
    assert servers[0].attributes["dfspeer.bucket"] == "b"
    assert servers[0].attributes["dfspeer.key"] == "k"


# ---------------------------------------------------------------------- a real cluster
@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[list[Peer]]:
    """Three real Peers, N = W = R = 2: every block and entry lives on two of the three, so
    some peer lacks some chunk and must fetch it from a replica."""
    settings: dict[str, Any] = {"replication_factor": 2, "write_quorum": 2, "read_quorum": 2}
    async with AsyncExitStack() as stack:
        seed = await stack.enter_async_context(Peer(config_for(tmp_path / "p0", **settings)))
        host, port = seed.gossip.local_member.gossip_address
        started = [seed]
        for i in (1, 2):
            config = config_for(tmp_path / f"p{i}", join=(f"{host}:{port}",), **settings)
            started.append(await stack.enter_async_context(Peer(config)))
        async with asyncio.timeout(15):
            for peer in started:
                await peer.wait_ready(15)
            while any(len(p.ring.members) < 3 for p in started):
                await asyncio.sleep(0.05)
        yield started


def one_trace(spans: tuple[ReadableSpan, ...], root_name: str) -> list[ReadableSpan]:
    """The spans of the one trace whose root server span is ``root_name``."""
    roots = [s for s in spans if s.name == root_name and s.parent is None]
    assert len(roots) == 1, [s.name for s in spans]
    return [s for s in spans if s.context.trace_id == roots[0].context.trace_id]


def rpc_pairs(trace: list[ReadableSpan]) -> list[tuple[ReadableSpan, ReadableSpan | None]]:
    """Each peer RPC client span of ``trace`` with the replica's server span under it."""
    from opentelemetry.trace import SpanKind

    servers = {
        s.parent.span_id: s for s in trace if s.kind == SpanKind.SERVER and s.parent is not None
    }
    return [(c, servers.get(c.context.span_id)) for c in trace if c.kind == SpanKind.CLIENT]


async def settled_trace(
    exporter: InMemorySpanExporter, root_name: str
) -> tuple[list[ReadableSpan], list[tuple[ReadableSpan, ReadableSpan | None]]]:
    """Poll until the trace of ``root_name`` holds a server span under each client span."""
    async with asyncio.timeout(10):
        while True:
            spans = exporter.get_finished_spans()
            if any(s.name == root_name and s.parent is None for s in spans):
                trace = one_trace(spans, root_name)
                pairs = rpc_pairs(trace)
                if pairs and all(server is not None for _, server in pairs):
                    return trace, pairs
            await asyncio.sleep(0.02)


def ancestors(span: ReadableSpan, trace: list[ReadableSpan]) -> list[str]:
    by_id = {s.context.span_id: s for s in trace}
    names = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names


async def test_one_trace_spans_coordinator_and_replicas(
    exporter: InMemorySpanExporter, peers: list[Peer]
) -> None:
    data = os.urandom(4 * CHUNK + 5)
    ids = {p.peer_id for p in peers}
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{peers[0].api_url}/v1/objects/bkt/a/b.bin", data=data) as resp:
            assert resp.status == 201, await resp.text()
        put_trace, put_pairs = await settled_trace(exporter, "PUT /v1/objects/{bucket}/{key}")
        # the coordinator reads the entry, writes "uploading", each chunk, then "complete"
        put_names = [s.name for s in put_trace]
        digests = [
            bytes.fromhex(str(s.attributes["dfspeer.block"]))
            for s in put_trace
            if s.name == "replicator.write_block" and s.attributes is not None
        ]
        assert digests and len(set(digests)) == len(digests)  # chunking decides how many
        assert all(len(d) == 32 for d in digests)
        assert put_names.count("replicator.write_record") >= 2
        assert "quorum.wait" in put_names
        block_puts = [s for c, s in put_pairs if c.name == "PUT /internal/blocks/{digest}"]
        assert block_puts and all(s is not None for s in block_puts)

        # a coordinator that lacks a chunk fetches it from a replica
        lacking = [p for p in peers if not all([await p.store.has(d) for d in digests])]
        assert lacking, "with N = 2 of 3 peers some peer holds only part of the chunks"
        coordinator = lacking[0]
        exporter.clear()
        async with http.get(f"{coordinator.api_url}/v1/objects/bkt/a/b.bin") as resp:
            assert resp.status == 200
            assert await resp.read() == data

    trace, pairs = await settled_trace(exporter, "GET /v1/objects/{bucket}/{key}")
    root = next(s for s in trace if s.parent is None)
    assert root.attributes is not None
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["dfspeer.bucket"] == "bkt"
    assert root.attributes["dfspeer.key"] == "a/b.bin"
    names = [s.name for s in trace]
    assert "replicator.read_record" in names  # the entry (manifest) read
    assert names.count("replicator.read_block") == len(digests)
    assert "quorum.wait" in names
    client_names = {c.name for c, _ in pairs}
    assert "GET /internal/blocks/{digest}" in client_names  # the missing chunk
    assert "CHANNEL get_record" in client_names  # the other replica, on the peer channel
    replicas = set()
    for client, server in pairs:
        assert server is not None
        assert server.name == client.name  # same route pattern (or channel op) on both sides
        assert server.attributes is not None and client.attributes is not None
        on_channel = client.name.startswith("CHANNEL ")
        status = "dfspeer.channel.status" if on_channel else "http.response.status_code"
        assert server.attributes[status] == 200
        replica = server.attributes["dfspeer.peer"]
        assert replica in ids - {coordinator.peer_id}
        replicas.add(replica)
        # replica span -> RPC span -> replicator step -> ... -> the public request
        chain = ancestors(server, trace)
        assert chain[0] == client.name
        assert chain[1].startswith("replicator.read_")
        assert chain[-1] == root.name
    assert replicas  # at least one other peer served part of this GET
    assert len({s.context.trace_id for s in trace}) == 1
