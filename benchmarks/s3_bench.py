"""The S3 API against the native API on one 3-agent local cluster (N = 3, W = 2, R = 2).

One cluster (:class:`~dfspeer.localcluster.LocalCluster`, free ports, an
``s3_credentials_file``) serves both APIs. Three clients, in every round one after the
other (who goes first rotates), so all see the same machine weather; figures are
medians over rounds:

* **S3 boto3**: what S3 users run. Big objects with ``upload_file`` / ``download_file``
  (the default ``TransferConfig``: multipart in 8 MiB parts, 10 threads; ranged GETs in
  parallel), small ones with ``put_object`` / ``get_object``.
* **S3 http.client**: the same S3 operations, but one ``PUT`` / ``GET`` per object
  through the plain ``http.client`` code the native client uses, signed with botocore's
  SigV4 (``UNSIGNED-PAYLOAD``): the S3 server path with a client as light as the
  native one.
* **native**: ``/v1/objects`` through ``http.client`` with the admin's bearer token.

Figures: a big object (default 512 MiB) up and down in MB/s (10^6 bytes/s; the file is
re-stamped, 16 bytes every 64 KiB, before each upload so no block is already stored);
1 MiB ranged GETs at random offsets of one object, one at a time, p50 / p99 ms; 4 KiB
PUTs then GETs of distinct keys from 16 threads (boto3: one client, a pool of 16), in
operations per second. For each, the CPU seconds (user + system) of the three agents
and of this client process, since client and cluster share the machine's cores.

Usage::

    python benchmarks/s3_bench.py --quick          # 32 MiB, a few samples (~1 min)
    python benchmarks/s3_bench.py                  # 512 MiB, 3 rounds
    python benchmarks/s3_bench.py --json out.json  # also write the figures

Data goes to a temporary directory (``--base-dir`` to choose), removed unless ``--keep``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import boto3
import psutil  # type: ignore[import-untyped]
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from dfspeer.localcluster import LocalCluster

MiB = 1024 * 1024
BUCKET = "s3bench"
AK = "AKIDFSPEERS3BENCH001"
SK = "s3-bench-secret/0123456789abcdefghijklmn"
STAMP_EVERY = 64 * 1024
CLIENTS = 16
SMALL = 4096


# ---------------------------------------------------------------------- cluster, clients
@contextmanager
def cluster_of_three(work: Path, settings: dict[str, object]) -> Iterator[LocalCluster]:
    """Three agents on free ports with S3 on, credentials ``AK`` / ``SK``."""
    creds = work / "s3.credentials"
    creds.parent.mkdir(parents=True, exist_ok=True)
    creds.write_text(f"{AK}:{SK}\n")
    creds.chmod(0o600)
    cluster = LocalCluster(
        work / "cluster",
        3,
        base_port=None,
        gossip_base_port=None,
        s3_base_port=None,
        settings={"log_level": "warning", "s3_credentials_file": creds, **settings},
    )
    with cluster:
        cluster.start()
        cluster.wait_ready(60)
        cluster.wait_view([1, 2, 3], 30)
        yield cluster


def s3_client(url: str) -> Any:
    """boto3 on ``url``: path style, a pool of ``CLIENTS`` connections."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=CLIENTS,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


