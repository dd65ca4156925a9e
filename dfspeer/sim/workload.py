"""The simulated clients: puts, overwrites, deletes, versioned deletes and ranged reads
through random ready peers (up and joined: where a load balancer probing ``/ready`` sends
clients), with a per-key history of what was acknowledged.

Operations on one key are serialized (one client at a time), operations on different keys
run concurrently. A fresh put writes unique bytes (its op number is at the head, so
:func:`label` names the put whose bytes a read saw). :data:`REUSE` of the puts reuse
content instead, so that chunks (content-addressed blocks) are shared and deduplicated
(:mod:`dfspeer.objects.dedup` sends a block only to replicas that do not hold it): the
bytes of an earlier put, usually under another key (``copy``); an overwrite of a key with
its own last acknowledged bytes (``same``); or a new object that shares every chunk but
the first with an earlier put (``share``: a new head in the first chunk). And
:data:`REPUT` of the deletes of a key whose last acknowledged put had blocks are followed,
after a pause of up to ``reupload_within_s`` (a few lifecycle periods: long enough for
the deleted version's references to be released and its blocks' counts to reach zero),
by a put of the deleted bytes again under a random key (``reput``), so a digest is
referenced again around the time its count drops to zero -- the windows the block GC's
grace (``block_gc_grace_s``) guards. The checks see shared blocks like any other: a live
version's every chunk must be on its N replicas, whichever versions share it.

:meth:`History.allowed` is the set of states a key may end in: the state
after its last acknowledged mutation, or after any later unacknowledged one (a write that
failed may still have landed somewhere and won), or -- after a versioned delete of the
current version -- an older put of the key (deleting a version by id uncovers the one
before it, as in S3, when its background abort had not landed). A ranged read must return
a slice of some put of its key and, while ``fresh_reads()`` is true and no wipe came after
the key's last acknowledged mutation was issued, a slice of one of the allowed states of
that moment. (Two puts of one key may write the same bytes, ``same`` or ``copy``: a read
cannot tell them apart, and needs not.)

When that is exact (what the harness passes as ``fresh_reads``): while no more than N
peers have ever run. Every peer's view is built from its own gossip core, so two
coordinators may disagree about the ring for a while; that does not matter then. Each
view's ring has at most N members, so every ring member is a replica of every partition
and no write is acknowledged by a stand-in's hint (stand-ins come from beyond the N
replicas); quorums are strict (a coordinator whose view has fewer than W or R replicas
refuses the operation); so an acknowledged write is on W distinct peers and a read merges
R distinct peers, all drawn from the same at most N peers, and R + W > N makes the two
meet, whatever each coordinator's view. Once a peer has joined, there are more than N,
two views can give a partition disjoint replica sets, and a stand-in's hint can stand for
a replica: freshness is not promised then, and only "bytes some put wrote" is checked.
A wipe is the other exception: the wiped peer forgets the writes it acknowledged, so a
read quorum may meet the write quorum only there until anti-entropy refills it. Writes
issued after the wipe (:attr:`Workload.wipes` counts them) are on W intact peers, so a
key whose last acknowledged mutation came after it is checked again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dfspeer.errors import DfsError, NoSuchKey, NoSuchVersion
from dfspeer.sim.peer import SimPeer

BUCKET = "sim"
CHECK_AFTER_WRITE = 0.5
"""Probability that an acknowledged write is followed at once by a whole read of its key
through a random ready peer (a "check": with ``fresh_reads`` it must see the write)."""
ABSENT = b"<absent>"
"""The state of a key with no live version."""
REUSE = 0.4
"""Probability that a put reuses content (``copy``, ``same`` or ``share``, a third each;
module docstring) instead of writing fresh bytes."""
REPUT = 0.75
"""Probability that a delete of a key whose last acknowledged put had blocks is followed
by a ``reput`` of those bytes (module docstring)."""


@dataclass
class Op:
    """One client operation and its outcome (``ok``: acknowledged)."""

    index: int
    kind: str  # put | delete | vdelete | read | check (a whole read right after a write)
    key: str
    peer: str
    data: bytes = b""
    target_version: str = ""
    version: str = ""
    ok: bool = False
    error: str = ""
    wipes: int = 0
    """Wipes before this op was issued (:attr:`Workload.wipes`)."""
    reuse: str = ""
    """How a put reuses content (``copy op-3``, ``same``, ``share op-7``, ``reput op-9``);
    empty for fresh bytes."""
    reput: bytes = b""
    """A delete's: the bytes its client puts again after a pause (empty: none)."""


