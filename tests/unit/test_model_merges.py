"""The merges of the replicated tables are CRDT joins, and the objects/block_refs schemas'
semantics and ``updated()`` hooks.

Property tests (hypothesis), for each of the five schemas (objects, block_refs, buckets,
uploads — native sessions and S3 multipart ones with parts — and the test-only LWW
table): ``merge`` is commutative, associative and idempotent on valid entries, compared
through the canonical CBOR of ``encode()``; the record-level helpers (``merge_records``,
``pick``, ``stale``) agree with it. Table-driven unit tests: what
:class:`ObjectEntry` reads as current, live, superseded and listed; when an objects entry
is a tombstone; retraction of one version; the refusal of a newer record format; and the
hooks on a real :class:`BlockStore` (releases queued in ``gc_releases``, reference counts).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfspeer.blockstore import BlockStore, TableDelete, TableUpdate
from dfspeer.cluster.table import TableSchema
from dfspeer.model import LOCAL_TABLES, RELEASES_TABLE
from dfspeer.model.block_refs import BLOCK_REFS_TABLE, BlockRef, BlockRefsSchema, ref_key
from dfspeer.model.buckets import VERSIONING_STATES, BucketsSchema
from dfspeer.model.objects import (
    ABORTED,
    COMPLETE,
    OBJECTS_TABLE,
    UPLOADING,
    VERSION_TOKEN,
    ObjectEntry,
    ObjectsSchema,
    ObjectVersion,
    table_key,
)
from dfspeer.model.uploads import UploadsSchema
from dfspeer.objects.hlc import Version
from tests.unit.lww_table import LwwTestSchema, test_tables

BASE_MS = 1_700_000_000_000


def hlc_text(ms: int, peer: str = "peer-0", logical: int = 0) -> str:
    """HLC version text of unix milliseconds ``ms``."""
    return str(Version((ms << 16) | logical, peer))


VERSION_IDS = [hlc_text(BASE_MS + 1000 * i, peer) for i, peer in enumerate("abab")]
"""A small pool: the same version id turns up in several copies of one entry."""
DIGESTS = [hashlib.sha256(bytes([i])).digest() for i in range(3)]
TIMES = st.floats(min_value=0.0, max_value=2e9, allow_nan=False, allow_infinity=False)
CHECKSUMS = [
    ("crc32c", base64.b64encode(hashlib.sha256(b"a").digest()[:4]).decode()),
    ("crc32c", base64.b64encode(hashlib.sha256(b"b").digest()[:4]).decode()),
    ("sha256", base64.b64encode(hashlib.sha256(b"a").digest()).decode()),
]
"""Stored checksums (algorithm, base64 value): a version's copies may differ in it."""

OBJECTS, BLOCK_REFS, BUCKETS, LWW = (
    ObjectsSchema(),
    BlockRefsSchema(),
    BucketsSchema(),
    LwwTestSchema(),
)


def canon(schema: TableSchema[Any], entry: Any) -> bytes:
    """The canonical CBOR of ``entry``'s record: what replicas compare and hash."""
    return cbor2.dumps(schema.encode(entry), canonical=True)


def canon_record(record: Any) -> bytes:
    return cbor2.dumps(record, canonical=True)


