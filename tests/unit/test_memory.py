"""The agent's allocator setting (dfspeer.memory)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt's M_MMAP_THRESHOLD is a glibc setting")
def test_freed_chunk_buffers_go_back_to_the_kernel() -> None:
    """With the threshold pinned, 8 MiB buffers (above it) freed among small objects that
    stay leave the process's RSS where it was; glibc's default (which raised its threshold
    when the first one was freed) keeps them in the heap."""
    script = """
import sys
from dfspeer.memory import return_large_blocks_to_the_kernel
if sys.argv[1] == "pinned":
    assert return_large_blocks_to_the_kernel()
def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
first = bytearray(8 << 20)  # freed: glibc's default raises its threshold past 8 MiB
del first
base = rss_kib()
blocks, pins = [], []
for _ in range(8):  # 64 MiB of buffers, each followed by a small object that stays
    blocks.append(bytearray(8 << 20))
    pins.append(bytearray(64 << 10))
del blocks  # a heap cannot shrink past the pins; mmapped buffers are unmapped
print(rss_kib() - base)
"""

    def growth_kib(mode: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", script, mode], check=True, capture_output=True, text=True
        )
        return int(out.stdout.strip())

    assert growth_kib("default") > 32 * 1024  # the heap kept the freed buffers
    assert growth_kib("pinned") < 8 * 1024


@pytest.mark.skipif(not GLIBC, reason="mallopt's thresholds are glibc settings")
def test_block_sized_buffers_reuse_heap_memory() -> None:
    """2 MiB copies made and freed in turn (a chunk, a block read) take no page fault each
    once the settings are pinned; with a 1 MiB mmap threshold every copy is a fresh mapping
    of 512 pages, each faulted in."""
    script = """
import resource, sys
from dfspeer.memory import return_large_blocks_to_the_kernel
assert return_large_blocks_to_the_kernel(int(sys.argv[1]))
source = memoryview(bytes(range(256)) * (8 << 10))  # 2 MiB
for _ in range(8):  # warm up
    bytes(source)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    bytes(source)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

    def faults(threshold: int) -> int:
        out = subprocess.run(
            [sys.executable, "-c", script, str(threshold)],
            check=True,
            capture_output=True,
            text=True,
        )
        return int(out.stdout.strip())

    assert faults(1 << 20) > 200 * 400  # a fresh mapping per copy
    assert faults(4 << 20) < 200 * 4  # reused heap memory
