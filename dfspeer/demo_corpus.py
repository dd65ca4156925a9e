"""Real files from this machine for ``dfspeer demo``: one large binary and a tree of small
files, found with no configuration on any Linux or macOS machine with Python."""

from __future__ import annotations

import email
import json
import os
import stat
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dfspeer.client import sha256_file
from dfspeer.commands.common import human_bytes

MIN_SOURCE_BYTES = 64 * 1024
MAX_WALK_ENTRIES = 20_000
SMALL_PACKAGES = (email, json)


@dataclass
class Corpus:
    """The files the demo stores. ``small`` is ``[(object key, local path)]``."""

    big_path: Path
    big_key: str
    big_size: int
    big_sha256: str
    big_sources: list[Path]
    small_prefix: str
    small: list[tuple[str, Path]] = field(default_factory=list)

    def describe(self) -> str:
        """One line: what the files are and where they came from."""
        roots = sorted({str(p.parent) for p in self.big_sources})[:3]
        small_bytes = sum(p.stat().st_size for _, p in self.small)
        more = ", ..." if len(roots) == 3 else ""
        return (
            f"{self.big_key} {human_bytes(self.big_size)} concatenated from "
            f"{len(self.big_sources)} files ({', '.join(roots)}{more});"
            f" {len(self.small)} small files ({human_bytes(small_bytes)}) from the Python "
            f"stdlib packages {', '.join(m.__name__ for m in SMALL_PACKAGES)}"
        )


def source_roots() -> list[Path]:
    """Directories searched for large files, most Python-specific first."""
    roots = [
        Path(sys.executable).resolve().parent,
        Path(sysconfig.get_config_var("LIBDIR") or sys.prefix),
        Path(sysconfig.get_paths()["platstdlib"]) / "lib-dynload",
        Path("/usr/lib"),
        Path("/usr/lib64"),
        Path("/usr/local/lib"),
        Path("/usr/bin"),
    ]
    seen: list[Path] = []
    for r in roots:
        if r.is_dir() and r not in seen:
            seen.append(r)
    return seen


def _large_files(root: Path, inodes: set[tuple[int, int]]) -> list[tuple[Path, int]]:
    """Regular readable files >= 64 KiB under ``root`` (no symlinks, each inode once,
    at most :data:`MAX_WALK_ENTRIES` looked at), largest first."""
    found: list[tuple[Path, int]] = []
    visited = 0
    for dirpath, _dirnames, filenames in os.walk(root, onerror=lambda _e: None):
        for name in filenames:
            visited += 1
            if visited > MAX_WALK_ENTRIES:
                break
            path = Path(dirpath) / name
            try:
                st = path.lstat()
            except OSError:
                continue
            ident = (st.st_dev, st.st_ino)
            if not stat.S_ISREG(st.st_mode) or ident in inodes or st.st_size < MIN_SOURCE_BYTES:
                continue
            if os.access(path, os.R_OK):
                inodes.add(ident)
                found.append((path, st.st_size))
    return sorted(found, key=lambda pf: (-pf[1], str(pf[0])))


def _candidates() -> Iterator[Path]:
    """Large files root by root (Python's own first), each root's largest first."""
    inodes: set[tuple[int, int]] = set()
    for root in source_roots():
        for path, _ in _large_files(root, inodes):
            yield path
    yield Path(sys.executable).resolve()


def build_big_file(dest: Path, size: int) -> list[Path]:
    """Write ``size`` bytes to ``dest`` by concatenating large readable files from this
    machine (see :func:`source_roots`), repeating them if there are fewer bytes than
    ``size``; returns the sources in order."""
    used: list[Path] = []
    written = 0
    with open(dest, "wb") as out:
        while written < size:
            before = written
            for path in _candidates():
                try:
                    with open(path, "rb") as f:
                        while written < size and (piece := f.read(min(1 << 20, size - written))):
                            out.write(piece)
                            written += len(piece)
                except OSError:
                    continue
                used.append(path)
                if written >= size:
                    break
            if written == before:
                raise OSError(f"no readable file to build the demo's {size}-byte blob from")
    return used


def small_files(prefix: str) -> list[tuple[str, Path]]:
    """Every regular file of the stdlib packages in :data:`SMALL_PACKAGES` (no caches),
    keyed ``<prefix><package>/<relative path>``."""
    found: list[tuple[str, Path]] = []
    for module in SMALL_PACKAGES:
        root = Path(str(module.__file__)).parent
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(root).as_posix()
                found.append((f"{prefix}{module.__name__}/{rel}", path))
    return found


def build_corpus(workdir: Path, big_size: int) -> Corpus:
    """Build the large file under ``workdir`` and collect the small files."""
    workdir.mkdir(parents=True, exist_ok=True)
    big = workdir / "machine-blob.bin"
    sources = build_big_file(big, big_size)
    return Corpus(
        big_path=big,
        big_key="large/machine-blob.bin",
        big_size=big.stat().st_size,
        big_sha256=sha256_file(big),
        big_sources=sources,
        small_prefix="stdlib/",
        small=small_files("stdlib/"),
    )
