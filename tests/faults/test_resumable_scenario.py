"""Fault scenario: a 2 | 3 partition in the middle of a resumable upload from each side.

Five agents in network namespaces (N=3, W=2, R=2, fast gossip and repair timers as in
conftest.py). Each side starts a session (``POST /v1/uploads`` with the declared size, 12
chunks of 1 MiB) through one of its own peers and sends the first chunks; then the hosts
are split {h1,h2} | {h3,h4,h5} with the harness's :meth:`FaultNet.partition` (silent drop)
and each side sends the rest of its chunks but the last through its own peers only: a batch
right after the cut (while the failure detector still counts the other side alive) and a
batch once each side's view has split. The last chunk is held back until after the heal,
so every session has at least one chunk missing there. Chunk PUTs may be refused during
the partition (``503 insufficient_replicas`` on the minority side, a broken-off request);
the test records which were acknowledged (``200``). Then the partition heals and the test
waits for every view to re-merge.

Afterwards, for each session:

- ``GET /v1/uploads/{id}/missing-chunks`` through every peer names none of the chunks
  acknowledged during (or before) the partition, and every peer names the same set
  (polled until a deadline: hints and anti-entropy may still be moving records);
- that set holds the held-back chunk and otherwise only chunks whose PUT was refused;
- ``POST .../complete`` then answers ``409 incomplete_upload`` with exactly that set in
  ``missing``;
- after re-sending what is missing (through any peer, never an acknowledged chunk) the
  session completes (a second complete returns the same version), the object reads back
  byte-identical (and with the right SHA-256) from every peer, and its entry and every
  chunk are held by exactly their N replicas (:func:`wait_replicated`).

Only plain aiohttp with the admin token (``FaultNet.headers``); every wait is a bounded
loop with a deadline. Run: ``sudo python -m pytest tests/faults -k resumable -v``
(skipped without root / iproute2, like every fault test).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.faults.checks import Ledger, wait_replicated
from tests.faults.membership import wait_view
from tests.faults.netns import FaultNet
from tests.faults.workload import payload

pytestmark = pytest.mark.faults

BUCKET = "resumable"
MiB = 1024 * 1024
CHUNK = 1 * MiB
CHUNKS = 12
SIZE = CHUNKS * CHUNK  # declared: the server names missing chunks
BEFORE = range(0, 3)  # sent before the cut
RIGHT_AFTER = range(3, 7)  # sent right after the cut (detector still undecided)
AFTER_SPLIT = range(7, CHUNKS - 1)  # sent once each side's view has split
HELD_BACK = CHUNKS - 1  # never sent before the heal: complete must name it missing
IN_FLIGHT = 2
REQUEST_TIMEOUT_S = 60.0  # a chunk PUT may wait on several 10 s peer RPCs in a partition
SPLIT_VIEW_S = 30.0
MERGE_VIEW_S = 60.0
MISSING_DEADLINE_S = 60.0
COMPLETE_DEADLINE_S = 90.0
READ_DEADLINE_S = 45.0
REPLICATION_DEADLINE_S = 90.0
SIDES = {"a": [1, 2], "b": [3, 4, 5]}  # minority | majority


def test_partition_during_resumable_uploads_from_both_sides(net: FaultNet) -> None:
    net.run(_scenario(net), timeout_s=420)


# ---------------------------------------------------------------------- HTTP
class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, doc: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.doc = status, code, doc


class Api:
    """The public upload and object routes over plain aiohttp, as the admin."""

    def __init__(self, net: FaultNet) -> None:
        self.net = net
        self.session = aiohttp.ClientSession(
            headers=net.headers,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S, sock_connect=10),
        )

    async def close(self) -> None:
        await self.session.close()

    async def call(self, host: int, method: str, path: str, **kwargs: Any) -> tuple[int, bytes]:
        """(status, body) of a 2xx answer; HttpError otherwise (status 0: no answer)."""
        url = self.net.host(host).url + path
        try:
            async with self.session.request(method, url, **kwargs) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise HttpError(0, "unreachable", f"{type(exc).__name__}: {exc}", {}) from exc
        if status >= 400:
            try:
                err = json.loads(body).get("error", {})
            except ValueError:
                err = {}
            raise HttpError(status, str(err.get("code", "?")), str(err.get("message", "")), err)
        return status, body

    async def json(self, host: int, method: str, path: str, **kwargs: Any) -> Any:
        return json.loads((await self.call(host, method, path, **kwargs))[1])

    async def init(self, host: int, key: str, data: bytes) -> dict[str, Any]:
        doc = {
            "bucket": BUCKET,
            "key": key,
            "size": len(data),
            "chunk_size": CHUNK,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        return await self.json(host, "POST", "/v1/uploads", json=doc)

    async def put_chunk(self, host: int, upload_id: str, index: int, data: bytes) -> None:
        part = data[index * CHUNK : (index + 1) * CHUNK]
        doc = await self.json(host, "PUT", f"/v1/uploads/{upload_id}/chunks/{index}", data=part)
        assert doc["index"] == index and doc["size"] == len(part), doc
        assert doc["sha256"] == hashlib.sha256(part).hexdigest(), doc

    async def missing(self, host: int, upload_id: str) -> list[int]:
        doc = await self.json(host, "GET", f"/v1/uploads/{upload_id}/missing-chunks")
        return sorted(int(i) for i in doc["missing"])

    async def complete(self, host: int, upload_id: str) -> dict[str, Any]:
        return await self.json(host, "POST", f"/v1/uploads/{upload_id}/complete")

    async def get_object(self, host: int, key: str) -> bytes:
        path = f"/v1/objects/{quote(BUCKET, safe='')}/{quote(key)}"
        return (await self.call(host, "GET", path))[1]


# ---------------------------------------------------------------------- one side
@dataclass
class Upload:
    """One side's session and what happened to each of its chunk PUTs."""

    side: str
    hosts: list[int]
    key: str
    data: bytes
    upload_id: str = ""
    acked: dict[int, str] = field(default_factory=dict)  # index -> phase
    refused: dict[int, list[str]] = field(default_factory=dict)  # index -> errors
    resent: list[int] = field(default_factory=list)
    first_missing: dict[int, list[int]] = field(default_factory=dict)  # host -> missing
    transient: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    async def send(self, api: Api, indices: range, phase: str) -> None:
        """Each chunk once, through this side's hosts in turn, IN_FLIGHT at once."""
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int) -> None:
            host = self.hosts[i % len(self.hosts)]
            async with slots:
                started = time.monotonic()
                try:
                    await api.put_chunk(host, self.upload_id, i, self.data)
                except HttpError as exc:
                    took = time.monotonic() - started
                    self.refused.setdefault(i, []).append(
                        f"{phase} via h{host}: {exc.status} {exc.code} after {took:.1f} s"
                    )
                else:
                    self.acked[i] = phase

        await asyncio.gather(*(one(i) for i in indices))

    def summary(self) -> str:
        return (
            f"side {self.side} {self.hosts} upload {self.upload_id[:8]}: "
            f"acked {sorted(self.acked)} ({self.acked}), refused {self.refused}"
        )


