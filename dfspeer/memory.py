"""Process-wide memory settings of a ``dfspeer agent`` process (glibc's ``mallopt(3)``).

The data path allocates and frees buffers of 256 KiB to a few MiB many times a second:
socket reads and body pieces, chunks, block copies, ranged reads. What glibc does with them
decides two costs that pull against each other:

* **Page faults.** A block served by its own ``mmap`` (above ``M_MMAP_THRESHOLD``), or heap
  memory given back to the kernel when more than ``M_TRIM_THRESHOLD`` lies free at the top
  of the heap, comes back as fresh zeroed pages the next time: one fault per 4 KiB page.
  On these machines a fault costs about 2 microseconds, so copying a 2 MiB block into a
  fresh mapping took about 1,200 microseconds, and 40 in reused heap memory.
* **Resident memory.** glibc's default raises both thresholds (up to 32 MiB) every time a
  mapped block is freed, so after the first chunks every buffer comes from a heap that
  keeps what it frees: a 2 GiB upload measured a 155 MiB peak RSS on the coordinator.

Settings (each set explicitly, which also turns glibc's dynamic adjustment off):

* ``M_MMAP_THRESHOLD`` 4 MiB: chunks (mostly 1-4 MiB), block copies and 1 MiB ranges reuse
  heap memory; larger buffers still go back to the kernel on ``free``;
* ``M_TRIM_THRESHOLD`` 16 MiB: up to that much free memory at the top of a heap is kept for
  the next buffer rather than returned and faulted in again;
* ``M_ARENA_MAX`` 2: worker threads (block reads, the LMDB writer) share two heaps rather
  than glibc's 8 per core, each of which would keep its own free memory.

Measured (``benchmarks/upload_cpu.py``, ``benchmarks/rss_upload.py``; figures in the
README, *Against OpenStack Swift*): against a 1 MiB mmap threshold and default trimming,
alternated, uploads took 9.8-11.6 CPU-s/GiB over the three agents instead of 12.6-13.2, and
the coordinator's peak RSS during a 2 GiB upload was 142-146 MiB (130-141 MiB before):
under the 150 MiB aim. A 1 MiB ranged read went from about 200 page faults to none.

Only the agent command calls :func:`return_large_blocks_to_the_kernel`: an application
embedding dfspeer as a library keeps its own allocator settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 16 * 1024 * 1024
ARENA_MAX = 2


def return_large_blocks_to_the_kernel(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold at ``threshold_bytes``, its trim threshold at
    :data:`TRIM_THRESHOLD_BYTES` and its arena count at :data:`ARENA_MAX` (module
    docstring); True if the mmap threshold was set. Does nothing (False) off Linux, or with
    a C library that is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold_bytes))
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; keeping the allocator's default")
        return False
    for option, value in ((M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES), (M_ARENA_MAX, ARENA_MAX)):
        if not mallopt(option, value):
            log.debug("mallopt(%d, %d) refused", option, value)
    return True
