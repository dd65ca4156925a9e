"""Merkle summaries of dfspeer.blockstore and their anti-entropy diff.

The reference model below rebuilds the canonical trie from scratch, from the documented
layout alone (dfspeer/blockstore/merkle.py), and the tests compare the incrementally
maintained LMDB sub-databases with it byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import cbor2
import lmdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfspeer.blockstore import (
    BlockStore,
    DeleteBlock,
    PutBlock,
    StoreFull,
    TableDelete,
    TablePut,
    TableUpdate,
    WriteOp,
)
from dfspeer.blockstore.merkle_diff import diff, serve
from dfspeer.blockstore.summary import MerkleReader

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]
HB = 16  # bytes of every stored hash (BLAKE2b-128)
EMPTY = bytes(HB)
Leaves = dict[int, dict[bytes, bytes]]  # partition -> key -> value hash


# ---------------------------------------------------------------------- reference model
def b2(data: bytes, size: int = HB) -> bytes:
    return hashlib.blake2b(data, digest_size=size).digest()


def path_of(key: bytes) -> bytes:
    return bytes(int(c, 16) for c in b2(key, 16).hex())


def reference(leaves: Leaves) -> dict[bytes, bytes]:
    """Every node (LMDB key -> value) of the canonical tries of ``leaves``."""
    nodes: dict[bytes, bytes] = {}

    def build(node_key: bytes, depth: int, entries: list[tuple[bytes, bytes]]) -> bytes:
        if len(entries) <= 8 or depth >= 32:
            raw = b"L" + b"".join(len(k).to_bytes(2, "big") + k + v for k, v in entries)
        else:
            groups: dict[int, list[tuple[bytes, bytes]]] = {}
            for entry in entries:
                groups.setdefault(path_of(entry[0])[depth], []).append(entry)
            children = {n: build(node_key + bytes([n]), depth + 1, g) for n, g in groups.items()}
            bitmap = sum(1 << n for n in children)
            hashes = b"".join(children[n] for n in sorted(children))
            raw = b"I" + len(entries).to_bytes(8, "big") + bitmap.to_bytes(2, "big") + hashes
        nodes[node_key] = raw
        return b2(raw)

    for partition, kv in leaves.items():
        if kv:
            build(partition.to_bytes(2, "big"), 0, sorted(kv.items()))
    return nodes


def dump(path: Path, sub_db: bytes) -> dict[bytes, bytes]:
    """Contents of a sub-db of a closed store."""
    env = lmdb.open(str(path), max_dbs=128, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            try:
                db = env.open_db(sub_db, txn=txn, create=False)
            except lmdb.NotFoundError:
                return {}
            return {bytes(k): bytes(v) for k, v in txn.cursor(db=db)}
    finally:
        env.close()


def vh(value: Any) -> bytes:
    return b2(cbor2.dumps(value, canonical=True))


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def table_leaves(model: dict[bytes, Any], part: Callable[[bytes], int]) -> Leaves:
    out: Leaves = {}
    for key, value in model.items():
        out.setdefault(part(key), {})[key] = vh(value)
    return out


def block_leaves(digests: set[bytes], part: Callable[[bytes], int]) -> Leaves:
    out: Leaves = {}
    for d in digests:
        out.setdefault(part(d), {})[d] = d[:HB]
    return out


def third(key: bytes) -> int:
    return key[0] % 3


def _set_v(v: bytes, _current: Any) -> Any:
    return {"v": v}


def half(digest: bytes) -> int:
    return digest[0] % 2


def hashed3(key: bytes) -> int:
    return b2(key, 1)[0] % 3


def zero(_key: bytes) -> int:
    return 0


def bump(v: Any) -> Any:
    """Pure update callback: count up to 3, then delete."""
    new = (v or 0) + 1
    return None if new > 3 else new


async def store_pair(tmp: Path, n: int, part: Callable[[bytes], int]) -> list[BlockStore]:
    stores = [BlockStore(tmp / f"s{i}", map_size_bytes=256 * MiB, durable=False) for i in "ab"]
    for s in stores:
        s.table("t", partition_key_of=part)
        await s.write_batch([TablePut("t", b"key-%d" % i, {"i": i}) for i in range(n)])
    return stores


def exchange_with(remote: BlockStore) -> Callable[[bytes], Awaitable[bytes]]:
    async def exchange(request: bytes) -> bytes:
        return serve(remote.merkle, request)

    return exchange


# ---------------------------------------------------------------------- incremental == rebuild
KEYS = [bytes([97 + i % 5]) + b"%d" % i for i in range(40)]  # by key[0] % 4: 16, 8, 8, 8
BLOBS = [b"blob %d" % i for i in range(24)]
op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.integers(0, 3)),
    st.tuples(st.just("del"), st.sampled_from(KEYS), st.just(0)),
    st.tuples(st.just("bump"), st.sampled_from(KEYS), st.just(0)),
    st.tuples(st.just("bput"), st.integers(0, 23), st.just(0)),
    st.tuples(st.just("bdel"), st.integers(0, 23), st.just(0)),
)
initial = st.lists(st.sampled_from(KEYS), unique=True, min_size=24).map(
    lambda keys: [("batch", [("put", k, 0) for k in keys])]
)
groups = st.lists(
    st.tuples(st.sampled_from(["seq", "batch", "gather"]), st.lists(op, max_size=40)),
    max_size=6,
)


def quarter(key: bytes) -> int:
    return key[0] % 4


def _as_write_op(o: tuple[str, Any, int]) -> WriteOp:
    kind, k, v = o
    if kind == "put":
        return TablePut("t", k, v)
    if kind == "del":
        return TableDelete("t", k)
    if kind == "bump":
        return TableUpdate("t", k, bump)
    if kind == "bput":
        return PutBlock(BLOBS[k])
    return DeleteBlock(sha(BLOBS[k]))


async def _single(s: BlockStore, o: tuple[str, Any, int]) -> None:
    kind, k, v = o
    t = s.table("t")
    if kind == "put":
        await t.put(k, v)
    elif kind == "del":
        await t.delete(k)
    elif kind == "bump":
        await t.update(k, bump)
    elif kind == "bput":
        await s.put(BLOBS[k])
    else:
        await s.delete(sha(BLOBS[k]))


def _model_apply(model: dict[bytes, Any], blocks: set[bytes], o: tuple[str, Any, int]) -> None:
    kind, k, v = o
    if kind == "put":
        model[k] = v
    elif kind == "del":
        model.pop(k, None)
    elif kind == "bump":
        new = bump(model.get(k))
        if new is None:
            model.pop(k, None)
        else:
            model[k] = new
    elif kind == "bput":
        blocks.add(sha(BLOBS[k]))
    else:
        blocks.discard(sha(BLOBS[k]))


async def _run_groups(s: BlockStore, plan: list[tuple[str, list[tuple[str, Any, int]]]]) -> None:
    for mode, ops in plan:
        if mode == "batch":
            await s.write_batch([_as_write_op(o) for o in ops])
        elif mode == "gather":  # group commit: distinct keys only, order-independent
            firsts: dict[Any, tuple[str, Any, int]] = {}
            for o in ops:
                firsts.setdefault(o[1], o)
            distinct = list(firsts.values())
            await asyncio.gather(*(_single(s, o) for o in distinct))
            ops[:] = distinct
        else:
            for o in ops:
                await _single(s, o)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=initial, then=groups)
def test_incremental_summary_equals_rebuild(first: list[Any], then: list[Any]) -> None:
    plan: list[tuple[str, list[Any]]] = first + then
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bs"

        async def scenario() -> None:
            async with BlockStore(path, map_size_bytes=64 * MiB, partition_of=half) as s:
                s.table("t", partition_key_of=quarter)
                await _run_groups(s, plan)

        asyncio.run(scenario())
        model: dict[bytes, Any] = {}
        blocks: set[bytes] = set()
        for _mode, ops in plan:
            for o in ops:
                _model_apply(model, blocks, o)
        assert dump(path, b"merkle:table:t") == reference(table_leaves(model, quarter))
        assert dump(path, b"merkle:blocks") == reference(block_leaves(blocks, half))


async def test_deep_partition_grows_and_shrinks(tmp_path: Path) -> None:
    """2000 keys in one partition (depth 3-4), then deleted in random order down to 0:
    splits, collapses and empty subtrees removed; equal to the reference at each stage."""
    path = tmp_path / "bs"
    keys = [b"k%d" % i for i in range(2000)]
    async with BlockStore(path, durable=False) as s:
        await s.write_batch([TablePut("t", k, 1) for k in keys[:1000]])
        for k in keys[1000:1300]:
            await s.table("t").put(k, 1)
        await s.write_batch([TablePut("t", k, 1) for k in keys[1300:]])
    assert dump(path, b"merkle:table:t") == reference({0: {k: vh(1) for k in keys}})
    order = keys[:]
    random.Random(5).shuffle(order)
    stages = [(1990, "batch"), (1900, "single"), (9, "batch"), (8, "single"), (0, "batch")]
    alive = set(keys)
    for keep, how in stages:
        async with BlockStore(path, durable=False) as s:
            drop = [k for k in order if k in alive][: len(alive) - keep]
            if how == "batch":
                await s.write_batch([TableDelete("t", k) for k in drop])
            else:
                for k in drop:
                    assert await s.table("t").delete(k)
            alive -= set(drop)
            node = s.merkle("t").node(0)
            assert node.count == len(alive)
            assert (node.leaves is not None) == (len(alive) <= 8)
        nodes = dump(path, b"merkle:table:t")
        assert nodes == reference({0: {k: vh(1) for k in alive}})
    assert nodes == {}


async def test_batches_crossing_the_bucket_size(tmp_path: Path) -> None:
    """Mixed batches that move a partition across 8 <-> 9 keys by one net key."""
    path = tmp_path / "bs"
    model = {b"k%d" % i: 0 for i in range(9)}
    async with BlockStore(path, durable=False) as s:
        r = s.merkle("t")
        await s.write_batch([TablePut("t", k, v) for k, v in model.items()])
        assert r.node(0).children is not None
        await s.write_batch([TableDelete("t", b"k0"), TablePut("t", b"k1", 5)])  # 9 -> 8
        del model[b"k0"]
        model[b"k1"] = 5
        assert r.node(0).leaves == sorted((k, vh(v)) for k, v in model.items())
        await s.write_batch([TablePut("t", b"k0", 1), TablePut("t", b"k2", 6)])  # 8 -> 9
        model.update({b"k0": 1, b"k2": 6})
        assert r.node(0).children is not None
        ops: list[WriteOp] = [TableDelete("t", b"k0"), TableDelete("t", b"k1")]
        await s.write_batch([*ops, TablePut("t", b"new", 1)])  # 9 -> 8, net -1 from three
        for k in (b"k0", b"k1"):
            del model[k]
        model[b"new"] = 1
        assert r.node(0).leaves is not None and r.node(0).count == 8
    assert dump(path, b"merkle:table:t") == reference(table_leaves(model, zero))


async def test_random_soak_against_reference(tmp_path: Path) -> None:
    """Seeded random batches and single writes that grow and shrink one partition across
    the split/collapse thresholds at several depths; the root hash matches the reference
    after every step, and the final trie matches node for node."""
    rng = random.Random(7)
    keys = [b"s%d" % i for i in range(3000)]
    model: dict[bytes, int] = {}
    path = tmp_path / "bs"
    async with BlockStore(path, durable=False) as s:
        t, r = s.table("t"), s.merkle("t")
        for target in (2500, 600, 9, 3000, 40, 8, 300, 0, 30):
            for _ in range(rng.randint(2, 5)):
                ops: list[Any] = []
                for _ in range(rng.randint(1, 700)):
                    shrink = len(model) > target
                    if model and rng.random() < (0.9 if shrink else 0.2):
                        k = rng.choice(list(model)) if shrink else rng.choice(keys)
                        ops.append(TableDelete("t", k))
                        model.pop(k, None)
                        continue
                    k = rng.choice(keys)
                    ops.append(TablePut("t", k, rng.randint(0, 2)))
                    model[k] = ops[-1].value
                if rng.random() < 0.5:
                    await s.write_batch(ops)
                else:
                    for o in ops:
                        await (
                            t.delete(o.key) if isinstance(o, TableDelete) else t.put(o.key, o.value)
                        )
                expect = reference(table_leaves(model, zero)).get(b"\x00\x00")
                assert r.root(0) == (b2(expect) if expect else EMPTY)
                assert r.node(0).count == len(model)
    assert dump(path, b"merkle:table:t") == reference(table_leaves(model, zero))


# ---------------------------------------------------------------------- order independence
async def test_equal_content_equal_roots_whatever_the_order(tmp_path: Path) -> None:
    keys = [b"obj/%d" % i for i in range(600)]
    blobs = [os.urandom(50) for _ in range(300)]
    async with (
        BlockStore(tmp_path / "a", partition_of=hashed3, durable=False) as a,
        BlockStore(tmp_path / "b", partition_of=hashed3, durable=False) as b,
    ):
        await a.write_batch([TablePut("t", k, {"v": k}) for k in keys])
        await a.write_batch([PutBlock(x) for x in blobs])
        for k in reversed(keys):  # other order, other transactions, detours
            await b.table("t").put(k, "wrong")
            await b.table("t").update(k, partial(_set_v, k))
        await b.write_batch([TablePut("t", b"extra/%d" % i, i) for i in range(50)])
        await b.write_batch([TableDelete("t", b"extra/%d" % i) for i in range(50)])
        await asyncio.gather(*(b.put(x) for x in reversed(blobs)), b.put(b"gone"))
        await b.delete(sha(b"gone"))
        for name in ("t", "blocks"):
            ra, rb = a.merkle(name), b.merkle(name)
            assert [ra.root(p) for p in range(3)] == [rb.root(p) for p in range(3)]
            assert EMPTY not in [ra.root(p) for p in range(3)]
            assert ra.set_root(range(3)) == rb.set_root(range(3)) != EMPTY
        await b.table("t").put(keys[0], "changed")
        assert a.merkle("t").set_root([0, 1, 2]) != b.merkle("t").set_root([0, 1, 2])
    assert dump(tmp_path / "a", b"merkle:table:t") != dump(tmp_path / "b", b"merkle:table:t")


# ---------------------------------------------------------------------- reader API
async def test_reader_nodes_entries_and_set_tree(tmp_path: Path) -> None:
    def by_first(k: bytes) -> int:
        return k[0]

    async with BlockStore(tmp_path / "bs", durable=False) as s:
        s.table("t", partition_key_of=by_first)
        await s.write_batch(
            [TablePut("t", bytes([p]) + b"%d" % i, i) for p in range(40) for i in range(p)]
        )
        r = s.merkle("t")
        assert r.node(0).hash == EMPTY and r.node(0).leaves == []
        small = r.node(5)  # 5 keys: one bucket
        assert small.leaves is not None and small.count == 5
        assert [k for k, _ in small.leaves] == sorted(bytes([5]) + b"%d" % i for i in range(5))
        halves = [r.node(5, bytes([n])) for n in range(16)]  # virtual nodes inside the bucket
        assert sum(n.count for n in halves) == 5
        assert sorted(e for n in halves for e in n.leaves or []) == small.leaves
        big = r.node(39)
        assert big.children is not None and big.count == 39
        assert big.children == {
            n: r.node(39, bytes([n])).hash for n in range(16) if n in big.children
        }
        assert len(r.entries(39)) == 39 and r.entries(39) == sorted(r.entries(39))
        ps = list(range(40))
        root = r.set_node(ps)
        assert root.children is not None and set(root.children) == {0, 1, 2}  # 16 + 16 + 8
        group = r.set_node(ps, b"\x01")
        assert group.children == {i: r.root(16 + i) for i in range(16)}
        assert r.set_node(ps, b"\x00").children == {i: r.root(i) for i in range(1, 16)}
        assert root.count == sum(range(40)) and root.hash == r.set_root(ps)
        for bad in (b"\x10", bytes(40)):
            with pytest.raises(ValueError):
                r.node(1, bad)
        with pytest.raises(ValueError):
            r.set_node(ps, b"\x05")  # past the 40 partitions
        with pytest.raises(ValueError):
            r.node(70_000)


async def test_partitioners_summaries_off_and_rebuilds(tmp_path: Path) -> None:
    path = tmp_path / "bs"
    model = {b"k%d" % i: i for i in range(100)}
    async with BlockStore(path, summaries=False, partition_of=half) as s:
        await s.write_batch([TablePut("t", k, v) for k, v in model.items()])
        digest = await s.put(b"x")
        with pytest.raises(ValueError):
            s.merkle("t")
    assert dump(path, b"merkle:table:t") == {}
    async with BlockStore(path, partition_of=half) as s:  # rebuilt at open / first use
        assert s.merkle("blocks").node(half(digest)).leaves == [(digest, digest[:HB])]
        assert s.merkle("t").node(0).count == 0  # default partitioner of tables: half(key)
        with pytest.raises(ValueError):
            s.table("t", partition_key_of=third)  # already open with another one
        with pytest.raises(ValueError):
            s.table("blocks")
    assert dump(path, b"merkle:table:t") == reference(table_leaves(model, half))
    async with BlockStore(path) as s:
        s.table("t", partition_key_of=third)
        await s.table("t").delete(b"k0")
    del model[b"k0"]
    assert dump(path, b"merkle:table:t") == reference(table_leaves(model, third))
    assert dump(path, b"merkle:blocks") == reference({0: {digest: digest[:HB]}})


# ---------------------------------------------------------------------- atomicity, crashes
async def test_failed_writes_leave_summary_untouched(tmp_path: Path) -> None:
    path = tmp_path / "bs"
    async with BlockStore(path, map_size_bytes=8 * MiB, durable=False) as s:
        await s.write_batch([TablePut("t", b"k%d" % i, i) for i in range(50)])
        before = s.merkle("t").node(0)

        def boom(_v: Any) -> Any:
            raise RuntimeError("no")

        with pytest.raises(RuntimeError):
            await s.write_batch([TablePut("t", b"new", 1), TableUpdate("t", b"k1", boom)])
        with pytest.raises(RuntimeError):
            await s.table("t").update(b"k2", boom)
        assert s.merkle("t").node(0) == before
        results = await asyncio.gather(
            s.table("t").put(b"k3", "fits"),
            s.put(os.urandom(9 * MiB)),  # map full: the group is replayed one by one
            return_exceptions=True,
        )
        assert results[0] is None and isinstance(results[1], StoreFull)
        assert s.merkle("blocks").node(0).count == 0
    model: dict[bytes, Any] = {b"k%d" % i: i for i in range(50)}
    model[b"k3"] = "fits"
    assert dump(path, b"merkle:table:t") == reference(table_leaves(model, zero))
    assert dump(path, b"merkle:blocks") == {}


def test_sigkill_leaves_summaries_matching_the_data(tmp_path: Path) -> None:
    """SIGKILL a writer mid-stream, twice; the summaries on disk (read raw, before any
    BlockStore could rebuild them) equal the reference built from the data on disk."""
    path = tmp_path / "bs"
    helper = Path(__file__).with_name("merkle_crash_writer.py")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(2):
        proc = subprocess.Popen(
            [sys.executable, str(helper), str(path)], stdout=subprocess.PIPE, env=env
        )
        assert proc.stdout is not None
        try:
            for _ in range(150):
                assert proc.stdout.readline(), "crash writer exited early"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        table = dump(path, b"table:t")
        blocks = dump(path, b"blocks")
        assert table and blocks

        def quarter(k: bytes) -> int:
            return k[0] % 4

        leaves: Leaves = {}
        for key, raw in table.items():
            leaves.setdefault(quarter(key), {})[key] = b2(raw)
        assert dump(path, b"merkle:table:t") == reference(leaves)
        assert dump(path, b"merkle:blocks") == reference(block_leaves(set(blocks), quarter))


# ---------------------------------------------------------------------- anti-entropy diff
async def test_diff_finds_exactly_the_differing_keys(tmp_path: Path) -> None:
    def part64(k: bytes) -> int:
        return b2(k, 1)[0] % 64

    a, b = await store_pair(tmp_path, 3000, part64)
    try:
        ps = range(64)
        same = await diff(a.merkle("t"), "t", ps, exchange_with(b))
        assert same.diffs == [] and same.stats.rounds == 1 and same.stats.nodes_equal == 1
        assert same.stats.bytes_total < 100
        await a.table("t").put(b"key-7", "changed")
        await a.table("t").delete(b"key-8")
        await b.table("t").delete(b"key-9")
        await b.table("t").put(b"only-b", 1)
        got = await diff(a.merkle("t"), "t", ps, exchange_with(b))
        kinds = {(d.key, d.kind) for d in got.diffs}
        assert kinds == {
            (b"key-7", "different"),
            (b"key-8", "missing_here"),
            (b"key-9", "missing_there"),
            (b"only-b", "missing_here"),
        }
        by_key = {d.key: d for d in got.diffs}
        assert by_key[b"key-7"].local == vh("changed")
        assert by_key[b"key-7"].remote == vh({"i": 7})
        assert by_key[b"key-9"].partition == part64(b"key-9")
        assert got.stats.rounds <= 6 and got.stats.bytes_total < 8 * 1024
        back = await diff(b.merkle("t"), "t", ps, exchange_with(a), hash_bytes=8)
        assert {(d.key, d.kind) for d in back.diffs} == {
            (b"key-7", "different"),
            (b"key-8", "missing_there"),
            (b"key-9", "missing_here"),
            (b"only-b", "missing_there"),
        }
        assert back.stats.bytes_total < got.stats.bytes_total
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_diff_across_shapes_and_empty_sides(tmp_path: Path) -> None:
    """One side holds a bucket where the other has an inner node, whole partitions or
    set groups are empty on one side, and a partition is compared with itself absent."""
    a, b = await store_pair(tmp_path, 0, lambda k: k[0] % 40)
    try:
        keys = [bytes([p]) + b"-%d" % i for p in range(40) for i in range(30)]
        await a.write_batch([TablePut("t", k, 1) for k in keys])
        few = [k for k in keys if k[0] == 3][:5] + [k for k in keys if k[0] >= 32]
        await b.write_batch([TablePut("t", k, 1) for k in few])
        await b.write_batch([TablePut("t", b"\x02-only-b", 2)])
        got = await diff(a.merkle("t"), "t", range(40), exchange_with(b))
        expect = {(k, "missing_there") for k in keys if k not in few}
        assert {(d.key, d.kind) for d in got.diffs} == expect | {(b"\x02-only-b", "missing_here")}
        back = await diff(b.merkle("t"), "t", range(40), exchange_with(a))
        assert len(back.diffs) == len(got.diffs)
        assert {d.kind for d in back.diffs} == {"missing_here", "missing_there"}
        empty = await diff(a.merkle("t"), "t", [], exchange_with(b))
        assert empty.diffs == [] and empty.stats.rounds == 0
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_diff_of_blocks_and_malformed_messages(tmp_path: Path) -> None:
    async with (
        BlockStore(tmp_path / "a", partition_of=half, durable=False) as a,
        BlockStore(tmp_path / "b", partition_of=half, durable=False) as b,
    ):
        blobs = [b"block %d" % i for i in range(200)]
        await a.write_batch([PutBlock(x) for x in blobs])
        await b.write_batch([PutBlock(x) for x in blobs[1:]])
        got = await diff(a.merkle("blocks"), "blocks", [0, 1], exchange_with(b))
        assert [(d.key, d.kind, d.local) for d in got.diffs] == [
            (sha(blobs[0]), "missing_there", sha(blobs[0])[:HB])
        ]
        for bad in (
            b"",
            b"\xff",
            cbor2.dumps([1, 2, 3, 4]),
            cbor2.dumps(["t", 16, None, [[None, b"", b""]]]),
        ):
            with pytest.raises(ValueError):
                serve(b.merkle, bad)

        async def liar(_request: bytes) -> bytes:
            return cbor2.dumps([[0, 1, 1, b"short"]])

        with pytest.raises(ValueError):
            await diff(a.merkle("blocks"), "blocks", [0, 1], liar)

        async def smuggler(request: bytes) -> bytes:  # a leaf outside the subtree asked for
            real = cbor2.loads(serve(b.merkle, request))
            items = cbor2.loads(request)[3]
            fake = [1, [b"x" * 40], bytes(16)]
            pairs = zip(items, real, strict=True)
            return bytes(cbor2.dumps([r if i[1] == b"" else fake for i, r in pairs]))

        with pytest.raises(ValueError):
            await diff(a.merkle("blocks"), "blocks", [0, 1], smuggler)
        with pytest.raises(ValueError):
            await diff(a.merkle("blocks"), "blocks", [0, 1], exchange_with(b), hash_bytes=4)
        assert isinstance(a.merkle("blocks"), MerkleReader)