# ---------------------------------------------------------------------- checks
async def wait_missing_agreed(net: FaultNet, api: Api, up: Upload) -> list[int]:
    """Poll ``missing-chunks`` through every peer until every peer answers, none names an
    acknowledged chunk, and all name the same set; returns that set."""
    deadline = time.monotonic() + MISSING_DEADLINE_S
    last: dict[int, Any] = {}
    while True:
        for i in net.indices:
            try:
                last[i] = await api.missing(i, up.upload_id)
            except HttpError as exc:
                last[i] = f"{exc.status} {exc.code}"
                continue
            up.first_missing.setdefault(i, last[i])
            lost = sorted(set(last[i]) & set(up.acked))
            if lost:
                up.transient.append(f"h{i} named acked chunk(s) {lost} missing")
        answers = [v for v in last.values() if isinstance(v, list)]
        good = len(answers) == len(net.indices) and all(not set(v) & set(up.acked) for v in answers)
        if good and all(v == answers[0] for v in answers):
            return answers[0]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{up.summary()}\nmissing-chunks per peer after {MISSING_DEADLINE_S:.0f} s: "
                f"{ {f'h{i}': v for i, v in last.items()} } -- an acknowledged chunk is "
                f"reported missing, or the peers disagree; seen on the way: "
                f"{up.transient[:10]}\n{net.logs(lines=15)}"
            )
        await asyncio.sleep(0.5)


async def complete_session(net: FaultNet, api: Api, up: Upload, missing: list[int]) -> dict:
    """Complete (first without re-sending: must be 409 with exactly ``missing`` if any),
    re-send what is missing through every peer in turn, complete; bounded by a deadline."""
    hosts = net.indices
    try:
        info = await api.complete(hosts[0], up.upload_id)
    except HttpError as exc:
        if not missing:
            raise AssertionError(
                f"{up.summary()}: nothing missing, but complete answered {exc} {exc.doc}"
            ) from exc
        assert exc.status == 409 and exc.code == "incomplete_upload", (up.summary(), exc, exc.doc)
        reported = sorted(int(i) for i in exc.doc.get("missing", []))
        assert reported == missing, (
            f"{up.summary()}: complete reported missing {reported}, missing-chunks said {missing}"
        )
    else:
        assert not missing, f"{up.summary()}: completed with chunks {missing} missing: {info}"
        return info
    deadline = time.monotonic() + COMPLETE_DEADLINE_S
    attempt = 0
    errors: list[str] = []
    while True:
        attempt += 1
        host = hosts[attempt % len(hosts)]
        try:
            for i in missing:
                await api.put_chunk(host, up.upload_id, i, up.data)
                up.resent.append(i)
            return await api.complete(host, up.upload_id)
        except HttpError as exc:
            errors.append(f"h{host}: {exc}")
            if exc.code == "incomplete_upload":
                missing = sorted(int(i) for i in exc.doc.get("missing", []))
                lost = sorted(set(missing) & set(up.acked))
                assert not lost, f"{up.summary()}: complete lost acked chunk(s) {lost}"
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{up.summary()}: not completed after {COMPLETE_DEADLINE_S:.0f} s; "
                f"still missing {missing}; errors {errors[-10:]}\n{net.logs(lines=15)}"
            )
        await asyncio.sleep(0.5)


