"""Manifest records and their LWW merge (puts and tombstones)."""

from __future__ import annotations

import hashlib

import pytest

from dfspeer.cluster.records import is_stale, lww_pick, merge_by_version
from dfspeer.objects.hlc import Version
from dfspeer.objects.manifest import (
    TABLE_KEY_LIMIT,
    Manifest,
    encode_table_key,
    merge_manifest,
    table_key,
)


def put(hlc: int, peer: str = "p1", size: int = 3) -> dict[str, object]:
    digest = hashlib.sha256(b"x").digest()
    return Manifest(
        "b1", "k", str(Version(hlc, peer)), size, "ab" * 32, chunks=((digest, size),), modified=1.0
    ).to_record()


def tomb(hlc: int, peer: str = "p1") -> dict[str, object]:
    return Manifest.tombstone("b1", "k", str(Version(hlc, peer)), 2.0).to_record()


def test_record_round_trip() -> None:
    m = Manifest(
        "b1",
        "k",
        str(Version(5, "p")),
        10,
        "cd" * 32,
        inline=b"0123456789",
        content_type="text/plain",
        modified=3.5,
    )
    back = Manifest.from_record(m.to_record())
    assert back == m and back.chunk_count == 0
    assert back.info().to_json()["size"] == 10


def test_from_record_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        Manifest.from_record({"bucket": "b"})
    bad = put(1)
    bad["chunks"] = [[b"short", 1]]
    with pytest.raises(ValueError):
        Manifest.from_record(bad)


@pytest.mark.parametrize(
    ("a", "b", "winner"),
    [
        (put(1), put(2), "b"),
        (put(2), put(1), "a"),
        (put(1), tomb(2), "b"),  # a later delete hides the object
        (tomb(2), put(1), "a"),  # an older put cannot resurrect it
        (tomb(2), put(3), "b"),  # a later put does
        (put(5, "p1"), put(5, "p2"), "b"),  # same timestamp: the peer id breaks the tie
    ],
)
def test_lww_merge(a: dict[str, object], b: dict[str, object], winner: str) -> None:
    expected = a if winner == "a" else b
    assert merge_manifest(a, b) == expected
    assert merge_manifest(b, a) == expected  # commutative
    assert merge_manifest(expected, expected) == expected  # idempotent
    assert lww_pick([None, a, b]) == expected


def test_merge_validates_incoming_and_heals_bad_current() -> None:
    with pytest.raises(ValueError):
        merge_by_version(None, {"no": "version"})
    assert merge_by_version({"garbage": 1}, put(1)) == put(1)
    assert lww_pick([None, {"bad": 1}]) is None


def test_staleness() -> None:
    assert is_stale(None, put(2)) and is_stale(put(1), put(2))
    assert not is_stale(put(2), put(2)) and not is_stale(tomb(3), put(2))


def test_table_keys_fit_lmdb_and_keep_order() -> None:
    short = [table_key("b1", k) for k in ["a", "a/b", "b", "ü"]]
    assert short == sorted(short)
    long_key = "x" * 1024
    encoded = table_key("bucket", long_key)
    assert len(encoded) <= 511 and encoded.startswith(b"bucket/" + b"x" * 100)
    assert encoded != table_key("bucket", long_key[:-1] + "y")
    assert encode_table_key(b"k" * TABLE_KEY_LIMIT) == b"k" * TABLE_KEY_LIMIT