# ---------------------------------------------------------------------- strategies
@st.composite
def object_version_records(draw: st.DrawFn, vid: str) -> dict[str, Any]:
    state = draw(st.sampled_from([UPLOADING, COMPLETE, ABORTED]))
    if state == ABORTED:
        return {"id": vid, "state": ABORTED}  # an aborted version keeps only these
    delete_marker = state == COMPLETE and draw(st.booleans())
    chunks: list[list[Any]] = []
    inline: bytes | None = None
    size = 0
    if not delete_marker:
        kind = draw(st.sampled_from(["chunks", "inline", "empty"]))
        if kind == "chunks":
            pairs = draw(
                st.lists(
                    st.tuples(st.sampled_from(DIGESTS), st.integers(1, 4096)),
                    min_size=1,
                    max_size=3,
                )
            )
            chunks = [[d, n] for d, n in pairs]
            size = sum(n for _, n in pairs)
        elif kind == "inline":
            inline = draw(st.binary(max_size=12))
            size = len(inline)
    record: dict[str, Any] = {
        "id": vid,
        "state": state,
        "null": draw(st.booleans()),
        "delete_marker": delete_marker,
        "size": size,
        "sha256": draw(st.sampled_from(["", "ab" * 32, "cd" * 32])),
        "content_type": draw(st.sampled_from(["application/octet-stream", "text/plain"])),
        "meta": draw(
            st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["1", "2"]), max_size=2)
        ),
        "chunks": chunks,
        "inline": inline,
        "modified": draw(TIMES),
        "created": draw(TIMES),
    }
    checksum = draw(st.sampled_from([None, *CHECKSUMS]))
    if checksum is not None:  # absent, as in a record of an earlier release, or set
        record["checksum"] = list(checksum)
    return record


