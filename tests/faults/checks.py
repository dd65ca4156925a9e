"""Assertions of the fault scenarios: no acknowledged write lost, exactly N replicas.

- :class:`Ledger`: every write the cluster acknowledged (bytes and version) and every
  attempt it refused or that broke off (those may or may not exist; never asserted on).
- :func:`wait_all_readable`: every acknowledged object reads back byte-identical from every
  given host; polls until a deadline (a host may be catching up), fails at once on wrong
  bytes, and reports exactly which key failed where and how.
- :func:`wait_replicated`: polls :func:`replica_report` until every manifest and every chunk
  of every acknowledged object is held by exactly the N replicas the (agreed) ring assigns
  it, and by no other running host; on timeout lists what is missing or extra where.

Presence is asked of each host directly: manifests with a signed
``GET /internal/tables/manifests/records/{key}`` and blocks with a signed
``HEAD /internal/blocks/{digest}`` (:class:`dfspeer.cluster.rpc.PeerRpcClient` with the
cluster key), placement from ``GET /v1/cluster/ring`` and ``/v1/cluster/status``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.errors import DfsError
from dfspeer.gossip import load_keyring
from dfspeer.objects.manifest import MANIFEST_TABLE, partition_key, table_key
from dfspeer.ring import Partitioner
from tests.faults.netns import FaultNet

T = TypeVar("T")
MAX_LINES = 40


@dataclass(frozen=True)
class Acked:
    """A write the cluster acknowledged (201): its bytes and the version it returned."""

    bucket: str
    key: str
    data: bytes
    version: str


@dataclass
class Ledger:
    """Acknowledged writes by (bucket, key) and refused / broken-off attempts."""

    acked: dict[tuple[str, str], Acked] = field(default_factory=dict)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)

    def ack(self, bucket: str, key: str, data: bytes, info: dict[str, Any]) -> None:
        self.acked[(bucket, key)] = Acked(bucket, key, data, str(info.get("version", "")))

    def fail(self, bucket: str, key: str, exc: BaseException) -> None:
        code = exc.code if isinstance(exc, DfsError) else type(exc).__name__
        self.failed[(bucket, key)] = f"{code}: {exc}"

    def summary(self) -> str:
        codes = Counter(reason.split(":", 1)[0] for reason in self.failed.values())
        return f"{len(self.acked)} acknowledged, {len(self.failed)} refused/broken {dict(codes)}"


async def gather_limited(coros: Iterable[Awaitable[T]], limit: int = 32) -> list[T]:
    """``asyncio.gather`` with at most ``limit`` awaitables running at once."""
    sem = asyncio.Semaphore(limit)

    async def one(c: Awaitable[T]) -> T:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


def _clip(lines: list[str]) -> str:
    more = f"\n... and {len(lines) - MAX_LINES} more" if len(lines) > MAX_LINES else ""
    return "\n".join(lines[:MAX_LINES]) + more


# ---------------------------------------------------------------------- readability
async def wait_all_readable(
    net: FaultNet,
    ledger: Ledger,
    indices: Iterable[int] | None = None,
    *,
    timeout_s: float = 60.0,
) -> None:
    """Every acknowledged object is byte-identical from every host in ``indices``
    (default: the running ones). Raises AssertionError (wrong bytes at once; a read error
    that persists past ``timeout_s``) listing key, host and error."""
    hosts = list(indices if indices is not None else net.running())
    pending = {(i, k) for i in hosts for k in ledger.acked}
    errors: dict[tuple[int, tuple[str, str]], str] = {}
    deadline = time.monotonic() + timeout_s

    async def read(i: int, k: tuple[str, str]) -> None:
        acked = ledger.acked[k]
        try:
            got = await net.client(i).get_object(acked.bucket, acked.key)
        except DfsError as exc:
            errors[(i, k)] = f"{exc.code} ({exc.status}): {exc.message}"
            return
        if got != acked.data:
            raise AssertionError(
                f"h{i} returned different bytes for {acked.bucket}/{acked.key} "
                f"({len(got)} bytes, want {len(acked.data)})"
            )
        errors.pop((i, k), None)
        pending.discard((i, k))

    while pending:
        await gather_limited(read(i, k) for i, k in sorted(pending))
        if not pending:
            return
        if time.monotonic() > deadline:
            lines = [
                f"h{i} {b}/{k}: {errors.get((i, (b, k)), '?')}" for i, (b, k) in sorted(pending)
            ]
            raise AssertionError(
                f"{len(pending)} acknowledged reads still failing after {timeout_s:.0f} s "
                f"({ledger.summary()}):\n{_clip(lines)}\n"
                + net.logs(sorted({i for i, _ in pending}), lines=15)
            )
        await asyncio.sleep(1.0)


# ---------------------------------------------------------------------- replicas
@dataclass
class ReplicaReport:
    """One pass over every acknowledged object: ``problems`` (human lines, empty when
    everything has exactly its N replicas) and the hosts they involve."""

    problems: list[str] = field(default_factory=list)
    involved: set[str] = field(default_factory=set)
    manifests: int = 0
    chunks: int = 0

    def add(self, line: str, peers: Iterable[str] = ()) -> None:
        self.problems.append(line)
        self.involved.update(peers)


def _owners(ring_doc: dict[str, Any]) -> dict[int, set[str]]:
    owners: dict[int, set[str]] = {}
    for peer, partitions in ring_doc.get("assignments", {}).items():
        for p in partitions:
            owners.setdefault(int(p), set()).add(str(peer))
    return owners


def _placement_line(what: str, expected: set[str], holders: set[str]) -> str:
    missing = sorted(expected - holders)
    extra = sorted(holders - expected)
    return (
        f"{what}: replicas {sorted(expected)}, held by {sorted(holders)}"
        + (f"; MISSING on {missing}" if missing else "")
        + (f"; EXTRA on {extra}" if extra else "")
    )


class ReplicaChecker:
    """Asks every running host what it holds (signed peer RPC with the cluster key)."""

    def __init__(self, net: FaultNet) -> None:
        self.net = net
        self.rpc = PeerRpcClient(load_keyring(net.key_file), "fault-harness", timeout_s=10.0)

    async def close(self) -> None:
        await self.rpc.close()

    async def chunks_of(self, acked: Acked) -> list[bytes]:
        """Chunk digests of ``acked`` from the first running host holding its manifest."""
        for i in self.net.running():
            rec = await self.rpc.get_record(
                self.net.host(i).address, MANIFEST_TABLE, table_key(acked.bucket, acked.key)
            )
            if isinstance(rec, dict) and rec.get("version") == acked.version:
                return [bytes(d) for d, _ in rec.get("chunks") or []]
        raise AssertionError(f"no running host holds the manifest of {acked.key}")

    async def block_holders(self, digest: bytes) -> list[int]:
        """Indices of the running hosts that hold ``digest`` (HEAD)."""
        live = self.net.running()
        held, errors = await self._holders(live, lambda a: self.rpc.has_block(a, digest))
        if errors:
            raise AssertionError(f"hosts did not answer HEAD {digest.hex()}: {errors}")
        return sorted(int(p[1:]) for p in held)

    async def _ring(self, report: ReplicaReport, live: list[int]) -> dict[str, Any] | None:
        """The ring all running hosts agree on, or None (with a problem recorded)."""
        digests: dict[str, str] = {}
        for i in live:
            try:
                digests[f"h{i}"] = str((await self.net.client(i).status()).get("ring_digest"))
            except DfsError as exc:
                report.add(f"h{i} status: {exc.code}: {exc.message}", [f"h{i}"])
        if report.problems:
            return None
        if len(set(digests.values())) != 1:
            report.add(f"ring digests differ: {digests}", digests)
            return None
        ring = await self.net.client(live[0]).ring()
        members = set(ring.get("peers", {}))
        running = {f"h{i}" for i in live}
        if members != running:
            report.add(f"ring members {sorted(members)} != running hosts {sorted(running)}")
            return None
        return ring

    async def _holders(self, live: list[int], ask: Any) -> tuple[set[str], dict[str, str]]:
        answers = await asyncio.gather(
            *(ask(self.net.host(i).address) for i in live), return_exceptions=True
        )
        held, errors = set(), {}
        for i, answer in zip(live, answers, strict=True):
            if isinstance(answer, BaseException):
                errors[f"h{i}"] = f"{type(answer).__name__}: {answer}"
            elif answer:
                held.add(f"h{i}")
        return held, errors

    async def report(self, ledger: Ledger, indices: Iterable[int] | None = None) -> ReplicaReport:
        """One full pass (see :class:`ReplicaReport`)."""
        live = sorted(indices if indices is not None else self.net.running())
        report = ReplicaReport()
        ring = await self._ring(report, live)
        if ring is None:
            return report
        n = int(ring["replication_factor"])
        partitioner = Partitioner(int(ring["partition_bits"]))
        owners = _owners(ring)

        async def check_object(acked: Acked) -> None:
            name = f"{acked.bucket}/{acked.key}"
            part = partitioner.partition(partition_key(acked.bucket, acked.key))
            expected = owners.get(part, set())
            tkey = table_key(acked.bucket, acked.key)
            records: dict[str, Any] = {}

            async def get(address: str) -> bool:
                rec = await self.rpc.get_record(address, MANIFEST_TABLE, tkey)
                if rec is not None:
                    records[address] = rec
                return isinstance(rec, dict) and rec.get("version") == acked.version

            holders, errors = await self._holders(live, get)
            report.manifests += 1
            if len(expected) != n:
                report.add(
                    f"manifest {name}: partition {part} has {len(expected)} replicas, not {n}"
                )
            others = {
                a: r.get("version")
                for a, r in records.items()
                if isinstance(r, dict) and r.get("version") != acked.version
            }
            if holders != expected or errors or others:
                line = _placement_line(
                    f"manifest {name} v{acked.version} (p{part})", expected, holders
                )
                if others:
                    line += f"; OTHER VERSION {others}"
                if errors:
                    line += f"; no answer {errors}"
                report.add(line, expected ^ holders | set(errors))
            good = next((r for r in records.values() if r.get("version") == acked.version), None)
            for digest, _size in (good or {}).get("chunks") or []:
                await check_chunk(name, bytes(digest))

        async def check_chunk(name: str, digest: bytes) -> None:
            part = partitioner.partition(digest)
            expected = owners.get(part, set())
            holders, errors = await self._holders(
                live, lambda address: self.rpc.has_block(address, digest)
            )
            report.chunks += 1
            if holders != expected or errors:
                what = f"chunk {digest.hex()[:16]} of {name} (p{part})"
                line = _placement_line(what, expected, holders)
                if errors:
                    line += f"; no answer {errors}"
                report.add(line, expected ^ holders | set(errors))

        await gather_limited((check_object(a) for a in ledger.acked.values()), limit=16)
        return report


async def wait_replicated(
    net: FaultNet,
    ledger: Ledger,
    indices: Iterable[int] | None = None,
    *,
    timeout_s: float = 90.0,
    interval_s: float = 2.0,
) -> ReplicaReport:
    """Poll until every acknowledged manifest and chunk has exactly its N replicas on the
    running hosts (or ``indices``). Returns the clean report; raises AssertionError with
    the remaining problems and the involved hosts' log tails on timeout."""
    checker = ReplicaChecker(net)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            report = await checker.report(ledger, indices)
            if not report.problems:
                return report
            if time.monotonic() > deadline:
                involved = sorted(int(p[1:]) for p in report.involved if p[1:].isdigit())
                raise AssertionError(
                    f"not every acknowledged object has exactly N replicas after "
                    f"{timeout_s:.0f} s ({len(report.problems)} problems; checked "
                    f"{report.manifests} manifests, {report.chunks} chunks; "
                    f"{ledger.summary()}):\n{_clip(report.problems)}\n"
                    + net.logs(involved[:3], lines=15)
                )
            await asyncio.sleep(interval_s)
    finally:
        await checker.close()
