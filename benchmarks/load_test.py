"""A mixed read/write load test against one HTTP object store (``vs_swift.py --phases load``).

The method, the same for every system (only the target's paths and auth header differ):

* ``clients`` (64) client threads, each on its own keep-alive ``http.client`` connection
  (reopened only after a failed request or when the server closes it; ``connections``
  counts the opens: equal to ``clients`` when every connection was kept alive).
* Object sizes are log-uniform over 4 KiB .. 8 MiB (``size = exp(U(ln 4 KiB, ln 8 MiB))``;
  median 181 KiB, mean 1.1 MB), drawn from a ``random.Random`` seeded per client from
  ``seed``. Each body is generated on the fly in 1 MiB pieces: a window of a seeded 16 MiB
  random buffer at a per-object offset, with a 16-byte per-object BLAKE2b stamp every 64
  KiB, so no two objects share a chunk (nothing deduplicates) and no body compresses.
* Warm-up (untimed): ``warmup`` objects written by the same clients.
* Measured run: for ``seconds``, each client loops: with probability ``write_fraction``
  (0.2) PUT a new object, else GET one drawn uniformly from every object written so far
  (warm-up objects plus the run's completed PUTs). Every GET body is checked against the
  CRC-32 and size recorded for its object. A request that raises, answers other than
  201 / 200, or returns a wrong body counts as failed; nothing is retried.
* Figures per operation, of the requests that succeeded: count, ops/s and MB/s (10^6 B/s)
  over the run's wall time (from the start to the end of the last request started before
  the deadline), latency p50 / p99 (nearest rank; from sending the request to reading the
  last response byte) overall and per size class; then the failed requests, counted
  apart (with the first five reasons); plus the client process's CPU use, and the
  servers' CPU use when their PIDs are given.
* Afterwards every object written is deleted (8 threads).
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import math
import os
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

KiB, MiB = 1 << 10, 1 << 20
MIN_SIZE, MAX_SIZE = 4 * KiB, 8 * MiB
STAMP_EVERY, PIECE = 64 * KiB, MiB
BASE_BYTES = 2 * MAX_SIZE
SIZE_CLASSES = (("<=64KiB", 64 * KiB), ("64KiB-1MiB", MiB), (">1MiB", MAX_SIZE))


class Target(Protocol):
    """What the load test needs of a system (``vs_swift.Target`` has it)."""

    name: str
    prefix: str
    auth: dict[str, str]

    def conn(self) -> http.client.HTTPConnection: ...


@dataclass(frozen=True)
class Obj:
    path: str
    size: int
    crc: int


@dataclass
class Op:
    kind: str  # "PUT" | "GET"
    size: int
    ms: float
    ok: bool


class Bodies:
    """Unique, incompressible object bodies made on the fly from one seeded buffer."""

    def __init__(self, seed: int) -> None:
        self.base = random.Random(seed).randbytes(BASE_BYTES)
        self.nonce = os.urandom(16)  # differs per run: no dedup against earlier rounds

    def pieces(self, oid: int, size: int) -> Iterator[bytes]:
        off = int.from_bytes(self._stamp(oid, -1)[:4], "big") % (BASE_BYTES - MAX_SIZE)
        for start in range(0, size, PIECE):
            end = min(size, start + PIECE)
            parts = []
            for s in range(start, end, STAMP_EVERY):
                e = min(end, s + STAMP_EVERY)
                stamp = self._stamp(oid, s)[: e - s]
                parts.append(stamp + self.base[off + s + len(stamp) : off + e])
            yield b"".join(parts)

    def _stamp(self, oid: int, pos: int) -> bytes:
        msg = oid.to_bytes(8, "big") + pos.to_bytes(8, "big", signed=True)
        return hashlib.blake2b(msg, key=self.nonce, digest_size=16).digest()


def log_uniform_size(rng: random.Random) -> int:
    return min(MAX_SIZE, int(math.exp(rng.uniform(math.log(MIN_SIZE), math.log(MAX_SIZE)))))


class _Crc:
    """Wraps a body iterator; the CRC-32 of what was sent."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self.pieces, self.crc = pieces, 0

    def __iter__(self) -> Iterator[bytes]:
        for p in self.pieces:
            self.crc = zlib.crc32(p, self.crc)
            yield p


