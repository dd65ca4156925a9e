"""Written blocks leave the OS page cache: a replica's copies at once, a coordinator's own
writes once a window of newer ones follows (as Swift's object servers drop what they wrote
after the fsync, and as Ceph's BlueStore and MinIO bypass the cache with ``O_DIRECT`` for
object data).

Every page of a new block takes a page of the OS page cache, and under a steady stream of
writes the kernel must keep finding free pages for them. Where free pages are costly to
take — on the test machine, a VM whose free memory the host reclaims, writing 2 MiB values
and fsyncing each cost 2.7 CPU-seconds per GiB in the writing thread with the pages kept
and 0.4 with each value's pages dropped after its commit, because dropped pages are reused
at once — caching every copy of every upload is what an upload's CPU goes to. Yet a block
is read back soon after it is written mostly through the peer that coordinated the write
(a client reads its upload back through the peer it wrote through, and that peer serves
reads from its own copy first), and hardly ever from the other replicas' copies. So:

* a block written *for another peer* (a replica's copy, a hinted or repaired one) leaves
  the cache once its commit is answered;
* a block this peer wrote *as the coordinator* of an upload (``keep_cached``) stays cached
  while it is among the newest ``recent_bytes`` of such writes — the tail of the stream,
  the part a reader is most likely to ask for, as Kafka's consumers read a log's tail from
  the page cache — and leaves it after;
* blocks under :data:`DROP_MIN_BYTES` (an object's small last chunk) always stay.

A later read of a dropped block pays one disk read, after which its pages stay cached like
any other read's (reads never drop).

:class:`WrittenPageDropper` runs in the store's writer thread once a group's callers have
their answers (``GroupCommitWriter(after_settle=...)``). For a block to drop, it finds where
LMDB put the value — its address in the read-only map minus the map's base is its offset in
``data.mdb`` —, unmaps those pages and their neighbours within :data:`FOLIO_REACH` from this process
(``madvise(MADV_DONTNEED)`` on the shared, read-only, file-backed map: only page-table
entries go, a later read faults the bytes in again) and calls
``posix_fadvise(POSIX_FADV_DONTNEED)`` on the value's pages. The unmapping matters: the
kernel keeps file pages in large folios, and a read of a B-tree page beside a new value
maps the whole folio, value pages included, into the process — and the kernel never drops
a mapped page. The pages are clean (the commit fsynced them), so the kernel
frees them; pages another read maps again in between, or that share a folio with a mapped
page, stay. A wrong or stale offset can only cost a later disk read, never a wrong byte:
both calls touch the cache and the page tables, not the file. Only durable stores drop (a
non-durable store's pages are still dirty after its commit, and dropping would force their
writeback); only Linux, with ``madvise`` and CPython's buffer API reachable through
``ctypes`` (:mod:`.residency`).
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import lmdb

from dfspeer.blockstore.residency import PAGE, address

log = logging.getLogger(__name__)
MADV_DONTNEED = 4  # Linux's value on every architecture
DROP_MIN_BYTES = 256 * 1024
"""Blocks smaller than this stay cached (an object's small last chunk: cheap to keep)."""
FOLIO_REACH = 2 * 1024 * 1024
"""The largest page-cache folio (a PMD: 2 MiB on x86-64 and arm64 with 4 KiB pages)."""


def _bind_madvise() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


_MADVISE = _bind_madvise()


def map_span(data_file: Path) -> tuple[int, int] | None:
    """``(start, end)`` addresses of this process's shared, read-only mapping of
    ``data_file`` from file offset 0 (the LMDB map), read from ``/proc/self/maps``; None if
    there is none or it cannot be read."""
    try:
        inode = os.stat(data_file).st_ino
        real = os.path.realpath(data_file)
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) < 6 or int(fields[2], 16) != 0 or int(fields[4]) != inode:
                    continue
                if fields[1] != "r--s" or os.path.realpath(fields[5].strip()) != real:
                    continue
                start, end = fields[0].split("-", 1)
                return int(start, 16), int(end, 16)
    except (OSError, ValueError):
        return None
    return None


