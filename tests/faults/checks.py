"""Assertions of the fault scenarios: no acknowledged write lost, exactly N replicas.

- :class:`Ledger`: every write the cluster acknowledged (bytes and version) and every
  attempt it refused or that broke off (those may or may not exist; never asserted on).
  Writes are tracked two ways: by key (:meth:`Ledger.ack`: the key's live version must be
  the acknowledged one) or by version (:meth:`Ledger.ack_version`, for versioned buckets:
  that version must stay readable with ``?version=V`` until :meth:`Ledger.remove_version`
  records its acknowledged deletion).
- :func:`wait_all_readable`: every expected object (:meth:`Ledger.expected`) reads back
  byte-identical from every given host; polls until a deadline (a host may be catching up),
  fails at once on wrong bytes, and reports exactly which key failed where and how.
- :func:`wait_versions_gone`: every version whose deletion was acknowledged answers 404
  from every given host.
- :func:`wait_replicated`: polls :func:`ReplicaChecker.report` until, for every expected
  object, its ``objects`` entry (holding the expected version) and every chunk of that
  version are held by exactly the N replicas the (agreed) ring assigns them, and by no
  other running host. A block counts as held only where it is *referenced*: the host has
  the block and a live ``block_refs`` entry for it. An unreferenced copy (a stand-in's
  delivered hint, a handed-off partition, a released version) lingers until garbage
  collection and is not counted; on timeout the report lists what is missing, unreferenced
  or extra where.

Presence is asked of each host directly, with signed peer RPC
(:class:`dfspeer.cluster.rpc.PeerRpcClient` with the cluster key): one paged scan of the
``objects`` and ``block_refs`` tables per host and pass
(``GET /internal/tables/{table}/scan``), a ``HEAD /internal/blocks/{digest}`` per chunk
and host; placement from ``GET /v1/cluster/ring`` and ``/v1/cluster/status``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from dfspeer.client import PeerUnreachable, error_from_response
from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.errors import DfsError
from dfspeer.gossip import load_keyring
from dfspeer.model.block_refs import BLOCK_REFS_TABLE, BlockRefsSchema
from dfspeer.model.objects import OBJECTS_TABLE, ObjectEntry, ObjectsSchema, table_key
from dfspeer.ring import Partitioner
from tests.faults.netns import FaultNet

T = TypeVar("T")
MAX_LINES = 40
SCAN_PAGE = 500
OBJECTS = ObjectsSchema()
REFS = BlockRefsSchema()


@dataclass(frozen=True)
class Acked:
    """A write the cluster acknowledged (201): its bytes and the version it returned.
    ``pinned``: tracked by version (read with ``?version=``; it must stay one of the key's
    versions), else by key (it must be the key's live version)."""

    bucket: str
    key: str
    data: bytes
    version: str
    pinned: bool = False

    @property
    def name(self) -> str:
        tail = f"?version={self.version}" if self.pinned else ""
        return f"{self.bucket}/{self.key}{tail}"


@dataclass
class Ledger:
    """Acknowledged writes by (bucket, key), acknowledged versions by version id (with
    the ones whose deletion was acknowledged), and refused / broken-off attempts."""

    acked: dict[tuple[str, str], Acked] = field(default_factory=dict)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)
    versions: dict[str, Acked] = field(default_factory=dict)
    removed: dict[str, Acked] = field(default_factory=dict)
    uncertain: dict[str, str] = field(default_factory=dict)

    def ack(self, bucket: str, key: str, data: bytes, info: dict[str, Any]) -> None:
        self.acked[(bucket, key)] = Acked(bucket, key, data, str(info.get("version", "")))

    def ack_version(self, bucket: str, key: str, data: bytes, info: dict[str, Any]) -> Acked:
        """Track the version the 201 answer ``info`` names (read back with ``?version=``)."""
        acked = Acked(bucket, key, data, str(info["version"]), pinned=True)
        self.versions[acked.version] = acked
        return acked

    def remove_version(self, version: str) -> None:
        """The deletion of ``version`` was acknowledged: it must be gone, not readable."""
        self.removed[version] = self.versions.pop(version)

    def forget_version(self, version: str, reason: str) -> None:
        """A deletion of ``version`` broke off: it may or may not exist (never asserted)."""
        self.versions.pop(version, None)
        self.uncertain[version] = reason

    def fail(self, bucket: str, key: str, exc: BaseException) -> None:
        code = exc.code if isinstance(exc, DfsError) else type(exc).__name__
        self.failed[(bucket, key)] = f"{code}: {exc}"

    def expected(self) -> list[Acked]:
        """Everything that must be readable: live versions by key, then pinned versions."""
        return [*self.acked.values(), *self.versions.values()]

    def summary(self) -> str:
        codes = Counter(reason.split(":", 1)[0] for reason in self.failed.values())
        out = f"{len(self.acked)} acknowledged, {len(self.failed)} refused/broken {dict(codes)}"
        if self.versions or self.removed or self.uncertain:
            out += (
                f"; versions: {len(self.versions)} kept, {len(self.removed)} deleted, "
                f"{len(self.uncertain)} with a broken-off delete"
            )
        return out


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


