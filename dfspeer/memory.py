"""Process-wide memory settings of a ``dfspeer agent`` process.

An upload's chunks are buffers of up to a few MiB allocated and freed many times a second.
glibc's ``malloc`` serves blocks above ``M_MMAP_THRESHOLD`` with their own ``mmap`` (given
back to the kernel on ``free``), but raises that threshold (up to 32 MiB on 64-bit) every
time such a block is freed, so after the first chunks every later one comes from the heap,
whose freed memory the process keeps: a 2 GiB upload measured a 155 MiB peak RSS on the
coordinator, 116 MiB with the threshold pinned at 256 KiB (``benchmarks/rss_upload.py``).
Setting the threshold explicitly also turns glibc's dynamic adjustment off (``mallopt(3)``).

The threshold sits at 1 MiB, above the buffers a request body arrives in (asyncio reads
256 KiB from a socket at a time, and aiohttp's parser copies each read into a body piece
of that size): at 256 KiB exactly those pieces (256 KiB + the object header) each got a
fresh ``mmap`` -- 64 page faults per piece, each page zeroed by the kernel, then
``munmap`` -- a large share of every agent's upload CPU (``benchmarks/upload_cpu.py``;
figures in the README, *Against OpenStack Swift*). Chunks (512 KiB..8 MiB, mostly over
1 MiB) still go back to the kernel as before.

Only the agent command calls :func:`return_large_blocks_to_the_kernel`: an application
embedding dfspeer as a library keeps its own allocator settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
MMAP_THRESHOLD_BYTES = 1024 * 1024


def return_large_blocks_to_the_kernel(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold at ``threshold_bytes`` (module docstring); True if set.
    Does nothing (False) off Linux, or with a C library that is not glibc."""
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
    return done