@st.composite
def objects_records(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(st.lists(st.sampled_from(VERSION_IDS), unique=True, max_size=4))
    versions = [draw(object_version_records(vid)) for vid in ids]
    return {"format": 1, "bucket": "bkt", "key": "some/key", "versions": versions}


@st.composite
def block_refs_records(draw: st.DrawFn) -> dict[str, Any]:
    deleted = draw(st.booleans())
    return {
        "format": 1,
        "digest": DIGESTS[0],
        "version": VERSION_IDS[0],  # one table key: digest + version id
        "bucket": draw(st.sampled_from(["bkt", "other"])),
        "key": draw(st.sampled_from(["k", "l"])),
        "created": draw(TIMES),
        "deleted": deleted,
        "deleted_at": draw(TIMES) if deleted else draw(st.sampled_from([0.0, 5.0])),
        "confirmed": draw(st.booleans()),
    }


@st.composite
def buckets_records(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "format": 1,
        "name": "bkt",
        "created": draw(TIMES),
        "owner": draw(st.sampled_from(["", "alice", "bob"])),
        "versioning": draw(st.sampled_from(VERSIONING_STATES)),
        "deleted": draw(st.booleans()),
        "version": draw(st.sampled_from(VERSION_IDS)),
    }


@st.composite
def part_records(draw: st.DrawFn) -> list[Any]:
    blocks = draw(st.lists(st.tuples(st.sampled_from(DIGESTS), st.integers(1, 4096)), max_size=3))
    return [
        draw(st.integers(0, 3)),  # 0: the blocks of a failed part upload
        draw(st.sampled_from(VERSION_IDS)),
        draw(st.sampled_from([b"\x01" * 16, b"\x02" * 16])),
        sum(n for _, n in blocks),
        [[d, n] for d, n in blocks],
    ]


@st.composite
def uploads_records(draw: st.DrawFn) -> dict[str, Any]:
    """A session record; the fields fixed at init are fixed here, the rest vary."""
    states = ["initiated", "in_progress", "completed", "aborted", "expired"]
    record: dict[str, Any] = {
        "format": 1,
        "id": "ab" * 16,
        "bucket": "bkt",
        "key": "k",
        "version": draw(st.sampled_from(VERSION_IDS)),
        "null": draw(st.booleans()),
        "chunk_size": 4096,
        "created": draw(TIMES),
        "size": None,
        "sha256": None,
        "content_type": "application/octet-stream",
        "meta": {},
        "idempotency_key": "",
        "request_hash": "",
        "states": draw(st.lists(st.tuples(st.sampled_from(states), TIMES), max_size=3)),
        "chunks": [],
        "activity": draw(TIMES),
        "result": draw(st.sampled_from([None, {"size": 1}, {"size": 2}])),
    }
    if draw(st.booleans()):
        record["kind"] = "s3"
        record["parts"] = draw(st.lists(part_records(), max_size=4))
    else:
        record["chunks"] = draw(
            st.lists(
                st.tuples(
                    st.integers(0, 3),
                    st.sampled_from(DIGESTS),
                    st.integers(1, 4096),
                    st.sampled_from(VERSION_IDS),
                ),
                max_size=4,
            )
        )
    return record


@st.composite
def lww_records(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = {
        "version": draw(st.sampled_from(VERSION_IDS)),
        "v": draw(st.integers(0, 3)),
    }
    if draw(st.booleans()):
        record["deleted"] = draw(st.booleans())
    return record


SCHEMAS: dict[str, tuple[TableSchema[Any], st.SearchStrategy[dict[str, Any]]]] = {
    "objects": (OBJECTS, objects_records()),
    "block_refs": (BLOCK_REFS, block_refs_records()),
    "buckets": (BUCKETS, buckets_records()),
    "uploads": (UploadsSchema(), uploads_records()),
    "lww": (LWW, lww_records()),
}
PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def malformed(name: str, valid: dict[str, Any]) -> list[Any]:
    """Records every replica must ignore (decode raises ValueError)."""
    bad: list[Any] = ["junk", 42, [valid], {"format": 1}, {"version": 7}, {"version": ""}]
    if name != "lww":  # the test table reads any format
        bad.append({**valid, "format": 99})
    if name == "objects":
        bad.append(
            {
                **valid,
                "versions": [{"id": "x", "state": COMPLETE, "size": 3, "chunks": [[b"d", 3]]}],
            }
        )
        bad.append({**valid, "versions": [{"id": "x", "state": ABORTED}] * 2})
        bad.append({**valid, "versions": [{"id": "x", "state": "lost"}]})
        for checksum in ("crc32c", ["crc32c"], ["crc32c", 5], ["", "AAAAAA=="]):
            bad.append(
                {**valid, "versions": [{"id": "x", "state": COMPLETE, "checksum": checksum}]}
            )
    return bad


names = pytest.mark.parametrize("name", list(SCHEMAS))


# ---------------------------------------------------------------------- merge laws
@names
@PROPERTY
@given(data=st.data())
def test_merge_is_commutative(name: str, data: st.DataObject) -> None:
    schema, records = SCHEMAS[name]
    a, b = schema.decode(data.draw(records)), schema.decode(data.draw(records))
    assert canon(schema, schema.merge(a, b)) == canon(schema, schema.merge(b, a))


@names
@PROPERTY
@given(data=st.data())
def test_merge_is_associative(name: str, data: st.DataObject) -> None:
    schema, records = SCHEMAS[name]
    a, b, c = (schema.decode(data.draw(records)) for _ in range(3))
    left = schema.merge(schema.merge(a, b), c)
    right = schema.merge(a, schema.merge(b, c))
    assert canon(schema, left) == canon(schema, right)


@names
@PROPERTY
@given(data=st.data())
def test_merge_is_idempotent_and_absorbs(name: str, data: st.DataObject) -> None:
    schema, records = SCHEMAS[name]
    a, b = schema.decode(data.draw(records)), schema.decode(data.draw(records))
    assert canon(schema, schema.merge(a, a)) == canon(schema, a)
    joined = schema.merge(a, b)
    # the join is an upper bound of both: merging either copy in again changes nothing
    assert canon(schema, schema.merge(joined, a)) == canon(schema, joined)
    assert canon(schema, schema.merge(b, joined)) == canon(schema, joined)


@PROPERTY
@given(data=st.data())
def test_objects_merge_keeps_every_id_at_its_most_advanced_state(data: st.DataObject) -> None:
    a, b = (
        OBJECTS.decode(data.draw(objects_records())),
        OBJECTS.decode(data.draw(objects_records())),
    )
    merged = OBJECTS.merge(a, b)
    rank = {UPLOADING: 0, COMPLETE: 1, ABORTED: 2}
    assert [v.id for v in merged.versions] == sorted({v.id for v in a.versions + b.versions})
    for v in merged.versions:
        states = [x.state for x in (a.get(v.id), b.get(v.id)) if x is not None]
        assert rank[v.state] == max(rank[s] for s in states)


# ---------------------------------------------------------------------- record helpers
@names
@PROPERTY
@given(data=st.data())
def test_merge_records(name: str, data: st.DataObject) -> None:
    schema, records = SCHEMAS[name]
    cur, inc = data.draw(records), data.draw(records)
    normal = schema.encode(schema.decode(inc))
    assert canon_record(schema.merge_records(None, inc)) == canon_record(normal)
    joined = schema.merge(schema.decode(cur), schema.decode(inc))
    assert canon_record(schema.merge_records(cur, inc)) == canon(schema, joined)
    for bad in malformed(name, cur):
        # a malformed stored record loses to a valid incoming one...
        assert canon_record(schema.merge_records(bad, inc)) == canon_record(normal)
        with pytest.raises(ValueError):  # ...and a malformed incoming one is refused
            schema.merge_records(cur, bad)


@names
@PROPERTY
@given(data=st.data())
def test_pick_is_the_fold_of_merge_and_stale_finds_the_laggards(
    name: str, data: st.DataObject
) -> None:
    schema, records = SCHEMAS[name]
    valid = data.draw(st.lists(records, min_size=1, max_size=5))
    junk = data.draw(st.lists(st.sampled_from([None, *malformed(name, valid[0])]), max_size=4))
    answers = data.draw(st.permutations([*valid, *junk]))
    winner = schema.pick(answers)
    folded = functools.reduce(schema.merge, [schema.decode(r) for r in valid])
    assert winner is not None and canon_record(winner) == canon(schema, folded)
    assert schema.pick(junk) is None

    assert schema.stale(winner, winner) is False
    assert schema.stale(None, winner) is True
    for bad in junk:
        assert schema.stale(bad, winner) is True
    for record in valid:
        normal = schema.encode(schema.decode(record))
        assert schema.stale(record, winner) is (canon_record(normal) != canon_record(winner))
        if name == "objects":
            lacks = {v["id"] for v in winner["versions"]} - {v["id"] for v in record["versions"]}
            if lacks:
                assert schema.stale(record, winner) is True


def test_stale_on_a_replica_lacking_one_version() -> None:
    full = OBJECTS.encode(entry(version(1), version(2, UPLOADING)))
    lacking = OBJECTS.encode(entry(version(1)))
    winner = OBJECTS.pick([lacking, None, "junk", full])
    assert winner == full
    assert OBJECTS.stale(lacking, winner) is True
    assert OBJECTS.stale(full, winner) is False


# ---------------------------------------------------------------------- ObjectEntry semantics
def vid(i: int) -> str:
    return hlc_text(BASE_MS + 1000 * i)


def version(
    i: int,
    state: str = COMPLETE,
    *,
    null: bool = True,
    dm: bool = False,
    chunks: tuple[tuple[bytes, int], ...] = (),
) -> ObjectVersion:
    if state == ABORTED:
        return ObjectVersion(vid(i), ABORTED, null=False)
    size = sum(n for _, n in chunks)
    inline = None if chunks or dm else b"x"
    return ObjectVersion(
        vid(i),
        state,
        null=null,
        delete_marker=dm,
        size=size if chunks else (0 if dm else 1),
        chunks=chunks,
        inline=inline,
    )


def entry(*versions: ObjectVersion) -> ObjectEntry:
    return ObjectEntry("bkt", "k", tuple(sorted(versions, key=lambda v: v.id)))


def ids(versions: list[ObjectVersion] | None) -> list[int]:
    return [VERSION_IDS_BY_TEXT[v.id] for v in versions or []]


VERSION_IDS_BY_TEXT = {vid(i): i for i in range(10)}


@pytest.mark.parametrize(
    ("versions", "current", "live"),
    [
        ((), None, None),
        ((version(1),), 1, 1),
        ((version(1), version(2, UPLOADING)), 1, 1),  # an upload in flight is not current
        ((version(1), version(2, ABORTED)), 1, 1),
        ((version(1), version(2, dm=True)), 2, None),  # a delete marker: the key is absent
        ((version(1), version(2, dm=True), version(3)), 3, 3),  # written again
        ((version(1, ABORTED), version(2, UPLOADING)), None, None),
        ((version(1, dm=True),), 1, None),
    ],
)
def test_current_and_live(
    versions: tuple[ObjectVersion, ...], current: int | None, live: int | None
) -> None:
    e = entry(*versions)
    got_current, got_live = e.current(), e.live()
    assert (got_current and VERSION_IDS_BY_TEXT[got_current.id]) == current
    assert (got_live and VERSION_IDS_BY_TEXT[got_live.id]) == live


@pytest.mark.parametrize(
    ("versions", "superseded", "listed"),
    [
        # an older complete null version is superseded by a newer complete null version
        ((version(1), version(2)), [1], [2]),
        ((version(1), version(2), version(3)), [1, 2], [3]),
        # versioned (non-null) versions never are
        ((version(1, null=False), version(2)), [], [2, 1]),
        ((version(1, null=False), version(2, null=False)), [], [2, 1]),
        ((version(1), version(2, null=False)), [], [2, 1]),
        # a newer *uploading* null version supersedes nothing yet
        ((version(1), version(2, UPLOADING)), [], [1]),
        # an older upload of a null version is superseded too (never listed anyway)
        ((version(1, UPLOADING), version(2)), [1], [2]),
        # aborted versions are done with
        ((version(1, ABORTED), version(2)), [], [2]),
        # a null delete marker supersedes the older null version, and is listed itself
        ((version(1), version(2, dm=True)), [1], [2]),
        ((version(1), version(2, null=False), version(3)), [1], [3, 2]),
    ],
)
def test_superseded_and_listed(
    versions: tuple[ObjectVersion, ...], superseded: list[int], listed: list[int]
) -> None:
    e = entry(*versions)
    assert ids(e.superseded()) == superseded
    assert ids(e.listed()) == listed


@pytest.mark.parametrize(
    ("versions", "tombstone"),
    [
        ((), False),
        ((version(1),), False),
        ((version(1, UPLOADING),), False),
        ((version(1, ABORTED), version(2, UPLOADING)), False),
        ((version(1), version(2, dm=True)), False),  # version 1 still holds data
        ((version(1, ABORTED),), True),
        ((version(1, dm=True),), True),
        ((version(1, ABORTED), version(2, dm=True)), True),
        ((version(1, dm=True), version(2, ABORTED)), True),
    ],
)
def test_tombstone_since(versions: tuple[ObjectVersion, ...], tombstone: bool) -> None:
    e = entry(*versions)
    since = OBJECTS.tombstone_since(e)
    if not tombstone:
        assert since is None
    else:  # the unix time of the newest version's HLC
        assert since == (BASE_MS + 1000 * ids(list(e.versions))[-1]) / 1000.0
        assert OBJECTS.tombstone_since_record(OBJECTS.encode(e)) == since


def test_retract_one_version() -> None:
    e = entry(version(1), version(2, UPLOADING), version(3, null=False))
    left = OBJECTS.retract(e, VERSION_TOKEN + vid(2))
    assert left is not None and ids(list(left.versions)) == [1, 3]
    assert left.versions == (e.versions[0], e.versions[2])
    assert OBJECTS.retract(e, VERSION_TOKEN + vid(7)) == e  # not there: unchanged
    assert OBJECTS.retract(entry(version(2)), VERSION_TOKEN + vid(2)) is None  # the last one
    # the record-level path, and the token a coordinator sends for its one-version write
    record = OBJECTS.encode(e)
    assert OBJECTS.retract_token(OBJECTS.encode(entry(version(2)))) == VERSION_TOKEN + vid(2)
    retracted = OBJECTS.retract_record(record, VERSION_TOKEN + vid(2))
    assert retracted == OBJECTS.encode(left)
    # a whole-entry token removes the entry only if it is exactly that state
    assert OBJECTS.retract(e, OBJECTS.token(e)) is None
    assert OBJECTS.retract(e, OBJECTS.token(left)) == e


# ---------------------------------------------------------------------- stored checksums
def _release_record(i: int) -> dict[str, Any]:
    """A complete inline version's record as a release without stored checksums wrote it
    (every key it had, no ``checksum``)."""
    return {
        "id": vid(i),
        "state": COMPLETE,
        "null": True,
        "delete_marker": False,
        "size": 3,
        "sha256": hashlib.sha256(b"abc").hexdigest(),
        "content_type": "text/plain",
        "meta": {"dfs:etag": hashlib.md5(b"abc").hexdigest()},
        "chunks": [],
        "inline": b"abc",
        "modified": 1_700_000_000.5,
        "created": 1_700_000_000.25,
        "upload": "",
    }


def test_a_version_without_a_checksum_decodes_unchanged() -> None:
    old = _release_record(1)
    version = ObjectVersion.from_record(old)
    assert version.checksum is None
    assert version.to_record() == old  # no key added: the same bytes, the same Merkle hash
    record = {"format": 1, "bucket": "bkt", "key": "k", "versions": [old]}
    stored = cbor2.loads(cbor2.dumps(record, canonical=True))
    assert canon_record(OBJECTS.encode(OBJECTS.decode(stored))) == canon_record(record)


@pytest.mark.parametrize("checksum", CHECKSUMS)
def test_a_checksum_round_trips_through_the_codec(checksum: tuple[str, str]) -> None:
    version = replace(ObjectVersion.from_record(_release_record(1)), checksum=checksum)
    assert version.to_record() == {**_release_record(1), "checksum": list(checksum)}
    assert ObjectVersion.from_record(version.to_record()) == version
    record = OBJECTS.encode(entry(version))
    wire = cbor2.loads(cbor2.dumps(record, canonical=True))  # as stored and sent: CBOR
    assert OBJECTS.decode(wire).versions == (version,)
    assert version.aborted().to_record() == {"id": vid(1), "state": ABORTED}


@pytest.mark.parametrize("state", [UPLOADING, COMPLETE])
def test_copies_with_and_without_the_checksum_merge_to_the_one_with_it(state: str) -> None:
    """A copy re-encoded by a peer of an earlier release lost the field: whatever the order,
    the join keeps the checksum, and merging either copy into it again changes nothing."""
    bare = ObjectVersion.from_record({**_release_record(2), "state": state})
    kept = replace(bare, checksum=CHECKSUMS[0])
    with_it, without = entry(version(1), kept), entry(bare)
    joins = [
        OBJECTS.merge(with_it, without),
        OBJECTS.merge(without, with_it),
        OBJECTS.merge(OBJECTS.merge(without, with_it), without),
        OBJECTS.merge(without, OBJECTS.merge(with_it, with_it)),
    ]
    assert {canon(OBJECTS, j) for j in joins} == {canon(OBJECTS, entry(version(1), kept))}
    # record level, as anti-entropy and read repair see it
    assert OBJECTS.stale(OBJECTS.encode(without), OBJECTS.encode(with_it)) is True
    assert OBJECTS.stale(OBJECTS.encode(joins[0]), OBJECTS.encode(without)) is False
    # an abort still wins over either copy
    aborted = entry(ObjectVersion(bare.id, ABORTED))
    assert OBJECTS.merge(with_it, aborted).get(bare.id) == ObjectVersion(bare.id, ABORTED)


@pytest.mark.parametrize(
    ("schema", "record"),
    [
        (OBJECTS, {"bucket": "b", "key": "k", "versions": []}),
        (
            BLOCK_REFS,
            {"digest": DIGESTS[0], "version": "v", "bucket": "b", "key": "k", "created": 1.0},
        ),
        (BUCKETS, {"name": "b", "created": 1.0, "version": VERSION_IDS[0]}),
    ],
    ids=["objects", "block_refs", "buckets"],
)
def test_decode_refuses_a_newer_format(schema: TableSchema[Any], record: dict[str, Any]) -> None:
    schema.decode({**record, "format": 1})  # the same record in this format reads
    with pytest.raises(ValueError) as raised:
        schema.decode({**record, "format": 99})
    message = str(raised.value)
    assert re.search(r"\b99\b", message), message
    assert re.search(rf"\b{schema.format_version}\b", message), message
    assert schema.pick([{**record, "format": 99}]) is None


# ---------------------------------------------------------------------- updated() hooks
def open_store(path: Path, *, hooks: bool = True) -> BlockStore:
    return BlockStore(
        path,
        map_size_bytes=64 << 20,
        durable=False,
        table_hooks=test_tables().hooks() if hooks else None,
        local_tables=LOCAL_TABLES,
    )


def merged_into(schema: TableSchema[Any], record: Any) -> Callable[[Any | None], Any]:
    return lambda cur: schema.merge_records(cur, record)


def releases(store: BlockStore) -> dict[bytes, Any]:
    return dict(store.table(RELEASES_TABLE).scan())


async def test_aborting_a_version_queues_its_releases_in_the_same_write(
    tmp_path: Path,
) -> None:
    d0, d1, d2 = DIGESTS
    chunky = version(1, chunks=((d0, 10), (d1, 20), (d0, 10)))  # d0 twice: one release
    inline = version(2)
    key = table_key("bkt", "k")
    async with open_store(tmp_path / "s") as store:
        objects = store.table(OBJECTS_TABLE)
        await objects.update(key, merged_into(OBJECTS, OBJECTS.encode(entry(chunky))))
        await objects.update(key, merged_into(OBJECTS, OBJECTS.encode(entry(chunky, inline))))
        assert releases(store) == {}  # data still held: nothing released

        aborted = OBJECTS.encode(entry(chunky.aborted(), inline.aborted()))
        # a batch that fails after the abort leaves neither the abort nor its releases
        boom = TableUpdate("scrub", b"x", lambda cur: 1 // 0)
        with pytest.raises(ZeroDivisionError):
            await store.write_batch(
                [TableUpdate(OBJECTS_TABLE, key, merged_into(OBJECTS, aborted)), boom]
            )
        assert releases(store) == {}
        assert OBJECTS.decode(objects.get(key)).get(chunky.id) == chunky

        await store.write_batch([TableUpdate(OBJECTS_TABLE, key, merged_into(OBJECTS, aborted))])
        queued = releases(store)
        assert set(queued) == {d0 + chunky.id.encode(), d1 + chunky.id.encode()}
        assert d2 + chunky.id.encode() not in queued
        for value in queued.values():
            assert value["bucket"] == "bkt" and value["key"] == "k"
            assert isinstance(value["queued_ms"], int) and value["queued_ms"] > 0

        # the same abort arriving again (a replica repeating it) queues nothing new
        await store.table(RELEASES_TABLE).delete(d0 + chunky.id.encode())
        await objects.update(key, merged_into(OBJECTS, aborted))
        assert set(releases(store)) == {d1 + chunky.id.encode()}


async def test_a_version_that_only_disappears_releases_nothing(tmp_path: Path) -> None:
    """A retraction, a purge or a rebalance dropping the entry from this peer is not an
    abort: the references belong to the other replicas (or to the retracting coordinator),
    so nothing may be queued for release."""
    d0, d1, _ = DIGESTS
    uploading = version(3, UPLOADING, chunks=((d1, 5),))
    kept = version(4, chunks=((d0, 7),))
    key = table_key("bkt", "k")
    async with open_store(tmp_path / "s") as store:
        objects = store.table(OBJECTS_TABLE)
        await objects.put(key, OBJECTS.encode(entry(uploading, kept)))
        retract = VERSION_TOKEN + uploading.id
        await objects.update(key, lambda cur: OBJECTS.retract_record(cur, retract))
        assert releases(store) == {}
        await store.write_batch([TableDelete(OBJECTS_TABLE, key)])  # e.g. a rebalance drop
        assert releases(store) == {}
        assert objects.get(key) is None


def block_ref(digest: bytes, version_id: str, *, deleted: bool = False) -> dict[str, Any]:
    ref = BlockRef(
        digest, version_id, "bkt", "k", created=1.0, deleted=deleted, deleted_at=9.0 * deleted
    )
    return BLOCK_REFS.encode(ref)


async def test_block_refs_move_the_reference_count(tmp_path: Path) -> None:
    digest, other = DIGESTS[0], DIGESTS[1]
    a, b = ref_key(digest, vid(1)), ref_key(digest, vid(2))
    async with open_store(tmp_path / "s") as store:
        refs = store.table(BLOCK_REFS_TABLE)

        async def write(key: bytes, record: Any) -> None:
            await refs.update(key, merged_into(BLOCK_REFS, record))

        assert store.refcount(digest) == 0
        await write(a, block_ref(digest, vid(1)))
        assert store.refcount(digest) == 1
        await write(a, block_ref(digest, vid(1)))  # the same reference again: no change
        await write(b, block_ref(digest, vid(2)))
        assert store.refcount(digest) == 2
        assert store.refcount(other) == 0

        await write(a, block_ref(digest, vid(1), deleted=True))
        assert store.refcount(digest) == 1
        await write(a, block_ref(digest, vid(1)))  # a late live copy loses to the deletion
        assert BLOCK_REFS.decode(refs.get(a)).deleted
        assert store.refcount(digest) == 1

        await write(b, block_ref(digest, vid(2), deleted=True))
        assert store.refcount(digest) == 0
        await write(b, block_ref(digest, vid(2), deleted=True))
        await store.write_batch([TableDelete(BLOCK_REFS_TABLE, a)])  # a tombstone purged
        assert store.refcount(digest) == 0

        # a reference born deleted never counted
        await write(ref_key(other, vid(3)), block_ref(other, vid(3), deleted=True))
        assert store.refcount(other) == 0
        # purging a live reference (no tombstone first) drops its count too
        await write(ref_key(other, vid(4)), block_ref(other, vid(4)))
        assert store.refcount(other) == 1
        await store.write_batch([TableDelete(BLOCK_REFS_TABLE, ref_key(other, vid(4)))])
        assert store.refcount(other) == 0


async def test_reference_count_never_goes_below_zero(tmp_path: Path) -> None:
    digest = DIGESTS[2]
    key = ref_key(digest, vid(1))
    # a live reference written without the hook (so never counted)...
    async with open_store(tmp_path / "s", hooks=False) as store:
        await store.table(BLOCK_REFS_TABLE).put(key, block_ref(digest, vid(1)))
        assert store.refcount(digest) == 0
    # ...then deleted with it: the count stays at 0, and counts up from there
    async with open_store(tmp_path / "s") as store:
        refs = store.table(BLOCK_REFS_TABLE)
        await refs.update(key, merged_into(BLOCK_REFS, block_ref(digest, vid(1), deleted=True)))
        assert store.refcount(digest) == 0
        await refs.update(
            ref_key(digest, vid(2)), merged_into(BLOCK_REFS, block_ref(digest, vid(2)))
        )
        assert store.refcount(digest) == 1


def test_uploads_parts_latest_per_number_and_native_records_unchanged() -> None:
    from dfspeer.model.uploads import PARTS_KIND, PartRecord, UploadSession

    schema = UploadsSchema()
    native = UploadSession("ab" * 16, "bkt", "k", VERSION_IDS[0], True, 4096, 1.0)
    assert "kind" not in schema.encode(native) and "parts" not in schema.encode(native)
    blocks = ((DIGESTS[0], 10),)
    old = PartRecord(1, VERSION_IDS[0], b"\x01" * 16, 10, blocks)
    new = PartRecord(1, VERSION_IDS[2], b"\x02" * 16, 10, ((DIGESTS[1], 10),))
    lost = PartRecord(0, VERSION_IDS[1], bytes(16), 10, ((DIGESTS[2], 10),))
    a = UploadSession(**{**native.__dict__, "kind": PARTS_KIND, "parts": frozenset({old})})
    b = UploadSession(**{**native.__dict__, "kind": PARTS_KIND, "parts": frozenset({new, lost})})
    merged = schema.decode(schema.encode(schema.merge(a, b)))
    assert merged.current_parts() == {1: new}  # the latest wins; part 0 never counts
    assert merged.part_digests() == set(DIGESTS)  # every block ever received, to release