# ---------------------------------------------------------------------- versioned HTTP
class VersionHttp:
    """``GET`` / ``DELETE /v1/objects/{bucket}/{key}?version=V`` on the hosts' public API
    (plain aiohttp, errors as :class:`DfsError` like :class:`dfspeer.Client`). Use on the
    hub loop, as ``async with VersionHttp(net) as http``."""

    def __init__(self, net: FaultNet, timeout_s: float = 30.0) -> None:
        self.net = net
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(timeout_s, 10))
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> VersionHttp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _url(self, index: int, bucket: str, key: str) -> str:
        return f"{self.net.host(index).url}/v1/objects/{quote(bucket, safe='')}/{quote(key)}"

    async def request(
        self, index: int, method: str, url: str, **kwargs: Any
    ) -> tuple[int, dict[str, str], bytes]:
        """One request to host ``index``; (status, headers, body). Raises DfsError on an
        error answer, PeerUnreachable when the host cannot be reached."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.net.headers)
        try:
            async with self._session.request(method, url, **kwargs) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise error_from_response(resp.status, body, resp.reason or "")
                return resp.status, dict(resp.headers), body
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise PeerUnreachable(self.net.host(index).url, reason) from exc

    async def get(self, index: int, bucket: str, key: str, version: str) -> bytes:
        url = self._url(index, bucket, key)
        return (await self.request(index, "GET", url, params={"version": version}))[2]

    async def delete(self, index: int, bucket: str, key: str, version: str) -> None:
        url = self._url(index, bucket, key)
        await self.request(index, "DELETE", url, params={"version": version})


# ---------------------------------------------------------------------- readability
async def _read(net: FaultNet, http: VersionHttp, index: int, acked: Acked) -> bytes:
    if acked.pinned:
        return await http.get(index, acked.bucket, acked.key, acked.version)
    return await net.client(index).get_object(acked.bucket, acked.key)


async def wait_all_readable(
    net: FaultNet,
    ledger: Ledger,
    indices: Iterable[int] | None = None,
    *,
    timeout_s: float = 60.0,
) -> None:
    """Every expected object (:meth:`Ledger.expected`) is byte-identical from every host
    in ``indices`` (default: the running ones). Raises AssertionError (wrong bytes at once;
    a read error that persists past ``timeout_s``) listing key, host and error."""
    hosts = list(indices if indices is not None else net.running())
    expected = ledger.expected()
    pending = {(i, n) for i in hosts for n in range(len(expected))}
    errors: dict[tuple[int, int], str] = {}
    deadline = time.monotonic() + timeout_s

    async def read(http: VersionHttp, i: int, n: int) -> None:
        acked = expected[n]
        try:
            got = await _read(net, http, i, acked)
        except DfsError as exc:
            errors[(i, n)] = f"{exc.code} ({exc.status}): {exc.message}"
            return
        if got != acked.data:
            raise AssertionError(
                f"h{i} returned different bytes for {acked.name} "
                f"({len(got)} bytes, want {len(acked.data)})"
            )
        errors.pop((i, n), None)
        pending.discard((i, n))

    async with VersionHttp(net) as http:
        while pending:
            await gather_limited(read(http, i, n) for i, n in sorted(pending))
            if not pending:
                return
            if time.monotonic() > deadline:
                lines = [
                    f"h{i} {expected[n].name}: {errors.get((i, n), '?')}"
                    for i, n in sorted(pending)
                ]
                raise AssertionError(
                    f"{len(pending)} acknowledged reads still failing after {timeout_s:.0f} s "
                    f"({ledger.summary()}):\n{_clip(lines)}\n"
                    + net.logs(sorted({i for i, _ in pending}), lines=15)
                )
            await asyncio.sleep(1.0)


async def wait_versions_gone(
    net: FaultNet,
    ledger: Ledger,
    indices: Iterable[int] | None = None,
    *,
    timeout_s: float = 30.0,
) -> None:
    """Every version whose deletion was acknowledged answers 404 (``no_such_version``)
    from every host in ``indices`` (default: the running ones); polls until ``timeout_s``.
    Raises AssertionError listing the versions still served, and where."""
    hosts = list(indices if indices is not None else net.running())
    removed = list(ledger.removed.values())
    pending = {(i, n) for i in hosts for n in range(len(removed))}
    last: dict[tuple[int, int], str] = {}
    deadline = time.monotonic() + timeout_s

    async def probe(http: VersionHttp, i: int, n: int) -> None:
        gone = removed[n]
        try:
            got = await http.get(i, gone.bucket, gone.key, gone.version)
        except DfsError as exc:
            if exc.status == 404:
                pending.discard((i, n))
            else:
                last[(i, n)] = f"{exc.code} ({exc.status})"
            return
        last[(i, n)] = f"still served ({len(got)} bytes)"

    async with VersionHttp(net) as http:
        while pending:
            await gather_limited(probe(http, i, n) for i, n in sorted(pending))
            if not pending:
                return
            if time.monotonic() > deadline:
                lines = [f"h{i} {removed[n].name}: {last.get((i, n))}" for i, n in sorted(pending)]
                raise AssertionError(
                    f"{len(pending)} deleted versions still answered after {timeout_s:.0f} s "
                    f"({ledger.summary()}):\n{_clip(lines)}"
                )
            await asyncio.sleep(1.0)


# ---------------------------------------------------------------------- replicas
@dataclass
class ReplicaReport:
    """One pass over every expected object: ``problems`` (human lines, empty when
    everything has exactly its N replicas) and the hosts they involve."""

    problems: list[str] = field(default_factory=list)
    involved: set[str] = field(default_factory=set)
    entries: int = 0
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


def _holds(entry: ObjectEntry | None, acked: Acked) -> bool:
    """True if ``entry`` holds ``acked`` as it must: a pinned version complete with data,
    else as the key's live version."""
    if entry is None:
        return False
    if acked.pinned:
        version = entry.get(acked.version)
        return version is not None and version.is_data
    live = entry.live()
    return live is not None and live.id == acked.version


