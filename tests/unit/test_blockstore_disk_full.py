"""A full disk under the block store is ``StoreFull`` (507), not a generic store error:
LMDB reports the failed page writes as an I/O error, so the store looks at the free space."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from dfspeer.blockstore import BlockStore, StoreFull, store_base

MIB = 1 << 20
Usage = namedtuple("Usage", "total used free")


async def test_an_io_error_with_no_space_left_is_store_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failure = lmdb.Error("mdb_txn_commit: Input/output error")
    async with BlockStore(tmp_path / "s") as store:
        monkeypatch.setattr(store_base.shutil, "disk_usage", lambda _p: Usage(1, 1, 4096))
        full = store._map_error(failure)
        assert isinstance(full, StoreFull) and full.code == "store_full"
        assert "4096 bytes free" in full.message
        monkeypatch.setattr(store_base.shutil, "disk_usage", lambda _p: Usage(1, 1, 10**12))
        other = store._map_error(failure)
        assert not isinstance(other, StoreFull) and other.code != "store_full"
        monkeypatch.setattr(store_base.shutil, "disk_usage", _unknown)
        assert not isinstance(store._map_error(failure), StoreFull)


def _unknown(_path: object) -> Usage:
    raise OSError("no statvfs here")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 12 MiB tmpfs (root and mount(8) needed, else the test is skipped)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    where = tmp_path / "tiny"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def test_filling_the_disk_gives_store_full_and_keeps_what_was_stored(
    tiny_disk: Path,
) -> None:
    stored: dict[bytes, bytes] = {}
    async with BlockStore(tiny_disk / "s", map_size_bytes=256 * MIB) as store:
        with pytest.raises(StoreFull) as caught:
            for _ in range(40):
                data = os.urandom(MIB)
                stored[await store.put(data)] = data
        assert "disk under the block store is full" in caught.value.message
        assert len(stored) >= 3
        for digest, data in stored.items():
            assert await store.get(digest) == data
        assert store.stats().block_count == len(stored)
