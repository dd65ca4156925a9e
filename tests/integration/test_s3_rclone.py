"""rclone (Debian's, installed by ``.ci/run``) against three real agents' S3 ports.

Cluster: 127.0.0.121..123, HTTP 28070.., gossip 28946.., S3 on each agent's
``LocalCluster`` S3 port, credentials from an ``s3_credentials_file``. The remote is
configured through environment variables only (``RCLONE_CONFIG_DFS_*``: ``type = s3``,
``provider = Other``, path style, region ``us-east-1``), with a 5 MiB upload cutoff and
chunk size so one file goes multipart. ``rclone copy`` up through one peer, ``check``
and ``lsf`` through others, ``sync`` back down and up again (a deletion propagates),
``cat --offset --count`` (a ranged GET), ``delete``. A missing rclone fails the module:
CI installs it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dfspeer.localcluster import LocalCluster
from tests.integration.conftest import start_s3_cluster

pytestmark = pytest.mark.integration

AK = "AKDFSPEERRCLONETEST1"
SK = "rclone-secret/0123456789abcdefghijklmnopq"
MiB = 1024 * 1024
BUCKET = "rclone-bucket"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from start_s3_cluster(
        tmp_path_factory.mktemp("s3-rclone-cluster"),
        access_key=AK,
        secret=SK,
        host_base=120,
        base_port=28070,
        gossip_base_port=28946,
        map_size_bytes=512 * MiB,
    )


class Rclone:
    """Runs ``rclone`` with remote ``dfs:`` pointed at one peer's S3 port per call."""

    def __init__(self, home: Path) -> None:
        binary = shutil.which("rclone")
        if binary is None:
            pytest.fail("rclone is not installed: apt-get install rclone (.ci/run does)")
        self.binary = binary
        config = home / "rclone.conf"
        config.write_text("")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "AWS_"))},
            "HOME": str(home),
            "RCLONE_CONFIG": str(config),
            "RCLONE_CONFIG_DFS_TYPE": "s3",
            "RCLONE_CONFIG_DFS_PROVIDER": "Other",
            "RCLONE_CONFIG_DFS_ACCESS_KEY_ID": AK,
            "RCLONE_CONFIG_DFS_SECRET_ACCESS_KEY": SK,
            "RCLONE_CONFIG_DFS_REGION": "us-east-1",
            "RCLONE_CONFIG_DFS_FORCE_PATH_STYLE": "true",
            "RCLONE_CONFIG_DFS_UPLOAD_CUTOFF": "5Mi",
            "RCLONE_CONFIG_DFS_CHUNK_SIZE": "5Mi",
        }

    def __call__(
        self, endpoint: str, *args: str, timeout_s: float = 300.0, ok: tuple[int, ...] = (0,)
    ) -> str:
        """stdout of ``rclone args`` against ``endpoint``; an exit code not in ``ok`` fails."""
        env = {**self.env, "RCLONE_CONFIG_DFS_ENDPOINT": endpoint}
        cmd = [self.binary, "--retries", "1", "--low-level-retries", "1", *args]
        done = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        assert done.returncode in ok, f"{' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done.stdout


@pytest.fixture(scope="module")
def rclone(tmp_path_factory: pytest.TempPathFactory) -> Rclone:
    return Rclone(tmp_path_factory.mktemp("rclone-home"))


def _s3(cluster: LocalCluster, i: int) -> str:
    url = cluster.peer(i).s3_url
    assert url is not None
    return url


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_copy_sync_check_lsf_cat_delete(
    cluster: LocalCluster, rclone: Rclone, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    for rel, size in [
        ("a.txt", 10),
        ("empty", 0),
        ("dir/b.bin", 300_000),
        ("dir/sub/c.bin", 12 * MiB + 3),  # over the 5 MiB cutoff: multipart
        ("dir/sub/deeper/d e.txt", 1234),
        ("other/ünï+&.txt", 77),
    ]:
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    remote = f"dfs:{BUCKET}/tree"

    rclone(_s3(cluster, 1), "mkdir", f"dfs:{BUCKET}")
    rclone(_s3(cluster, 1), "copy", str(src), remote)
    rclone(_s3(cluster, 2), "check", str(src), remote)  # sizes and hashes (MD5)
    listed = rclone(_s3(cluster, 3), "lsf", "-R", "--files-only", remote)
    assert sorted(listed.split("\n")[:-1]) == sorted(_tree(src))

    back = tmp_path / "back"
    rclone(_s3(cluster, 2), "sync", remote, str(back))
    assert _tree(back) == _tree(src)

    # a local deletion and change, synced up: the remote follows
    (src / "a.txt").unlink()
    (src / "dir/b.bin").write_bytes(os.urandom(1000))
    rclone(_s3(cluster, 3), "sync", str(src), remote)
    rclone(_s3(cluster, 1), "check", str(src), remote)
    listed = rclone(_s3(cluster, 2), "lsf", "-R", "--files-only", remote)
    assert "a.txt" not in listed.split("\n")

    # a ranged read
    data = (src / "dir/sub/c.bin").read_bytes()
    out = subprocess.run(
        [
            rclone.binary,
            "cat",
            "--offset",
            str(5 * MiB - 7),
            "--count",
            "100",
            f"{remote}/dir/sub/c.bin",
        ],
        env={**rclone.env, "RCLONE_CONFIG_DFS_ENDPOINT": _s3(cluster, 3)},
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout
    assert out == data[5 * MiB - 7 : 5 * MiB + 93]

    rclone(_s3(cluster, 1), "delete", f"{remote}/dir")
    left = rclone(_s3(cluster, 2), "lsf", "-R", "--files-only", remote)
    assert sorted(left.split("\n")[:-1]) == sorted(
        k for k in _tree(src) if not k.startswith("dir/")
    )
    rclone(_s3(cluster, 3), "delete", remote)
    assert rclone(_s3(cluster, 1), "lsf", "-R", f"dfs:{BUCKET}") == ""
    rclone(_s3(cluster, 1), "rmdir", f"dfs:{BUCKET}")
    assert BUCKET not in rclone(_s3(cluster, 2), "lsf", "dfs:")