def _describe(entry: ObjectEntry | None, acked: Acked) -> str:
    """What ``entry`` has instead of ``acked`` (for a report line)."""
    if entry is None:
        return "no entry"
    if acked.pinned:
        version = entry.get(acked.version)
        return "no such version" if version is None else f"state {version.state}"
    live = entry.live()
    return f"live {live.id if live else None}"


@dataclass
class HostView:
    """One host's ``objects`` entries (by table key) and the digests it holds a live
    reference to."""

    entries: dict[bytes, ObjectEntry] = field(default_factory=dict)
    referenced: set[bytes] = field(default_factory=set)


class ReplicaChecker:
    """Asks every running host what it holds (signed peer RPC with the cluster key)."""

    def __init__(self, net: FaultNet) -> None:
        self.net = net
        self.rpc = PeerRpcClient(load_keyring(net.key_file), "fault-harness", timeout_s=10.0)

    async def close(self) -> None:
        await self.rpc.close()

    async def entry_on(self, index: int, bucket: str, key: str) -> ObjectEntry | None:
        """Host ``index``'s ``objects`` entry of ``bucket/key``, or None."""
        address = self.net.host(index).address
        record = await self.rpc.get_record(address, OBJECTS_TABLE, table_key(bucket, key))
        return None if record is None else OBJECTS.decode(record)

    async def chunks_of(self, acked: Acked) -> list[bytes]:
        """Chunk digests of ``acked`` from the first running host holding it."""
        for i in self.net.running():
            entry = await self.entry_on(i, acked.bucket, acked.key)
            version = entry.get(acked.version) if entry is not None else None
            if version is not None and version.is_data:
                return [bytes(d) for d, _ in version.chunks]
        raise AssertionError(f"no running host holds {acked.name} v{acked.version}")

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

    async def _holders(
        self, live: list[int], ask: Callable[[str], Awaitable[Any]]
    ) -> tuple[set[str], dict[str, str]]:
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

    async def _scan(self, address: str, table: str) -> list[tuple[bytes, Any]]:
        """Every record of ``table`` on the host at ``address`` (paged)."""
        out: list[tuple[bytes, Any]] = []
        after: bytes | None = None
        while True:
            page = await self.rpc.scan_records(
                address, table, prefix=b"", start_after=after, limit=SCAN_PAGE
            )
            out.extend(page)
            if len(page) < SCAN_PAGE:
                return out
            after = page[-1][0]

    async def host_view(self, index: int) -> HostView:
        """Host ``index``'s objects entries and live block references (two table scans)."""
        address = self.net.host(index).address
        view = HostView()
        for key, record in await self._scan(address, OBJECTS_TABLE):
            view.entries[key] = OBJECTS.decode(record)
        for key, record in await self._scan(address, BLOCK_REFS_TABLE):
            if REFS.decode(record).live:
                view.referenced.add(REFS.partition_key(key))
        return view

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
        answers = await asyncio.gather(*(self.host_view(i) for i in live), return_exceptions=True)
        views: dict[str, HostView] = {}
        for i, answer in zip(live, answers, strict=True):
            if isinstance(answer, BaseException):
                report.add(f"h{i} table scan: {type(answer).__name__}: {answer}", [f"h{i}"])
            else:
                views[f"h{i}"] = answer
        if report.problems:
            return report

        by_key: dict[bytes, list[Acked]] = {}
        for acked in ledger.expected():
            by_key.setdefault(table_key(acked.bucket, acked.key), []).append(acked)
        chunks: dict[bytes, str] = {}  # digest -> the first version naming it

        for tkey, items in sorted(by_key.items()):
            part = partitioner.partition(OBJECTS.partition_key(tkey))
            expected = owners.get(part, set())
            if len(expected) != n:
                report.add(f"entry {tkey!r}: partition {part} has {len(expected)} replicas")
            present = {p for p, v in views.items() if tkey in v.entries}
            if present - expected:
                report.add(
                    _placement_line(f"objects entry {tkey!r} (p{part})", expected, present),
                    present ^ expected,
                )
            for acked in items:
                report.entries += 1
                holders = {p for p, v in views.items() if _holds(v.entries.get(tkey), acked)}
                if holders != expected:
                    line = _placement_line(
                        f"{acked.name} v{acked.version} in objects (p{part})", expected, holders
                    )
                    others = {
                        p: _describe(views[p].entries.get(tkey), acked)
                        for p in sorted(expected - holders)
                    }
                    report.add(f"{line}; instead {others}", expected ^ holders)
                good = next((views[p].entries[tkey] for p in sorted(holders)), None)
                version = good.get(acked.version) if good is not None else None
                for digest, _size in version.chunks if version is not None else ():
                    chunks.setdefault(bytes(digest), f"{acked.name} v{acked.version}")

        async def check_chunk(digest: bytes, name: str) -> None:
            part = partitioner.partition(digest)
            expected = owners.get(part, set())
            present, errors = await self._holders(
                live, lambda address: self.rpc.has_block(address, digest)
            )
            report.chunks += 1
            referenced = {p for p in present if digest in views[p].referenced}
            if referenced != expected or errors:
                what = f"chunk {digest.hex()[:16]} of {name} (p{part})"
                line = _placement_line(what, expected, referenced)
                unreferenced = sorted((present - referenced) & expected)
                if unreferenced:
                    line += f"; block there but UNREFERENCED on {unreferenced}"
                if errors:
                    line += f"; no answer {errors}"
                report.add(line, expected ^ referenced | set(errors))

        await gather_limited((check_chunk(d, name) for d, name in chunks.items()), limit=16)
        return report


async def wait_replicated(
    net: FaultNet,
    ledger: Ledger,
    indices: Iterable[int] | None = None,
    *,
    timeout_s: float = 90.0,
    interval_s: float = 2.0,
) -> ReplicaReport:
    """Poll until every expected object's entry and every referenced chunk of it has
    exactly its N replicas on the running hosts (or ``indices``). Returns the clean report;
    raises AssertionError with the remaining problems and the involved hosts' log tails on
    timeout."""
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
                    f"{report.entries} versions in objects entries, {report.chunks} chunks; "
                    f"{ledger.summary()}):\n{_clip(report.problems)}\n"
                    + net.logs(involved[:3], lines=15)
                )
            await asyncio.sleep(interval_s)
    finally:
        await checker.close()
