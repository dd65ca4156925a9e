"""A test-only replicated table: an LWW register per key, declared with nothing but a
schema. Registered next to the model's tables, it gets quorum writes, read repair, hinted
handoff, Merkle anti-entropy and tombstone purge from the generic table runtime.

Record: ``{"version": str, "deleted": bool?, ...}``; the higher ``version`` wins (equal
versions: the larger canonical encoding); a deleted record is a tombstone since the unix
time of its version (HLC text) or its ``modified`` field.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import cbor2

from dfspeer.blockstore import PutBlock, TablePut, WriteOp
from dfspeer.cluster.table import TableRegistry, TableSchema
from dfspeer.model import default_schemas
from dfspeer.model.block_refs import BLOCK_REFS_TABLE, BlockRef, BlockRefsSchema, ref_key
from dfspeer.model.hlc_time import version_unix_s

TEST_TABLE = "lww_test"


class LwwTestSchema(TableSchema[dict[str, Any]]):
    name = TEST_TABLE

    def decode(self, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise ValueError("a record must be a map")
        version = record.get("version")
        if not isinstance(version, str) or not version:
            raise ValueError("a record needs a non-empty text 'version'")
        return record

    def encode(self, entry: dict[str, Any]) -> dict[str, Any]:
        return entry

    def merge(self, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        if a["version"] != b["version"]:
            return a if a["version"] > b["version"] else b
        ea, eb = cbor2.dumps(a, canonical=True), cbor2.dumps(b, canonical=True)
        return a if ea >= eb else b

    def token(self, entry: dict[str, Any]) -> str:
        return str(entry["version"])

    def tombstone_since(self, entry: dict[str, Any]) -> float | None:
        if entry.get("deleted") is not True:
            return None
        since = version_unix_s(entry["version"])
        modified = entry.get("modified")
        return since if since is not None else (float(modified) if modified else None)


def test_tables() -> TableRegistry:
    """The model's tables plus the test-only LWW table."""
    return TableRegistry([*default_schemas(), LwwTestSchema()])


test_tables.__test__ = False  # type: ignore[attr-defined]


def referenced(blob: bytes, version: str = "0000000000000000-test") -> list[WriteOp]:
    """Ops storing ``blob`` with a live ``block_refs`` entry, so the block counts as
    referenced (anti-entropy moves only referenced blocks; GC leaves them alone)."""
    digest = hashlib.sha256(blob).digest()
    ref = BlockRef(digest, version, "bucket", "key", created=time.time())
    record = BlockRefsSchema().encode(ref)
    return [PutBlock(blob), TablePut(BLOCK_REFS_TABLE, ref_key(digest, version), record)]


referenced.__test__ = False  # type: ignore[attr-defined]