@dataclass
class Shared:
    """State the client threads share: the objects readable so far, the ids, failures."""

    target: Target
    bodies: Bodies
    tag: str
    objects: list[Obj] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # every path a PUT was sent to
    failures: list[str] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Iterator[int] = field(default_factory=itertools.count)


class Client:
    """One client thread's keep-alive connection and buffer."""

    def __init__(self, shared: Shared) -> None:
        self.sh, self.buf = shared, bytearray(PIECE)
        self.c = shared.target.conn()  # connects on its first request

    def _fail(self, msg: str) -> None:
        with self.sh.lock:
            self.sh.failures.append(msg)

    def put(self, size: int) -> Op:
        oid = next(self.sh.ids)
        path = f"{self.sh.target.prefix}/{self.sh.tag}-{oid}"
        body = _Crc(self.sh.bodies.pieces(oid, size))
        with self.sh.lock:
            self.sh.written.append(path)
        t = time.perf_counter()
        status, _, _ = self._request("PUT", path, body, {"Content-Length": str(size)})
        op = Op("PUT", size, (time.perf_counter() - t) * 1e3, status == 201)
        if op.ok:
            with self.sh.lock:
                self.sh.objects.append(Obj(path, size, body.crc))
        else:
            self._fail(f"PUT {path} ({size} B): status {status}")
        return op

    def get(self, obj: Obj) -> Op:
        t = time.perf_counter()
        status, n, crc = self._request("GET", obj.path)
        op = Op("GET", obj.size, (time.perf_counter() - t) * 1e3, False)
        op.ok = status == 200 and n == obj.size and crc == obj.crc
        if not op.ok:
            self._fail(
                f"GET {obj.path}: status {status}, {n} of {obj.size} B, crc ok {crc == obj.crc}"
            )
        return op

    def _request(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, int, int]:
        """(status, body bytes, CRC-32 of the body); status -1 when the request raised."""
        try:
            if self.c.sock is None:  # first request, or the last one closed it
                with self.sh.lock:
                    self.sh.connections += 1
            self.c.request(
                method, path, body=body, headers={**self.sh.target.auth, **(headers or {})}
            )
            r = self.c.getresponse()
            n = crc = 0
            while k := r.readinto(self.buf):
                n += k
                crc = zlib.crc32(memoryview(self.buf)[:k], crc)
            return r.status, n, crc
        except (OSError, http.client.HTTPException) as exc:
            self._fail(f"{method} {path}: {type(exc).__name__}: {exc}")
            self.c.close()  # http.client reconnects on the next request
            return -1, 0, 0

    def close(self) -> None:
        self.c.close()