class Native:
    """The native API through ``http.client``: one keep-alive connection per thread."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.headers = headers
        self._local = threading.local()

    def path(self, key: str) -> str:
        return f"/v1/objects/{BUCKET}/{quote(key)}"

    def sign(self, method: str, key: str, headers: dict[str, str]) -> dict[str, str]:
        return {**self.headers, **headers}

    def call(self, method: str, key: str, body: Any = None, **headers: str) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(urlparse(self.url).netloc, timeout=300, blocksize=MiB)
            self._local.conn = conn
        conn.request(method, self.path(key), body=body, headers=self.sign(method, key, headers))
        return conn.getresponse()

    def put(self, key: str, body: Any, size: int | None = None) -> None:
        length = len(body) if size is None else size
        answer = self.call("PUT", key, body, **{"Content-Length": str(length)})
        text = answer.read()
        if answer.status not in (200, 201):
            raise RuntimeError(f"PUT {key}: {answer.status} {text[:200]!r}")

    def get(self, key: str, sink: Callable[[bytes], object] = len, **headers: str) -> int:
        answer = self.call("GET", key, **headers)
        if answer.status not in (200, 206):
            raise RuntimeError(f"GET {key}: {answer.status} {answer.read()[:200]!r}")
        got = 0
        while piece := answer.read(MiB):
            sink(piece)
            got += len(piece)
        return got

    def put_file(self, key: str, src: Path) -> None:
        with src.open("rb") as f:
            self.put(key, f, src.stat().st_size)

    def get_file(self, key: str, dst: Path) -> None:
        with dst.open("wb") as f:
            self.get(key, f.write)

    def get_range(self, key: str, at: int) -> int:
        return self.get(key, Range=f"bytes={at}-{at + MiB - 1}")


class _Unsigned(S3SigV4Auth):  # type: ignore[misc]
    def payload(self, request: AWSRequest) -> str:
        return "UNSIGNED-PAYLOAD"


class RawS3(Native):
    """The S3 API through the same ``http.client`` code: SigV4 header signing
    (botocore's signer, ``UNSIGNED-PAYLOAD``), one PUT / GET per object, no multipart."""

    def __init__(self, url: str) -> None:
        super().__init__(url, {})
        self.auth = _Unsigned(Credentials(AK, SK), "s3", "us-east-1")

    def path(self, key: str) -> str:
        return f"/{BUCKET}/{quote(key)}"

    def sign(self, method: str, key: str, headers: dict[str, str]) -> dict[str, str]:
        request = AWSRequest(method=method, url=self.url + self.path(key), headers=headers)
        self.auth.add_auth(request)
        return dict(request.headers.items())


class Boto:
    """The S3 API through boto3 (``upload_file`` / ``download_file`` for files)."""

    def __init__(self, client: Any) -> None:
        self.s3 = client

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)

    def get(self, key: str) -> int:
        return len(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def put_file(self, key: str, src: Path) -> None:
        self.s3.upload_file(str(src), BUCKET, key)

    def get_file(self, key: str, dst: Path) -> None:
        self.s3.download_file(BUCKET, key, str(dst))

    def get_range(self, key: str, at: int) -> int:
        got = self.s3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={at}-{at + MiB - 1}")
        return len(got["Body"].read())


# ---------------------------------------------------------------------- measurements
def stamp(path: Path) -> None:
    """Make ``path``'s content new: 16 fresh bytes every ``STAMP_EVERY``."""
    size = path.stat().st_size
    nonce = os.urandom(8)
    with path.open("r+b") as f:
        for i, at in enumerate(range(0, size, STAMP_EVERY)):
            f.seek(at)
            f.write((nonce + i.to_bytes(8, "big"))[: size - at])


class CpuMeter:
    """CPU seconds (user + system) of the agents and of this process around a run."""

    def __init__(self) -> None:
        self.agents: list[psutil.Process] = []
        self.me = psutil.Process()
        self.last = (0.0, 0.0)  # (agents, client) of the last timed run

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        times = proc.cpu_times()
        return float(times.user + times.system)

    def sample(self) -> tuple[float, float]:
        return sum(self._cpu(p) for p in self.agents), self._cpu(self.me)


METER = CpuMeter()


def timed(run: Callable[..., object], *args: Any) -> float:
    """Wall seconds of ``run(*args)``; its CPU seconds go to ``METER.last``."""
    cpu_before = METER.sample()
    start = time.perf_counter()
    run(*args)
    wall = time.perf_counter() - start
    cpu_after = METER.sample()
    METER.last = (cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1])
    return wall


def big_round(apis: dict[str, Any], src: Path, dst: Path, tag: str) -> dict[str, float]:
    """Upload then download ``src`` through each API (in order); MB/s, CPU s/GiB."""
    size = src.stat().st_size
    out: dict[str, float] = {}
    for name, api in apis.items():
        stamp(src)
        key = f"big-{name}-{tag}"
        for what, step, path in (("upload", api.put_file, src), ("download", api.get_file, dst)):
            out[f"{name}_{what}"] = size / 1e6 / timed(step, key, path)
            agents, client = METER.last
            out[f"{name}_{what}_cpu_agents"] = agents / (size / 1024**3)
            out[f"{name}_{what}_cpu_client"] = client / (size / 1024**3)
        if dst.stat().st_size != size:
            raise RuntimeError(f"{name}: downloaded {dst.stat().st_size} of {size} bytes")
    return out


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(pct / 100 * len(ordered)))]


def ranged_round(
    apis: dict[str, Any], key: str, size: int, count: int, seed: int
) -> dict[str, float]:
    """``count`` 1 MiB ranged GETs of ``key`` at random offsets through each API, one at a
    time: p50 / p99 ms."""
    rng = random.Random(seed)
    offsets = [rng.randrange(0, size - MiB) for _ in range(count)]
    out: dict[str, float] = {}
    for name, api in apis.items():
        ms = []
        for at in offsets:
            start = time.perf_counter()
            if api.get_range(key, at) != MiB:
                raise RuntimeError(f"{name} ranged GET: short body")
            ms.append((time.perf_counter() - start) * 1000)
        out[f"{name}_range_p50_ms"] = statistics.median(ms)
        out[f"{name}_range_p99_ms"] = percentile(ms, 99)
    return out


