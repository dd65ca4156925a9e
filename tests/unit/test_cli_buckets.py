"""The bucket, versions and repair commands of the dfspeer CLI against one real in-process
Peer. The CLI runs its own event loop, so each command runs in a worker thread while the
peer serves on the test's loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfspeer.cli import main
from dfspeer.commands.cluster import gc_rows, status_rows
from dfspeer.peer import Peer
from tests.unit.test_peer_single import config_for


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[Peer]:
    async with Peer(config_for(tmp_path / "p1")) as running:
        await running.wait_ready(10)
        yield running


async def run(capsys: pytest.CaptureFixture[str], peer: Peer, *argv: str) -> tuple[int, str, str]:
    """``dfspeer ARGV --peer URL``: (exit code, stdout, stderr)."""
    code = await asyncio.to_thread(main, [*argv, "--peer", peer.api_url])
    out, err = capsys.readouterr()
    return code, out, err


async def test_bucket_commands(peer: Peer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await run(capsys, peer, "bucket", "create", "docs", "--versioning", "enabled")
    assert code == 0 and out == "created bucket docs (versioning enabled)\n"
    code, out, _ = await run(capsys, peer, "bucket", "create", "docs")
    assert code == 0 and out.startswith("bucket exists: docs")
    assert (await run(capsys, peer, "bucket", "create", "raw"))[0] == 0
    code, out, _ = await run(capsys, peer, "bucket", "ls")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:2] == ["NAME", "VERSIONING"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["docs", "enabled"],
        ["raw", "unversioned"],
    ]
    code, out, _ = await run(capsys, peer, "bucket", "ls", "--json")
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["docs", "raw"]

    code, out, _ = await run(capsys, peer, "bucket", "versioning", "raw", "suspended")
    assert code == 0 and out == "raw: versioning suspended\n"
    with pytest.raises(SystemExit) as bad:
        await run(capsys, peer, "bucket", "versioning", "raw", "sometimes")
    assert bad.value.code == 2 and "invalid choice" in capsys.readouterr().err

    await peer.put_object("docs", "a.txt", b"abc")
    code, out, _ = await run(capsys, peer, "bucket", "stat", "docs", "--json")
    assert json.loads(out)["objects"] == 1 and json.loads(out)["bytes"] == 3
    code, out, err = await run(capsys, peer, "bucket", "rm", "docs")
    assert code == 1 and out == ""
    assert err.startswith("dfspeer: bucket_not_empty: ") and err.count("\n") == 1
    assert (await run(capsys, peer, "bucket", "rm", "raw"))[0] == 0
    code, _, err = await run(capsys, peer, "bucket", "rm", "raw")
    assert code == 1 and err.startswith("dfspeer: no_such_bucket: ")
    code, _, err = await run(capsys, peer, "bucket", "stat", "raw")
    assert code == 1 and err.startswith("dfspeer: no_such_bucket: ")


async def test_versions_get_and_rm_version(
    peer: Peer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    await peer.create_bucket("vers", versioning="enabled")
    src = tmp_path / "src.txt"
    src.write_text("old")
    code, out, _ = await run(capsys, peer, "put", str(src), "vers/k", "--meta", "owner=ada")
    assert code == 0
    old = out.split("version ")[-1].strip()
    new = (await peer.put_object("vers", "k", b"newer")).version
    code, out, _ = await run(capsys, peer, "stat", "vers/k", "--version", old)
    assert code == 0 and "meta owner:" in out and "ada" in out
    assert (await run(capsys, peer, "rm", "vers/k"))[0] == 0

    code, out, _ = await run(capsys, peer, "versions", "vers/k")
    rows = out.splitlines()
    assert code == 0 and rows[0].split() == ["MODIFIED", "(UTC)", "SIZE", "VERSION", "FLAGS"]
    assert rows[1].split()[-1] == "latest,marker"
    assert [r.split()[-2] for r in rows[2:]] == [new, old]
    code, out, _ = await run(capsys, peer, "versions", "--json", "vers/k")
    assert [json.loads(line)["size"] for line in out.splitlines()] == [0, 5, 3]
    code, out, _ = await run(capsys, peer, "versions", "--prefix", "vers")
    assert code == 0 and out.splitlines()[0].split()[-1] == "KEY" and len(out.splitlines()) == 4

    code, _, err = await run(capsys, peer, "get", "vers/k")
    assert code == 1 and err.startswith("dfspeer: no_such_key: ")
    dest = tmp_path / "old.txt"
    code, _, _ = await run(capsys, peer, "get", "vers/k", "--version", old, "-o", str(dest))
    assert code == 0 and dest.read_bytes() == b"old"
    code, out, _ = await run(capsys, peer, "get", "vers/k", "--version", old, "--range", "1-")
    assert code == 0 and out == "ld"
    code, _, err = await run(capsys, peer, "get", "vers/k", "--version", "0-none")
    assert code == 1 and err.startswith("dfspeer: no_such_version: ")

    assert (await run(capsys, peer, "rm", "--version", new, "vers/k"))[0] == 0
    code, _, err = await run(capsys, peer, "rm", "--version", "0-none", "vers/k")
    assert code == 1 and err.startswith("dfspeer: no_such_version: ")
    code, out, _ = await run(capsys, peer, "versions", "--json", "vers/k")
    assert [json.loads(line)["size"] for line in out.splitlines()] == [0, 3]
    code, _, err = await run(capsys, peer, "versions", "vers/none")
    assert code == 1 and err.startswith("dfspeer: no_such_key: ")


async def test_status_gc_rows_and_repair(peer: Peer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await run(capsys, peer, "status")
    assert code == 0
    assert "gc blocks deleted:" in out and "gc grace s:" in out and "gc last pass:" in out
    code, out, _ = await run(capsys, peer, "repair", "block-refs")
    assert code == 0 and "reference(s) to" in out and "count(s) changed" in out
    code, out, _ = await run(capsys, peer, "repair", "block-refs", "--json")
    assert set(json.loads(out)) == {"references", "blocks", "changed"}


def test_gc_rows_format() -> None:
    rows = dict(
        gc_rows(
            {
                "grace_s": 3600,
                "bytes_reclaimed": 2048,
                "last_pass": None,
                "blocks_deleted": 4,
                "extra": {"a": 1},
            }
        )
    )
    assert rows == {
        "gc grace s": "3600 s (1.0 h)",
        "gc bytes reclaimed": "2048 (2.0 KiB)",
        "gc last pass": "never",
        "gc blocks deleted": 4,
        "gc extra": '{"a": 1}',
    }
    assert ("gc blocks deleted", 1) in status_rows({"id": "p", "gc": {"blocks_deleted": 1}})
