"""Errors raised by :mod:`dfspeer.blockstore`.

All derive from :class:`BlockStoreError`, itself a :class:`dfspeer.errors.DfsError`, so the
API layer can render any of them as the one JSON error shape with a stable ``code``.
Invalid *arguments* (a digest that is not 32 bytes, an empty table key, an unknown op)
raise :class:`ValueError` / :class:`TypeError` instead: they are programming errors of the
caller, and nothing is written.
"""

from __future__ import annotations

from dfspeer.errors import DfsError, InsufficientStorage


class BlockStoreError(DfsError):
    """Base of every block store error; also raised on use after :meth:`BlockStore.close`
    and for LMDB failures that have no more specific class (e.g. an I/O error on commit)."""

    code, status = "blockstore_error", 500


class BlockNotFound(BlockStoreError):
    """No block is stored under ``digest`` (32-byte SHA-256)."""

    code, status = "block_not_found", 404

    def __init__(self, digest: bytes) -> None:
        super().__init__(f"block {digest.hex()} not found")
        self.digest = digest


class CorruptBlock(BlockStoreError):
    """The stored bytes under ``digest`` no longer hash to it (bit rot, torn media, tampering).

    ``actual`` is the SHA-256 of what was read. The block is left in place: a scrub or a
    fresh :meth:`BlockStore.put` of the right content (read repair) overwrites it.
    """

    code, status = "corrupt_block", 500

    def __init__(self, digest: bytes, actual: bytes) -> None:
        super().__init__(f"block {digest.hex()} is corrupt: stored bytes hash to {actual.hex()}")
        self.digest = digest
        self.actual = actual


class DigestMismatch(BlockStoreError):
    """``put_verified(digest, data)`` with ``sha256(data) != digest``; nothing was written."""

    code, status = "digest_mismatch", 400

    def __init__(self, expected: bytes, actual: bytes) -> None:
        super().__init__(
            f"data hashes to {actual.hex()}, not to the expected digest {expected.hex()}"
        )
        self.expected = expected
        self.actual = actual


class StoreFull(BlockStoreError, InsufficientStorage):
    """The LMDB map (``map_size_bytes``) is full, or the disk under it (an LMDB write error
    with under 64 MiB free there): 507 ``store_full``. The write was not applied, nothing
    already stored is affected, and reads and deletes keep working.

    Also an :class:`~dfspeer.errors.InsufficientStorage`: ``store_full`` is the precise code
    the ``/internal/`` API answers with (:class:`dfspeer.cluster.rpc.PeerStoreFull` on the
    caller's side); a quorum write that full stores made impossible reaches a public client
    as 507 ``insufficient_storage``."""

    code, status = "store_full", 507


class StoreFormatError(BlockStoreError):
    """The data dir holds a block store of another on-disk format than this dfspeer reads.

    ``found``/``expected``: the two format versions (bytes, e.g. ``b"1"``). Nothing is
    read or changed; the operator keeps the old release or wipes the peer (repair refills
    it from the other replicas)."""

    code, status = "store_format", 500

    def __init__(self, found: bytes, expected: bytes) -> None:
        super().__init__(
            f"the block store holds on-disk format {found.decode(errors='replace')}, but this "
            f"dfspeer reads format {expected.decode()} only; run the release that wrote it, "
            "or wipe this peer's data dir and let repair refill it from the other replicas"
        )
        self.found = found
        self.expected = expected
