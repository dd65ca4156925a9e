"""Turning a :meth:`BlockStore.write_batch` op list into writer steps.

Everything that can fail on bad input — digest checks, partition lookups, key checks, CBOR
encoding, table creation — happens here, on the caller's side, before anything is queued;
the steps that reach the writer thread only touch LMDB (and run ``TableUpdate`` callbacks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from dfspeer.blockstore.errors import DigestMismatch
from dfspeer.blockstore.merkle import value_hash
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
from dfspeer.blockstore.tables import (
    TableHandle,
    check_key,
    encode,
    table_delete,
    table_put,
    table_update,
)
from dfspeer.blockstore.writer import Apply, WriteTxn


def prepare_batch(
    ops: Sequence[WriteOp],
    hashed: Iterator[tuple[bytes, bytes]],
    *,
    dbs: Dbs,
    partition_of: PartitionOf | None,
    table: Callable[[str], TableHandle],
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
        elif isinstance(op, TablePut | TableDelete | TableUpdate):
            steps.append(_table_step(op, table(op.table), max_key_bytes))
        else:
            raise TypeError(f"unknown write op {op!r}")
    return steps


def _table_step(op: TablePut | TableDelete | TableUpdate, t: TableHandle, max_key: int) -> Apply:
    key = check_key(op.key, max_key)
    partition = t.partition(key)
    if isinstance(op, TablePut):
        if op.value is None:
            raise ValueError("TablePut of None; use TableDelete")
        encoded = encode(op.value)
        vhash = value_hash(encoded)
        return partial(table_put, t=t, key=key, encoded=encoded, partition=partition, vhash=vhash)
    if isinstance(op, TableDelete):
        return partial(table_delete, t=t, key=key, partition=partition)
    return partial(table_update, t=t, key=key, fn=op.fn, partition=partition)


def run_steps(steps: list[Apply], w: WriteTxn) -> list[Any]:
    """Apply ``steps`` in order in ``w`` (the writer runs this as one atomic request)."""
    return [step(w) for step in steps]
