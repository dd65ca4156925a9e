"""What tracing costs: small-object PUT and GET latency with tracing off and on.

Three in-process :class:`dfspeer.Peer` s on 127.0.0.1 (N = 3, W = R = 2, not durable, one
event loop) take ``--requests`` (default 300) sequential PUTs then GETs of one object size
through peer 0's public API, per mode and round:

* **off**: :func:`dfspeer.tracing.disable` -- the default of a peer without OpenTelemetry
  configured (the span calls are shared no-ops);
* **on**: :func:`dfspeer.tracing.configure` with an SDK ``TracerProvider`` whose
  ``BatchSpanProcessor`` feeds an ``InMemorySpanExporter`` (every span sampled, exported
  off the request path as in production; no network exporter, so this is the cost of
  making the spans, not of shipping them).

Sizes: 1 KiB (inline in the entry: entry reads/writes only) and 64 KiB (one chunk).
Modes alternate within each of ``--rounds`` rounds (default 3; the first mode switches
every round) so drift hits both; the table gives the median and p99 per request in
milliseconds over all rounds, the on/off ratio of the medians, and the spans one request
makes (all peers together, background repair included). A second table gives the cost of
one facade call in microseconds: ``with span(...)`` off and on, and the ``traced``
decorator's extra cost per call when off. Needs ``opentelemetry-sdk``
(``pip install 'dfspeer[otel]'``).
Every object is distinct (random bytes). Run: ``python benchmarks/tracing_overhead.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dfspeer import tracing
from dfspeer.config import MiB, PeerConfig
from dfspeer.peer import Peer

KiB = 1024
SIZES = (1 * KiB, 64 * KiB)


def config(data_dir: Path, join: tuple[str, ...] = ()) -> PeerConfig:
    extra: dict[str, Any] = {}
    if "s3_port" in {f.name for f in dataclasses.fields(PeerConfig)}:
        extra["s3_port"] = 0  # three peers in one process cannot share the S3 port
    return PeerConfig(
        **extra,
        data_dir=data_dir,
        host="127.0.0.1",
        port=0,
        gossip_port=0,
        insecure=True,
        replication_factor=3,
        write_quorum=2,
        read_quorum=2,
        durable=False,
        map_size_bytes=256 * MiB,
        log_level="warning",
        join=join,
    )


async def start(stack: AsyncExitStack, base: Path) -> list[Peer]:
    seed = await stack.enter_async_context(Peer(config(base / "p0")))
    host, port = seed.gossip.local_member.gossip_address
    peers = [seed]
    for i in (1, 2):
        peer = Peer(config(base / f"p{i}", (f"{host}:{port}",)))
        peers.append(await stack.enter_async_context(peer))
    async with asyncio.timeout(30):
        for peer in peers:
            await peer.wait_ready(30)
        while any(len(p.ring.members) < 3 for p in peers):
            await asyncio.sleep(0.05)
    return peers


async def run_mode(
    http: aiohttp.ClientSession, url: str, size: int, count: int, tag: str
) -> tuple[list[float], list[float]]:
    """``count`` PUTs then as many GETs of distinct objects; latencies in ms."""
    puts: list[float] = []
    gets: list[float] = []
    keys = [f"{tag}-{i}" for i in range(count)]
    for key in keys:
        body = os.urandom(size)
        started = time.perf_counter()
        async with http.put(f"{url}/v1/objects/bench/{key}", data=body) as resp:
            await resp.read()
            assert resp.status == 201, resp.status
        puts.append((time.perf_counter() - started) * 1e3)
    for key in keys:
        started = time.perf_counter()
        async with http.get(f"{url}/v1/objects/bench/{key}") as resp:
            assert len(await resp.read()) == size
        gets.append((time.perf_counter() - started) * 1e3)
    return puts, gets


def per_call_us(provider: TracerProvider, calls: int = 20000) -> dict[str, float]:
    """Microseconds per facade call (see the module docstring)."""

    def block() -> None:
        with tracing.span("bench", {"dfspeer.table": "objects"}):
            pass

    async def plain(value: int) -> int:
        return value

    wrapped = tracing.traced("bench")(plain)

    async def awaits(fn: Callable[[int], Awaitable[int]]) -> float:
        started = time.perf_counter()
        for i in range(calls):
            await fn(i)
        return (time.perf_counter() - started) / calls * 1e6

    tracing.disable()
    figures = {"span, off": timeit.timeit(block, number=calls) / calls * 1e6}
    figures["traced wrapper, off (minus a plain await)"] = asyncio.run(awaits(wrapped)) - (
        asyncio.run(awaits(plain))
    )
    tracing.configure(provider)
    figures["span, on"] = timeit.timeit(block, number=calls) / calls * 1e6
    tracing.disable()
    return figures


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def main(requests: int, rounds: int) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    results: dict[tuple[int, str], tuple[list[float], list[float]]] = {}
    spans_per_request: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="dfspeer-trace-bench-") as tmp:
        async with AsyncExitStack() as stack:
            peers = await start(stack, Path(tmp))
            url = peers[0].api_url
            async with aiohttp.ClientSession() as http:
                await run_mode(http, url, 1 * KiB, 20, "warmup")
                for size in SIZES:
                    for r in range(rounds):
                        modes = ("off", "on") if r % 2 == 0 else ("on", "off")
                        for mode in modes:
                            if mode == "on":
                                tracing.configure(provider)
                                provider.force_flush()
                                exporter.clear()
                            else:
                                tracing.disable()
                            puts, gets = await run_mode(
                                http, url, size, requests, f"{size}-{r}-{mode}"
                            )
                            if mode == "on":
                                tracing.disable()
                                provider.force_flush()
                                spans_per_request[size] = len(exporter.get_finished_spans()) / (
                                    2 * requests
                                )
                            all_puts, all_gets = results.setdefault((size, mode), ([], []))
                            all_puts += puts
                            all_gets += gets
    provider.force_flush()
    exporter.clear()
    print(
        f"3 peers in one process, N=3 W=R=2, {requests} sequential requests x {rounds} rounds "
        "per cell; latency in ms"
    )
    print()
    print("| size | op | off median | off p99 | on median | on p99 | on/off median | spans/req |")
    print("|---|---|---|---|---|---|---|---|")
    for size in SIZES:
        for index, op in enumerate(("PUT", "GET")):
            off = results[(size, "off")][index]
            on = results[(size, "on")][index]
            print(
                f"| {size // KiB} KiB | {op} | {statistics.median(off):.2f} | {p99(off):.2f} "
                f"| {statistics.median(on):.2f} | {p99(on):.2f} "
                f"| {statistics.median(on) / statistics.median(off):.2f} "
                f"| {spans_per_request[size]:.1f} (PUT+GET avg) |"
            )


def micro() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    print()
    print("| facade call | us per call |")
    print("|---|---|")
    for name, value in per_call_us(provider).items():
        print(f"| {name} | {value:.2f} |")
    provider.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
    micro()
