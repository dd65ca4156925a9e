"""Turning a :meth:`BlockStore.write_batch` op list into writer steps.

Everything that can fail on bad input — digest checks, partition lookups, key checks, CBOR
encoding, table creation — happens here, on the caller's side, before anything is queued;
the steps that reach the writer thread only touch LMDB (and run ``TableUpdate`` callbacks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import lmdb

from dfspeer.blockstore.errors import DigestMismatch
from dfspeer.blockstore.ops import (
    DeleteBlock,
    PutBlock,
    TableDelete,
    TablePut,
    TableUpdate,
    WriteOp,
)
from dfspeer.blockstore.schema import (
    Dbs,
    PartitionOf,
    check_digest,
    checked_partition,
    delete_block,
    put_block,
)
from dfspeer.blockstore.tables import check_key, encode, table_delete, table_put, table_update
from dfspeer.blockstore.writer import Apply, WriteTxn


def prepare_batch(
    ops: Sequence[WriteOp],
    hashed: Iterator[tuple[bytes, bytes]],
    *,
    dbs: Dbs,
    partition_of: PartitionOf | None,
    table_db: Callable[[str], lmdb._Database],
    max_key_bytes: int,
) -> list[Apply]:
    """One writer step per op, in order.

    ``hashed`` yields ``(sha256, data)`` for the ``PutBlock`` ops, in order. Raises
    ``DigestMismatch`` (a PutBlock whose given digest is wrong), ValueError/TypeError (bad
    digest, key, value, table name or op), ``BlockStoreError`` (too many tables).
    """
    steps: list[Apply] = []
    for op in ops:
        if isinstance(op, PutBlock):
            digest, data = next(hashed)
            if op.digest is not None and check_digest(op.digest) != digest:
                raise DigestMismatch(op.digest, digest)
            partition = checked_partition(partition_of, digest)
            steps.append(partial(put_block, dbs=dbs, digest=digest, data=data, partition=partition))
        elif isinstance(op, DeleteBlock):
            partition = checked_partition(partition_of, check_digest(op.digest))
            steps.append(partial(delete_block, dbs=dbs, digest=op.digest, partition=partition))
        elif isinstance(op, TablePut):
            if op.value is None:
                raise ValueError("TablePut of None; use TableDelete")
            key = check_key(op.key, max_key_bytes)
            steps.append(
                partial(table_put, db=table_db(op.table), key=key, encoded=encode(op.value))
            )
        elif isinstance(op, TableDelete):
            key = check_key(op.key, max_key_bytes)
            steps.append(partial(table_delete, db=table_db(op.table), key=key))
        elif isinstance(op, TableUpdate):
            key = check_key(op.key, max_key_bytes)
            steps.append(partial(table_update, db=table_db(op.table), key=key, fn=op.fn))
        else:
            raise TypeError(f"unknown write op {op!r}")
    return steps


def run_steps(steps: list[Apply], w: WriteTxn) -> list[Any]:
    """Apply ``steps`` in order in ``w`` (the writer runs this as one atomic request)."""
    return [step(w) for step in steps]