async def wait_readable(net: FaultNet, api: Api, up: Upload) -> None:
    """The object reads back byte-identical from every peer (polled; wrong bytes fail)."""
    deadline = time.monotonic() + READ_DEADLINE_S
    waiting = list(net.indices)
    last: dict[int, str] = {}
    while waiting:
        i = waiting[0]
        try:
            got = await api.get_object(i, up.key)
        except HttpError as exc:
            last[i] = str(exc)
        else:
            if got == up.data:
                waiting.pop(0)
                continue
            raise AssertionError(
                f"{up.summary()}: h{i} returned {len(got)} bytes with SHA-256 "
                f"{hashlib.sha256(got).hexdigest()}, expected {len(up.data)} bytes {up.sha256}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{up.summary()}: {BUCKET}/{up.key} not readable from "
                f"{[f'h{j}' for j in waiting]} after {READ_DEADLINE_S:.0f} s: {last}"
            )
        await asyncio.sleep(0.5)


# ---------------------------------------------------------------------- scenario
async def _scenario(net: FaultNet) -> None:
    api = Api(net)
    ledger = Ledger()
    try:
        ups = [
            Upload(side, hosts, f"big-{side}", payload(9100 + n, SIZE))
            for n, (side, hosts) in enumerate(SIDES.items())
        ]
        for up in ups:  # through one of the side's own peers (the last: h2, h5)
            doc = await api.init(up.hosts[-1], up.key, up.data)
            assert doc["total_chunks"] == CHUNKS and doc["chunk_size"] == CHUNK, doc
            up.upload_id = doc["upload_id"]
        await asyncio.gather(*(up.send(api, BEFORE, "before") for up in ups))
        assert all(set(BEFORE) <= set(up.acked) for up in ups), [u.summary() for u in ups]

        net.partition(SIDES["a"], SIDES["b"])
        cut_at = time.monotonic()
        try:
            await asyncio.gather(*(up.send(api, RIGHT_AFTER, "right-after") for up in ups))
            await asyncio.gather(
                *(wait_view(net, hosts, timeout_s=SPLIT_VIEW_S) for hosts in SIDES.values())
            )
            split_s = time.monotonic() - cut_at
            await asyncio.gather(*(up.send(api, AFTER_SPLIT, "split") for up in ups))
        finally:
            net.heal()
        partitioned_s = time.monotonic() - cut_at
        for up in ups:
            print(f"resumable partition: {up.summary()}")
        print(
            f"resumable partition: views split {split_s:.1f} s after the cut, "
            f"healed at {partitioned_s:.1f} s"
        )

        await wait_view(net, net.indices, timeout_s=MERGE_VIEW_S)
        merged_at = time.monotonic()
        for up in ups:
            missing = await wait_missing_agreed(net, api, up)
            agreed_s = time.monotonic() - merged_at
            never = sorted(set(range(CHUNKS)) - set(up.acked))
            assert HELD_BACK in missing and set(missing) <= set(never), (up.summary(), missing)
            info = await complete_session(net, api, up, missing)
            assert not set(up.resent) & set(up.acked), (up.summary(), up.resent)
            ledger.ack(BUCKET, up.key, up.data, info)
            assert info["size"] == SIZE and info["sha256"] == up.sha256, (up.summary(), info)
            again = await api.complete(net.indices[-1], up.upload_id)  # the same object
            assert again["version"] == info["version"], (info, again)
            print(
                f"resumable partition: side {up.side}: missing after heal {missing}, agreed "
                f"by every peer {agreed_s:.1f} s after the views merged (first answers "
                f"{up.first_missing}; transient {up.transient}); "
                f"re-sent {up.resent}; completed version {info['version']}"
            )
        for up in ups:
            await wait_readable(net, api, up)
        report = await wait_replicated(net, ledger, timeout_s=REPLICATION_DEADLINE_S)
        print(
            f"resumable partition: {report.entries} objects and {report.chunks} chunks on "
            "exactly their N replicas"
        )
        # the session shows completed through every peer
        for up in ups:
            for i in net.indices:
                doc = await api.json(i, "GET", f"/v1/uploads/{up.upload_id}")
                assert doc["state"] == "completed", (f"h{i}", doc)
    finally:
        await api.close()
