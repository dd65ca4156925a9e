"""The agent's memory: its allocator setting (dfspeer.memory) and the libraries it loads."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dfspeer.loopback import free_port
from tests.unit.test_access_jwt import pem

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


OPTIONAL = ("jwt", "cryptography", "botocore")
LOADED_BY_A_PEER = """
import asyncio, json, sys
from pathlib import Path
from dfspeer.peer import Peer
from tests.unit.test_peer_single import secured_config_for

async def main(tmp, s3_port, jwt_key):
    changes = {"s3_port": int(s3_port)}
    if jwt_key:
        changes["jwt_public_key_file"] = Path(jwt_key)
    config, _ = secured_config_for(Path(tmp), Path(tmp) / "p1", **changes)
    async with Peer(config) as peer:
        await peer.wait_ready(10)
    print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[4:]))))

asyncio.run(main(*sys.argv[1:4]))
"""


def optional_stacks_loaded(tmp_path: Path, s3_port: int, jwt_key: Path | None) -> list[str]:
    """Which of :data:`OPTIONAL` a fresh interpreter running one Peer has imported."""
    tmp_path.mkdir()
    args = [str(tmp_path), str(s3_port), str(jwt_key or ""), *OPTIONAL]
    done = subprocess.run(
        [sys.executable, "-c", LOADED_BY_A_PEER, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_a_peer_loads_jwt_and_s3_libraries_only_when_it_uses_them(tmp_path: Path) -> None:
    """PyJWT with cryptography (about 8 MiB of RSS) load only for a JWT key source, and
    botocore (about 10 MiB) only for an S3 port."""
    assert optional_stacks_loaded(tmp_path / "plain", 0, None) == []
    key = tmp_path / "jwt.pem"
    key.write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    assert optional_stacks_loaded(tmp_path / "jwt", 0, key) == ["cryptography", "jwt"]
    s3 = optional_stacks_loaded(tmp_path / "s3", free_port("127.0.0.1"), None)
    assert s3 == ["botocore"]
