"""What peer RPC's client, server and channel share: limits, names, the body hash."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time

from prometheus_client import Histogram

from dfspeer.errors import InsufficientStorage, RpcError

TABLE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_RECORD_BYTES = 64 * 1024 * 1024
MAX_SCAN_LIMIT = 1000
MAX_HAS_DIGESTS = 4096
"""Most digests one ``POST /internal/blocks/has`` may ask about."""
_HASH_IN_THREAD_BYTES = 256 * 1024
STORE_FULL_CODES = frozenset({"store_full", "insufficient_storage"})
"""Error codes of a 507 answer meaning "my block store is full" (``hints_full`` is not)."""


class PeerStoreFull(RpcError, InsufficientStorage):
    """The peer answered 507 ``store_full`` (or ``insufficient_storage``): its block store
    has no space left and applied nothing. An :class:`RpcError` carrying the peer's
    ``status``/``code``, and an :class:`~dfspeer.errors.InsufficientStorage`, so a quorum
    write can tell full replicas from unreachable ones."""


async def sha256_hex(data: bytes) -> str:
    """Hex SHA-256, off the event loop for large buffers (hashlib releases the GIL)."""
    if len(data) >= _HASH_IN_THREAD_BYTES:
        return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
    return hashlib.sha256(data).hexdigest()


def check_table_name(table: str) -> str:
    """``table`` if it is a valid table name; else ValueError."""
    if not TABLE_NAME_RE.match(table):
        raise ValueError(f"invalid table name {table!r}")
    return table


def observe(
    latency: Histogram | None, address: str, method: str, outcome: str, started: float
) -> None:
    """Record one peer call begun at ``started`` (``time.perf_counter()``) in the
    ``dfspeer_rpc_duration_seconds`` histogram, if there is one."""
    if latency is not None:
        latency.labels(address, method, outcome).observe(time.perf_counter() - started)


def answer_error(address: str, status: int, code: str, message: str) -> RpcError:
    """The error for a peer's error answer: :class:`PeerStoreFull` for 507 with a
    store-full code, else :class:`RpcError` with the answer's ``status`` and ``code``."""
    cls = PeerStoreFull if status == 507 and code in STORE_FULL_CODES else RpcError
    return cls(f"{address}: {status} {code}: {message}", status=status, code=code)