def runs(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """Merge ``(address, size)`` spans that touch or lie within a page of each other into
    ``(start, end, spans merged, their bytes)`` runs, in address order. Values written by
    one commit lie side by side in the file, and a large folio across the border of two of
    them is dropped only by a call that covers it whole."""
    out: list[tuple[int, int, int, int]] = []
    for where, size in sorted(spans):
        if out and where - out[-1][1] <= PAGE:
            start, end, count, total = out[-1]
            out[-1] = (start, max(end, where + size), count + 1, total + size)
        else:
            out.append((where, where + size, 1, size))
    return out


class WrittenPageDropper:
    """Drops written blocks' pages from the OS page cache (module docstring).

    ``env``: the store's LMDB environment (opened with ``writemap=False``);
    ``blocks_db``: its sub-database of block values; ``fd``: ``data.mdb`` opened for
    reading; ``span``: the map's addresses (:func:`map_span`); ``recent_bytes`` (>= 0):
    the window of a coordinator's newest writes that stays cached. Use :meth:`open`, which
    answers None where dropping cannot work here. Counters: ``dropped_blocks``,
    ``dropped_bytes`` (bytes asked to leave the cache); ``recent_bytes_held``: the window's
    bytes now.
    """

    def __init__(
        self,
        env: lmdb.Environment,
        blocks_db: lmdb._Database,
        fd: int,
        span: tuple[int, int],
        recent_bytes: int,
    ) -> None:
        self._env = env
        self._db = blocks_db
        self._fd = fd
        self._base, self._end = span
        self._recent_limit = recent_bytes
        self._recent: collections.deque[tuple[bytes, int]] = collections.deque()
        self.recent_bytes_held = 0
        self.dropped_blocks = 0
        self.dropped_bytes = 0

    @classmethod
    def open(
        cls, env: lmdb.Environment, path: Path, blocks_db: lmdb._Database, recent_bytes: int
    ) -> WrittenPageDropper | None:
        """A dropper for the store at ``path``, or None if this platform cannot drop (no
        ``posix_fadvise`` or ``madvise``, no ``/proc/self/maps``, no buffer addresses)."""
        if not hasattr(os, "posix_fadvise") or _MADVISE is None:
            return None
        if address(memoryview(b"x")) is None:
            return None
        data_file = path / "data.mdb"
        span = map_span(data_file)
        if span is None:
            log.info("page cache: cannot find the map of %s; written blocks stay cached", path)
            return None
        try:
            fd = os.open(data_file, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        return cls(env, blocks_db, fd, span, max(0, recent_bytes))

    def __call__(self, written: Sequence[bytes], kept: Sequence[tuple[bytes, int]]) -> None:
        """Drop the blocks ``written`` for other peers now; add the coordinator's ``kept``
        blocks (``(digest, size)``: not looked up, so not mapped in) to the window of recent
        writes and drop what falls out of it. Blocks that are gone or cannot be placed are
        skipped; never raises for one of them."""
        if self._fd < 0:
            return
        for digest, size in kept:
            if size >= DROP_MIN_BYTES:
                self._recent.append((digest, size))
                self.recent_bytes_held += size
        if not written and self.recent_bytes_held <= self._recent_limit:
            return  # the window still holds everything: no lookup, no read transaction
        with self._env.begin(buffers=True) as txn:
            doomed = [self._place(txn, digest) for digest in written]
            while self.recent_bytes_held > self._recent_limit:
                digest, size = self._recent.popleft()
                self.recent_bytes_held -= size
                doomed.append(self._place(txn, digest))
            # Every lookup is done before the first drop: a lookup maps the folio of the
            # B-tree page it reads, which may hold pages of a value dropped before it.
            for where, end, count, size in runs(filter(None, doomed)):
                if self._drop(where, end - where):
                    self.dropped_blocks += count
                    self.dropped_bytes += size

    def _place(self, txn: lmdb.Transaction[memoryview], digest: bytes) -> tuple[int, int] | None:
        """``(address, size)`` of a block worth dropping, None if it is gone or small."""
        view = txn.get(digest, db=self._db)
        if view is None or len(view) < DROP_MIN_BYTES:
            return None
        where = address(view)
        return None if where is None else (where, len(view))

    def _drop(self, where: int, size: int) -> bool:
        """Unmap and drop the pages of ``size`` bytes at address ``where`` of the map."""
        if where < self._base or where + size > self._end:
            return False
        # Unmap from FOLIO_REACH before to FOLIO_REACH after the value: a large folio that
        # holds some of its pages may be mapped through a neighbour's page (a B-tree page
        # read by a lookup), and the kernel drops no folio that is mapped.
        first = max(self._base, (where - FOLIO_REACH) // PAGE * PAGE)
        last = min(self._end, -(-(where + size + FOLIO_REACH) // PAGE) * PAGE)
        _MADVISE(first, last - first, MADV_DONTNEED)  # type: ignore[operator]
        offset = where - self._base
        start = offset - offset % PAGE
        try:
            os.posix_fadvise(self._fd, start, offset + size - start, os.POSIX_FADV_DONTNEED)
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Close the file descriptor; later calls drop nothing. Idempotent."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
