"""dfspeer against OpenStack Swift on the same machine, by the same method, in one run.

Swift is the anchor in ``../shared/anchors/swift`` (``setup.sh``: stock Swift 2.30.1 on
loopback, 3 object servers, replicas = 3, PUT quorum 2, fsync on every PUT; ``bench.py``
its benchmark; see that README). dfspeer: 3 local agents (N = 3, W = 2, R = 2, durable)
started once for the whole run by :class:`~dfspeer.localcluster.LocalCluster` (admin token
from the cluster, so access control stays on).

Each round measures both systems, alternating which goes first (single runs on a shared
2-core VM swing by up to 2x), and the summary gives the median over rounds of each figure
and of the per-round ratios dfspeer / Swift:

* ``core`` (Swift: the anchor's own ``bench.py``, run unchanged as a subprocess; dfspeer:
  :func:`core`, a port of ``bench.py``'s method -- same stdlib ``http.client`` client with
  1 MiB reads, bodies streamed from an fsynced temp file of random bytes in 1 MiB blocks
  with the client's checksum header, 3 reps per size (each rep of each round its own new
  random bytes: dfspeer deduplicates chunks, so a repeat of the same file would send almost
  nothing; Swift's bench.py repeats one file, which costs Swift the same), the same 200
  seeded random 1 MiB ranges over one keep-alive connection, each body compared with the
  source file): PUT
  and GET MB/s (10^6 B/s) of 64 MiB and 512 MiB objects, 1 MiB ranged GET median / p99.
  ``--port-on-swift`` also runs the port against Swift, to show it agrees with bench.py.
* ``extra`` (one code path for both systems, :func:`extra`): 200 HEADs of one object on a
  keep-alive connection (median / p99), then 16 client threads, each on its own keep-alive
  connection, PUT 64 unique 4 KiB objects each, then GET them back (verified): ops/s and
  p99 latency per kind.
* ``load`` (one code path for both systems, :func:`load_test.load`): an upload service's
  load test -- 64 client threads on keep-alive connections, 80 % GET / 20 % PUT of objects
  log-uniform over 4 KiB .. 8 MiB (seeded), for 60 s after a warm-up of 256 objects; GETs
  read warm-up objects and the run's own PUTs, every body verified. Per operation p50 /
  p99 latency, ops/s, MB/s, and the failed requests (each one is listed).

Usage::

    python benchmarks/vs_swift.py                 # 3 rounds, every phase (about 15 minutes)
    python benchmarks/vs_swift.py --phases core,extra   # without the load test (6-8 minutes)
    python benchmarks/vs_swift.py --phases load --rounds 2 --load-seconds 10  # a short check
    python benchmarks/vs_swift.py --rounds 5 --json out.json
    python benchmarks/vs_swift.py --no-swift      # dfspeer's side only

Swift's side needs ``setup.sh`` to have run (it is run here when the proxy does not
answer, unless ``--no-swift-setup``); if it cannot be set up, the reason is printed and
only dfspeer's figures are reported. ``SWIFT_ANCHOR_DIR`` / ``SWIFT_BASE_PORT`` are
passed through to the anchor scripts.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from load_test import load  # benchmarks/ is on sys.path when this file is run

from dfspeer.localcluster import LocalCluster

MiB = 1 << 20
SIZES = [("64MiB", 64 * MiB), ("512MiB", 512 * MiB)]
REPS, NRANGE = 3, 200
NHEAD = 200
SMALL, SMALL_CLIENTS, SMALL_PER_CLIENT = 4096, 16, 64
HERE = Path(__file__).resolve().parent
DEFAULT_ANCHOR = HERE.parent.parent / "shared" / "anchors" / "swift"

# (metric, unit, higher is better, aim on the ratio dfspeer / Swift as text + predicate)
AIMS: dict[str, tuple[str, Callable[[float], bool] | None]] = {
    "put_MBps_64MiB": (">= 1.5x", lambda r: r >= 1.5),
    "put_MBps_512MiB": (">= 1.5x", lambda r: r >= 1.5),
    "get_MBps_64MiB": (">= 2x", lambda r: r >= 2.0),
    "get_MBps_512MiB": (">= 2x", lambda r: r >= 2.0),
    "range_1MiB_median_ms": ("<= 0.5x", lambda r: r <= 0.5),
    "range_1MiB_p99_ms": ("<= 0.5x", lambda r: r <= 0.5),
    "head_median_ms": ("dfspeer <= 1 ms", None),
    "head_p99_ms": ("", None),
    "small_put_ops": (">= 4x", lambda r: r >= 4.0),
    "small_put_p99_ms": ("<= 0.5x", lambda r: r <= 0.5),
    "small_get_ops": (">= 4x", lambda r: r >= 4.0),
    "small_get_p99_ms": ("<= 0.5x", lambda r: r <= 0.5),
    **{
        f"load_{kind}_{m}": ("", None)
        for kind in ("get", "put", "all")
        for m in ("p50_ms", "p99_ms", "ops", "MBps")
    },
}
PHASES = ("core", "extra", "load")
SWIFT_SERVERS = ["proxy", "memcached"] + [
    f"{t}{i}" for t in ("object", "container", "account") for i in (1, 2, 3)
]


# ---------------------------------------------------------------------- one system
@dataclass
class Target:
    """Where a system's objects go: ``prefix`` is the container/bucket path; ``auth``
    headers go on every request; ``checksum(md5_hex, sha256_hex)`` is the header by which
    the server checks an upload (Swift: ETag = MD5; dfspeer: X-Content-SHA256)."""

    name: str
    host: str
    port: int
    prefix: str
    auth: dict[str, str]
    checksum: Callable[[str, str], dict[str, str]]
    created: list[str] = field(default_factory=list)

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=300, blocksize=MiB)


def call(
    target: Target,
    c: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    keep: bool = False,
    sink: Callable[[memoryview], Any] | None = None,
    buf: bytearray | None = None,
) -> tuple[int, int, bytes, http.client.HTTPResponse]:
    """One request on ``c`` (bench.py's ``call``): status, body bytes read, the body if
    ``keep``, the response. The body is read with ``readinto`` in 1 MiB steps."""
    c.request(method, path, body=body, headers={**target.auth, **(headers or {})})
    r = c.getresponse()
    if buf is None:
        buf = bytearray(MiB)
    n, parts = 0, []
    while True:
        k = r.readinto(buf)
        if not k:
            break
        n += k
        if sink is not None:
            sink(memoryview(buf)[:k])
        if keep:
            parts.append(bytes(buf[:k]))
    return r.status, n, b"".join(parts), r


def mbps(size: int, secs: float) -> float:
    return round(size / secs / 1e6, 1)


def nearest_rank(sorted_ms: list[float], pct: int) -> float:
    """bench.py's p99: nearest rank (the 198th of 200)."""
    return sorted_ms[-(-pct * len(sorted_ms) // 100) - 1]


@dataclass(frozen=True)
class SourceFile:
    path: str
    size: int
    md5: str
    sha256: str


def make_file(dirname: str, size: int, rep: int = 0) -> SourceFile:
    """Random bytes, fsynced (no writeback during timed PUTs), as bench.py's; one file
    per ``rep``."""
    fname = os.path.join(dirname, f"obj{size}-{rep}")
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(fname, "wb") as f:
        for _ in range(size // MiB):
            b = os.urandom(MiB)
            md5.update(b)
            sha.update(b)
            f.write(b)
        os.fsync(f.fileno())
    return SourceFile(fname, size, md5.hexdigest(), sha.hexdigest())


def make_files(dirname: Path, round_no: int) -> dict[str, list[SourceFile]]:
    """Fresh source files for one round (the previous round's are deleted): per size
    name, one file of new random bytes per rep."""
    shutil.rmtree(dirname, ignore_errors=True)
    where = dirname / f"round-{round_no}"
    where.mkdir(parents=True)
    return {name: [make_file(str(where), size, rep) for rep in range(REPS)] for name, size in SIZES}


def put_file(target: Target, path: str, src: SourceFile) -> tuple[bool, float]:
    c, t = target.conn(), time.perf_counter()
    with open(src.path, "rb") as f:
        headers = {"Content-Length": str(src.size), **target.checksum(src.md5, src.sha256)}
        status, _, _, _ = call(target, c, "PUT", path, f, headers)
    dt = time.perf_counter() - t
    c.close()
    return status == 201, dt


def get_file(target: Target, path: str, size: int, md5: str | None = None) -> tuple[bool, float]:
    """Full GET streamed to /dev/null; with ``md5``, verify the content (untimed use)."""
    h, c, t = hashlib.md5(), target.conn(), time.perf_counter()
    with open(os.devnull, "wb") as null:
        sink = h.update if md5 else null.write
        status, n, _, _ = call(target, c, "GET", path, sink=sink)
    dt = time.perf_counter() - t
    c.close()
    return status == 200 and n == size and (not md5 or h.hexdigest() == md5), dt


def core(target: Target, files: Mapping[str, Sequence[SourceFile]], seed: int) -> dict[str, Any]:
    """bench.py's measurements (all but its kill-a-server part) against ``target``;
    ``files``: per size name, one source file per rep."""
    out: dict[str, Any] = {
        "put_MBps_median": {},
        "get_MBps_median": {},
        "put_MBps_all": {},
        "get_MBps_all": {},
    }
    ok = True
    tag = f"core-{time.time_ns()}"
    for name, size in SIZES:
        src = files[name][0]
        puts, gets = [], []
        for i in range(REPS):
            path = f"{target.prefix}/{tag}-{name}-{i}"
            good, dt = put_file(target, path, files[name][i])
            ok &= good
            puts.append(mbps(size, dt))
            target.created.append(path)
        for i in range(REPS):
            good, dt = get_file(target, f"{target.prefix}/{tag}-{name}-{i}", size)
            ok &= good
            gets.append(mbps(size, dt))
        ok &= get_file(target, f"{target.prefix}/{tag}-{name}-0", size, src.md5)[0]
        out["put_MBps_median"][name] = statistics.median(puts)
        out["get_MBps_median"][name] = statistics.median(gets)
        out["put_MBps_all"][name], out["get_MBps_all"][name] = puts, gets
    name, size = SIZES[-1]
    rng, lat, bad = random.Random(seed), [], 0
    c = target.conn()
    with open(files[name][0].path, "rb") as f:
        for _ in range(NRANGE):
            off = rng.randrange(0, size - MiB + 1)
            t = time.perf_counter()
            status, _, body, _ = call(
                target,
                c,
                "GET",
                f"{target.prefix}/{tag}-{name}-0",
                headers={"Range": f"bytes={off}-{off + MiB - 1}"},
                keep=True,
            )
            lat.append((time.perf_counter() - t) * 1e3)
            bad += status != 206 or body != os.pread(f.fileno(), MiB, off)
    c.close()
    lat.sort()
    out["range_get_1MiB_ms"] = {
        "count": NRANGE,
        "median": round(statistics.median(lat), 2),
        "p99": round(nearest_rank(lat, 99), 2),
        "mean": round(statistics.mean(lat), 2),
        "max": round(lat[-1], 2),
        "bad": bad,
    }
    out["all_requests_ok_and_verified"] = bool(ok) and bad == 0
    return out


def extra(target: Target) -> dict[str, Any]:
    """HEAD latency, then 4 KiB PUT/GET with 16 concurrent keep-alive clients."""
    out: dict[str, Any] = {}
    ok = True
    path = f"{target.prefix}/head-{time.time_ns()}"
    data = os.urandom(SMALL)
    digests = target.checksum(hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())
    c = target.conn()
    status, _, _, _ = call(target, c, "PUT", path, data, {"Content-Length": str(SMALL), **digests})
    ok &= status == 201
    target.created.append(path)
    lat = []
    for _ in range(NHEAD):
        t = time.perf_counter()
        status, _, _, _ = call(target, c, "HEAD", path)
        lat.append((time.perf_counter() - t) * 1e3)
        ok &= status == 200
    c.close()
    lat.sort()
    out["head_ms"] = {
        "median": round(statistics.median(lat), 3),
        "p99": round(nearest_rank(lat, 99), 3),
    }

    tag = f"small-{time.time_ns()}"
    bodies = [[os.urandom(SMALL) for _ in range(SMALL_PER_CLIENT)] for _ in range(SMALL_CLIENTS)]
    failures: list[str] = []

    def phase(kind: str) -> tuple[float, list[float]]:
        lats: list[list[float]] = [[] for _ in range(SMALL_CLIENTS)]
        barrier = threading.Barrier(SMALL_CLIENTS + 1)

        def client(i: int) -> None:
            conn = target.conn()
            conn.connect()
            buf = bytearray(64 * 1024)
            barrier.wait()
            for j, body in enumerate(bodies[i]):
                p = f"{target.prefix}/{tag}-{i}-{j}"
                t = time.perf_counter()
                try:
                    if kind == "PUT":
                        s, _, _, _ = call(
                            target, conn, "PUT", p, body, {"Content-Length": str(SMALL)}, buf=buf
                        )
                        good = s == 201
                    else:
                        s, _, got, _ = call(target, conn, "GET", p, keep=True, buf=buf)
                        good = s == 200 and got == body
                except (OSError, http.client.HTTPException) as exc:
                    good, s = False, -1
                    failures.append(f"{kind} {p}: {exc}")
                    conn.close()
                    conn = target.conn()
                lats[i].append((time.perf_counter() - t) * 1e3)
                if not good:
                    failures.append(f"{kind} {p}: status {s}")
            conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(SMALL_CLIENTS)]
        for th in threads:
            th.start()
        barrier.wait()
        t0 = time.perf_counter()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t0
        return elapsed, sorted(x for row in lats for x in row)

    for kind in ("PUT", "GET"):
        elapsed, lats = phase(kind)
        n = len(lats)
        out[f"small_{kind.lower()}"] = {
            "ops_per_s": round(n / elapsed, 1),
            "median_ms": round(statistics.median(lats), 2),
            "p99_ms": round(nearest_rank(lats, 99), 2),
            "count": n,
        }
    for i in range(SMALL_CLIENTS):
        target.created.extend(f"{target.prefix}/{tag}-{i}-{j}" for j in range(SMALL_PER_CLIENT))
    out["small_failures"] = failures[:5]
    out["all_requests_ok_and_verified"] = bool(ok) and not failures
    return out


def cleanup(target: Target) -> None:
    c = target.conn()
    for path in target.created:
        try:
            call(target, c, "DELETE", path)
        except (OSError, http.client.HTTPException):
            c.close()
            c = target.conn()
    c.close()
    target.created.clear()


def flat(out: Mapping[str, Any]) -> dict[str, float]:
    """The compared figures of one round of one system (of the phases it ran)."""
    row: dict[str, float] = {}
    if "core" in out:
        row.update(flat_core(out["core"]))
    if "extra" in out:
        extra_out = out["extra"]
        row["head_median_ms"] = float(extra_out["head_ms"]["median"])
        row["head_p99_ms"] = float(extra_out["head_ms"]["p99"])
        for kind in ("put", "get"):
            row[f"small_{kind}_ops"] = float(extra_out[f"small_{kind}"]["ops_per_s"])
            row[f"small_{kind}_p99_ms"] = float(extra_out[f"small_{kind}"]["p99_ms"])
    if "load" in out:  # load_test.summarize's keys: "GET", "PUT", "all"
        for kind, fig in ((k.lower(), out["load"][k]) for k in ("GET", "PUT", "all")):
            row[f"load_{kind}_ops"] = float(fig["ops_per_s"])
            row[f"load_{kind}_MBps"] = float(fig["MBps"])
            for m in ("p50_ms", "p99_ms"):
                if fig[m] is not None:
                    row[f"load_{kind}_{m}"] = float(fig[m])
    return row


def flat_core(core_out: Mapping[str, Any]) -> dict[str, float]:
    row: dict[str, float] = {}
    for name, _ in SIZES:
        row[f"put_MBps_{name}"] = float(core_out["put_MBps_median"][name])
        row[f"get_MBps_{name}"] = float(core_out["get_MBps_median"][name])
    row["range_1MiB_median_ms"] = float(core_out["range_get_1MiB_ms"]["median"])
    row["range_1MiB_p99_ms"] = float(core_out["range_get_1MiB_ms"]["p99"])
    return row


# ---------------------------------------------------------------------- Swift
class SwiftUnavailable(RuntimeError):
    pass


def swift_port() -> int:
    return int(os.environ.get("SWIFT_BASE_PORT", "46100"))


def swift_auth() -> tuple[str, str] | None:
    """(storage path prefix ``/v1/AUTH_test``, token) from tempauth, or None if down."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", swift_port(), timeout=5)
        c.request(
            "GET", "/auth/v1.0", headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"}
        )
        r = c.getresponse()
        r.read()
        c.close()
    except OSError:
        return None
    url, token = r.getheader("X-Storage-Url"), r.getheader("X-Auth-Token")
    if r.status != 200 or not url or not token:
        return None
    return urlsplit(url).path, token


def ensure_swift(anchor: Path, setup: bool) -> None:
    """Make sure the anchor answers; run its setup.sh if not (and allowed)."""
    if not (anchor / "bench.py").exists():
        raise SwiftUnavailable(f"no Swift anchor at {anchor} (use --anchor)")
    if swift_auth() is not None:
        return
    if not setup:
        raise SwiftUnavailable("the Swift proxy does not answer and --no-swift-setup was given")
    print(f"running {anchor / 'setup.sh'} ...", flush=True)
    proc = subprocess.run(
        [str(anchor / "setup.sh")], capture_output=True, text=True, env=dict(os.environ)
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-8:]
        raise SwiftUnavailable(
            f"setup.sh exited with {proc.returncode}:\n    " + "\n    ".join(tail)
        )
    print("  " + proc.stdout.strip().splitlines()[-1], flush=True)
    if swift_auth() is None:
        raise SwiftUnavailable("setup.sh succeeded but the proxy gives no token")


def swift_target(wait_s: float = 120.0) -> Target:
    """A new container and a token. Waits up to ``wait_s`` for auth: after a burst of
    memcached timeouts the proxy error-limits memcached for 60 s, and tempauth fails."""
    deadline = time.monotonic() + wait_s
    while (auth := swift_auth()) is None and time.monotonic() < deadline:
        time.sleep(2.0)
    if auth is None:
        raise SwiftUnavailable(f"the Swift proxy gave no token for {wait_s:.0f} s")
    account, token = auth
    target = Target(
        "swift",
        "127.0.0.1",
        swift_port(),
        f"{account}/vs-{time.time_ns()}",
        {"X-Auth-Token": token},
        lambda md5, _sha: {"ETag": md5},
    )
    c = target.conn()
    status, _, _, _ = call(target, c, "PUT", target.prefix)
    c.close()
    if status not in (201, 202):
        raise SwiftUnavailable(f"cannot create a container: {status}")
    return target


def swift_bench(anchor: Path) -> dict[str, Any]:
    """The anchor's bench.py, unchanged; its JSON (exit 1 = a request failed)."""
    proc = subprocess.run(
        [str(anchor / "bench.py")],
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SwiftUnavailable(f"bench.py exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["exit_code"] = proc.returncode
    return result


# ---------------------------------------------------------------------- dfspeer
@contextmanager
def dfspeer_cluster(work: Path, settings: Mapping[str, str]) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        work / "cluster",
        3,
        base_port=None,
        gossip_base_port=None,
        s3_base_port=0,
        settings={"log_level": "warning", **settings},
    )
    with cluster:
        cluster.start()
        cluster.wait_ready(60)
        cluster.wait_view([1, 2, 3], 30)
        yield cluster


def dfspeer_target(cluster: LocalCluster) -> Target:
    peer = cluster.peer(1)
    return Target(
        "dfspeer",
        peer.host,
        peer.port,
        f"/v1/objects/vs-{time.time_ns()}",
        dict(cluster.headers),
        lambda _md5, sha: {"X-Content-SHA256": sha},
    )


def swift_pids() -> list[int]:
    """The anchor's server PIDs (from ``$SWIFT_ANCHOR_DIR/run``), for CPU accounting."""
    run_dir = Path(os.environ.get("SWIFT_ANCHOR_DIR", "/tmp/swift-anchor")) / "run"
    pids = []
    for name in SWIFT_SERVERS:
        with suppress(OSError, ValueError):
            pids.append(int((run_dir / f"{name}.pid").read_text()))
    return pids


# ---------------------------------------------------------------------- summary
def median_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = dict.fromkeys(k for r in rows for k in r)
    return {k: statistics.median(r[k] for r in rows if k in r) for k in keys}


def load_failed(row: Mapping[str, Any]) -> int:
    """Failed load-test requests of one round, both systems."""
    return sum(row[s]["load"]["failed"] for s in ("dfspeer", "swift") if "load" in row.get(s, {}))


def compared(row: Mapping[str, Any], system: str) -> dict[str, float]:
    """A round's figures of ``system``. The load test's are of the requests that succeeded;
    a round with failures is counted in ``load_rounds_with_failures`` and flagged."""
    return dict(row[system]["flat"])


def ratios(
    rounds: list[dict[str, Any]], other: Callable[[dict[str, Any]], dict[str, float]]
) -> dict[str, float]:
    """Per metric, the median over rounds of dfspeer / ``other(round)`` (where non-zero)."""
    per: dict[str, list[float]] = {}
    for r in rounds:
        o = other(r)
        for k, v in compared(r, "dfspeer").items():
            if o.get(k):
                per.setdefault(k, []).append(v / o[k])
    return {k: statistics.median(v) for k, v in per.items()}


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    d_rows = [compared(r, "dfspeer") for r in rounds]
    s_rows = [compared(r, "swift") for r in rounds if "swift" in r]
    summary: dict[str, Any] = {"dfspeer_median": median_rows(d_rows)}
    summary["load_failed_requests"] = {
        system: sum(r[system]["load"]["failed"] for r in rounds if "load" in r.get(system, {}))
        for system in ("dfspeer", "swift")
    }
    summary["load_rounds"] = sum(1 for r in rounds if "load" in r["dfspeer"])
    summary["load_rounds_with_failures"] = sum(
        1 for r in rounds if "load" in r["dfspeer"] and load_failed(r)
    )
    if s_rows:
        summary["swift_median"] = median_rows(s_rows)
        summary["ratio_median"] = ratios(
            [r for r in rounds if "swift" in r], lambda r: compared(r, "swift")
        )
    ported = [r for r in rounds if "swift_port" in r]
    if ported:  # the same core figures of Swift measured by the port (cross-check)
        summary["swift_port_median"] = median_rows([flat_core(r["swift_port"]) for r in ported])
        summary["ratio_vs_port_median"] = ratios(ported, lambda r: flat_core(r["swift_port"]))
    return summary


def print_summary(summary: Mapping[str, Any], rounds: int) -> None:
    d = summary["dfspeer_median"]
    s = summary.get("swift_median") or {}
    ratio = summary.get("ratio_median") or {}
    p, pr = summary.get("swift_port_median") or {}, summary.get("ratio_vs_port_median") or {}
    print(f"\nmedians over {rounds} round(s); ratio = median of per-round dfspeer / Swift")
    if "put_MBps_64MiB" in d:
        print("(swift: its bench.py; 'port': Swift measured by this file's port of bench.py)")
    extra = f" {'port':>9} {'r/port':>7}" if p else ""
    print(f"{'metric':24} {'dfspeer':>10} {'swift':>10} {'ratio':>8}{extra}  aim")
    for k, (aim_text, ok) in AIMS.items():
        if k not in d:
            continue
        sv = f"{s[k]:10.2f}" if k in s else f"{'-':>10}"
        rv = f"{ratio[k]:8.2f}" if k in ratio else f"{'-':>8}"
        if p:
            rv += f" {p[k]:9.2f} {pr[k]:7.2f}" if k in p else f" {'':9} {'':7}"
        verdict = ""
        if k == "head_median_ms":
            verdict = "met" if d[k] <= 1.0 else "NOT met"
        elif ok is not None and k in ratio:
            verdict = "met" if ok(ratio[k]) else "NOT met"
        print(f"{k:24} {d[k]:10.2f} {sv} {rv}  {aim_text} {verdict}".rstrip())
    if summary["load_rounds"]:
        bad = summary["load_rounds_with_failures"]
        print(
            f"load test: failed requests (all rounds) {summary['load_failed_requests']}"
            + (
                f", in {bad} of {rounds} rounds: the load_* figures are of the requests that "
                "succeeded, and do not compare where many failed"
                if bad
                else ""
            )
        )


# ---------------------------------------------------------------------- main
def run_system(
    system: str,
    args: argparse.Namespace,
    files: Mapping[str, Sequence[SourceFile]],
    cluster: LocalCluster,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The selected phases against one system: (its figures, Swift by the port or None)."""
    out: dict[str, Any] = {"loadavg_1min_before": round(os.getloadavg()[0], 2)}
    port_out = None
    if system == "swift":
        if "core" in args.phases:
            out["core"] = swift_bench(Path(args.anchor).resolve())
        target, pids = swift_target(), swift_pids()
        if "core" in args.phases and args.port_on_swift:
            port_out = core(target, files, args.seed)
    else:
        target = dfspeer_target(cluster)
        pids = [p.process.pid for p in cluster.peers if p.process is not None]
        if "core" in args.phases:
            out["core"] = core(target, files, args.seed)
    if "extra" in args.phases:
        out["extra"] = extra(target)
    cleanup(target)
    if "load" in args.phases:
        out["load"] = load(
            target,
            seconds=args.load_seconds,
            clients=args.load_clients,
            write_fraction=args.load_write_fraction,
            warmup=args.load_warmup,
            seed=args.seed,
            server_pids=pids,
        )
    out["flat"] = flat(out)
    out["ok"] = all(
        out[ph].get("all_requests_ok_and_verified", True) for ph in ("core", "extra") if ph in out
    ) and ("load" not in out or out["load"]["failed"] == 0)
    return out, port_out


def print_round(
    i: int, system: str, out: Mapping[str, Any], port: Mapping[str, Any] | None
) -> None:
    f = out["flat"]
    print(
        f"round {i + 1} {system:7} (load average {out['loadavg_1min_before']}): "
        + ", ".join(f"{k} {v:g}" for k, v in f.items() if not k.startswith("load_"))
        + ("" if out["ok"] else "  [SOME REQUESTS FAILED]"),
        flush=True,
    )
    if "load" in out:
        lo = out["load"]
        print(
            f"          load test: {lo['all']['count']} ops in {lo['seconds']} s, "
            + ", ".join(f"{k[5:]} {v:g}" for k, v in f.items() if k.startswith("load_"))
            + f", failed {lo['failed']}, connections {lo['connections']}, "
            f"client CPU {lo['client_cpu_cores']}, servers' CPU {lo['server_cpu_cores']} cores",
            flush=True,
        )
        for msg in lo["failures"]:
            print(f"          failed: {msg}", flush=True)
    if port is not None:
        print(
            f"          swift via the port: put {port['put_MBps_median']}, get "
            f"{port['get_MBps_median']}, range {port['range_get_1MiB_ms']}",
            flush=True,
        )


def swift_skip_reason(args: argparse.Namespace) -> str | None:
    if args.no_swift:
        return "--no-swift"
    try:
        ensure_swift(Path(args.anchor).resolve(), not args.no_swift_setup)
    except SwiftUnavailable as exc:
        print(f"Swift side skipped: {exc}", flush=True)
        return str(exc)
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    swift_reason = swift_skip_reason(args)
    work = Path(tempfile.mkdtemp(prefix="dfspeer-vs-swift-", dir=args.base_dir))
    settings = dict(item.split("=", 1) for item in args.set)
    results: dict[str, Any] = {
        "rounds": [],
        "phases": args.phases,
        "swift_skipped": swift_reason,
        "settings": settings,
        "loadavg_start": os.getloadavg(),
    }
    try:
        files: dict[str, list[SourceFile]] = {}
        with dfspeer_cluster(work, settings) as cluster:
            for i in range(args.rounds):
                if "core" in args.phases:  # new bytes every round: nothing deduplicates
                    files = make_files(work / "files", i)
                order = ["swift", "dfspeer"] if i % 2 == 0 else ["dfspeer", "swift"]
                if swift_reason is not None:
                    order = ["dfspeer"]
                row: dict[str, Any] = {}
                for system in order:
                    try:
                        row[system], port_out = run_system(system, args, files, cluster)
                    except SwiftUnavailable as exc:  # this round has no Swift figures
                        row["swift_error"] = str(exc)
                        print(f"round {i + 1} swift: not measured: {exc}", flush=True)
                        continue
                    if port_out is not None:
                        row["swift_port"] = port_out
                    print_round(i, system, row[system], port_out)
                results["rounds"].append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["loadavg_end"] = os.getloadavg()
    results["summary"] = summarize(results["rounds"])
    print_summary(results["summary"], args.rounds)
    if swift_reason is not None:
        print(f"\nSwift side not measured: {swift_reason}")
    return results


def parse_phases(text: str) -> list[str]:
    phases = [p.strip() for p in text.split(",") if p.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown or not phases:
        raise argparse.ArgumentTypeError(f"phases are a comma list of {', '.join(PHASES)}")
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--phases", type=parse_phases, default=list(PHASES), help="comma list: core,extra,load"
    )
    parser.add_argument("--load-seconds", type=float, default=60.0, help="load test length")
    parser.add_argument("--load-clients", type=int, default=64)
    parser.add_argument("--load-warmup", type=int, default=256, help="objects written first")
    parser.add_argument("--load-write-fraction", type=float, default=0.2)
    parser.add_argument("--anchor", default=str(DEFAULT_ANCHOR), help="Swift anchor directory")
    parser.add_argument("--no-swift", action="store_true", help="dfspeer's side only")
    parser.add_argument("--no-swift-setup", action="store_true", help="never run setup.sh")
    parser.add_argument("--port-on-swift", action="store_true", help="also run the port on Swift")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("BENCH_SEED", "1")))
    parser.add_argument("--base-dir", default=None, help="where dfspeer's data goes")
    parser.add_argument("--json", default=None, help="also write every figure here")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SETTING=VALUE", help="PeerConfig setting"
    )
    args = parser.parse_args()
    results = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
