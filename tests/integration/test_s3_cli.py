"""The real AWS CLI (``aws``, from the ``test`` extra) against three real agents' S3 ports.

Cluster: 127.0.0.111..113, HTTP 27070.., gossip 27946.., S3 on each agent's
``LocalCluster`` S3 port (7080 + i - 1, distinct addresses), credentials from an
``s3_credentials_file``. ``aws s3 cp`` of a 100 MiB file of this machine's own bytes up
(multipart: the CLI's 8 MiB threshold) through one peer and down through another (SHA-256
compared), ``aws s3 sync`` of a directory tree both ways, ``aws s3 ls --recursive``,
``aws s3 rm --recursive``, ``aws s3api put-bucket-versioning`` / ``list-object-versions``.
A missing CLI fails the module: it is installed by the test extra.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dfspeer.demo_corpus import build_big_file
from dfspeer.localcluster import LocalCluster
from tests.integration.conftest import start_s3_cluster

pytestmark = pytest.mark.integration

AK = "AKIDFSPEERCLITEST01"
SK = "cli-secret/0123456789abcdefghijklmnopqrstuv"
MiB = 1024 * 1024
BIG_BYTES = 100 * MiB
BUCKET = "cli-bucket"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from start_s3_cluster(
        tmp_path_factory.mktemp("s3-cli-cluster"),
        access_key=AK,
        secret=SK,
        host_base=110,
        base_port=27070,
        gossip_base_port=27946,
        map_size_bytes=1024 * MiB,
    )


class Aws:
    """Runs ``python -m awscli`` with the test's key, region and a config of its own."""

    def __init__(self, home: Path) -> None:
        if importlib.util.find_spec("awscli") is None:
            pytest.fail("the AWS CLI (awscli) is not installed: pip install -e '.[test]'")
        config = home / "aws.config"
        config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "AWS_ACCESS_KEY_ID": AK,
            "AWS_SECRET_ACCESS_KEY": SK,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "absent"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def __call__(
        self, endpoint: str, *args: str, timeout_s: float = 300.0, ok: tuple[int, ...] = (0,)
    ) -> str:
        """stdout of ``aws --endpoint-url endpoint args``; an exit code not in ``ok`` fails."""
        cmd = [sys.executable, "-m", "awscli", "--endpoint-url", endpoint, *args]
        done = subprocess.run(
            cmd, env=self.env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        assert done.returncode in ok, f"{' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done.stdout


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Aws:
    return Aws(tmp_path_factory.mktemp("aws-home"))


def _s3(cluster: LocalCluster, i: int) -> str:
    url = cluster.peer(i).s3_url
    assert url is not None
    return url


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(MiB):
            h.update(piece)
    return h.hexdigest()


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_cp_100_mib_up_and_down(cluster: LocalCluster, aws: Aws, tmp_path: Path) -> None:
    aws(_s3(cluster, 1), "s3", "mb", f"s3://{BUCKET}")
    big = tmp_path / "big.bin"
    build_big_file(big, BIG_BYTES)
    started = time.monotonic()
    aws(_s3(cluster, 1), "s3", "cp", str(big), f"s3://{BUCKET}/big/file.bin")
    up_s = time.monotonic() - started
    head = json.loads(
        aws(_s3(cluster, 2), "s3api", "head-object", "--bucket", BUCKET, "--key", "big/file.bin")
    )
    assert head["ContentLength"] == BIG_BYTES
    assert head["ETag"].strip('"').endswith("-13")  # 13 parts of the CLI's 8 MiB
    down = tmp_path / "down.bin"
    started = time.monotonic()
    aws(_s3(cluster, 3), "s3", "cp", f"s3://{BUCKET}/big/file.bin", str(down))
    down_s = time.monotonic() - started
    assert _sha256(down) == _sha256(big)
    print(f"aws s3 cp 100 MiB: up {up_s:.1f} s, down {down_s:.1f} s")


def test_sync_both_ways_ls_and_rm(cluster: LocalCluster, aws: Aws, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel, size in [
        ("a.txt", 10),
        ("empty", 0),
        ("dir/b.bin", 300_000),
        ("dir/sub/c.bin", 9 * MiB + 1),  # over the CLI's multipart threshold
        ("dir/sub/deeper/d e.txt", 1234),
        ("other/ünï.txt", 77),
    ]:
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    aws(_s3(cluster, 1), "s3", "sync", str(src), f"s3://{BUCKET}/tree/")
    back = tmp_path / "back"
    aws(_s3(cluster, 2), "s3", "sync", f"s3://{BUCKET}/tree/", str(back))
    assert _tree(back) == _tree(src)
    # a second sync finds nothing to do
    assert aws(_s3(cluster, 3), "s3", "sync", str(src), f"s3://{BUCKET}/tree/").strip() == ""
    listed = aws(_s3(cluster, 3), "s3", "ls", "--recursive", f"s3://{BUCKET}/tree/")
    keys = sorted(line.split(maxsplit=3)[3] for line in listed.splitlines() if line.strip())
    assert keys == sorted(f"tree/{k}" for k in _tree(src))
    aws(_s3(cluster, 1), "s3", "rm", "--recursive", f"s3://{BUCKET}/tree/")
    # `aws s3 ls` of nothing exits 1
    left = aws(_s3(cluster, 2), "s3", "ls", "--recursive", f"s3://{BUCKET}/tree/", ok=(0, 1))
    assert left.strip() == ""
    rest = aws(_s3(cluster, 2), "s3", "ls", "--recursive", f"s3://{BUCKET}/", "--page-size", "2")
    assert [line.split(maxsplit=3)[3] for line in rest.splitlines()] == ["big/file.bin"]


def test_versioning_with_s3api(cluster: LocalCluster, aws: Aws, tmp_path: Path) -> None:
    aws(_s3(cluster, 1), "s3", "mb", "s3://cli-versions")
    aws(
        _s3(cluster, 1),
        "s3api",
        "put-bucket-versioning",
        "--bucket",
        "cli-versions",
        "--versioning-configuration",
        "Status=Enabled",
    )
    state = json.loads(
        aws(_s3(cluster, 2), "s3api", "get-bucket-versioning", "--bucket", "cli-versions")
    )
    assert state["Status"] == "Enabled"
    note = tmp_path / "note.txt"
    for text in ("first", "second"):
        note.write_text(text)
        aws(_s3(cluster, 1), "s3", "cp", str(note), "s3://cli-versions/note.txt")
    listed = json.loads(
        aws(_s3(cluster, 3), "s3api", "list-object-versions", "--bucket", "cli-versions")
    )
    versions = listed["Versions"]
    assert [v["Key"] for v in versions] == ["note.txt", "note.txt"]
    assert [v["IsLatest"] for v in versions] == [True, False]
    oldest = versions[1]["VersionId"]
    out = tmp_path / "old.txt"
    aws(
        _s3(cluster, 2),
        "s3api",
        "get-object",
        "--bucket",
        "cli-versions",
        "--key",
        "note.txt",
        "--version-id",
        oldest,
        str(out),
    )
    assert out.read_text() == "first"