def _run_clients(
    clients: Sequence[Client], body: Callable[[int, Client], list[Op]]
) -> tuple[float, list[Op]]:
    """Run ``body(i, client)`` in one thread per client, started together; (secs, ops)."""
    results: list[list[Op]] = [[] for _ in clients]
    barrier = threading.Barrier(len(clients) + 1)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = body(i, clients[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    return time.perf_counter() - t0, [op for ops in results for op in ops]


def nearest_rank(sorted_ms: Sequence[float], pct: float) -> float:
    return sorted_ms[max(0, math.ceil(pct / 100 * len(sorted_ms)) - 1)]


def _stats(all_ops: Sequence[Op], secs: float) -> dict[str, Any]:
    ops = [op for op in all_ops if op.ok]
    lat = sorted(op.ms for op in ops)
    nbytes = sum(op.size for op in ops)
    return {
        "count": len(ops),
        "failed": len(all_ops) - len(ops),
        "ops_per_s": round(len(ops) / secs, 1),
        "MBps": round(nbytes / secs / 1e6, 1),
        "p50_ms": round(nearest_rank(lat, 50), 2) if lat else None,
        "p99_ms": round(nearest_rank(lat, 99), 2) if lat else None,
        "mean_size_KiB": round(nbytes / len(ops) / KiB, 1) if ops else None,
    }


def summarize(ops: Sequence[Op], secs: float) -> dict[str, Any]:
    out: dict[str, Any] = {"all": _stats(ops, secs)}
    for kind in ("GET", "PUT"):
        mine = [op for op in ops if op.kind == kind]
        out[kind] = _stats(mine, secs)
        lo, classes = 0, {}
        for name, hi in SIZE_CLASSES:
            lat = sorted(op.ms for op in mine if op.ok and lo < op.size <= hi)
            classes[name] = {
                "count": len(lat),
                "p50_ms": round(nearest_rank(lat, 50), 2) if lat else None,
                "p99_ms": round(nearest_rank(lat, 99), 2) if lat else None,
            }
            lo = hi
        out[kind]["by_size"] = classes
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def delete_all(target: Target, paths: Sequence[str], threads: int = 8) -> int:
    """DELETE every path (``threads`` keep-alive connections); how many did not answer 2xx/404."""
    bad = [0] * threads

    def run(i: int) -> None:
        c = target.conn()
        for path in paths[i::threads]:
            try:
                c.request("DELETE", path, headers=target.auth)
                r = c.getresponse()
                r.read()
                bad[i] += not (200 <= r.status < 300 or r.status == 404)
            except (OSError, http.client.HTTPException):
                bad[i] += 1
                c.close()
                c = target.conn()
        c.close()

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return sum(bad)


def load(
    target: Target,
    *,
    seconds: float = 60.0,
    clients: int = 64,
    write_fraction: float = 0.2,
    warmup: int = 256,
    seed: int = 1,
    server_pids: Sequence[int] = (),
) -> dict[str, Any]:
    """Warm-up, then the timed mixed run against ``target``; every figure as a dict."""
    sh = Shared(target, Bodies(seed), f"load-{time.time_ns()}")
    conns = [Client(sh) for _ in range(clients)]
    per_client = -(-warmup // clients)

    def warm(i: int, cl: Client) -> list[Op]:
        rng = random.Random(f"{seed}-warmup-{i}")
        return [cl.put(log_uniform_size(rng)) for _ in range(per_client)]

    warm_secs, warm_ops = _run_clients(conns, warm)
    warm_failed = sum(not op.ok for op in warm_ops)
    deadline: list[float] = []

    def mixed(i: int, cl: Client) -> list[Op]:
        rng, ops = random.Random(f"{seed}-run-{i}"), []
        while time.perf_counter() < deadline[0]:
            if rng.random() < write_fraction:
                ops.append(cl.put(log_uniform_size(rng)))
            else:
                with sh.lock:
                    obj = sh.objects[rng.randrange(len(sh.objects))] if sh.objects else None
                ops.append(cl.get(obj) if obj else cl.put(log_uniform_size(rng)))
        return ops

    cpu0, srv0 = time.process_time(), cpu_seconds(server_pids)
    deadline.append(time.perf_counter() + seconds)
    secs, ops = _run_clients(conns, mixed)
    client_cpu, server_cpu = time.process_time() - cpu0, cpu_seconds(server_pids) - srv0
    for cl in conns:
        cl.close()
    out = summarize(ops, secs)
    out.update(
        seconds=round(secs, 2),
        clients=clients,
        write_fraction=write_fraction,
        warmup={"objects": len(warm_ops), "failed": warm_failed, "secs": round(warm_secs, 1)},
        objects_readable_at_end=len(sh.objects),
        connections=sh.connections,
        client_cpu_cores=round(client_cpu / secs, 2),
        server_cpu_cores=round(server_cpu / secs, 2) if server_pids else None,
        failed=out["all"]["failed"] + warm_failed,
        failures=sh.failures[:5],
    )
    out["delete_failed"] = delete_all(target, sh.written)
    return out