def small_round(apis: dict[str, Any], ops: int, tag: str) -> dict[str, float]:
    """``ops`` 4 KiB PUTs then ``ops`` GETs of distinct keys over ``CLIENTS`` threads
    through each API: ops/s, and CPU ms an operation (agents, client)."""
    out: dict[str, float] = {}
    bodies = [os.urandom(SMALL) for _ in range(ops)]
    for name, api in apis.items():
        keys = [f"small/{tag}/{name}/{i:06d}" for i in range(ops)]
        with ThreadPoolExecutor(CLIENTS) as pool:
            for what, op, args in (
                ("put_ops", api.put, (keys, bodies)),
                ("get_ops", api.get, (keys,)),
            ):
                out[f"{name}_{what}"] = ops / timed(lambda f, a: list(pool.map(f, *a)), op, args)
                agents, client = METER.last
                out[f"{name}_{what}_cpu_agents"] = agents / ops * 1e3
                out[f"{name}_{what}_cpu_client"] = client / ops * 1e3
    return out


# ---------------------------------------------------------------------- run, report
def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.base_dir or tempfile.mkdtemp(prefix="s3bench-"))
    size = args.big_mib * MiB
    rounds: list[dict[str, float]] = []
    try:
        with cluster_of_three(work, {}) as cluster:
            url = cluster.peer(1).s3_url
            assert url is not None
            boto = Boto(s3_client(url))
            boto.s3.create_bucket(Bucket=BUCKET)
            METER.agents = [psutil.Process(p.process.pid) for p in cluster.peers if p.process]
            apis: list[tuple[str, Any]] = [
                ("s3", boto),
                ("s3raw", RawS3(url)),
                ("native", Native(cluster.peer(1).url, cluster.headers)),
            ]
            src, dst = work / "src.bin", work / "dst.bin"
            with src.open("wb") as f:
                for _ in range(args.big_mib):
                    f.write(os.urandom(MiB))
            for r in range(args.rounds):
                tag = f"r{r}"
                turn = dict(apis[r % 3 :] + apis[: r % 3])  # who goes first rotates
                row = big_round(turn, src, dst, tag)
                key = f"big-native-{tag}"  # one object for all: only the API differs
                row |= ranged_round(turn, key, size, args.ranged, r)
                row |= small_round(turn, args.ops, tag)
                shown = ", ".join(f"{k} {v:.1f}" for k, v in row.items() if "_cpu_" not in k)
                print(f"round {r + 1}: {shown}", flush=True)
                rounds.append(row)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    return {"big_mib": args.big_mib, "rounds": rounds, "median": medians, "args": vars(args)}


ROWS = [
    ("upload 1 object, MB/s", "upload", True),
    ("download 1 object, MB/s", "download", True),
    ("1 MiB ranged GET p50, ms", "range_p50_ms", False),
    ("1 MiB ranged GET p99, ms", "range_p99_ms", False),
    ("4 KiB PUT, 16 clients, ops/s", "put_ops", True),
    ("4 KiB GET, 16 clients, ops/s", "get_ops", True),
]
CPU_ROWS = [("upload", "s/GiB"), ("download", "s/GiB"), ("put_ops", "ms/op"), ("get_ops", "ms/op")]
APIS = ("s3", "s3raw", "native")


def report(result: dict[str, Any]) -> None:
    """Medians: boto3, raw S3 and native, each S3 column also as a share of native (for
    latencies: native / S3, so 100 % is parity either way); then CPU by figure."""
    m = result["median"]
    print(f"\nmedians of {len(result['rounds'])} round(s), big object {result['big_mib']} MiB")
    print("| figure | S3 boto3 | S3 http.client | native | boto3 / native | raw / native |")
    print("|---|---|---|---|---|---|")
    for label, name, higher in ROWS:
        v = [m[f"{a}_{name}"] for a in APIS]
        share = [(x / v[2] if higher else v[2] / x) * 100 for x in v[:2]]
        cells = [f"{x:.1f}" for x in v] + [f"{x:.0f} %" for x in share]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nCPU (user + system), the 3 agents together + this client process")
    print("| figure | S3 boto3 | S3 http.client | native |")
    print("|---|---|---|---|")
    for name, unit in CPU_ROWS:
        cells = [
            f"{m[f'{a}_{name}_cpu_agents']:.2f} + {m[f'{a}_{name}_cpu_client']:.2f}" for a in APIS
        ]
        print(f"| {name}, {unit} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 MiB, 1 round, few samples")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=512)
    parser.add_argument("--ranged", type=int, default=200, help="ranged GETs a round and API")
    parser.add_argument("--ops", type=int, default=2000, help="4 KiB PUTs (and GETs) a round")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--base-dir", help="work here (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.big_mib, args.ranged, args.ops = 1, 32, 30, 200
    result = run(args)
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