@dataclass
class History:
    """Every op, by key, in issue order."""

    by_key: dict[str, list[Op]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def add(self, op: Op) -> None:
        self.by_key.setdefault(op.key, []).append(op)

    def last_acked(self, key: str) -> Op | None:
        """The last acknowledged mutation (put, delete, vdelete) of ``key``, if any."""
        for op in reversed(self.by_key.get(key, [])):
            if op.ok and op.kind in ("put", "delete", "vdelete"):
                return op
        return None

    def last_acked_put(self, key: str) -> Op | None:
        for op in reversed(self.by_key.get(key, [])):
            if op.ok and op.kind in ("put", "delete", "vdelete"):
                return op if op.kind == "put" else None
        return None

    def allowed(self, key: str) -> set[bytes]:
        """The states ``key`` may be in once the cluster has healed (module docstring)."""
        ops = [o for o in self.by_key.get(key, []) if o.kind not in ("read", "check")]
        last = max((i for i, o in enumerate(ops) if o.ok), default=-1)
        states = {ABSENT} if last < 0 else {_state(ops[last])}
        if last >= 0 and ops[last].kind == "vdelete":
            states |= {o.data for o in ops[:last] if o.kind == "put"}
        for o in ops[last + 1 :]:
            states.add(_state(o))
            if o.kind == "vdelete":
                states |= {p.data for p in ops if p.kind == "put"}
        return states

    def ever_written(self, key: str) -> set[bytes]:
        return {o.data for o in self.by_key.get(key, []) if o.kind == "put"}


def label(state: bytes) -> str:
    """``absent`` or the op that wrote ``state`` (``op-12``)."""
    return "absent" if state == ABSENT else state.split(b":", 1)[0].decode("ascii", "replace")


def _describe(got: bytes, written: set[bytes], start: int, end: int) -> str:
    if got == ABSENT:
        return "absent"
    source = next((label(w) for w in sorted(written) if w[start:end] == got), "?")
    return f"{len(got)} bytes of {source}"


def _state(op: Op) -> bytes:
    return op.data if op.kind == "put" else ABSENT


def payload(index: int, rng: random.Random, chunk_bytes: int) -> bytes:
    """Unique bytes for op ``index``: inline-sized or 1..3 chunks, seeded."""
    size = rng.choice((rng.randint(1, 4000), rng.randint(chunk_bytes // 2, 3 * chunk_bytes)))
    head = f"op-{index}:".encode()
    return (head + rng.randbytes(max(0, size - len(head))))[:size] if size > len(head) else head


def sharing(index: int, source: bytes) -> bytes:
    """The bytes of ``source`` with op ``index``'s head written over its first bytes: as
    long, the first chunk differs (two op heads never match), every later chunk is
    ``source``'s (the same blocks)."""
    head = f"op-{index}:".encode()
    return head + source[len(head) :]


async def read_all(peer: SimPeer, key: str, start: int = 0, end: int | None = None) -> bytes:
    """The bytes ``[start, end)`` of ``key`` through ``peer``; ABSENT for no such key."""
    try:
        _, stream = await peer.objects.get_object(BUCKET, key, start=start, end=end)
    except NoSuchKey:
        return ABSENT
    return b"".join([part async for part in stream])


class Workload:
    """``ops`` operations by ``clients`` concurrent clients over ``keys`` keys."""

    def __init__(
        self,
        rng: random.Random,
        peers: Callable[[], Sequence[SimPeer]],
        log: Callable[[str], None],
        *,
        ops: int,
        keys: int,
        clients: int = 4,
        chunk_bytes: int = 64 * 1024,
        think_s: float = 0.25,
        reupload_within_s: float = 10.0,
        fresh_reads: Callable[[], bool] = lambda: True,
    ) -> None:
        self.rng = rng
        self.peers = peers
        self.log = log
        self.ops = ops
        self.keys = [f"k{i}" for i in range(keys)]
        self.clients = clients
        self.chunk_bytes = chunk_bytes
        self.think_s = think_s
        self.reupload_within_s = reupload_within_s
        """Longest pause between a delete and its ``reput`` (module docstring)."""
        self.fresh_reads = fresh_reads
        """Whether a read must see the last acknowledged write now (module docstring:
        no more than N peers ever ran, so every read quorum meets every write quorum)."""
        self.history = History()
        self.wipes = 0
        """Peers wiped so far (the harness counts one as the wiped peer goes down)."""
        self._locks = {k: asyncio.Lock() for k in self.keys}
        self._next = 0
        self._checks = 0
        self._contents: list[bytes] = []
        """Distinct contents of the puts issued so far that have blocks (not inline)."""
        self.acked = 0
        self.reused = 0
        """Puts issued with reused content (copy, same, share, reput)."""
        self.reputs = 0
        """Of those, reputs of a deleted key's bytes."""

    async def run(self) -> None:
        await asyncio.gather(*(self._client() for _ in range(self.clients)))

    async def _client(self) -> None:
        while self._next < self.ops:
            index = self._next
            self._next += 1
            await asyncio.sleep(self.rng.expovariate(1 / self.think_s))
            key = self.rng.choice(self.keys)
            async with self._locks[key]:
                done = await self._one(index, key)
            if done is None or not done.reput or self._next >= self.ops:
                continue
            # put the deleted bytes again, under a random key, once the references of
            # the deleted version may have been released (their counts at zero)
            index = self._next
            self._next += 1
            await asyncio.sleep(self.rng.uniform(0.0, self.reupload_within_s))
            key = self.rng.choice(self.keys)
            async with self._locks[key]:
                await self._one(index, key, reput=done.reput)

    def _put(self, index: int, key: str, peer: SimPeer, target: Op | None) -> Op:
        """A put of fresh bytes, or (:data:`REUSE`) of reused content."""
        data, reuse = b"", ""
        if self.rng.random() < REUSE and self._contents:
            how = self.rng.random()
            source = self.rng.choice(self._contents)
            if how < 1 / 3:
                data, reuse = source, f"copy {label(source)}"
            elif how < 2 / 3 and target is not None:
                data, reuse = target.data, "same"
            else:
                data, reuse = sharing(index, source), f"share {label(source)}"
        if not reuse:
            data = payload(index, self.rng, self.chunk_bytes)
        return Op(index, "put", key, peer.peer_id, data, reuse=reuse)

    def _choose(self, index: int, key: str, peer: SimPeer) -> Op:
        roll = self.rng.random()
        target = self.history.last_acked_put(key)
        if roll < 0.55:
            return self._put(index, key, peer, target)
        if roll < 0.7:
            op = Op(index, "delete", key, peer.peer_id)
            chunked = target is not None and len(target.data) >= self.chunk_bytes // 2
            if target is not None and chunked and self.rng.random() < REPUT:
                op.reput = target.data
            return op
        if roll < 0.8 and target is not None:
            return Op(index, "vdelete", key, peer.peer_id, target_version=target.version)
        return Op(index, "read", key, peer.peer_id)

    async def _one(self, index: int, key: str, *, reput: bytes = b"") -> Op | None:
        """Issue op ``index`` on ``key`` (a put of ``reput`` if given, else a drawn op)
        through a random ready peer; returns it (None: no peer was ready)."""
        live = [p for p in self.peers() if p.ready]
        if not live:
            return None
        peer = self.rng.choice(live)
        if reput:
            op = Op(index, "put", key, peer.peer_id, reput, reuse=f"reput {label(reput)}")
        else:
            op = self._choose(index, key, peer)
        if op.kind == "put":
            self.reused += bool(op.reuse)
            self.reputs += bool(reput)
            if len(op.data) >= self.chunk_bytes // 2 and op.data not in self._contents:
                self._contents.append(op.data)
        await self._issue(peer, op)
        if op.ok and op.kind != "read" and self.rng.random() < CHECK_AFTER_WRITE:
            live = [p for p in self.peers() if p.ready]
            if live:
                other = self.rng.choice(live)
                self._checks += 1
                await self._issue(other, Op(self.ops + self._checks, "check", key, other.peer_id))
        return op

    async def _issue(self, peer: SimPeer, op: Op) -> None:
        index, key = op.index, op.key
        op.wipes = self.wipes
        self.history.add(op)
        task = peer.run(self._apply(peer, op))
        await asyncio.wait([task])
        if task.cancelled():
            op.ok, op.error = False, "coordinator crashed"
        elif (exc := task.exception()) is not None:
            op.ok = False
            op.error = f"{type(exc).__name__}: {exc}"[:120]
            if not isinstance(exc, DfsError):
                self.history.violations.append(f"op {index} raised {op.error}")
        self.acked += op.ok and op.kind not in ("read", "check")
        outcome = "ok" if op.ok else f"failed ({op.error})"
        how = f" ({op.reuse})" if op.reuse else ""
        self.log(f"op {index} {op.kind}{how} {key} via {op.peer} {op.version} -> {outcome}")

    async def _apply(self, peer: SimPeer, op: Op) -> None:
        objects = peer.objects
        if op.kind == "put":
            info = await objects.put_object(BUCKET, op.key, op.data)
            op.version = info.version
        elif op.kind == "delete":
            op.version = await objects.delete_object(BUCKET, op.key) or ""
        elif op.kind == "vdelete":
            try:
                await objects.delete_object(BUCKET, op.key, version=op.target_version)
            except NoSuchVersion:
                op.error = "no such version (already gone)"
            op.version = op.target_version
        else:
            await self._read(peer, op)
        op.ok = True

    async def _read(self, peer: SimPeer, op: Op) -> None:
        start, end = 0, 1 << 40  # a check reads the whole object
        if op.kind == "read":
            start = self.rng.randint(0, 2 * self.chunk_bytes)
            end = start + self.rng.randint(1, 2 * self.chunk_bytes)
        got = await read_all(peer, op.key, start, end)
        span = "whole" if op.kind == "check" else f"[{start}, {end})"
        where = f"op {op.index}: {op.kind} {span} of {op.key} via {peer.peer_id}"
        written = self.history.ever_written(op.key)
        if got != ABSENT and not any(data[start:end] == got for data in written):
            self.history.violations.append(f"{where} returned bytes that no put wrote")
            return
        last = self.history.last_acked(op.key)
        if not self.fresh_reads() or (last is not None and last.wipes < self.wipes):
            return
        allowed = self.history.allowed(op.key)
        if not any(got == (s if s == ABSENT else s[start:end]) for s in allowed):
            self.history.violations.append(
                f"{where} returned {_describe(got, written, start, end)}: not the last "
                f"acknowledged write (allowed {sorted(label(a) for a in allowed)})"
            )
